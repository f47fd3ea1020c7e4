"""Budget vs score: the successive-halving ladder of a ``beadseg search`` (pure functions on runs.csv).

For a halving search (params.yaml has a ``search:`` section) every configuration is a ladder: its
full-image validation Jaccard after each rung it reached, at that rung's cumulative epochs. The
numbers here also say which configurations stopped at which rung, and what the search saved against
training the full grid to the full budget: optimizer steps (exact for the search; the grid's are its
configurations x the full budget, an upper bound, since early stopping may end grid runs sooner) and
training wall time (the grid's estimated at the search's own measured seconds per step).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from beadseg.analysis import stats
from beadseg.config import Config, SearchConfig


def _value(row: pd.Series, key: str) -> float | None:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _row(runs: pd.DataFrame, run_id: str) -> pd.Series | None:
    found = runs[runs["run_id"] == run_id]
    return None if found.empty else found.iloc[0]


def _point(runs: pd.DataFrame, rung: int, epochs: int, run_id: str) -> dict[str, Any]:
    row = _row(runs, run_id)
    if row is None:  # planned, not trained yet
        return {"rung": rung, "epochs": epochs, "run_id": run_id, "score": None, "status": "pending", "steps": None}
    valid = row.get("status") not in stats.INVALID_STATUSES
    return {"rung": rung, "epochs": epochs, "run_id": run_id, "score": _value(row, "full_val_jaccard"),
            "status": str(row.get("status")) if valid else f"{row.get('status')} (not a result)",
            "steps": _value(row, "optimizer_steps"), "wall_seconds": _value(row, "wall_seconds")}


def ladder_numbers(cfg: Config, runs: pd.DataFrame) -> dict[str, Any] | None:
    """The ladder of every configuration and the compute it used; None when the run table is not a search."""
    search = cfg.search
    if search is None or not search.rungs:
        return None
    configs = list(search.rungs[0])
    ladders: dict[str, list[dict[str, Any]]] = {c: [] for c in configs}
    for k, members in enumerate(search.rungs):
        for cid in members:
            ladders.setdefault(cid, []).append(_point(runs, k, search.budgets[k], search.run_id(k, cid)))
    points = [p for ladder in ladders.values() for p in ladder]
    finished = len(search.rungs) == len(search.budgets) and all(p["status"] != "pending" for p in points)
    last = len(search.rungs) - 1
    final = [p for p in (ladders[c][-1] for c in search.rungs[last]) if p["score"] is not None
             and "not a result" not in p["status"]]
    winner = max(final, key=lambda p: p["score"], default=None) if finished else None
    return {
        "name": search.name, "eta": search.eta, "budgets": list(search.budgets), "configs": configs,
        "ladders": ladders, "rungs_planned": len(search.rungs), "finished": finished,
        "reached": {c: len(ladders[c]) - 1 for c in configs},  # index of the last rung each configuration reached
        "winner": winner["run_id"] if winner else None, "winner_score": winner["score"] if winner else None,
        **compute_saved(cfg, search, points, configs),
    }


def compute_saved(cfg: Config, search: SearchConfig, points: list[dict[str, Any]], configs: list[str]) -> dict[str, Any]:
    """Optimizer steps and training wall time of the search against the full grid at the full budget."""
    steps_used = sum(p["steps"] or 0 for p in points)
    wall_used = sum(p.get("wall_seconds") or 0 for p in points)
    full_epochs = search.budgets[-1]
    steps_full = sum(cfg.run(search.run_id(0, c)).steps_per_epoch * full_epochs for c in configs)
    per_step = wall_used / steps_used if steps_used else None
    return {"steps_used": int(steps_used), "steps_full_grid": int(steps_full),
            "steps_fraction": steps_used / steps_full if steps_full else None,
            "wall_used_s": wall_used, "wall_full_grid_est_s": per_step * steps_full if per_step else None}
