"""Statistics over runs.csv (pure functions of the table: the report and its tests share them).

Every number the report prints about runs comes from here, computed from ``results/summary/runs.csv``:
per-value and per-loss statistics, replicate confidence intervals, the test between loss types,
matched comparisons (runs that differ in one setting only) and the search-level summary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from beadseg.config import TrainConfig

SETTINGS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(TrainConfig))
SCORE = "best_val_jaccard"
# A run with one of these statuses is not a result: it is never ranked, named best or counted in a statistic.
INVALID_STATUSES: tuple[str, ...] = ("diverged", "degenerate")
# Axes shown first (in this order) when they vary; any other varied setting follows.
PREFERRED_AXES = ("lr", "batch_size", "dropout", "loss", "tile_size", "accumulation_steps", "weight_decay", "norm",
                  "model", "depth", "base_channels", "schedule", "focal_gamma", "dice_weight")


def result_mask(runs: pd.DataFrame) -> pd.Series:
    """True for every run that is a result (its status is neither diverged nor degenerate)."""
    if "status" not in runs:
        return pd.Series(True, index=runs.index)
    return ~runs["status"].isin(INVALID_STATUSES)


def valid_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are results, in their runs.csv order (best first)."""
    return runs[result_mask(runs)].reset_index(drop=True)


def invalid_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs that are not results (degenerate or diverged), in their runs.csv order."""
    return runs[~result_mask(runs)].reset_index(drop=True)


def list_text(value: Any) -> str:
    """The text of a runs.csv list cell (items joined with "; "), "" when empty or missing.

    The items themselves may contain "; ", so the cell is shown as written rather than split.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value if str(v))
    return str(value).strip()


