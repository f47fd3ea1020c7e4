"""Recommendation rules fire on data built to trigger them, and stay silent otherwise."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from beadseg.analysis import recommend, stats
from beadseg.analysis.aggregate import runs_frame
from beadseg.config import load_config
from beadseg.plan import expand_grid
from tests.helpers.fakes import make_project  # noqa: E402

# A quiet search: no overfitting, early best epochs, best lr inside the grid, 64 px as good as 32 px,
# replicates with a small spread.
QUIET = {
    "lo": {"lr": 1e-4, "best": 0.50, "final": 0.50, "best_epoch": 4, "epochs_run": 8},
    "mid_s0": {"lr": 1e-3, "seed": 0, "best": 0.60, "final": 0.59, "best_epoch": 5, "epochs_run": 9},
    "mid_s1": {"lr": 1e-3, "seed": 1, "best": 0.595, "final": 0.59, "best_epoch": 5, "epochs_run": 9},
    "hi": {"lr": 1e-2, "best": 0.52, "final": 0.52, "best_epoch": 4, "epochs_run": 8},
    "mid_t64": {"lr": 1e-3, "tile_size": 64, "best": 0.58, "final": 0.58, "best_epoch": 5, "epochs_run": 9, "full": 0.59},
}
LOUD = {
    "lo": {"lr": 1e-4, "best": 0.40, "final": 0.40, "best_epoch": 6, "epochs_run": 10},
    "top_s0": {"lr": 1e-3, "seed": 0, "best": 0.70, "final": 0.55, "best_epoch": 10, "epochs_run": 10},
    "top_s1": {"lr": 1e-3, "seed": 1, "best": 0.60, "final": 0.58, "best_epoch": 9, "epochs_run": 10},
    "t64": {"lr": 1e-3, "tile_size": 64, "best": 0.45, "final": 0.45, "best_epoch": 6, "epochs_run": 10, "full": 0.40},
    "boom": {"lr": 1e-2, "best": 0.0, "final": 0.0, "best_epoch": 0, "epochs_run": 0, "status": "diverged"},
}


def _runs(tmp_path, spec):
    root = make_project(tmp_path, spec)
    cfg = load_config(root / "params.yaml")
    runs, _ = runs_frame(cfg, root)
    return root, cfg, runs


def test_no_rule_fires_on_a_quiet_search(tmp_path):
    root, cfg, runs = _runs(tmp_path, QUIET)
    assert [r.rule for r in recommend.recommendations(runs, cfg)] == []
    spec = recommend.next_search(runs, cfg, [])
    assert expand_grid(spec) and recommend.check_next_search(spec, root)


def test_every_rule_fires_on_a_loud_search(tmp_path):
    root, cfg, runs = _runs(tmp_path, LOUD)
    recs = {r.rule: r for r in recommend.recommendations(runs, cfg)}
    # the run at lr 1e-2 diverged, so it is not a result: among the results 1e-3 is the largest lr, and
    # lr_edge extends the grid up, but only below the lr that diverged
    assert set(recs) == {"overfitting", "epoch_cap", "lr_edge", "diverged", "resolution", "replicate_variance"}
    assert 1e-3 < max(recs["lr_edge"].changes["lr"]) < 1e-2
    assert "top_s0" in recs["overfitting"].evidence and "21.4 %" in recs["overfitting"].evidence
    assert "epoch 10 of max_epochs 10" in recs["epoch_cap"].evidence
    assert recs["diverged"].changes["lr_below"] == pytest.approx(1e-2)
    assert "0.4000 at 64 px against 0.6650 at 32 px" in recs["resolution"].evidence  # full-image scores
    assert "std 0.0707 over 2 seeds" in recs["replicate_variance"].evidence
    spec = recommend.next_search(runs, cfg, list(recs.values()))
    table = recommend.check_next_search(spec, root)
    # the grid leaves out the lr that diverged, extends toward it no further, and adds seeds + regularisation
    assert all(over.get("lr", 1e-3) < 1e-2 for over in table.values())
    assert spec["seeds"] and len(spec["grid"]["dropout"]) >= 2 and spec["fixed"]["max_epochs"] == 20
    assert any(over.get("accumulation_steps", 1) > 1 for over in table.values())
    text = recommend.render_next_search(spec, list(recs.values()), len(table))
    assert expand_grid(yaml.safe_load(text)) == table and "finetune:" in text


def test_lr_edge_extends_down_and_single_lr_is_bracketed(tmp_path):
    spec = {"a": {"lr": 1e-4, "best": 0.6, "final": 0.6, "best_epoch": 3, "epochs_run": 8},
            "b": {"lr": 1e-3, "best": 0.5, "final": 0.5, "best_epoch": 3, "epochs_run": 8}}
    _, cfg, runs = _runs(tmp_path / "down", spec)
    rec = recommend.rule_lr(runs, cfg)
    assert rec.rule == "lr_edge" and min(rec.changes["lr"]) < 1e-4
    one = {"a": {"lr": 1e-3, "best": 0.6, "final": 0.6, "best_epoch": 3, "epochs_run": 8}}
    _, cfg, runs = _runs(tmp_path / "one", one)
    rec = recommend.rule_lr(runs, cfg)
    assert rec.rule == "lr_single" and len(rec.changes["lr"]) == 3


def test_replicate_confidence_interval():
    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "config_group": ["g", "g", "g"], "seed": [0, 1, 2],
                         "best_val_jaccard": [0.5, 0.6, 0.7]})
    rep = stats.replicate_stats(runs, 0.95)
    row = rep.iloc[0]
    assert row["mean"] == pytest.approx(0.6)
    assert row["ci_high"] - row["mean"] == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)
