"""Merge every run's train.json, metrics.json and history.csv into the search-level tables.

* ``results/summary/runs.csv``: one row per run: outcome columns (training: ``beadseg train``; scores on
  the full val and test images: ``beadseg evaluate``), then every training setting (plain names: ``lr``,
  ``loss``, ``tile_size`` ...), plus ``config_group`` (the settings without the seed, so replicates of
  one configuration share it). Val scores keep their historic names (``full_val_jaccard``, ``bead_f1``,
  ``ap_50`` ...); test scores are ``test_jaccard``, ``test_bead_f1``, ``test_ap_50`` ...
  Runs that are results (status not ``diverged`` / ``degenerate``) come first, best first **by
  validation** (test never ranks); the others follow, with their ``degenerate_reasons`` and
  ``likely_causes`` (items joined with "; ").
* ``results/summary/summary.json``: the search-level metrics DVC tracks (best run, its Jaccard,
  mean/std over runs, counts, best per tile size, the comparison with the threshold baseline), all
  computed over the runs that are results only; ``search_failed`` is true when there is none. The
  ``best_test_*`` keys are the test scores *of the run chosen on val* (``chosen_on: "val"``), not the
  highest test score of any run; they are null when there is no test split (``has_test_split``).
* ``results/summary/histories.csv``: every run's history with a ``run_id`` column.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from beadseg import paths
from beadseg.analysis import stats
from beadseg.analysis.inputs import baseline_jaccard, load_baseline, read_json_object
from beadseg.config import Config
from beadseg.errors import DataError
from beadseg.fsutil import atomic_path, write_json

# steps_per_epoch and sampler are training settings: they come with the other settings after these.
OUTCOME_COLUMNS = [
    "run_id", "status", "stop_reason", "degenerate_reasons", "likely_causes", "best_val_jaccard",
    "final_val_jaccard", "overfit_drop", "best_epoch", "epochs_run", "full_val_jaccard", "full_val_dice", "bead_f1",
    "bead_precision", "bead_recall", "bead_count_error", "bead_count_error_rel", "bead_mean_diameter_error_px",
    "bead_mean_matched_iou", "bead_merges", "bead_splits", "n_val_images",
    "test_jaccard", "test_dice", "test_bead_f1", "test_bead_precision", "test_bead_recall", "test_bead_count_error",
    "test_bead_mean_matched_iou", "test_bead_merges", "test_bead_splits", "n_test_images",
    "prob_std", "train_seconds", "wall_seconds", "peak_memory_mb", "optimizer_steps", "effective_batch_size",
    "train_images", "device", "device_name", "gpu_id", "resumed", "postprocessing",
]
LIST_COLUMNS = ("degenerate_reasons", "likely_causes")
LIST_SEPARATOR = "; "
AP_KEY = re.compile(r"^ap_(\d+)$")
# Shared keys that must agree between train.json and metrics.json (else metrics.json scores an older model).
_SAME_MODEL_KEYS = ("best_epoch", "best_val_jaccard")


def _ap_threshold(key: str) -> int:
    """The IoU threshold in percent of an AP key (``ap_50`` -> 50)."""
    m = AP_KEY.match(key)
    return int(m.group(1)) if m else -1


def ap_keys(keys: Any) -> list[str]:
    """The val AP keys (``ap_50`` ...) among ``keys``, by IoU threshold."""
    return sorted({str(k) for k in keys if AP_KEY.match(str(k))}, key=_ap_threshold)


def outcome_columns(aps: list[str]) -> list[str]:
    """OUTCOME_COLUMNS with the val AP columns after the val bead scores and the test AP columns after the
    test bead scores."""
    cols = list(OUTCOME_COLUMNS)
    cols[cols.index("n_val_images"):cols.index("n_val_images")] = aps
    cols[cols.index("n_test_images"):cols.index("n_test_images")] = [f"test_{k}" for k in aps]
    return cols


def config_group(params: dict[str, Any]) -> str:
    """Short hash of a run's settings without its seed: replicates of one configuration share it."""
    body = {k: v for k, v in params.items() if k != "seed"}
    return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:8]


