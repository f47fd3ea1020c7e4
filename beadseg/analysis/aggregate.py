"""Merge every run's metrics.json and history.csv into the search-level tables.

* ``results/summary/runs.csv``: one row per run: outcome metrics, then every training setting
  (plain names: ``lr``, ``loss``, ``tile_size`` ...), plus ``config_group`` (the settings without the
  seed, so replicates of one configuration share it).
  Runs that are results (status not ``diverged`` / ``degenerate``) come first, best first; the others
  follow, with their ``degenerate_reasons`` and ``likely_causes`` (items joined with "; ").
* ``results/summary/summary.json``: the search-level metrics DVC tracks (best run, its Jaccard,
  mean/std over runs, counts, best per tile size, the comparison with the threshold baseline), all
  computed over the runs that are results only; ``search_failed`` is true when there is none.
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
from beadseg.analysis import stats
from beadseg.analysis.inputs import baseline_jaccard, load_baseline
from beadseg.config import Config
from beadseg.errors import DataError
from beadseg.fsutil import atomic_path, write_json

# steps_per_epoch and sampler are training settings: they come with the other settings after these.
OUTCOME_COLUMNS = [
    "run_id", "status", "stop_reason", "degenerate_reasons", "likely_causes", "best_val_jaccard",
    "final_val_jaccard", "overfit_drop", "best_epoch", "epochs_run", "full_val_jaccard", "full_val_dice", "bead_f1",
    "bead_precision", "bead_recall", "bead_count_error", "bead_count_error_rel", "bead_mean_diameter_error_px",
    "prob_std", "train_seconds", "wall_seconds", "peak_memory_mb", "optimizer_steps", "effective_batch_size",
    "train_images", "device", "device_name", "gpu_id", "resumed",
]
LIST_COLUMNS = ("degenerate_reasons", "likely_causes")
LIST_SEPARATOR = "; "


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


def outcome_row(run_id: str, metrics: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """One runs.csv row: the outcome columns, then every training setting, then config_group."""
    best, final = metrics.get("best_val_jaccard") or 0.0, metrics.get("final_val_jaccard") or 0.0
    row = {k: metrics.get(k) for k in OUTCOME_COLUMNS}
    row["run_id"] = run_id
    row["stop_reason"] = metrics.get("stop_reason") or metrics.get("status")
    for key in LIST_COLUMNS:
        row[key] = LIST_SEPARATOR.join(str(v) for v in metrics.get(key) or [])
    row["overfit_drop"] = (best - final) / best if best > 0 else 0.0
    for key, value in params.items():
        row[key] = ",".join(map(str, value)) if isinstance(value, list) else value
    row["config_group"] = config_group(params)
    return row


def rank(runs: pd.DataFrame) -> pd.DataFrame:
    """Results first, best val Jaccard first; then the runs that are not results (also by score).

    ``rank`` numbers every row in that order, so ranks 1..n_valid are exactly the results.
    """
    invalid = (~stats.result_mask(runs)).astype(int)
    order = runs.assign(_invalid=invalid).sort_values(["_invalid", "best_val_jaccard"], ascending=[True, False],
                                                      kind="stable")
    ranked = order.drop(columns="_invalid").reset_index(drop=True)
    ranked.insert(1, "rank", range(1, len(ranked) + 1))
    return ranked


def runs_frame(cfg: Config, root: Path = Path(".")) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, histories = [], []
    for run_id in cfg.run_ids:
        metrics, history = read_run(run_id, root)
        params = metrics.get("params") or cfg.run(run_id).to_dict()
        rows.append(outcome_row(run_id, metrics, params))
        history = history.copy()
        history.insert(0, "run_id", run_id)
        histories.append(history)
    return rank(pd.DataFrame(rows)), pd.concat(histories, ignore_index=True)


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _counts(runs: pd.DataFrame) -> dict[str, Any]:
    status = runs["status"] if "status" in runs else pd.Series("completed", index=runs.index)
    n_valid = int(stats.result_mask(runs).sum())
    return {"n_runs": int(len(runs)), "n_valid": n_valid, "n_degenerate": int((status == "degenerate").sum()),
            "n_diverged": int((status == "diverged").sum()), "search_failed": n_valid == 0}


def _best(valid: pd.DataFrame) -> dict[str, Any]:
    """Best / worst / mean over the runs that are results (null everywhere when there is none)."""
    if valid.empty:
        return {"best_run_id": None, "best_val_jaccard": None, "best_full_val_jaccard": None,
                "mean_best_val_jaccard": None, "std_best_val_jaccard": None, "worst_run_id": None,
                "worst_val_jaccard": None, "max_full_val_jaccard": None}
    best, worst = valid.iloc[0], valid.iloc[-1]
    scores = valid["best_val_jaccard"].astype(float)
    full = valid["full_val_jaccard"].astype(float) if "full_val_jaccard" in valid else pd.Series(dtype=float)
    return {
        "best_run_id": str(best["run_id"]),
        "best_val_jaccard": float(best["best_val_jaccard"]),
        "best_full_val_jaccard": _num(best.get("full_val_jaccard")),
        "mean_best_val_jaccard": float(scores.mean()),
        "std_best_val_jaccard": float(scores.std(ddof=1)) if len(valid) > 1 else None,
        "worst_run_id": str(worst["run_id"]),
        "worst_val_jaccard": float(worst["best_val_jaccard"]),
        "max_full_val_jaccard": float(full.max()) if full.notna().any() else None,
    }


def _per_size(runs: pd.DataFrame, valid: pd.DataFrame) -> dict[str, Any]:
    """Best tile-level / full-image Jaccard per tile size over the results (null for a size without one)."""
    out: dict[str, Any] = {}
    for size in sorted(int(s) for s in runs["tile_size"].dropna().unique()):
        group = valid[valid["tile_size"] == size]
        out[f"best_val_jaccard_t{size}"] = float(group["best_val_jaccard"].max()) if len(group) else None
        full = group["full_val_jaccard"].astype(float) if "full_val_jaccard" in group else pd.Series(dtype=float)
        out[f"best_full_val_jaccard_t{size}"] = float(full.max()) if full.notna().any() else None
    return out


def baseline_comparison(best_full: float | None, baseline: dict[str, Any], failed: bool) -> dict[str, Any]:
    """The threshold baseline and whether the best result beats it on full-image Jaccard.

    ``beats_baseline`` is false when no run is a result, null when either full-image score is missing.
    """
    base = baseline_jaccard(baseline)
    defined = best_full is not None and base is not None
    return {
        "baseline_method": baseline.get("method"),
        "baseline_full_val_jaccard": base,
        "best_full_val_jaccard_minus_baseline": best_full - base if defined else None,
        "beats_baseline": False if failed else (best_full > base if defined else None),
    }


def summarize(runs: pd.DataFrame, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search-level metrics from runs.csv (pure: the report recomputes the same numbers from the CSV).

    Every score is over the runs that are results; a degenerate or diverged run is only counted.
    """
    valid = stats.valid_runs(runs)
    summary: dict[str, Any] = {**_counts(runs), **_best(valid)}
    summary.update(_per_size(runs, valid))
    if baseline is not None:
        summary.update(baseline_comparison(summary["best_full_val_jaccard"], baseline, summary["search_failed"]))
    return summary


def write_csv(frame: pd.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def aggregate(cfg: Config, root: Path = Path(".")) -> dict[str, Any]:
    baseline = load_baseline(root)
    runs, histories = runs_frame(cfg, root)
    summary = summarize(runs, baseline)
    write_csv(runs, root / paths.runs_table())
    write_csv(histories, root / paths.histories_table())
    write_json(root / paths.summary_json(), summary)
    return summary


def load_runs(root: Path = Path(".")) -> pd.DataFrame:
    path = root / paths.runs_table()
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg aggregate` first")
    return pd.read_csv(path)