def _key(value: Any) -> str:
    """Hashable, NaN-safe spelling of a setting value (for grouping)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    return repr(value)


def setting_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in SETTINGS if c in runs.columns]


def varied_axes(runs: pd.DataFrame, include_seed: bool = False) -> list[str]:
    """Training settings that take more than one value across runs (seed only if asked)."""
    varied = [c for c in setting_columns(runs) if runs[c].map(_key).nunique() > 1]
    if not include_seed:
        varied = [c for c in varied if c != "seed"]
    first = [a for a in PREFERRED_AXES if a in varied]
    return first + [a for a in varied if a not in first]


def format_value(axis: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if axis in ("lr", "weight_decay") and isinstance(value, (int, float)):
        return f"{float(value):.0e}".replace("e-0", "e-")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sort_values(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def group_stats(runs: pd.DataFrame, column: str, score: str = SCORE) -> pd.DataFrame:
    """Per value of ``column``: n, mean, std (NaN for n = 1), best, best run id, diverged count."""
    rows = []
    for value in sort_values(list(runs[column].dropna().unique())):
        g = runs[runs[column] == value]
        s = g[score].astype(float)
        best_idx = s.idxmax()
        rows.append({column: value, "n": int(len(g)), "mean": float(s.mean()),
                     "std": float(s.std(ddof=1)) if len(g) > 1 else float("nan"), "best": float(s.max()),
                     "best_run": str(g.loc[best_idx, "run_id"]),
                     "diverged": int((g["status"] == "diverged").sum()) if "status" in g else 0})
    return pd.DataFrame(rows)


def loss_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss type: mean, std, best, count of best val Jaccard (std NaN with one run), sorted by mean."""
    table = group_stats(runs, "loss")
    return table.sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t confidence interval of the mean (needs n >= 2)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mean = float(values.mean())
    if n < 2:
        return mean, float("nan"), float("nan")
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def replicate_stats(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Configurations (same config_group) with >= 2 seeds: n, seeds, mean, std, CI of best val Jaccard."""
    rows = []
    if "config_group" not in runs:
        return pd.DataFrame()
    for group, g in runs.groupby("config_group", sort=False):
        if len(g) < 2:
            continue
        mean, low, high = t_interval(g[SCORE].to_numpy(), confidence)
        rows.append({"config_group": group, "runs": ", ".join(g["run_id"].astype(str)), "n": int(len(g)),
                     "seeds": ", ".join(str(int(s)) for s in g["seed"]) if "seed" in g else "",
                     "mean": mean, "std": float(g[SCORE].std(ddof=1)), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, samples: int, seed: int,
                   confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean(a) - mean(b) and its percentile bootstrap CI (resampling each group with replacement)."""
    rng = np.random.default_rng(seed)
    a, b = np.asarray(a, float), np.asarray(b, float)
    da = rng.choice(a, size=(samples, len(a))).mean(axis=1)
    db = rng.choice(b, size=(samples, len(b))).mean(axis=1)
    diff = da - db
    tail = (1 - confidence) / 2 * 100
    return float(a.mean() - b.mean()), float(np.percentile(diff, tail)), float(np.percentile(diff, 100 - tail))


def loss_tests(runs: pd.DataFrame, samples: int = 2000, seed: int = 0, confidence: float = 0.95) -> list[dict[str, Any]]:
    """Pairwise two-sided Mann-Whitney U tests (and bootstrap CI of the mean difference) between loss types.

    Only pairs where both groups have at least 2 runs are tested; the others are listed with
    ``testable = False`` so the report can say why there is no test.
    """
    out = []
    losses = list(loss_stats(runs)["loss"]) if len(runs) else []
    for i, la in enumerate(losses):
        for lb in losses[i + 1:]:
            a = runs.loc[runs["loss"] == la, SCORE].to_numpy(float)
            b = runs.loc[runs["loss"] == lb, SCORE].to_numpy(float)
            row: dict[str, Any] = {"a": la, "b": lb, "n_a": len(a), "n_b": len(b), "testable": len(a) >= 2 and len(b) >= 2}
            if row["testable"]:
                res = sps.mannwhitneyu(a, b, alternative="two-sided")
                diff, low, high = bootstrap_diff(a, b, samples, seed, confidence)
                row.update(U=float(res.statistic), p=float(res.pvalue), diff=diff, ci_low=low, ci_high=high,
                           min_p=min_attainable_p(len(a), len(b)))
            out.append(row)
    return out


def min_attainable_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided exact Mann-Whitney p-value possible with these group sizes."""
    return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def matched_pairs(runs: pd.DataFrame, axis: str, score: str = SCORE) -> pd.DataFrame:
    """Pairs of runs identical in every setting except ``axis`` (and batch-related settings when axis is
    tile_size are still required equal). Returns one row per pair with both scores."""
    others = [c for c in setting_columns(runs) if c != axis]
    if axis not in runs or runs[axis].map(_key).nunique() < 2:
        return pd.DataFrame()
    keyed = runs.assign(_k=runs[others].apply(lambda r: tuple(_key(v) for v in r), axis=1))
    rows = []
    for _, g in keyed.groupby("_k", sort=False):
        if g[axis].map(_key).nunique() < 2:
            continue
        g = g.sort_values(axis, key=lambda s: s.map(lambda v: (str(type(v)), v)))
        recs = g.to_dict("records")
        for i, ra in enumerate(recs):
            for rb in recs[i + 1:]:
                if _key(ra[axis]) == _key(rb[axis]):
                    continue
                rows.append({"run_a": ra["run_id"], "run_b": rb["run_id"], f"{axis}_a": ra[axis], f"{axis}_b": rb[axis],
                             f"{score}_a": ra.get(score), f"{score}_b": rb.get(score)})
    return pd.DataFrame(rows)


def _mean_std(s: pd.Series) -> tuple[float, float]:
    s = s.dropna().astype(float)
    if s.empty:
        return float("nan"), float("nan")
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else float("nan")


def search_summary(runs: pd.DataFrame) -> dict[str, Any]:
    """The statistical summary section: counts, mean +- std of best Jaccard, epochs run, best epoch."""
    best, worst = runs.iloc[0], runs.iloc[-1]
    status = runs["status"].value_counts().to_dict() if "status" in runs else {}
    m, s = _mean_std(runs[SCORE])
    em, es = _mean_std(runs["epochs_run"])
    bm, bs = _mean_std(runs["best_epoch"])
    return {"n_runs": int(len(runs)), "status": {str(k): int(v) for k, v in status.items()},
            "mean_best": m, "std_best": s, "mean_epochs": em, "std_epochs": es, "mean_best_epoch": bm,
            "std_best_epoch": bs, "best_run": str(best["run_id"]), "best": float(best[SCORE]),
            "worst_run": str(worst["run_id"]), "worst": float(worst[SCORE])}


def tile_size_stats(runs: pd.DataFrame) -> pd.DataFrame:
    """Per tile size: runs, best / mean tile-level val Jaccard, best / mean full-image Jaccard."""
    rows = []
    for size in sorted(runs["tile_size"].dropna().unique()):
        g = runs[runs["tile_size"] == size]
        full = g["full_val_jaccard"].astype(float) if "full_val_jaccard" in g else pd.Series(dtype=float)
        best_full_idx = full.idxmax() if full.notna().any() else None
        rows.append({"tile_size": int(size), "n": int(len(g)), "best_val": float(g[SCORE].max()),
                     "mean_val": float(g[SCORE].mean()),
                     "best_full": float(full.max()) if full.notna().any() else float("nan"),
                     "mean_full": float(full.mean()) if full.notna().any() else float("nan"),
                     "best_full_run": str(g.loc[best_full_idx, "run_id"]) if best_full_idx is not None else "",
                     "batch_sizes": ", ".join(str(int(b)) for b in sorted(g["batch_size"].unique()))
                     if "batch_size" in g else ""})
    return pd.DataFrame(rows)


def efficiency(runs: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """Best val Jaccard per epoch run and per training second, top ``top`` runs by Jaccard per second."""
    e = runs[["run_id", SCORE, "epochs_run", "best_epoch", "train_seconds"]].copy()
    e["jaccard_per_epoch"] = e[SCORE] / e["epochs_run"].where(e["epochs_run"] > 0)
    e["jaccard_per_second"] = e[SCORE] / e["train_seconds"].where(e["train_seconds"] > 0)
    key = "jaccard_per_second" if e["jaccard_per_second"].notna().any() else "jaccard_per_epoch"
    return e.sort_values(key, ascending=False, kind="stable").head(top).reset_index(drop=True)


def steps_per_epoch(runs: pd.DataFrame, tile_size: int) -> float:
    """Mean optimizer steps per epoch run of the runs of one tile size (NaN when runs.csv cannot tell)."""
    if "optimizer_steps" not in runs or runs["optimizer_steps"].isna().all():
        return float("nan")
    per_epoch = runs["optimizer_steps"] / runs["epochs_run"].where(runs["epochs_run"] > 0)
    return float(per_epoch[runs["tile_size"] == tile_size].mean())


def mean_spread(runs: pd.DataFrame, column: str, score: str = SCORE) -> float:
    """Largest minus smallest mean score over the values of ``column``."""
    means = group_stats(runs, column, score)["mean"]
    return float(means.max() - means.min())