def read_run(run_id: str, root: Path = Path(".")) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run's train.json, evaluation.json and metrics.json merged (the evaluate step's files win on shared
    keys), and its history.

    A missing file is a DataError naming it and the command that writes it.
    """
    train_cmd, eval_cmd = f"beadseg train --run {run_id}", f"beadseg evaluate --run {run_id}"
    info_path, history_path = root / paths.train_info_file(run_id), root / paths.history_file(run_id)
    metrics_path = root / paths.metrics_file(run_id)
    eval_path = root / paths.evaluation_info_file(run_id)
    for p in (info_path, history_path):
        if not p.is_file():
            raise DataError(f"'{p}' not found: train run '{run_id}' first ({train_cmd})")
    for p in (metrics_path, eval_path):
        if not p.is_file():
            raise DataError(f"'{p}' not found: score run '{run_id}' on the full val and test images "
                            f"first ({eval_cmd})")
    info = read_json_object(info_path, train_cmd)
    metrics = {**read_json_object(eval_path, eval_cmd), **read_json_object(metrics_path, eval_cmd)}
    for key in _SAME_MODEL_KEYS:
        a, b = info.get(key), metrics.get(key)
        if a is not None and b is not None and not math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12):
            raise DataError(f"'{metrics_path}' scores an older model of run '{run_id}' ({key} {b} there, {a} in "
                            f"train.json): rerun `{eval_cmd}`")
    return {**info, **metrics}, pd.read_csv(history_path)


def outcome_row(run_id: str, metrics: dict[str, Any], params: dict[str, Any],
                aps: list[str] | None = None) -> dict[str, Any]:
    """One runs.csv row: the outcome columns, then every training setting, then config_group."""
    best, final = metrics.get("best_val_jaccard") or 0.0, metrics.get("final_val_jaccard") or 0.0
    row = {k: metrics.get(k) for k in outcome_columns(ap_keys(metrics) if aps is None else aps)}
    row["run_id"] = run_id
    row["stop_reason"] = metrics.get("stop_reason") or metrics.get("status")
    for key in LIST_COLUMNS:
        row[key] = LIST_SEPARATOR.join(str(v) for v in metrics.get(key) or [])
    from beadseg.scoring import describe

    row["postprocessing"] = describe(metrics.get("postprocessing"))  # how its beads were separated (evaluate)
    row["overfit_drop"] = (best - final) / best if best > 0 else 0.0
    for key, value in params.items():
        row[key] = ",".join(map(str, value)) if isinstance(value, list) else value
    row["config_group"] = config_group(params)
    return row


def rank(runs: pd.DataFrame, rank_by: str = "jaccard") -> pd.DataFrame:
    """Results first, best first by the score ``rank_by`` names (:mod:`beadseg.ranking`, copied into the
    ``rank_score`` column); then the runs that are not results (also by score). A run without that score sorts
    last among its kind.

    ``rank`` numbers every row in that order, so ranks 1..n_valid are exactly the results. Test scores
    never enter the order: the test split chooses nothing.
    """
    from beadseg.ranking import rank_value

    runs = runs.copy()
    runs["rank_score"] = [rank_value(row, rank_by) for row in runs.to_dict(orient="records")]
    invalid = (~stats.result_mask(runs)).astype(int)
    order = runs.assign(_invalid=invalid).sort_values(["_invalid", "rank_score"], ascending=[True, False],
                                                      kind="stable", na_position="last")
    ranked = order.drop(columns="_invalid").reset_index(drop=True)
    ranked.insert(1, "rank", range(1, len(ranked) + 1))
    return ranked


def runs_frame(cfg: Config, root: Path = Path(".")) -> tuple[pd.DataFrame, pd.DataFrame]:
    records, histories = {}, []
    for run_id in cfg.run_ids:
        records[run_id], history = read_run(run_id, root)
        history = history.copy()
        history.insert(0, "run_id", run_id)
        histories.append(history)
    aps = ap_keys(k for record in records.values() for k in record)
    rows = [outcome_row(rid, record, record.get("params") or cfg.run(rid).to_dict(), aps)
            for rid, record in records.items()]
    return rank(pd.DataFrame(rows), cfg.analysis.rank_by), pd.concat(histories, ignore_index=True)


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
    diff = best_full - base if best_full is not None and base is not None else None
    return {
        "baseline_method": baseline.get("method"),
        "baseline_full_val_jaccard": base,
        "best_full_val_jaccard_minus_baseline": diff,
        "beats_baseline": False if failed else (None if diff is None else diff > 0),
    }


def baseline_test_comparison(best_test: float | None, baseline: dict[str, Any], failed: bool,
                             has_test: bool) -> dict[str, Any]:
    """The baseline's test Jaccard and whether the best run (chosen on val) beats it on the test images.

    Null where there is no test split or either test score is missing; ``beats_baseline_on_test`` is
    false when no run is a result.
    """
    base = _num(baseline.get("test_jaccard")) if has_test else None
    diff = best_test - base if best_test is not None and base is not None else None
    return {
        "baseline_test_jaccard": base,
        "best_test_jaccard_minus_baseline": diff,
        "beats_baseline_on_test": False if failed else (None if diff is None else diff > 0),
    }


def image_count(runs: pd.DataFrame, column: str, baseline: dict[str, Any] | None = None) -> int:
    """Images of a split the runs were scored on (``n_val_images`` / ``n_test_images``): the largest count
    over the runs, else the baseline's, else 0 (a diverged run is scored on nothing)."""
    values = pd.to_numeric(runs[column], errors="coerce").dropna() if column in runs else pd.Series(dtype=float)
    if len(values):
        return int(values.max())
    value = _num((baseline or {}).get(column))
    return int(value) if value is not None else 0


