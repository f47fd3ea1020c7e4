"""REPORT.md's opening: the title and sources, the executive summary (data warnings, caveats, runs that are
not results, the best run with its val and test scores and configuration, the threshold baseline).

* :func:`intro`: the title and what every number is computed from.
* :func:`caveats`: honest warnings about what the search can and cannot show (also in ANALYSIS_COMPLETE.md).
* :func:`best_lines`: the best result, its scores, its configuration and the margin to the runner-up.
* :func:`executive_summary`: ``## Executive summary``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from beadseg.analysis import recommend, sections, splits, stats
from beadseg.analysis.text import fmt, pct
from beadseg.config import Config


def _same(v: Any, dv: Any) -> bool:
    """A runs.csv value equals a default (numbers compared as numbers, empty list / None as missing)."""
    if dv in (None, []) or (isinstance(dv, tuple) and not dv):
        return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""
    try:
        return float(v) == float(dv)
    except (TypeError, ValueError):
        return str(v) == str(dv)


def _describe(run: pd.Series, axes: list[str]) -> str:
    keys = list(dict.fromkeys([*axes, "tile_size", "loss", "lr", "batch_size", "dropout"]))
    return ", ".join(f"{k}={stats.format_value(k, run[k])}" for k in keys if k in run)


def intro(cfg: Config) -> list[str]:
    """The title and what every number of REPORT.md is computed from."""
    return [f"# {cfg.analysis.title}", "",
            "All numbers below are computed by `beadseg report` from results/summary/runs.csv, histories.csv, "
            "baseline.json, fingerprint.json, data/split/split.json and results/report/analysis_numbers.json "
            "(validation data and models); nothing is typed by hand. Each score says its split: *val* chose, "
            "*test* is held out.", ""]


def caveats(runs: pd.DataFrame) -> list[str]:
    """Honest warnings about what this search can and cannot show (about the runs that are results)."""
    out = []
    valid = stats.valid_runs(runs)
    n, partial = len(valid), len(valid) < len(runs)
    if n == 1:
        out.append(("**Only one run is a result.**" if partial else "**Only one run.**") + " There is no ranking, "
                   "no hyperparameter impact and no comparison of any kind: every statement below describes this "
                   "single run, not a best choice.")
    losses = sorted(valid["loss"].unique())
    if n > 1 and len(losses) == 1:
        out.append(f"**All runs {'that are results ' if partial else ''}used the same loss ({losses[0]}).** This "
                   "search says nothing about which loss is better; the loss comparison below has a single group.")
    d = runs[runs["status"] == "diverged"]
    if not d.empty:
        out.append(f"**{len(d)} run(s) diverged** (loss became NaN/inf): {', '.join(d['run_id'])}. They are not "
                   "results: left out of the ranking, the figures and every statistic.")
    sizes = sorted(int(s) for s in valid["tile_size"].unique())
    if len(sizes) == 1:
        out.append(f"**Only one tile size ({sizes[0]} px) was searched"
                   + (" among the runs that are results" if partial else "") + ":** there is no resolution "
                   "comparison (no 256 vs 512 runs); the pixel analysis covers that size only.")
    if stats.replicate_stats(valid).empty and n > 1:
        out.append("**No replicates:** every configuration ran with one seed, so differences between runs include "
                   "seed-to-seed noise of unknown size.")
    return out


def best_lines(runs: pd.DataFrame, cfg: Config, test: bool = False) -> list[str]:
    """The best result, its val and test scores and its configuration (``runs``: results only, best first)."""
    best, axes = runs.iloc[0], stats.varied_axes(runs)
    L = [f"{len(runs)} run(s) are results. Best run: **{best['run_id']}** ({_describe(best, axes)}), best val "
         f"Jaccard **{fmt(best['best_val_jaccard'])}** at epoch {int(best['best_epoch'])} of "
         f"{int(best['epochs_run'])} run ({best['status']}); final val Jaccard {fmt(best['final_val_jaccard'])} "
         f"(drop {pct(best['overfit_drop'])}); full-image val Jaccard {fmt(best.get('full_val_jaccard'))}, "
         f"full-image Dice {fmt(best.get('full_val_dice'))}, bead F1 {fmt(best.get('bead_f1'))}.", ""]
    L += splits.best_score_lines(runs, test)
    L += ["Best configuration (all settings of the best run that differ from the train defaults, plus the searched "
          "axes):", "", "```"]
    defaults = cfg.train_defaults.to_dict()
    for k in stats.setting_columns(runs):
        v, dv = best[k], defaults.get(k)
        if k in axes or not _same(v, dv):
            L.append(f"{k}: {stats.format_value(k, v)}")
    L += ["```", ""]
    if len(runs) > 1:
        second = runs.iloc[1]
        L += [f"Margin to the runner-up ({second['run_id']}): {fmt(best['best_val_jaccard'] - second['best_val_jaccard'])} "
              "val Jaccard" + (" (without replicates the seed-to-seed noise is unknown, so this margin may not be "
                               "real)." if stats.replicate_stats(runs).empty else "."), ""]
    return L


def executive_summary(runs: pd.DataFrame, cfg: Config, baseline: dict[str, Any], fingerprint: dict[str, Any],
                      manifest: dict[str, Any] | None = None) -> list[str]:
    """``## Executive summary``: data warnings, caveats, runs that are not results, the best run, the baseline."""
    test = splits.has_test(runs, baseline)
    L = ["## Executive summary", ""] + ([] if test else splits.no_test_lines(manifest or {}, fingerprint))
    L += sections.warning_lines(fingerprint)
    if recommend.search_failed(runs):
        return L + sections.failure_lines(runs) + sections.baseline_lines(runs, baseline, test)
    for c in caveats(runs):
        L += [f"> {c}", ""]
    if cfg.search is not None:
        budgets = cfg.search.budgets
        L += [f"> A successive-halving search: its runs trained different budgets (rung 0 {budgets[0]} epochs, the "
              f"last rung {budgets[-1]} in all), so a comparison between rungs below compares budgets as well as "
              "settings. Each configuration's ladder is in [Search rounds](#search-rounds-successive-halving).", ""]
    L += sections.not_result_lines(runs)
    L += best_lines(stats.valid_runs(runs), cfg, test)
    return L + sections.baseline_lines(runs, baseline, test)
