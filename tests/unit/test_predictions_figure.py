"""fig9 (the best run's predictions): the matching is object_scores', the colours and counts of each panel are
the evaluate step's per-image numbers, and it is drawn from the files evaluate writes."""

from __future__ import annotations

import io
import json

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from skimage.draw import disk

from beadseg import paths
from beadseg.analysis.figures import fig_predictions
from beadseg.analysis.predictions import (
    COLOURS,
    overlay,
    per_image_counts,
    prediction_view,
    report_lines,
    shown_order,
    worst_image,
)
from beadseg.config import EvaluationConfig
from beadseg.errors import DataError
from beadseg.evaluate import per_image_csv, predicted_labels, score_images
from beadseg.instances import match_objects, object_scores
from beadseg.predictions_file import read_predictions, write_predictions

SHAPE = (64, 96)
EVAL = EvaluationConfig(objects="components", min_bead_area=4)


def discs(centres: list[tuple[int, int]], radius: float = 6.0) -> np.ndarray:
    labels = np.zeros(SHAPE, np.int32)
    for i, centre in enumerate(centres, start=1):
        rr, cc = disk(centre, radius, shape=SHAPE)
        labels[rr, cc] = i
    return labels


# true beads A, B, C, D; predicted: A and B exactly, C shifted by 9 px (IoU < 0.5: one false and one missed),
# D not at all, and E where there is no bead.
TRUTH = discs([(16, 16), (16, 48), (44, 20), (44, 70)])
PRED = discs([(16, 16), (16, 48), (44, 29), (16, 80)])
# apart from each other (nothing overlaps): 2 matched, 1 missed (D), 1 false (E)
CLEAN_PRED = discs([(16, 16), (16, 48), (44, 20), (16, 80)])
CLEAN_TRUTH = discs([(16, 16), (16, 48), (44, 20), (44, 70)])


def test_match_objects_is_the_matching_object_scores_counts():
    match = match_objects(TRUTH, PRED, 0.5)
    scores = object_scores(TRUTH, PRED, (0.5, 0.75))
    assert match.counts() == (scores["tp_50"], scores["fp_50"], scores["fn_50"]) == (2, 2, 2)
    assert sorted(map(tuple, match.pairs.tolist())) == [(1, 1), (2, 2)]
    assert match.missed.tolist() == [3, 4] and match.false.tolist() == [3, 4]
    assert match_objects(TRUTH, PRED, 0.05).counts() == (3, 1, 1)  # C and its shifted twin: IoU ~0.1


def test_per_image_counts_are_read_back_from_the_csv_the_evaluate_step_writes():
    prob = (PRED > 0).astype(np.float32)
    _, rows = score_images({"x": prob, "empty": np.zeros(SHAPE, np.float32)},
                           {"x": TRUTH, "empty": np.zeros(SHAPE, np.uint8)}, EVAL)
    table = pd.read_csv(io.StringIO(per_image_csv([{"split": "val", **r} for r in rows],
                                                                 EVAL.iou_thresholds)))
    assert per_image_counts(table.iloc[1]) == (2, 2, 2)  # sorted stems: "empty", "x"
    assert per_image_counts(table.iloc[0]) == (0, 0, 0)


def _colour_objects(rgb: np.ndarray, key: str) -> int:
    exact = np.all(np.isclose(rgb, COLOURS[key]), axis=2)
    return int(ndimage.label(exact, structure=np.ones((3, 3)))[1])


def test_overlay_draws_matched_missed_and_false_beads_in_their_colours():
    image = np.random.default_rng(0).uniform(0.0, 0.3, SHAPE) + 0.5 * (CLEAN_TRUTH > 0)
    match = match_objects(CLEAN_TRUTH, CLEAN_PRED, 0.5)
    rgb = overlay(image, match)
    assert rgb.shape == (*SHAPE, 3) and rgb.min() >= 0.0 and rgb.max() <= 1.0
    drawn = {key: _colour_objects(rgb, key) for key in ("matched", "missed", "false")}
    assert drawn == {"matched": 3, "missed": 1, "false": 1}
    # the missed bead is filled (tinted orange inside), the background of the image stays grey
    inside = rgb[44, 70]
    assert inside[0] > inside[2] and np.allclose(rgb[2, 2], rgb[2, 2, 0])


def test_shown_images_are_the_worst_first_then_median_and_best():
    assert shown_order({"b": 0.5, "a": 0.9}) == ["b", "a"]
    assert shown_order({"a": 0.9, "b": 0.1, "c": 0.5, "d": 0.7, "e": 0.1}) == ["b", "c", "a"]