# summary.json key -> runs.csv column of the best run (chosen on val); the AP keys are added per threshold.
CHOSEN_SCORES = {"best_full_val_dice": "full_val_dice", "best_bead_f1": "bead_f1", "best_test_jaccard": "test_jaccard",
                 "best_test_dice": "test_dice", "best_test_bead_f1": "test_bead_f1"}


def _chosen_scores(valid: pd.DataFrame, has_test: bool) -> dict[str, Any]:
    """The best run's val and test scores (null without a result; every test score null without a test split)."""
    aps = ap_keys(valid.columns)
    keys = {**CHOSEN_SCORES, **{f"best_{k}": k for k in aps}, **{f"best_test_{k}": f"test_{k}" for k in aps}}
    best = valid.iloc[0] if len(valid) else None
    return {name: None if best is None or (col.startswith("test_") and not has_test) else _num(best.get(col))
            for name, col in keys.items()}


def summarize(runs: pd.DataFrame, baseline: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search-level metrics from runs.csv (pure: the report recomputes the same numbers from the CSV).

    Every score is over the runs that are results; a degenerate or diverged run is only counted. The best
    run is chosen on val; its test scores are reported, never used to choose.
    """
    valid = stats.valid_runs(runs)
    n_test = image_count(runs, "n_test_images", baseline)
    summary: dict[str, Any] = {**_counts(runs), **_best(valid), "chosen_on": "val", "has_test_split": n_test > 0,
                               "n_val_images": image_count(runs, "n_val_images", baseline), "n_test_images": n_test}
    summary.update(_chosen_scores(valid, n_test > 0))
    summary.update(_per_size(runs, valid))
    if baseline is not None:
        summary.update(baseline_comparison(summary["best_full_val_jaccard"], baseline, summary["search_failed"]))
        summary.update(baseline_test_comparison(summary["best_test_jaccard"], baseline, summary["search_failed"],
                                                n_test > 0))
    return summary


def write_csv(frame: pd.DataFrame, target: Path) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def aggregate(cfg: Config, root: Path = Path(".")) -> dict[str, Any]:
    baseline = load_baseline(root)
    runs, histories = runs_frame(cfg, root)
    summary = summarize(runs, baseline)
    from beadseg.ranking import rank_label

    summary["rank_by"], summary["rank_label"] = cfg.analysis.rank_by, rank_label(cfg.analysis.rank_by, runs.columns)
    write_csv(runs, root / paths.runs_table())
    write_csv(histories, root / paths.histories_table())
    write_json(root / paths.summary_json(), summary)
    return summary


def load_runs(root: Path = Path(".")) -> pd.DataFrame:
    path = root / paths.runs_table()
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg aggregate` first")
    return pd.read_csv(path)
