"""One home for how a model is scored: the threshold training picked the best epoch at is the one evaluate scores
at, evaluate records threshold / objects / min area, and predict uses that record (then the model file's)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from beadseg import cli
from beadseg.checkpoint import ModelFile, Normalization
from beadseg.config import EvaluationConfig, validate
from beadseg.errors import DataError
from beadseg.scoring import Postprocessing, candidates, choose, for_evaluation, for_prediction, from_record, record_path
from tests.helpers.tiny import make_tiny_project, tiny_params


def _model(tmp_path: Path, threshold: float = 0.5, objects: str = "watershed") -> ModelFile:
    cfg = validate(tiny_params()).run("a")
    path = tmp_path / "results/runs/a/model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return ModelFile(path=path, run_id="a", config=cfg, state_dict={}, normalization=Normalization(1.0, 99.8),
                     tile_size=64, threshold=threshold, objects=objects, epoch=1, best_val_jaccard=0.5,
                     beadseg_version="test")


def test_a_set_method_is_used_as_configured(tmp_path: Path) -> None:
    model = _model(tmp_path, threshold=0.4, objects="watershed")
    evaluation = EvaluationConfig(threshold=0.4, objects="components", min_bead_area=7, seed_distance=2)
    post, tried = for_evaluation(evaluation, model, {}, {})
    assert post.to_dict() == {"threshold": 0.4, "objects": "components", "min_area": 7, "seed_distance": 2,
                              "core": 0.5}
    assert tried == []


def test_evaluate_refuses_a_model_picked_at_another_threshold(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"picked its best epoch at threshold 0.5.*is now 0.3: retrain run 'a'"):
        for_evaluation(EvaluationConfig(threshold=0.3), _model(tmp_path, threshold=0.5), {}, {})


def test_candidates_put_the_configured_settings_and_the_prior_first() -> None:
    evaluation = EvaluationConfig(threshold=0.5, min_bead_area=4, seed_distance=3, auto_thresholds=(0.4, 0.5),
                                  auto_seed_distances=(2, 3), auto_min_bead_areas=())
    got = [(c.threshold, c.objects, c.seed_distance) for c in candidates(evaluation, prior="watershed")]
    assert got == [(0.5, "watershed", 3), (0.5, "watershed", 2), (0.5, "components", 3),
                   (0.4, "watershed", 3), (0.4, "watershed", 2), (0.4, "components", 3)]


def _disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _touching_pairs(shape: tuple[int, int] = (96, 192)) -> np.ndarray:
    """Instance labels: pairs of round beads separated by a one-pixel gap (perfect masks keep them apart), and
    single elongated beads (ellipses) that only a too-eager watershed would split."""
    labels = np.zeros(shape, np.int32)
    n = 0
    for cx in (20, 60, 100, 140):  # touching pairs, 1 px gap between them
        for dx in (-5, 5):
            n += 1
            labels[_disc(shape, 25, cx + dx, 6.0) & (labels == 0)] = n
        labels[:, cx] = 0  # the gap
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for cx, angle in ((20, 0.0), (60, 0.6), (100, 1.2), (140, 2.0), (175, 2.8)):  # elongated single beads
        n += 1
        u = (xx - cx) * np.cos(angle) + (yy - 68) * np.sin(angle)
        v = -(xx - cx) * np.sin(angle) + (yy - 68) * np.cos(angle)
        labels[((u / 10.0) ** 2 + (v / 5.0) ** 2 <= 1) & (labels == 0)] = n
    return labels


def test_post_processing_chosen_on_predictions_beats_the_choice_made_on_perfect_masks() -> None:
    """On the perfect masks the one-pixel gaps keep touching beads apart, so components reproduce every object
    and the training-mask choice is components (the simpler method wins any tie). On the model's predictions the
    gaps are blurred shut, so components merge each pair; choosing on the predictions picks the watershed (at a
    seed distance that splits the pairs and keeps the elongated beads whole) and scores higher."""
    from scipy import ndimage

    from beadseg.instances import choose_object_method, object_scores

    truth = _touching_pairs()
    on_masks, _ = choose_object_method([truth])
    assert on_masks == "components"
    prob = ndimage.gaussian_filter((truth > 0).astype(float), 1.5)  # a prediction: gaps between beads blurred
    assert prob[25, 20] > 0.5  # ... shut at the threshold
    evaluation = EvaluationConfig(threshold=0.5, min_bead_area=4, seed_distance=3, auto_seed_distances=(2, 3, 5, 8))
    chosen, tried = choose({"x": prob}, {"x": truth}, candidates(evaluation, prior=on_masks))
    assert chosen.objects == "watershed" and "validation predictions" in chosen.source

    def ap(post: Postprocessing) -> float:
        return object_scores(truth, post.label(prob), (0.5,))["ap_50"]

    prior = candidates(evaluation, prior=on_masks)[0]
    assert prior.objects == "components"
    assert ap(chosen) > ap(prior) + 0.2, (ap(chosen), ap(prior), tried)
    assert max(t["ap_50"] for t in tried) == pytest.approx(ap(chosen))


def test_predict_reads_the_evaluation_record_beside_the_model(tmp_path: Path) -> None:
    model = _model(tmp_path, threshold=0.5, objects="components")
    assert for_prediction(model).to_dict() == {"threshold": 0.5, "objects": "components", "min_area": 4,
                                               "seed_distance": 3, "core": 0.5}
    record = {"run_id": "a", "postprocessing": {"threshold": 0.35, "objects": "watershed", "min_area": 9,
                                                "seed_distance": 5}}
    record_path(model.path).write_text(json.dumps(record))
    post = for_prediction(model)
    assert post.to_dict() == {"threshold": 0.35, "objects": "watershed", "min_area": 9, "seed_distance": 5,
                              "core": 0.5}
    assert post.source.endswith("evaluation.json")
    record_path(model.path).write_text(json.dumps({**record, "run_id": "other"}))  # not this run's record
    assert for_prediction(model).threshold == 0.5


@pytest.mark.parametrize("block", [None, {"threshold": 0.5}, {"threshold": 2, "objects": "watershed", "min_area": 1},
                                   {"threshold": 0.5, "objects": "blobs", "min_area": 1}])
def test_a_malformed_record_is_one_clear_error(block: object) -> None:
    with pytest.raises(DataError, match=r"evaluation.json.*re-run the evaluate step"):
        from_record({"postprocessing": block}, "results/runs/a/evaluation.json")


def _predict_threshold_and_beads(root: Path, out: str) -> tuple[float, int]:
    assert cli.main(["-q", "predict", "--run", "a", "--out", out, str(root / "img.tif")]) == 0
    with open(root / out / "summary.csv", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    return float(row["threshold"]), int(np.count_nonzero(_labels(root / out / "img_labels.tif")))


def _labels(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


def test_changing_evaluation_threshold_changes_what_predict_writes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """params.yaml's threshold -> training's validation -> the model file -> evaluate's record -> predict."""
    import tifffile

    from beadseg.data.prepare import load_split

    written = {}
    for threshold in (0.5, 0.2):
        root = tmp_path / f"t{threshold}"
        root.mkdir()
        monkeypatch.chdir(root)
        params = tiny_params(max_epochs=2)
        params["evaluation"] = {"threshold": threshold}
        cfg = make_tiny_project(root, params)
        (root / "params.yaml").write_text(yaml.safe_dump(params))
        image, _ = next(iter(load_split("val", root).values()))
        tifffile.imwrite(root / "img.tif", (image * 1000).astype(np.uint16))
        assert cli.main(["-q", "train", "--run", "a", "--threads", "1"]) == 0
        assert json.loads(Path("results/runs/a/train.json").read_text())["val_threshold"] == threshold
        assert cli.main(["-q", "evaluate", "--run", "a", "--threads", "1"]) == 0
        record = json.loads(Path("results/runs/a/evaluation.json").read_text())["postprocessing"]
        assert record["threshold"] == threshold and cfg.evaluation.threshold == threshold
        written[threshold] = _predict_threshold_and_beads(root, "pred")
    assert written[0.5][0] == 0.5 and written[0.2][0] == 0.2
    assert written[0.2][1] != written[0.5][1]  # another threshold, other bead pixels