def _project(root, pred_by_stem: dict[str, np.ndarray]) -> None:
    """A split with one test image per entry, scored and saved exactly as the evaluate step does."""
    truths = {stem: TRUTH for stem in pred_by_stem}
    rng = np.random.default_rng(1)
    arrays = {}
    for stem, truth in truths.items():
        arrays[f"img__{stem}"] = (rng.uniform(0, 0.2, SHAPE) + 0.7 * (truth > 0)).astype(np.float32)
        arrays[f"mask__{stem}"] = (truth > 0).astype(np.uint8)
        arrays[f"labels__{stem}"] = truth.astype(np.uint16)
    (root / paths.SPLIT_DIR).mkdir(parents=True)
    np.savez(root / paths.split_file("test"), **arrays)
    np.savez(root / paths.split_file("val"))
    probs = {stem: (p > 0).astype(np.float32) for stem, p in pred_by_stem.items()}
    _, rows = score_images(probs, truths, EVAL)
    (root / paths.run_dir("r")).mkdir(parents=True)
    (root / paths.per_image_file("r")).write_text(
        per_image_csv([{"split": "test", **r} for r in rows], EVAL.iou_thresholds))
    write_predictions(root / paths.predictions_file("r"), {"val": {}, "test": predicted_labels(probs, EVAL)},
                      EVAL.iou_thresholds)


def test_the_panels_counts_and_colours_are_the_evaluate_steps_per_image_numbers(tmp_path):
    preds = {"good": TRUTH, "poor": PRED, "none": np.zeros(SHAPE, np.int32)}
    _project(tmp_path, preds)
    saved = read_predictions(tmp_path / paths.predictions_file("r"), "r")
    assert saved.labels["test"]["poor"].dtype == np.uint16 and saved.iou_thresholds[0] == 0.5
    view = prediction_view("r", tmp_path)
    rows = pd.read_csv(tmp_path / paths.per_image_file("r")).set_index("image")
    assert view.split == "test" and [p.stem for p in view.panels] == ["none", "poor", "good"]
    assert view.worst_stem == "none" and view.panels[0].worst and view.worst_ap == 0.0
    for panel in view.panels:
        tp, fp, fn = per_image_counts(rows.loc[panel.stem])
        assert panel.counts() == {"matched": tp, "missed": fn, "false": fp}
        assert panel.ap == pytest.approx(rows.at[panel.stem, "ap_50"])
    assert view.panels[1].counts() == {"matched": 2, "missed": 2, "false": 2}
    assert view.panels[0].counts() == {"matched": 0, "missed": 4, "false": 0}
    rgb = overlay(view.panels[2].image, view.panels[2].match)
    assert _colour_objects(rgb, "matched") == 4 and _colour_objects(rgb, "missed") == _colour_objects(rgb, "false") == 0

    worst = worst_image("r", tmp_path)
    assert worst is not None and (worst.stem, worst.missed, worst.matched, worst.false) == ("none", 4, 0, 0)
    text = "\n".join(report_lines(worst, "fig9_predictions.png"))
    assert "worst test image is **none**: AP@0.5 0.000, with 0 bead(s) matched, 4 missed and 0 false" in text
    assert "](figures/fig9_predictions.png)" in text

    runs = pd.DataFrame([{"run_id": "r", "status": "completed", "degenerate_reasons": ""}])
    target = fig_predictions(runs, tmp_path, tmp_path / "fig9.png")
    img = mpimg.imread(target)
    assert img.shape[0] > 400 and img.shape[1] > 400 and float(np.std(img[..., :3])) > 0.05


def test_predictions_that_disagree_with_per_image_csv_are_refused(tmp_path):
    _project(tmp_path, {"a": TRUTH, "b": PRED})
    write_predictions(tmp_path / paths.predictions_file("r"), {"test": {"a": TRUTH, "b": TRUTH}}, (0.5,))
    with pytest.raises(DataError, match=r"image 'b' 4 matched, 0 false, 0 missed beads, .*per_image.csv' 2, 2, 2: .*"
                       r"rerun `beadseg evaluate --run r`"):
        prediction_view("r", tmp_path)
    (tmp_path / paths.predictions_file("r")).unlink()
    with pytest.raises(DataError, match="predictions.npz' not found: rerun `beadseg evaluate --run r`"):
        prediction_view("r", tmp_path)


def test_a_run_without_a_predictions_file_gets_a_note_not_a_crash(tmp_path):
    _project(tmp_path, {"a": TRUTH})
    (tmp_path / paths.predictions_file("r")).unlink()
    runs = pd.DataFrame([{"run_id": "r", "status": "completed", "degenerate_reasons": ""}])
    assert fig_predictions(runs, tmp_path, tmp_path / "fig9.png").stat().st_size > 5000
    assert json.dumps(report_lines(None, "fig9_predictions.png")).count("nothing to draw") == 1
