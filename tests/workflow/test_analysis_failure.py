"""Runs that are not results: a degenerate run is never best, a search of only degenerate runs is
reported as failed, the threshold baseline is compared honestly, and the Data section shows the
fingerprint (every warning, every run's step budget).

Every expectation is derived from the fake inputs (run specs, metrics.json, baseline.json,
fingerprint.json), so a report that drops or misstates any of them fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from beadseg import paths
from beadseg.analysis import FIGURES, recommend
from beadseg.analysis.aggregate import aggregate, runs_frame
from beadseg.analysis.report import write_report
from beadseg.config import load_config
from beadseg.errors import DataError
from beadseg.plan import expand_grid
from beadseg.quality import MIN_STEPS
from tests.helpers.fakes import analysed_project, make_project, report_section  # noqa: E402

# "tiny" has the highest tile-level score but learned nothing (full-image Jaccard below the all-bead
# prediction, flat probability map, only 6 optimizer steps): it must never be named best.
# "short_patience" can stop after 100 steps: a fingerprint warning, but a result.
PARTIAL = {
    "good_a": {"lr": 1e-3, "loss": "dice", "best": 0.60, "final": 0.58, "best_epoch": 5, "epochs_run": 9},
    "good_b": {"lr": 3e-4, "loss": "dice", "tile_size": 64, "best": 0.52, "final": 0.52, "best_epoch": 5,
               "epochs_run": 9},
    "short_patience": {"lr": 1e-3, "loss": "focal", "patience": 1, "best": 0.45, "final": 0.45, "best_epoch": 4,
                       "epochs_run": 6},
    "tiny": {"lr": 1e-3, "loss": "dice", "steps_per_epoch": 3, "best": 0.70, "final": 0.70, "best_epoch": 1,
             "epochs_run": 2, "degenerate": True, "full": 0.04, "flat_loss": True},
}
FAILED = {
    rid: {"lr": lr, "tile_size": size, "steps_per_epoch": 2, "best": 0.05, "final": 0.05, "best_epoch": 1,
          "epochs_run": 2, "degenerate": True, "full": 0.03}
    for rid, lr, size in (("f_a", 1e-3, 32), ("f_b", 3e-4, 32), ("f_c", 1e-3, 64))
}
UNBEATEN = {
    "u_a": {"lr": 1e-3, "best": 0.60, "final": 0.60, "best_epoch": 4, "epochs_run": 8, "full": 0.58},
    "u_b": {"lr": 3e-4, "best": 0.50, "final": 0.50, "best_epoch": 4, "epochs_run": 8, "full": 0.49},
}
UNBEATEN_BASELINE = 0.80


def _analysed(factory: pytest.TempPathFactory, name: str, runs: dict[str, dict[str, Any]],
              **kwargs: Any) -> Path:
    return analysed_project(factory.mktemp(name), runs, **kwargs)


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    return _analysed(tmp_path_factory, "partial", PARTIAL)


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    return _analysed(tmp_path_factory, "failed", FAILED)


@pytest.fixture(scope="module")
def unbeaten(tmp_path_factory):
    return _analysed(tmp_path_factory, "unbeaten", UNBEATEN, sizes=(32,), baseline=UNBEATEN_BASELINE)


def _text(root: Path, name: str = "REPORT.md") -> str:
    return (root / paths.REPORT_DIR / name).read_text()


def _metrics(root: Path, run_id: str) -> dict[str, Any]:
    """What the evaluate step wrote for the run: evaluation.json and metrics.json together."""
    return {**json.loads((root / paths.evaluation_info_file(run_id)).read_text()),
            **json.loads((root / paths.metrics_file(run_id)).read_text())}


def _summary(root: Path) -> dict[str, Any]:
    return json.loads((root / paths.summary_json()).read_text())


_section = report_section


def _valid_ids(spec: dict[str, dict[str, Any]]) -> list[str]:
    """Run ids that are results, best tile-level score first (what the ranking must give)."""
    ok = [rid for rid, s in spec.items() if not s.get("degenerate") and s.get("status") != "diverged"]
    return sorted(ok, key=lambda rid: -spec[rid]["best"])


# --------------------------------------------------------------------------- one degenerate run


def test_degenerate_run_is_never_best(partial):
    summary = _summary(partial)
    valid = _valid_ids(PARTIAL)
    assert max(PARTIAL, key=lambda r: PARTIAL[r]["best"]) == "tiny"  # the trap: the highest raw score
    assert summary["best_run_id"] == valid[0]
    assert summary["best_val_jaccard"] == pytest.approx(PARTIAL[valid[0]]["best"])
    assert summary["worst_run_id"] == valid[-1]
    assert summary["mean_best_val_jaccard"] == pytest.approx(sum(PARTIAL[r]["best"] for r in valid) / len(valid))
    assert (summary["n_runs"], summary["n_valid"], summary["n_degenerate"], summary["n_diverged"]) == \
        (len(PARTIAL), len(valid), 1, 0)
    assert summary["search_failed"] is False
    for value in summary.values():  # lean and DVC-friendly: plain scalars only
        assert value is None or isinstance(value, (bool, int, float, str))


def test_runs_csv_marks_the_degenerate_run(partial):
    runs = pd.read_csv(partial / paths.runs_table())
    valid = _valid_ids(PARTIAL)
    assert list(runs["run_id"]) == [*valid, "tiny"]  # results by score first, then the rest
    assert list(runs["rank"]) == list(range(1, len(runs) + 1))
    row = runs.set_index("run_id").loc["tiny"]
    m = _metrics(partial, "tiny")
    assert m["degenerate_reasons"] and m["likely_causes"]
    assert row["status"] == "degenerate" and row["stop_reason"] == m["stop_reason"]
    assert row["degenerate_reasons"] == "; ".join(m["degenerate_reasons"])
    assert row["likely_causes"] == "; ".join(m["likely_causes"])
    assert runs.set_index("run_id").loc[valid, "degenerate_reasons"].isna().all()


def test_report_names_the_degenerate_run_with_reasons_and_causes(partial):
    text = _text(partial)
    summary = _section(text, "Executive summary")
    m = _metrics(partial, "tiny")
    assert "**tiny** (degenerate" in summary
    for sentence in m["degenerate_reasons"] + m["likely_causes"]:
        assert sentence in summary, sentence
    assert f"Best run: **{_valid_ids(PARTIAL)[0]}**" in summary
    assert "| tiny |" not in _section(text, f"Top {len(_valid_ids(PARTIAL))} runs")
    for heading in ("Hyperparameter impact", "Loss comparison", "Convergence and efficiency", "Statistical summary"):
        assert "left out (not results): tiny (degenerate)" in _section(text, heading), heading
    assert "optimistic" in summary and "estimate to quote" in summary
    complete = _text(partial, "ANALYSIS_COMPLETE.md")
    assert "Best run tiny" not in complete and "tiny (degenerate)" in complete
    assert "tiny (degenerate)" in _text(partial, "MATHEMATICAL_ANALYSIS_SUMMARY.md")


def test_figure_and_statistics_use_results_only(partial):
    numbers = json.loads((partial / paths.REPORT_DIR / "analysis_numbers.json").read_text())
    assert numbers["fig6_best_run"] == _valid_ids(PARTIAL)[0]
    models = {p.get("model_run") for p in numbers["fig7"]["per_size"].values()}
    assert "tiny" not in models and models <= set(_valid_ids(PARTIAL))
    runs = pd.read_csv(partial / paths.runs_table())
    loss_section = _section(_text(partial), "Loss comparison")
    dice = runs[(runs["loss"] == "dice") & (runs["status"] != "degenerate")]["best_val_jaccard"]
    assert f"| dice | {len(dice)} | {dice.mean():.4f} | {dice.std(ddof=1):.4f} | {dice.max():.4f} |" in loss_section


def test_degenerate_fix_is_recommended_but_not_applied_to_a_working_search(partial):
    text = _section(_text(partial), "Recommendations")
    assert "rule `degenerate`" in text
    spe = PARTIAL["tiny"]["steps_per_epoch"]
    assert f"steps_per_epoch {spe} -> " in text
    spec = yaml.safe_load(_text(partial, "next_search.yaml"))
    assert spec["fixed"].get("steps_per_epoch", 50) != spe  # the grid refines the best run, not tiny


# --------------------------------------------------------------------------- every run degenerate


def test_failed_search_summary(failed):
    summary = _summary(failed)
    assert summary["search_failed"] is True
    assert summary["n_valid"] == 0 and summary["n_degenerate"] == len(FAILED)
    for key in ("best_run_id", "best_val_jaccard", "best_full_val_jaccard", "mean_best_val_jaccard",
                "worst_run_id", "best_full_val_jaccard_minus_baseline"):
        assert summary[key] is None, key
    assert summary["beats_baseline"] is False
    sizes = {s["tile_size"] for s in FAILED.values()}
    assert all(summary[f"best_val_jaccard_t{s}"] is None for s in sizes)


def test_failed_search_report_says_so_and_names_no_best(failed):
    text = _text(failed)
    summary = _section(text, "Executive summary")
    assert "The search failed: no run learned to segment beads" in summary
    assert "Best run" not in text and "Best configuration" not in text and "## Top" not in text
    for heading in ("Hyperparameter impact", "Loss comparison", "Statistical summary", "Resolution comparison"):
        assert f"## {heading}" not in text, heading
    for rid in FAILED:
        m = _metrics(failed, rid)
        assert f"**{rid}** (degenerate" in summary
        for sentence in m["degenerate_reasons"] + m["likely_causes"]:
            assert sentence in summary, sentence
    baseline = json.loads((failed / paths.baseline_file()).read_text())
    assert f"full-image Jaccard {baseline['full_val_jaccard']:.4f}" in summary
    assert "## Data" in text and "rule `degenerate`" in _section(text, "Recommendations")
    assert "search failed" in _text(failed, "ANALYSIS_COMPLETE.md").lower()
    assert "Best run" not in _text(failed, "ANALYSIS_COMPLETE.md")
    assert "search failed" in _text(failed, "MATHEMATICAL_ANALYSIS_SUMMARY.md").lower()
    for name in FIGURES:  # every figure drawn (a message where there is nothing to compare), none crashed
        assert (failed / paths.FIGURES_DIR / name).stat().st_size > 5000


def test_failed_search_next_search_proposes_the_fix(failed, tmp_path):
    raw = _text(failed, "next_search.yaml")
    assert raw.startswith("# Proposed next search") and "SEARCH FAILED" in raw and "rule 'degenerate'" in raw
    spec = yaml.safe_load(raw)
    cfg = load_config(failed / "params.yaml")
    old = cfg.run(next(iter(FAILED)))
    fixed = spec["fixed"]
    assert fixed["steps_per_epoch"] >= 4 * old.steps_per_epoch and fixed["patience"] > old.patience
    table = recommend.check_next_search(spec, failed)
    assert table == expand_grid(spec) and len(table) >= 1
    new = {**yaml.safe_load((failed / "params.yaml").read_text()), "runs": table}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(new))
    for run in load_config(tmp_path / "params.yaml").runs.values():  # the fix clears the step warning
        assert run.min_optimizer_steps >= MIN_STEPS


@pytest.mark.parametrize("override, lr_check", [
    ({"lr": 1e-6}, lambda lrs: lrs == [1e-4, 3e-4, 1e-3, 3e-3]),
    ({"flat_loss": True, "steps_per_epoch": 50, "epochs_run": 10, "best_epoch": 10},
     lambda lrs: lrs and max(lrs) < 1e-3),
], ids=["tiny_lr", "loss_not_falling"])
def test_degenerate_rule_follows_the_likely_cause(tmp_path, override, lr_check):
    spec = {"only": {**FAILED["f_a"], **override}}
    root = make_project(tmp_path, spec, sizes=(32,))
    cfg = load_config(root / "params.yaml")
    runs, _ = runs_frame(cfg, root)
    rec = {r.rule: r for r in recommend.recommendations(runs, cfg)}["degenerate"]
    assert lr_check(rec.changes.get("lr", [])), rec.changes
    grid = recommend.next_search(runs, cfg, [rec])["grid"]
    assert grid["lr"] == rec.changes["lr"]


# --------------------------------------------------------------------------- baseline


def test_search_that_does_not_beat_the_baseline(unbeaten):
    summary = _summary(unbeaten)
    best = _valid_ids(UNBEATEN)[0]
    baseline = json.loads((unbeaten / paths.baseline_file()).read_text())
    best_test = _metrics(unbeaten, best)["test_jaccard"]
    assert best_test < baseline["test_jaccard"]  # the scenario loses on test too
    assert summary["beats_baseline"] is False and summary["beats_baseline_on_test"] is False
    assert summary["baseline_full_val_jaccard"] == pytest.approx(UNBEATEN_BASELINE)
    assert summary["best_full_val_jaccard_minus_baseline"] == pytest.approx(UNBEATEN[best]["full"] - UNBEATEN_BASELINE)
    assert summary["best_test_jaccard_minus_baseline"] == pytest.approx(best_test - baseline["test_jaccard"])
    text = _section(_text(unbeaten), "Executive summary")
    assert "The search did not beat a plain threshold" in text
    assert (f"Best U-Net vs threshold baseline on the test images: full-image Jaccard {best_test:.4f} vs "
            f"{baseline['test_jaccard']:.4f}") in text
    assert f"on the validation images {UNBEATEN[best]['full']:.4f} vs {UNBEATEN_BASELINE:.4f}" in text
    assert "chosen on the training images" in text


def test_search_that_beats_the_baseline(partial):
    summary = _summary(partial)
    baseline = json.loads((partial / paths.baseline_file()).read_text())
    best = _metrics(partial, summary["best_run_id"])
    assert summary["beats_baseline"] is (best["full_val_jaccard"] > baseline["full_val_jaccard"]) is True
    assert summary["beats_baseline_on_test"] is (best["test_jaccard"] > baseline["test_jaccard"]) is True
    text = _section(_text(partial), "Executive summary")
    assert "did not beat" not in text
    assert f"beats the baseline by {best['test_jaccard'] - baseline['test_jaccard']:.4f}" in text


# --------------------------------------------------------------------------- data section


def test_data_section_lists_every_warning_and_every_runs_steps(partial):
    fp = json.loads((partial / paths.fingerprint_file()).read_text())
    text = _text(partial)
    data, summary = _section(text, "Data"), _section(text, "Executive summary")
    flagged = {rid for rid, b in fp["runs"].items() if b["min_optimizer_steps"] < MIN_STEPS}
    assert flagged == {"tiny", "short_patience"}  # the scenario is built to warn about these two
    assert len(fp["warnings"]) >= len(flagged)
    for w in fp["warnings"]:
        assert f"- **Warning:** {w}" in data, w
        assert f"> - {w}" in summary, w
    assert f"**Warnings ({len(fp['warnings'])})**" in data
    runs = pd.read_csv(partial / paths.runs_table()).set_index("run_id")
    for rid, b in fp["runs"].items():
        row = (f"| {rid} | {b['tile_size']} | {b['steps_per_epoch']} | {b['max_epochs']} | {b['patience']} | "
               f"{b['max_optimizer_steps']} | {b['min_optimizer_steps']} | {int(runs.loc[rid, 'optimizer_steps'])} | "
               f"{runs.loc[rid, 'status']} |")
        assert row in data, row
    for split, s in fp["splits"].items():
        touching = f"{100 * s['touching_fraction']:.1f} %" + (" (estimated)" if s["touching_estimated"] else "")
        assert f"| {split} | {s['n_images']} |" in data and touching in data
        assert f"| {s['count']} | {s['diameter_px']['min']:.1f} / {s['diameter_px']['median']:.1f}" in data
        assert f"{100 * s['foreground_fraction']:.1f} %" in data
    for size, n in fp["tiles_per_size"].items():
        assert f"| {size} | {n['train']} | {n['val']} |" in data


def test_no_warning_no_warning_block(unbeaten):
    fp = json.loads((unbeaten / paths.fingerprint_file()).read_text())
    assert fp["warnings"] == []
    text = _text(unbeaten)
    assert "Data warnings" not in text and "**Warnings (0)**" in _section(text, "Data")


# --------------------------------------------------------------------------- missing inputs


@pytest.mark.parametrize("missing, step, command", [
    (paths.baseline_file(), "aggregate", "beadseg baseline"),
    (paths.fingerprint_file(), "report", "beadseg fingerprint"),
])
def test_missing_input_is_a_clear_error(tmp_path, missing, step, command):
    root = make_project(tmp_path, UNBEATEN, sizes=(32,))
    cfg = load_config(root / "params.yaml")
    if step == "report":
        from beadseg.analysis.figures import make_figures
        from beadseg.analysis.measure import measure
        aggregate(cfg, root)
        measure(cfg, root)
        make_figures(cfg, root)
    (root / missing).unlink()
    with pytest.raises(DataError) as err:
        (aggregate if step == "aggregate" else write_report)(cfg, root)
    assert str(missing.name) in str(err.value) and command in str(err.value)
