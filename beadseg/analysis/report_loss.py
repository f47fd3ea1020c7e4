"""REPORT.md's ``## Loss comparison``: per loss type over the results (count, mean, std, best, left out),
Mann–Whitney tests with bootstrap intervals, matched pairs, and fig4's caption.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from beadseg.analysis import FIGURES, sections, stats
from beadseg.analysis.text import figure, fmt
from beadseg.config import Config


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss type over the results: n, mean, std, best, best run; ``left_out``: its runs that are not results."""
    t = stats.loss_stats(stats.valid_runs(runs))
    bad = stats.invalid_runs(runs)
    t["left_out"] = [int((bad["loss"] == loss).sum()) for loss in t["loss"]]
    return t[["loss", "n", "mean", "std", "best", "best_run", "left_out"]]


def loss_table_lines(lt: pd.DataFrame) -> list[str]:
    """The per-loss table and the warning when a loss ran once or only one loss ran."""
    lines = ["| loss | count | mean | std | best | best run | left out (not results) |",
             "|---|---|---|---|---|---|---|"]
    for r in lt.itertuples():
        lines.append(f"| {r.loss} | {r.n} | {fmt(r.mean)} | {fmt(r.std)} | {fmt(r.best)} | {r.best_run} | "
                     f"{r.left_out} |")
    lines.append("")
    single = lt[lt["n"] < 2]
    if len(lt) == 1:
        lines.append(f"> **Warning:** only one loss type ({lt['loss'].iloc[0]}) was run: no loss comparison is "
                     "possible from this search.")
    elif not single.empty:
        lines.append(f"> **Warning:** {', '.join(single['loss'])} ran only once (std n/a). A comparison that rests "
                     "on one run per loss is not evidence: one seed of one configuration can land anywhere in its "
                     "seed-to-seed spread.")
    return lines + [""]


def test_lines(testable: list[dict[str, Any]], cfg: Config) -> list[str]:
    """The Mann–Whitney tests between loss types (``testable``: the pairs with at least 2 runs each)."""
    level = 1 - cfg.analysis.confidence
    lines = [f"Two-sided Mann–Whitney U tests between loss types, with a {cfg.analysis.confidence:.0%} bootstrap "
             f"interval ({cfg.analysis.bootstrap_samples} resamples, seed {cfg.analysis.bootstrap_seed}) of the "
             "difference in mean best val Jaccard:", "",
             "| loss A | loss B | n A | n B | U | p | smallest possible p | mean A − mean B | CI |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in testable:
        lines.append(f"| {t['a']} | {t['b']} | {t['n_a']} | {t['n_b']} | {t['U']:.1f} | {t['p']:.3f} | "
                     f"{t['min_p']:.3f} | {t['diff']:+.4f} | [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] |")
    sig = [t for t in testable if t["p"] < level]
    return lines + ["", (
        f"{len(sig)} of {len(testable)} pair(s) differ at p < {level:.2f}. "
        "The groups also differ in their other settings (learning rate, tile size ...), so even a small p "
        "compares mixtures of configurations, not the losses alone: the loss's own effect is the matched "
        "comparison under Hyperparameter impact." if sig else
        f"No pair differs at p < {level:.2f}: the data do not separate the loss types. "
        "Where the smallest possible p exceeds that level, the groups are too small for the test to ever "
        "reject.")]


def pair_lines(valid: pd.DataFrame) -> list[str]:
    """Runs identical in every setting except the loss, side by side ([] when there are none)."""
    pairs = stats.matched_pairs(valid, "loss")
    if pairs.empty:
        return []
    return (["", "Matched pairs (runs identical in every setting except the loss):", "",
             "| run A | run B | best val Jaccard A | best val Jaccard B |", "|---|---|---|---|"]
            + [f"| {r.run_a} | {r.run_b} | {fmt(r.best_val_jaccard_a)} | {fmt(r.best_val_jaccard_b)} |"
               for r in pairs.itertuples()])


def section_loss(runs: pd.DataFrame, cfg: Config) -> tuple[list[str], list[dict[str, Any]]]:
    """Loss table and tests over the results (``runs``: all runs; the left-out ones are only counted)."""
    lt = loss_table(runs)
    valid = stats.valid_runs(runs)
    tests = stats.loss_tests(valid, cfg.analysis.bootstrap_samples, cfg.analysis.bootstrap_seed, cfg.analysis.confidence)
    lines = loss_table_lines(lt)
    testable = [t for t in tests if t["testable"]]
    if testable:
        lines += test_lines(testable, cfg)
    elif len(lt) > 1:
        lines.append("No statistical test: no pair of loss types has at least 2 runs each.")
    return lines + pair_lines(valid), tests


def section_loss_doc(runs: pd.DataFrame, cfg: Config) -> list[str]:
    """``## Loss comparison`` with fig4 and its caption."""
    valid = stats.valid_runs(runs)
    lines, _ = section_loss(runs, cfg)
    lt = loss_table(valid)
    cap = (f"Best val Jaccard of every run grouped by loss type (n per group under each label; violins only where "
           f"n ≥ 2). Data: highest mean {lt['loss'].iloc[0]} ({fmt(lt['mean'].iloc[0])}, n={lt['n'].iloc[0]})"
           + ("; with n = 1 in some group this ordering is not evidence." if (lt["n"] < 2).any() or len(lt) < 2 else
              "; see the tests above for whether the difference is more than noise."))
    note = ["Each loss's numbers below pool its runs over whatever else varied with it (learning rate, tile size "
            "...); the loss's own effect, on runs equal in every other setting, is under "
            "[Hyperparameter impact](#hyperparameter-impact).", ""]
    return ["## Loss comparison", ""] + sections.left_out_note(runs) + note + lines + ["", figure(FIGURES[3], cap)]
