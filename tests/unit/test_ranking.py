"""analysis.rank_by: one score ranks runs everywhere (report order, halving selection, TPE's objective)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from beadseg.analysis.aggregate import rank
from beadseg.ranking import rank_column, rank_label, rank_value
from beadseg.search import read_outcome

# Pixel scores and bead scores disagree: run "px" covers pixels best but merges touching beads.
ROWS = [
    {"run_id": "px", "status": "completed", "best_val_jaccard": 0.90, "full_val_jaccard": 0.88, "bead_f1": 0.40,
     "ap_50": 0.30, "ap_75": 0.10},
    {"run_id": "beads", "status": "completed", "best_val_jaccard": 0.86, "full_val_jaccard": 0.87, "bead_f1": 0.80,
     "ap_50": 0.75, "ap_75": 0.40},
    {"run_id": "tiles", "status": "completed", "best_val_jaccard": 0.92, "full_val_jaccard": 0.80, "bead_f1": 0.50,
     "ap_50": 0.45, "ap_75": 0.20},
    {"run_id": "bad", "status": "degenerate", "best_val_jaccard": 0.99, "full_val_jaccard": 0.99, "bead_f1": 0.99,
     "ap_50": 0.99, "ap_75": 0.99},
]


@pytest.mark.parametrize(("rank_by", "order"), [
    ("jaccard", ["px", "beads", "tiles", "bad"]),
    ("tile_jaccard", ["tiles", "px", "beads", "bad"]),
    ("bead_f1", ["beads", "tiles", "px", "bad"]),
    ("ap", ["beads", "tiles", "px", "bad"]),
])
def test_the_chosen_score_orders_the_results_and_never_lifts_a_degenerate_run(rank_by: str, order: list[str]) -> None:
    ranked = rank(pd.DataFrame(ROWS), rank_by)
    assert list(ranked["run_id"]) == order
    assert list(ranked["rank"]) == [1, 2, 3, 4]
    assert ranked["rank_score"].iloc[0] == rank_value(next(r for r in ROWS if r["run_id"] == order[0]), rank_by)


def test_ap_ranks_at_the_lowest_iou_threshold_and_missing_scores_sort_last() -> None:
    assert rank_column("ap", ["ap_75", "ap_50", "bead_f1"]) == "ap_50"
    assert rank_label("ap", ["ap_75", "ap_50"]) == "val bead AP@0.5"
    assert rank_value({"ap_50": float("nan")}, "ap") is None
    rows = [{**ROWS[0], "bead_f1": None}, ROWS[1]]
    assert list(rank(pd.DataFrame(rows), "bead_f1")["run_id"]) == ["beads", "px"]
    with pytest.raises(ValueError, match="unknown rank_by"):
        rank_column("dice")


def test_halving_selection_reads_the_same_score(tmp_path: Path) -> None:
    run = tmp_path / "results/runs/r0_a"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({k: v for k, v in ROWS[0].items() if k not in ("run_id", "status")}))
    (run / "evaluation.json").write_text(json.dumps({"status": "completed"}))
    outcome = read_outcome("r0_a", tmp_path, "bead_f1")
    assert outcome is not None and outcome.score == 0.40
    outcome = read_outcome("r0_a", tmp_path)
    assert outcome is not None and outcome.score == 0.88  # default: full-image val Jaccard


def test_proposals_learn_from_the_same_score() -> None:
    pytest.importorskip("optuna")
    from beadseg.propose import observations, parse_space

    runs = pd.DataFrame([{**r, "lr": lr, "max_epochs": 10} for r, lr in zip(ROWS[:3], (1e-3, 3e-3, 1e-2))])
    space, fixed = parse_space({"space": {"lr": {"log_uniform": [1e-4, 1e-1]}}})
    found, _ = observations(runs, space, fixed, "bead_f1")
    assert [o.value for o in found] == [0.40, 0.80, 0.50]
