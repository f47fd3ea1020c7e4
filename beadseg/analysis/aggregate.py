"""Merge every run's metrics.json and history.csv into the search-level tables.

* ``results/summary/runs.csv``: one row per run: outcome metrics, then every training setting
  (plain names: ``lr``, ``loss``, ``tile_size`` ...), plus ``config_group`` (the settings without the
  seed, so replicates of one configuration share it).
* ``results/summary/summary.json``: the search-level metrics DVC tracks (best run, its Jaccard,
  mean/std over runs, counts, best per tile size).
* ``results/summary/histories.csv``: every run's history with a ``run_id`` column.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from beadseg import paths
from beadseg.config import Config
from beadseg.errors import DataError
from beadseg.fsutil import atomic_path, write_json

OUTCOME_COLUMNS = [
    "run_id", "status", "best_val_jaccard", "final_val_jaccard", "overfit_drop", "best_epoch", "epochs_run",
    "full_val_jaccard", "full_val_dice", "bead_f1", "bead_precision", "bead_recall", "bead_count_error",
    "bead_count_error_rel", "bead_mean_diameter_error_px", "train_seconds", "wall_seconds", "peak_memory_mb",
    "optimizer_steps", "effective_batch_size", "device", "device_name", "gpu_id", "resumed",
]


def config_group(params: dict[str, Any]) -> str:
    """Short hash of a run's settings without its seed: replicates of one configuration share it."""
    body = {k: v for k, v in params.items() if k != "seed"}
    return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]


def read_run(run_id: str, root: Path = Path(".")) -> tuple[dict[str, Any], pd.DataFrame]:
    metrics_path = root / paths.metrics_file(run_id)
    history_path = root / paths.history_file(run_id)
    for p in (metrics_path, history_path):
        if not p.is_file():
            raise DataError(f"'{p}' not found: train run '{run_id}' first (beadseg train --run {run_id})")
    metrics = json.loads(metrics_path.read_text())
    history = pd.read_csv(history_path)
    return metrics, history


def runs_frame(cfg: Config, root: Path = Path(".")) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, histories = [], []
    for run_id in cfg.run_ids:
        metrics, history = read_run(run_id, root)
        params = metrics.get("params") or cfg.run(run_id).to_dict()
        best, final = metrics.get("best_val_jaccard") or 0.0, metrics.get("final_val_jaccard") or 0.0
        row = {k: metrics.get(k) for k in OUTCOME_COLUMNS}
        row["run_id"] = run_id
        row["overfit_drop"] = (best - final) / best if best > 0 else 0.0
        for key, value in params.items():
            row[key] = ",".join(map(str, value)) if isinstance(value, list) else value
        row["config_group"] = config_group(params)
        rows.append(row)
        history = history.copy()
        history.insert(0, "run_id", run_id)
        histories.append(history)
    runs = pd.DataFrame(rows)
    runs = runs.sort_values("best_val_jaccard", ascending=False, kind="stable").reset_index(drop=True)
    runs.insert(1, "rank", range(1, len(runs) + 1))
    return runs, pd.concat(histories, ignore_index=True)


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summarize(runs: pd.DataFrame) -> dict[str, Any]:
    """Search-level metrics from runs.csv (pure: the report recomputes the same numbers from the CSV)."""
    best = runs.iloc[0]
    scores = runs["best_val_jaccard"].astype(float)
    summary: dict[str, Any] = {
        "n_runs": int(len(runs)),
        "n_completed": int((runs["status"] != "diverged").sum()),
        "n_diverged": int((runs["status"] == "diverged").sum()),
        "best_run_id": str(best["run_id"]),
        "best_val_jaccard": float(best["best_val_jaccard"]),
        "best_full_val_jaccard": _num(best.get("full_val_jaccard")),
        "mean_best_val_jaccard": float(scores.mean()),
        "std_best_val_jaccard": float(scores.std(ddof=1)) if len(runs) > 1 else None,
        "worst_run_id": str(runs.iloc[-1]["run_id"]),
        "worst_val_jaccard": float(runs.iloc[-1]["best_val_jaccard"]),
    }
    if "full_val_jaccard" in runs:
        full = runs["full_val_jaccard"].astype(float)
        if full.notna().any():
            summary["max_full_val_jaccard"] = float(full.max())
    for size, group in runs.groupby("tile_size"):
        summary[f"best_val_jaccard_t{int(size)}"] = float(group["best_val_jaccard"].max())
        if "full_val_jaccard" in group and group["full_val_jaccard"].notna().any():
            summary[f"best_full_val_jaccard_t{int(size)}"] = float(group["full_val_jaccard"].astype(float).max())
    return summary


def write_csv(frame: pd.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def aggregate(cfg: Config, root: Path = Path(".")) -> dict[str, Any]:
    runs, histories = runs_frame(cfg, root)
    summary = summarize(runs)
    write_csv(runs, root / paths.runs_table())
    write_csv(histories, root / paths.histories_table())
    write_json(root / paths.summary_json(), summary)
    return summary


def load_runs(root: Path = Path(".")) -> pd.DataFrame:
    path = root / paths.runs_table()
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg aggregate` first")
    return pd.read_csv(path)
