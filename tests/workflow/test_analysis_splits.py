"""Validation chooses, test reports: the analysis shows the best run's test scores next to its val
scores, says loudly when there is no test set, never ranks by test (but says when test would have
picked another run), compares with the baseline on test, and needs metrics.json from `beadseg evaluate`.

Every expectation is read from the fake inputs (run specs, train.json, metrics.json, baseline.json,
split.json), never copied from the code's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from beadseg import paths
from beadseg.analysis.aggregate import aggregate
from beadseg.analysis.gradients import pixel_gradient_analysis
from beadseg.config import load_config
from beadseg.errors import DataError
from tests.helpers.fakes import analysed_project, make_project, report_section  # noqa: E402

# Test agrees with val: the fakes derive each run's test Jaccard from its val score, keeping the order.
AGREE = {
    "a": {"lr": 1e-3, "loss": "dice", "best": 0.60, "final": 0.58, "best_epoch": 5, "epochs_run": 9},
    "b": {"lr": 3e-4, "loss": "focal", "best": 0.55, "final": 0.55, "best_epoch": 6, "epochs_run": 9},
    "c": {"lr": 1e-4, "loss": "dice", "best": 0.50, "final": 0.50, "best_epoch": 7, "epochs_run": 9},
}
# Test disagrees: "b" is second on val but first on test; the ranking must still put "a" first.
FLIPPED = {
    "a": {**AGREE["a"], "test": 0.40, "merges": 3, "splits": 4},
    "b": {**AGREE["b"], "test": 0.50},
    "c": {**AGREE["c"], "test": 0.45},
}
VAL_WIN_BASELINE, TEST_WIN_BASELINE = 0.30, 0.90  # the baseline loses on val, wins on test


def _analysed(factory: pytest.TempPathFactory, name: str, runs: dict[str, Any], **kwargs: Any) -> Path:
    return analysed_project(factory.mktemp(name), runs, sizes=(32,), **kwargs)


@pytest.fixture(scope="module")
def agree(tmp_path_factory):
    return _analysed(tmp_path_factory, "agree", AGREE)


@pytest.fixture(scope="module")
def no_test(tmp_path_factory):
    return _analysed(tmp_path_factory, "no_test", AGREE, test_images=0)


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    return _analysed(tmp_path_factory, "flipped", FLIPPED, mask_kind="instance")


@pytest.fixture(scope="module")
def test_loses(tmp_path_factory):
    return _analysed(tmp_path_factory, "test_loses", AGREE, baseline=VAL_WIN_BASELINE, baseline_test=TEST_WIN_BASELINE)


def _report(root: Path) -> str:
    return (root / paths.report_file()).read_text()


_section = report_section


def _json(root: Path, path: Path) -> dict[str, Any]:
    return json.loads((root / path).read_text())


def _metrics(root: Path, rid: str) -> dict[str, Any]:
    """What the evaluate step wrote for the run: evaluation.json and metrics.json together."""
    return {**_json(root, paths.evaluation_info_file(rid)), **_json(root, paths.metrics_file(rid))}


def _by_val(spec: dict[str, Any]) -> list[str]:
    return sorted(spec, key=lambda rid: -spec[rid]["best"])


def _ap_keys(root: Path) -> list[str]:
    thresholds = load_config(root / "params.yaml").evaluation.iou_thresholds
    return [f"ap_{round(t * 100):02d}" for t in thresholds]


# --------------------------------------------------------------------------- test next to val


def test_executive_summary_shows_test_next_to_val(agree):
    best = _by_val(AGREE)[0]
    m = _metrics(agree, best)
    text = _section(_report(agree), "Executive summary")
    first_ap = _ap_keys(agree)[0]
    label = f"AP@{int(first_ap[3:]) / 100:g}"
    for name, val, test in (("full-image Jaccard", "full_val_jaccard", "test_jaccard"),
                            ("full-image Dice", "full_val_dice", "test_dice"), ("bead F1", "bead_f1", "test_bead_f1"),
                            (label, first_ap, f"test_{first_ap}")):
        assert f"| {name} | {m[val]:.4f} | {m[test]:.4f} |" in text, name
    assert (f"Run {best} and its epoch {m['best_epoch']} were chosen on the {m['n_val_images']} validation image(s)"
            in text)
    assert "estimate to quote" in text
    assert "No held-out test set" not in _report(agree)


def test_summary_and_runs_csv_carry_the_test_scores(agree):
    summary = _json(agree, paths.summary_json())
    best = _by_val(AGREE)[0]
    m, base = _metrics(agree, best), _json(agree, paths.baseline_file())
    split = _json(agree, paths.split_manifest())
    assert summary["best_run_id"] == best and summary["chosen_on"] == "val"
    assert summary["has_test_split"] is True and summary["n_test_images"] == len(split["splits"]["test"]) > 0
    for key in ("test_jaccard", "test_dice", "test_bead_f1"):
        assert summary[f"best_{key}"] == pytest.approx(m[key]), key
    for ap in _ap_keys(agree):
        assert summary[f"best_{ap}"] == pytest.approx(m[ap])
        assert summary[f"best_test_{ap}"] == pytest.approx(m[f"test_{ap}"])
    assert summary["baseline_test_jaccard"] == pytest.approx(base["test_jaccard"])
    assert summary["best_test_jaccard_minus_baseline"] == pytest.approx(m["test_jaccard"] - base["test_jaccard"])
    assert summary["best_full_val_jaccard"] == pytest.approx(m["full_val_jaccard"])  # the old keys stay
    for value in summary.values():
        assert value is None or isinstance(value, (bool, int, float, str))
    runs = pd.read_csv(agree / paths.runs_table()).set_index("run_id")
    columns = ["test_jaccard", "test_dice", "test_bead_f1", "test_bead_precision", "test_bead_recall",
               "test_bead_count_error", "bead_mean_matched_iou", "bead_merges", "bead_splits", "n_val_images",
               "n_test_images", *_ap_keys(agree), *(f"test_{k}" for k in _ap_keys(agree))]
    for rid in AGREE:
        mr = _metrics(agree, rid)
        for col in columns:
            assert runs.loc[rid, col] == pytest.approx(mr[col]), (rid, col)


def test_which_numbers_are_which(agree):
    section = _section(_report(agree), "Which numbers are which")
    split = _json(agree, paths.split_manifest())
    for name in ("train", "val", "test"):
        assert f"| {name} | {len(split['splits'][name])} |" in section, name
    assert "chooses nothing" in section and "ranks the runs" in section


# --------------------------------------------------------------------------- no test set


def test_no_test_set_is_said_loudly(no_test):
    split = _json(no_test, paths.split_manifest())
    assert split["test_note"] and not split["splits"]["test"]
    text = _report(no_test)
    summary = _section(text, "Executive summary")
    first_block = summary.split("\n\n")[1]
    assert first_block.startswith("> **No held-out test set")
    assert split["test_note"] in first_block and "data.test_fraction" in first_block
    best = _by_val(AGREE)[0]
    m = _metrics(no_test, best)
    assert "| score | val (chose run and epoch) |\n" in summary  # no test column
    assert f"| full-image Jaccard | {m['full_val_jaccard']:.4f} |\n" in summary
    base = _json(no_test, paths.baseline_file())
    assert (f"Best U-Net vs threshold baseline on the validation images: full-image Jaccard "
            f"{m['full_val_jaccard']:.4f} vs {base['full_val_jaccard']:.4f}") in summary
    assert "there is no test split" in summary
    assert "| test | 0 |" in _section(text, "Which numbers are which")
    assert "test Jaccard" not in _section(text, "Validation and test scores")
    s = _json(no_test, paths.summary_json())
    assert s["has_test_split"] is False and s["n_test_images"] == 0
    for key in ("best_test_jaccard", "best_test_dice", "best_test_bead_f1", "baseline_test_jaccard",
                "best_test_jaccard_minus_baseline", "beats_baseline_on_test"):
        assert s[key] is None, key
    assert "no test set" in (no_test / paths.REPORT_DIR / "ANALYSIS_COMPLETE.md").read_text()


# --------------------------------------------------------------------------- ranking stays on val


def test_ranking_ignores_test_scores(flipped):
    runs = pd.read_csv(flipped / paths.runs_table())
    assert list(runs["run_id"]) == _by_val(FLIPPED)
    summary = _json(flipped, paths.summary_json())
    val_best = _by_val(FLIPPED)[0]
    test_best = max(FLIPPED, key=lambda rid: _metrics(flipped, rid)["test_jaccard"])
    assert test_best != val_best  # the scenario is built so that test disagrees
    assert summary["best_run_id"] == val_best
    assert summary["best_test_jaccard"] == pytest.approx(_metrics(flipped, val_best)["test_jaccard"])
    sentence = (f"Ranked by test Jaccard, run {test_best} ({_metrics(flipped, test_best)['test_jaccard']:.4f}) would "
                f"have been picked, not {val_best} ({_metrics(flipped, val_best)['test_jaccard']:.4f}).")
    text = _report(flipped)
    assert sentence in _section(text, "Validation and test scores")
    assert sentence in _section(text, "Executive summary")
    assert f"Best run: **{val_best}**" in text


def test_no_other_pick_when_test_agrees(agree):
    text = _report(agree)
    by_test = max(AGREE, key=lambda rid: _metrics(agree, rid)["test_jaccard"])
    assert by_test == _by_val(AGREE)[0]
    assert "would have been picked, not" not in text
    assert "the same run would have been picked" in _section(text, "Validation and test scores")


# --------------------------------------------------------------------------- baseline on test


def test_baseline_is_compared_on_test(test_loses):
    best = _by_val(AGREE)[0]
    m, base = _metrics(test_loses, best), _json(test_loses, paths.baseline_file())
    assert m["full_val_jaccard"] > base["full_val_jaccard"] and m["test_jaccard"] < base["test_jaccard"]
    summary = _json(test_loses, paths.summary_json())
    assert summary["beats_baseline"] is True and summary["beats_baseline_on_test"] is False
    text = _section(_report(test_loses), "Executive summary")
    assert (f"Best U-Net vs threshold baseline on the test images: full-image Jaccard {m['test_jaccard']:.4f} vs "
            f"{base['test_jaccard']:.4f}") in text
    assert "The search did not beat a plain threshold" in text
    assert f"{base['test_jaccard'] - m['test_jaccard']:.4f} less than the threshold baseline" in text
    assert "verdict is the opposite" in text


# --------------------------------------------------------------------------- object metrics


@pytest.mark.parametrize("name", ["agree", "flipped"])
def test_object_metrics_name_merges_splits_and_mask_kind(request, name):
    root = request.getfixturevalue(name)
    spec = AGREE if name == "agree" else FLIPPED
    best = _by_val(spec)[0]
    m = _metrics(root, best)
    section = _section(_report(root), f"Object metrics of the best run ({best})")
    assert section
    assert f"| merges | {m['bead_merges']} | {m['test_bead_merges']} |" in section
    assert f"| splits | {m['bead_splits']} | {m['test_bead_splits']} |" in section
    assert f"made {m['test_bead_merges']} merge(s) and {m['test_bead_splits']} split(s)" in section
    top = _ap_keys(root)[-1]
    assert f"{m[f'test_{top}']:.4f} at IoU {int(top[3:]) / 100:g}" in section
    kind = _json(root, paths.split_manifest())["mask_kind"]
    if kind == "instance":
        assert "carry instance labels" in section and "touching beads are separate objects" in section
    else:
        assert "binary" in section and "touching beads are one object in the ground truth" in section


# --------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("which, command", [
    (paths.metrics_file, "beadseg evaluate --run"),
    (paths.evaluation_info_file, "beadseg evaluate --run"),
    (paths.train_info_file, "beadseg train --run"),
])
def test_missing_run_file_names_the_command(tmp_path, which, command):
    root = make_project(tmp_path, AGREE, sizes=(32,))
    (root / which("b")).unlink()
    with pytest.raises(DataError) as err:
        aggregate(load_config(root / "params.yaml"), root)
    assert which("b").name in str(err.value) and f"{command} b" in str(err.value)


def test_metrics_of_an_older_model_are_refused(tmp_path):
    root = make_project(tmp_path, AGREE, sizes=(32,))
    path = root / paths.metrics_file("a")
    m = json.loads(path.read_text())
    path.write_text(json.dumps({**m, "best_epoch": m["best_epoch"] + 1}))
    with pytest.raises(DataError, match="beadseg evaluate --run a"):
        aggregate(load_config(root / "params.yaml"), root)


def test_gradient_analysis_without_validation_split(tmp_path):
    root = make_project(tmp_path, AGREE, sizes=(32,))
    cfg = load_config(root / "params.yaml")
    aggregate(cfg, root)
    (root / paths.split_file("val")).unlink()
    out = pixel_gradient_analysis(cfg, pd.read_csv(root / paths.runs_table()), root)
    assert out["per_size"] == {} and "beadseg split" in out["note"]
