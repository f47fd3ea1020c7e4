"""The evaluate step: instance labels used for bead scores, val and test scored apart, model file checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import disk

from beadseg import paths
from beadseg.config import EvaluationConfig, validate
from beadseg.errors import ConfigError, DataError
from beadseg.evaluate import evaluate_run, score_images, split_names
from beadseg.train import train_run
from tests.helpers.tiny import make_tiny_project, tiny_params


def three_touching_disks() -> np.ndarray:
    """Instance labels of three disks of radius 8 in a row, each touching the next (one connected blob)."""
    labels = np.zeros((40, 72), np.int32)
    for i, cx in enumerate((12, 28, 44), start=1):
        rr, cc = disk((20, cx), 8.5, shape=labels.shape)
        free = labels[rr, cc] == 0
        labels[rr[free], cc[free]] = i
    return labels


def test_bead_scores_use_the_instance_labels_where_components_would_merge_them():
    labels = three_touching_disks()
    prob = (labels > 0).astype(np.float32)  # a perfect pixel prediction
    assert np.unique(labels).size == 4
    components = EvaluationConfig(objects="components")
    with_labels, _ = score_images({"x": prob}, {"x": labels}, components)
    with_binary, _ = score_images({"x": prob}, {"x": (labels > 0).astype(np.uint8)}, components)
    # the binary truth is one object, found exactly; the labelled truth is three beads, each IoU ~1/3 with the blob
    assert (with_binary["n_true"], with_binary["f1"], with_binary["ap_50"]) == (1, 1.0, 1.0)
    assert (with_labels["n_true"], with_labels["n_pred"], with_labels["f1"]) == (3, 1, 0.0)
    assert with_labels["merges"] == 1 and with_labels["ap_50"] == 0.0  # 0 TP / (0 TP + 1 FP + 3 FN)
    assert with_labels["jaccard"] == with_binary["jaccard"] == 1.0  # pixel scores do not see instances


def test_watershed_objects_separate_touching_beads_against_instance_labels():
    labels = three_touching_disks()
    prob = (labels > 0).astype(np.float32)
    scores, rows = score_images({"x": prob}, {"x": labels}, EvaluationConfig(objects="watershed"))
    assert (scores["n_true"], scores["n_pred"], scores["f1"], scores["merges"]) == (3, 3, 1.0, 0)
    assert scores["ap_50"] == 1.0 and rows[0]["image"] == "x" and rows[0]["f1"] == 1.0


def test_scores_pool_counts_over_images_and_name_the_split():
    labels = three_touching_disks()
    probs = {"a": (labels > 0).astype(np.float32), "b": np.zeros(labels.shape, np.float32)}
    scores, rows = score_images(probs, {"a": labels, "b": labels}, EvaluationConfig(objects="watershed"))
    assert scores["n_true"] == 6 and scores["n_pred"] == 3 and scores["recall"] == 0.5
    assert scores["jaccard"] == pytest.approx(int((labels > 0).sum()) / (2 * int((labels > 0).sum())))
    assert [r["image"] for r in rows] == ["a", "b"] and rows[1]["n_pred"] == 0
    val, test = split_names(scores, "val"), split_names(scores, "test")
    assert val["full_val_jaccard"] == test["test_jaccard"] == scores["jaccard"]
    assert val["bead_f1"] == test["test_bead_f1"] and val["ap_50"] == test["test_ap_50"]
    assert val["n_val_images"] == test["n_test_images"] == 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    cfg = make_tiny_project(root, tiny_params(max_epochs=1))
    train_run(cfg, "a", root=root, progress=False)
    return root, cfg


def test_evaluate_scores_val_and_test_apart(trained):
    root, cfg = trained
    metrics = evaluate_run(cfg, "a", root=root, progress=False)
    split = json.loads((root / paths.split_manifest()).read_text())["splits"]
    assert metrics["n_val_images"] == len(split["val"]) and metrics["n_test_images"] == len(split["test"]) == 1
    assert metrics["chosen_on"] == "val" and metrics["evaluation"]["objects"] == cfg.evaluation.objects
    per_image = (root / paths.per_image_file("a")).read_text().splitlines()
    assert len(per_image) == 1 + len(split["val"]) + len(split["test"])


def test_evaluate_saves_each_images_predicted_beads_as_its_per_image_scores_count_them(trained):
    import pandas as pd

    from beadseg.analysis.predictions import per_image_counts
    from beadseg.data.prepare import load_split_objects
    from beadseg.instances import match_objects, true_objects
    from beadseg.predictions_file import read_predictions

    root, cfg = trained
    evaluate_run(cfg, "a", root=root, progress=False)
    saved = read_predictions(root / paths.predictions_file("a"), "a")
    rows = pd.read_csv(root / paths.per_image_file("a"), dtype={"image": str})
    assert sorted((s, stem) for s, images in saved.labels.items() for stem in images) == \
        sorted(zip(rows["split"], rows["image"]))
    assert saved.iou_thresholds == tuple(cfg.evaluation.iou_thresholds)
    for row in rows.itertuples():
        labels = saved.labels[row.split][row.image]
        assert labels.dtype == np.uint16
        match = match_objects(true_objects(load_split_objects(row.split, root)[row.image]), labels,
                              saved.iou_thresholds[0])
        assert match.counts() == per_image_counts(row._asdict()) and match.n_pred == row.n_pred


def test_evaluate_refuses_a_model_trained_on_differently_normalised_images(trained, tmp_path):
    root, cfg = trained
    manifest = root / paths.split_manifest()
    original = manifest.read_text()
    changed = json.loads(original)
    changed["normalization"]["high_pct"] = 95.0
    try:
        manifest.write_text(json.dumps(changed))
        with pytest.raises(DataError, match="retrain run 'a'"):
            evaluate_run(cfg, "a", root=root, progress=False)
    finally:
        manifest.write_text(original)


def test_evaluate_needs_a_trained_run_and_a_known_id(tmp_path):
    cfg = validate(tiny_params())
    with pytest.raises(DataError, match="beadseg train --run a"):
        evaluate_run(cfg, "a", root=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="valid run ids"):
        evaluate_run(cfg, "nope", root=tmp_path, progress=False)


def test_an_old_model_file_is_refused_with_the_command_to_retrain(trained, tmp_path):
    import torch

    from beadseg.checkpoint import load_model_file, load_torch

    root, _ = trained
    raw = load_torch(root / paths.model_file("a"))
    old = {k: v for k, v in raw.items() if k not in ("normalization", "tile_size", "threshold")}
    old["version"] = 1
    target = Path(tmp_path) / "old.pt"
    torch.save(old, target)
    with pytest.raises(DataError, match=r"format-1 model file.*beadseg train --run a"):
        load_model_file(target)


def test_predict_on_the_raw_tiff_gives_the_probabilities_evaluate_scores(tmp_path):
    """A model trained with non-default normalisation percentiles: predict reads them from the model file."""
    import tifffile

    from beadseg.checkpoint import load_model_file
    from beadseg.data.io import normalize, read_image
    from beadseg.data.prepare import load_split
    from beadseg.evaluate import predict_images
    from beadseg.predict import predict_files

    params = tiny_params(max_epochs=2, steps_per_epoch=10)
    params["data"].update(normalize_low_pct=5.0, normalize_high_pct=95.0)
    cfg = make_tiny_project(tmp_path, params)
    train_run(cfg, "a", root=tmp_path, progress=False)
    model_file = load_model_file(tmp_path / paths.model_file("a"))
    assert (model_file.normalization.low_pct, model_file.normalization.high_pct) == (5.0, 95.0)
    stem, (image, _) = next(iter(load_split("val", tmp_path).items()))
    model = model_file.build()
    evaluated = predict_images(model, {stem: image}, model_file.tile_size, cfg.evaluation.overlap,
                               model_file.config.batch_size, torch_cpu())[stem]
    raw_path = tmp_path / cfg.data.images / f"{stem}.tif"
    predict_files(tmp_path / paths.model_file("a"), [raw_path], tmp_path / "out", overlap=cfg.evaluation.overlap,
                  threads=1, progress=False)
    predicted = tifffile.imread(tmp_path / "out" / f"{stem}_prob.tif")
    # the split stores normalised images as float16: agreement to that precision
    assert np.abs(predicted - evaluated).max() < 5e-3
    default_scaled = predict_images(model, {stem: normalize(read_image(raw_path), 1.0, 99.8)}, model_file.tile_size,
                                    cfg.evaluation.overlap, model_file.config.batch_size, torch_cpu())[stem]
    assert np.abs(default_scaled - evaluated).max() > 0.05  # the old hard-coded percentiles would differ


def torch_cpu():
    import torch

    return torch.device("cpu")
