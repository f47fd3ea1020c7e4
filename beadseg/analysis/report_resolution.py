"""REPORT.md's ``## Resolution comparison (tile size)``: scores per tile size (runs.csv, through
:mod:`beadseg.analysis.stats`), matched pairs, and the pixel composition and dice gradient per tile size that
``beadseg measure`` wrote (analysis_numbers.json).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from beadseg.analysis import sections, stats
from beadseg.analysis.numbers import per_size
from beadseg.analysis.text import fmt, pct

HEADER = ["| tile size (px) | runs | batch sizes | best val Jaccard (tiles) | best full-image Jaccard | "
          "mean full-image Jaccard | foreground:background pixels | boundary share of pixels | "
          "boundary pixels per tile |", "|---|---|---|---|---|---|---|---|---|"]


def resolution_section(runs: pd.DataFrame, numbers: dict[str, Any]) -> list[str]:
    """The whole section (``runs``: every run; computed over the results)."""
    return (["## Resolution comparison (tile size)", ""] + sections.left_out_note(runs)
            + section_resolution(stats.valid_runs(runs), numbers) + [""])


def size_table(ts: pd.DataFrame, per: dict[str, dict[str, Any]]) -> list[str]:
    """One row per tile size: runs, scores and the measured pixel composition of its validation tiles."""
    lines = list(HEADER)
    for r in ts.itertuples():
        p = per.get(str(r.tile_size), {})
        bf = p.get("background_to_foreground_pixels")
        lines.append(f"| {r.tile_size} | {r.n} | {r.batch_sizes} | {fmt(r.best_val)} | {fmt(r.best_full)} | "
                     f"{fmt(r.mean_full)} | {'1:' + format(bf, '.1f') if bf else 'n/a'} | "
                     f"{pct(p.get('pixel_share', {}).get('boundary'))} | {fmt(p.get('boundary_pixels_per_tile'), 1)} |")
    return lines + [""]


def verdict_lines(runs: pd.DataFrame, ts: pd.DataFrame) -> list[str]:
    """Smallest vs largest tile size on the best score, and the matched pairs that differ only in tile size."""
    small, large = ts.iloc[0], ts.iloc[-1]
    has_full = bool(ts["best_full"].notna().any())
    col = "best_full" if has_full else "best_val"
    what = "full-image val Jaccard (every model scored on the same full validation images)" if has_full else \
        "tile-level val Jaccard (full-image scores missing; tiles of different sizes are not the same pixels)"
    gap = small[col] - large[col]
    verdict = (f"{int(large.tile_size)} px is worse than {int(small.tile_size)} px by {fmt(gap)}" if gap > 0 else
               f"{int(large.tile_size)} px is not worse than {int(small.tile_size)} px ({fmt(-gap)} higher)")
    lines = [f"On best {what}: {verdict} ({fmt(large[col])} vs {fmt(small[col])})."]
    sc = "full_val_jaccard" if has_full else "best_val_jaccard"
    pairs = stats.matched_pairs(runs, "tile_size", score=sc)
    if not pairs.empty:
        diffs = (pairs[f"{sc}_b"] - pairs[f"{sc}_a"]).astype(float)
        named = ", ".join(f"{a} vs {b}: {fmt(d)}" for a, b, d in zip(pairs["run_b"], pairs["run_a"], diffs))
        lines.append(f"Matched pairs (same settings, only the tile size differs): {len(pairs)}; the larger tile scores "
                     f"{fmt(float(diffs.mean()))} on average against the smaller ({named}).")
    return lines


def composition_lines(runs: pd.DataFrame, numbers: dict[str, Any], small: int, large: int) -> list[str]:
    """The measured pixel composition and dice gradient per boundary pixel of the smallest vs largest tiles."""
    per = per_size(numbers)
    ps, pl = per.get(str(small), {}), per.get(str(large), {})
    if not (ps.get("pixel_share") and pl.get("pixel_share")):
        return []
    lines = [f"Measured on the validation tiles, the pixel composition barely depends on the tile size (boundary "
             f"{pct(ps['pixel_share']['boundary'])} at {small} px vs {pct(pl['pixel_share']['boundary'])} at {large} "
             f"px): a larger tile holds more pixels of every class (boundary pixels per tile "
             f"{fmt(ps.get('boundary_pixels_per_tile'), 1)} vs {fmt(pl.get('boundary_pixels_per_tile'), 1)}), not a "
             "different class balance." + _steps_sentence(runs, small, large)]
    ratio = numbers.get("fig7", {}).get("dice_boundary_gradient_ratio", {})
    if ratio.get("small") == small and ratio.get("large") == large and ratio.get("ratio") is not None:
        lines.append(f"Per boundary pixel, the dice gradient is {ratio['ratio']:.2f}× larger at {small} px "
                     f"than at {large} px (dice is normalised over the whole batch, so each pixel's "
                     "share shrinks as the batch holds more pixels).")
    return lines


def section_resolution(runs: pd.DataFrame, numbers: dict[str, Any]) -> list[str]:
    """The table and the comparison (``runs``: the results only)."""
    ts = stats.tile_size_stats(runs)
    lines = size_table(ts, per_size(numbers))
    if len(ts) < 2:
        return lines + [f"Only {ts['tile_size'].iloc[0]} px tiles were searched, so there is no resolution "
                        "comparison; add a second size to tiling.sizes and the run table to measure one."]
    small, large = int(ts["tile_size"].iloc[0]), int(ts["tile_size"].iloc[-1])
    return lines + verdict_lines(runs, ts) + composition_lines(runs, numbers, small, large)


def _steps_sentence(runs: pd.DataFrame, small: int, large: int) -> str:
    s, lg = stats.steps_per_epoch(runs, small), stats.steps_per_epoch(runs, large)
    if not (math.isfinite(s) and math.isfinite(lg)):
        return ""
    if lg < s:
        return (f" Optimizer steps per epoch (runs.csv): {s:.1f} at {small} px vs {lg:.1f} at {large} px, so the "
                "larger tiles get fewer updates per epoch.")
    return (f" Optimizer steps per epoch (runs.csv): {s:.1f} at {small} px vs {lg:.1f} at {large} px: the larger "
            "tiles get no fewer updates per epoch.")
