"""REPORT.md, MATHEMATICAL_ANALYSIS_SUMMARY.md, ANALYSIS_COMPLETE.md and next_search.yaml.

Every number is computed here from runs.csv / histories.csv / summary.json (through
:mod:`beadseg.analysis.stats` and :mod:`beadseg.analysis.recommend`), baseline.json and
fingerprint.json (through :mod:`beadseg.analysis.sections`), data/split/split.json (through
:mod:`beadseg.analysis.splits`: which images chose and which are held out) or read from
``analysis_numbers.json``, which ``beadseg figures`` computes from the validation data and models.
The best run is chosen on val; its test scores are shown next to the val ones, never used to rank.

Only runs that are results are ranked, named best or counted in a statistic; degenerate and diverged
runs are named with their reasons and likely causes. When no run is a result, REPORT.md says that the
search failed, names no best configuration and keeps only the failure, the data, the baseline and
what to change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from beadseg import paths
from beadseg.analysis import FIGURES, recommend, sections, splits, stats
from beadseg.analysis.aggregate import load_runs
from beadseg.analysis.figures import numbers_file
from beadseg.analysis.inputs import load_baseline, load_fingerprint
from beadseg.analysis.text import fmt, markdown_table, pct
from beadseg.config import Config
from beadseg.errors import DataError
from beadseg.fsutil import write_text

RANK_COLUMNS = ["rank", "run_id", "best_val_jaccard", "final_val_jaccard", "overfit_drop", "full_val_jaccard",
                "best_epoch", "epochs_run", "status"]
NEXT_SEARCH = paths.next_search_file().name
MATH_SUMMARY = paths.math_summary_file().name
COMPLETE = paths.complete_file().name


def _same(v: Any, dv: Any) -> bool:
    """A runs.csv value equals a default (numbers compared as numbers, empty list / None as missing)."""
    if dv in (None, []) or (isinstance(dv, tuple) and not dv):
        return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""
    try:
        return float(v) == float(dv)
    except (TypeError, ValueError):
        return str(v) == str(dv)


SETTING_FORMATS = {a: (lambda v, a=a: stats.format_value(a, v)) for a in stats.SETTINGS}


def top_table(runs: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    cols = [c for c in RANK_COLUMNS if c in runs] + [a for a in stats.varied_axes(runs) if a in runs]
    return runs.head(cfg.analysis.top_k)[cols]


def loss_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss type over the results: n, mean, std, best, best run; ``left_out``: its runs that are not results."""
    t = stats.loss_stats(stats.valid_runs(runs))
    bad = stats.invalid_runs(runs)
    t["left_out"] = [int((bad["loss"] == loss).sum()) for loss in t["loss"]]
    return t[["loss", "n", "mean", "std", "best", "best_run", "left_out"]]


def _describe(run: pd.Series, axes: list[str]) -> str:
    keys = list(dict.fromkeys([*axes, "tile_size", "loss", "lr", "batch_size", "dropout"]))
    return ", ".join(f"{k}={stats.format_value(k, run[k])}" for k in keys if k in run)


def load_numbers(root: Path) -> dict[str, Any]:
    path = numbers_file(root)
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg figures` first")
    return json.loads(path.read_text())


def figure(name: str, caption: str) -> str:
    return f"![{name}](figures/{name})\n\n*{caption}*\n"


# --------------------------------------------------------------------------- sections


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


def section_loss(runs: pd.DataFrame, cfg: Config) -> tuple[list[str], list[dict[str, Any]]]:
    """Loss table and tests over the results (``runs``: all runs; the left-out ones are only counted)."""
    lt = loss_table(runs)
    runs = stats.valid_runs(runs)
    tests = stats.loss_tests(runs, cfg.analysis.bootstrap_samples, cfg.analysis.bootstrap_seed, cfg.analysis.confidence)
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
    lines.append("")
    testable = [t for t in tests if t["testable"]]
    if testable:
        lines.append(f"Two-sided Mann–Whitney U tests between loss types, with a {cfg.analysis.confidence:.0%} bootstrap "
                     f"interval ({cfg.analysis.bootstrap_samples} resamples, seed {cfg.analysis.bootstrap_seed}) of the "
                     "difference in mean best val Jaccard:")
        lines.append("")
        lines.append("| loss A | loss B | n A | n B | U | p | smallest possible p | mean A − mean B | CI |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for t in testable:
            lines.append(f"| {t['a']} | {t['b']} | {t['n_a']} | {t['n_b']} | {t['U']:.1f} | {t['p']:.3f} | "
                         f"{t['min_p']:.3f} | {t['diff']:+.4f} | [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] |")
        lines.append("")
        sig = [t for t in testable if t["p"] < 1 - cfg.analysis.confidence]
        lines.append(
            f"{len(sig)} of {len(testable)} pair(s) differ at p < {1 - cfg.analysis.confidence:.2f}. "
            "The groups also differ in their other settings (learning rate, tile size ...), so even a small p "
            "compares mixtures of configurations, not the losses alone." if sig else
            f"No pair differs at p < {1 - cfg.analysis.confidence:.2f}: the data do not separate the loss types. "
            "Where the smallest possible p exceeds that level, the groups are too small for the test to ever "
            "reject.")
    elif len(lt) > 1:
        lines.append("No statistical test: no pair of loss types has at least 2 runs each.")
    pairs = stats.matched_pairs(runs, "loss")
    if not pairs.empty:
        lines += ["", "Matched pairs (runs identical in every setting except the loss):", ""]
        lines.append("| run A | run B | best val Jaccard A | best val Jaccard B |")
        lines.append("|---|---|---|---|")
        for r in pairs.itertuples():
            lines.append(f"| {r.run_a} | {r.run_b} | {fmt(r.best_val_jaccard_a)} | {fmt(r.best_val_jaccard_b)} |")
    return lines, tests


def section_resolution(runs: pd.DataFrame, numbers: dict[str, Any]) -> list[str]:
    ts = stats.tile_size_stats(runs)
    per = numbers.get("fig7", {}).get("per_size", {})
    lines = []
    has_full = ts["best_full"].notna().any()
    lines.append("| tile size (px) | runs | batch sizes | best val Jaccard (tiles) | best full-image Jaccard | "
                 "mean full-image Jaccard | foreground:background pixels | boundary share of pixels | "
                 "boundary pixels per tile |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for r in ts.itertuples():
        p = per.get(str(r.tile_size), {})
        bf = p.get("background_to_foreground_pixels")
        lines.append(f"| {r.tile_size} | {r.n} | {r.batch_sizes} | {fmt(r.best_val)} | {fmt(r.best_full)} | "
                     f"{fmt(r.mean_full)} | {'1:' + format(bf, '.1f') if bf else 'n/a'} | "
                     f"{pct(p.get('pixel_share', {}).get('boundary'))} | {fmt(p.get('boundary_pixels_per_tile'), 1)} |")
    lines.append("")
    if len(ts) < 2:
        lines.append(f"Only {ts['tile_size'].iloc[0]} px tiles were searched, so there is no resolution comparison; "
                     "add a second size to tiling.sizes and the run table to measure one.")
        return lines
    small, large = ts.iloc[0], ts.iloc[-1]
    col = "best_full" if has_full else "best_val"
    what = "full-image val Jaccard (every model scored on the same full validation images)" if has_full else \
        "tile-level val Jaccard (full-image scores missing; tiles of different sizes are not the same pixels)"
    gap = small[col] - large[col]
    verdict = (f"{int(large.tile_size)} px is worse than {int(small.tile_size)} px by {fmt(gap)}" if gap > 0 else
               f"{int(large.tile_size)} px is not worse than {int(small.tile_size)} px ({fmt(-gap)} higher)")
    lines.append(f"On best {what}: {verdict} ({fmt(large[col])} vs {fmt(small[col])}).")
    pairs = stats.matched_pairs(runs, "tile_size", score="full_val_jaccard" if has_full else "best_val_jaccard")
    if not pairs.empty:
        sc = "full_val_jaccard" if has_full else "best_val_jaccard"
        diffs = (pairs[f"{sc}_b"] - pairs[f"{sc}_a"]).astype(float)
        lines.append(f"Matched pairs (same settings, only the tile size differs): {len(pairs)}; the larger tile scores "
                     f"{fmt(float(diffs.mean()))} on average against the smaller "
                     f"({', '.join(f'{a} vs {b}: {fmt(d)}' for a, b, d in zip(pairs['run_b'], pairs['run_a'], diffs))}).")
    ps, pl = per.get(str(int(small.tile_size)), {}), per.get(str(int(large.tile_size)), {})
    if ps.get("pixel_share") and pl.get("pixel_share"):
        lines.append(
            f"Measured on the validation tiles, the pixel composition barely depends on the tile size (boundary "
            f"{pct(ps['pixel_share']['boundary'])} at {int(small.tile_size)} px vs "
            f"{pct(pl['pixel_share']['boundary'])} at {int(large.tile_size)} px): a larger tile holds more pixels of "
            f"every class (boundary pixels per tile {fmt(ps.get('boundary_pixels_per_tile'), 1)} vs "
            f"{fmt(pl.get('boundary_pixels_per_tile'), 1)}), not a different class balance." + _steps_sentence(runs, int(small.tile_size), int(large.tile_size)))
        gs, gl = ps.get("gradients", {}).get("dice"), pl.get("gradients", {}).get("dice")
        if gs and gl and gs["mean_abs_grad"]["boundary"] and gl["mean_abs_grad"]["boundary"]:
            ratio = gs["mean_abs_grad"]["boundary"] / gl["mean_abs_grad"]["boundary"]
            lines.append(f"Per boundary pixel, the dice gradient is {ratio:.2f}× larger at {int(small.tile_size)} px "
                         f"than at {int(large.tile_size)} px (dice is normalised over the whole batch, so each pixel's "
                         "share shrinks as the batch holds more pixels).")
    return lines


def _steps_sentence(runs: pd.DataFrame, small: int, large: int) -> str:
    if "optimizer_steps" not in runs or runs["optimizer_steps"].isna().all():
        return ""
    per_epoch = runs["optimizer_steps"] / runs["epochs_run"].where(runs["epochs_run"] > 0)
    s = per_epoch[runs["tile_size"] == small].mean()
    lg = per_epoch[runs["tile_size"] == large].mean()
    if not (math.isfinite(s) and math.isfinite(lg)):
        return ""
    if lg < s:
        return (f" Optimizer steps per epoch (runs.csv): {s:.1f} at {small} px vs {lg:.1f} at {large} px, so the "
                "larger tiles get fewer updates per epoch.")
    return (f" Optimizer steps per epoch (runs.csv): {s:.1f} at {small} px vs {lg:.1f} at {large} px: the larger "
            "tiles get no fewer updates per epoch.")


def section_replicates(runs: pd.DataFrame, cfg: Config) -> list[str]:
    rep = stats.replicate_stats(runs, cfg.analysis.confidence)
    if rep.empty:
        return ["No configuration was run with more than one seed, so no confidence interval per configuration "
                "can be given."]
    lines = [f"| configuration (runs) | seeds | n | mean best val Jaccard | std | {cfg.analysis.confidence:.0%} CI |",
             "|---|---|---|---|---|---|"]
    for r in rep.itertuples():
        lines.append(f"| {r.runs} | {r.seeds} | {r.n} | {fmt(r.mean)} | {fmt(r.std)} | "
                     f"[{fmt(r.ci_low)}, {fmt(r.ci_high)}] |")
    return lines


def section_summary(runs: pd.DataFrame) -> list[str]:
    """Counts over every run (by status); every score over the results only."""
    status = ", ".join(f"{k} {v}" for k, v in sorted(runs["status"].value_counts().items()))
    s = stats.search_summary(stats.valid_runs(runs))
    return [
        f"- Runs: {len(runs)} ({status}); results: {s['n_runs']}",
        f"- Best val Jaccard, mean ± std over runs: {fmt(s['mean_best'])} ± {fmt(s['std_best'])}",
        f"- Best: {fmt(s['best'])} ({s['best_run']}); worst: {fmt(s['worst'])} ({s['worst_run']})",
        f"- Epochs run, mean ± std: {fmt(s['mean_epochs'], 1)} ± {fmt(s['std_epochs'], 1)}",
        f"- Best epoch, mean ± std: {fmt(s['mean_best_epoch'], 1)} ± {fmt(s['std_best_epoch'], 1)}",
    ]


def _fig7_sentence(per: dict[str, Any]) -> str:
    parts = []
    for size, p in per.items():
        if p.get("boundary_amplification") is None:
            parts.append(f"{size} px: {p.get('note', 'no model')}")
            continue
        parts.append(
            f"{size} px (model {p['model_run']}): boundary pixels are {pct(p['pixel_share']['boundary'])} of pixels "
            f"and receive {pct(p['gradients']['no_focal_term']['share']['boundary'])} of |∂L/∂logit| without the "
            f"focal term vs {pct(p['gradients']['focal']['share']['boundary'])} with it "
            f"(amplification {p['boundary_amplification']:.2f}×; background:boundary "
            f"{p['imbalance_background_to_boundary_without_focal']:.3g}:1 → "
            f"{p['imbalance_background_to_boundary_with_focal']:.3g}:1)")
    return "; ".join(parts) + "."


# --------------------------------------------------------------------------- documents


def _intro(cfg: Config) -> list[str]:
    return [f"# {cfg.analysis.title}", "",
            "All numbers below are computed by `beadseg report` from results/summary/runs.csv, histories.csv, "
            "baseline.json, fingerprint.json, data/split/split.json and results/report/analysis_numbers.json "
            "(validation data and models); nothing is typed by hand. Each score says its split: *val* chose, "
            "*test* is held out.", ""]


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
    test = splits.has_test(runs, baseline)
    L = ["## Executive summary", ""] + ([] if test else splits.no_test_lines(manifest or {}, fingerprint))
    L += sections.warning_lines(fingerprint)
    if recommend.search_failed(runs):
        return L + sections.failure_lines(runs) + sections.baseline_lines(runs, baseline, test)
    for c in caveats(runs):
        L += [f"> {c}", ""]
    L += sections.not_result_lines(runs)
    L += best_lines(stats.valid_runs(runs), cfg, test)
    return L + sections.baseline_lines(runs, baseline, test)


def fig1_caption(runs: pd.DataFrame, cfg: Config, baseline: dict[str, Any]) -> str:
    """fig1's caption: what is drawn, how runs that are not results are handled, and the data."""
    valid, bad = stats.valid_runs(runs), stats.invalid_runs(runs)
    thr = cfg.analysis.overfit_drop_threshold
    k = min(cfg.analysis.top_k, len(valid))
    lines = (f"Dashed line: threshold baseline ({baseline.get('method')}, full image) "
             f"{fmt(baseline.get('full_val_jaccard'))}; dotted line: every pixel bead "
             f"{fmt(baseline.get('all_foreground_jaccard'))}. ")
    left = (f"Degenerate and diverged runs are left out of the bars, not greyed in, because they are not results: "
            f"{', '.join(f'{r.run_id} ({r.status})' for r in bad.itertuples())} (named under the chart). "
            if not bad.empty else "")
    if valid.empty:
        return f"No bars: no run is a result. {lines}{left}".strip()
    top = valid.head(k)
    flagged = top[top["overfit_drop"] > thr]
    data = (f"{len(flagged)} of {k} runs drop more than {pct(thr)} "
            f"({', '.join(f'{r.run_id} {pct(r.overfit_drop)}' for r in flagged.itertuples())})."
            if not flagged.empty else f"no top run drops more than {pct(thr)} from its best epoch.")
    return (f"Best (dark) vs final (light) val Jaccard of the top {k} runs; diamonds: full-image val Jaccard of the "
            f"saved best model (test scores: see the validation and test table); red arrow/label: drop above "
            f"{pct(thr)}. {lines}{left}Data: {data}")


def section_top(runs: pd.DataFrame, cfg: Config, baseline: dict[str, Any]) -> list[str]:
    valid = stats.valid_runs(runs)
    k = min(cfg.analysis.top_k, len(valid))
    return ([f"## Top {k} runs", ""] + sections.left_out_note(runs)
            + [markdown_table(top_table(valid, cfg), {"overfit_drop": pct, **SETTING_FORMATS}), "",
               figure(FIGURES[0], fig1_caption(runs, cfg, baseline))])


def section_impact(runs: pd.DataFrame) -> list[str]:
    valid, L = stats.valid_runs(runs), ["## Hyperparameter impact", ""] + sections.left_out_note(runs)
    axes = stats.varied_axes(valid)
    if not axes:
        return L + ["No training setting varies across the runs, so there is no hyperparameter impact to measure.",
                    "", figure(FIGURES[1], "Placeholder panel: no training setting varies across the runs.")]
    for axis in axes:
        g = stats.group_stats(valid, axis)
        g[axis] = [stats.format_value(axis, v) for v in g[axis]]
        L += [f"**{axis}**", "", markdown_table(g[[axis, "n", "mean", "std", "best", "best_run"]]), ""]
    spread = {a: float(stats.group_stats(valid, a)["mean"].max() - stats.group_stats(valid, a)["mean"].min())
              for a in axes}
    top_axis = max(spread, key=spread.get)
    return L + [figure(FIGURES[1], f"Mean ± std (bars) and best run (star) of best val Jaccard per value of each "
                       f"varied setting ({', '.join(axes)}); settings that did not vary are not drawn. Data: the "
                       f"largest spread of means is over {top_axis} ({fmt(spread[top_axis])}); the means mix "
                       "different values of the other settings.")]


def section_curves(runs: pd.DataFrame, histories: pd.DataFrame) -> list[str]:
    valid = stats.valid_runs(runs)
    best, worst = valid.iloc[0], valid.iloc[-1]
    hb = histories[histories["run_id"] == best["run_id"]]
    gap = (f"at its best epoch the best run's val loss is {fmt(float(hb.loc[hb['epoch'] == best['best_epoch'], 'val_loss'].iloc[0]))}"
           f" and its last val loss {fmt(float(hb['val_loss'].iloc[-1]))}") if not hb.empty and \
        (hb["epoch"] == best["best_epoch"]).any() else "the best run has no history rows"
    cap = (f"Train/val loss and val Jaccard per epoch of the best ({best['run_id']}, best epoch "
           f"{int(best['best_epoch'])}) " + (f"and worst ({worst['run_id']}, {fmt(worst['best_val_jaccard'])}, "
                                              f"{worst['status']}) run" if len(valid) > 1 else "(only) run")
           + f" that is a result; dashed line: best epoch. Data: {gap}.")
    return ["## Learning curves", ""] + sections.left_out_note(runs) + [figure(FIGURES[2], cap)]


def section_loss_doc(runs: pd.DataFrame, cfg: Config) -> list[str]:
    valid = stats.valid_runs(runs)
    lines, _ = section_loss(runs, cfg)
    lt = loss_table(valid)
    cap = (f"Best val Jaccard of every run grouped by loss type (n per group under each label; violins only where "
           f"n ≥ 2). Data: highest mean {lt['loss'].iloc[0]} ({fmt(lt['mean'].iloc[0])}, n={lt['n'].iloc[0]})"
           + ("; with n = 1 in some group this ordering is not evidence." if (lt["n"] < 2).any() or len(lt) < 2 else
              "; see the tests above for whether the difference is more than noise."))
    return ["## Loss comparison", ""] + sections.left_out_note(runs) + lines + ["", figure(FIGURES[3], cap)]


def section_math(numbers: dict[str, Any]) -> list[str]:
    f6 = numbers.get("fig6", {})
    per = numbers.get("fig7", {}).get("per_size", {})
    L = ["## Loss mathematics and pixel-level gradients", "",
         f"Details and equations: [{MATH_SUMMARY}]({MATH_SUMMARY}).", ""]
    L += [figure(FIGURES[5], f"Per-pixel loss, focusing term (1 − p_t)^γ and per-pixel |∂L/∂logit| against the "
                 f"probability of the true class, computed with beadseg.losses (α={f6.get('focal_alpha')}, "
                 f"γ={f6.get('focal_gamma')}, dice weight {f6.get('dice_weight')} of the best run). Data: at p_t = 0.9 "
                 f"the focal term weighs a pixel {fmt(f6.get('modulation_pt_0.9'))} "
                 f"(down-weighted {fmt(f6.get('downweight_pct_pt_0.9'), 1)} %), "
                 f"{fmt(f6.get('hard_to_easy_weight_ratio'), 1)}× less than at p_t = 0.5.")]
    return L + [figure(FIGURES[6], "Validation pixels by class (background / foreground interior / boundary from "
                       "skimage.segmentation.find_boundaries) per tile size, and each class's share of the total "
                       "gradient of the real predictions of the best model of that size (runs that are results "
                       "only), without (γ = 0) and with the focal term, and for dice and combined. Data: "
                       + _fig7_sentence(per))]


def section_convergence(runs: pd.DataFrame, cfg: Config) -> list[str]:
    valid = stats.valid_runs(runs)
    eff = stats.efficiency(valid)
    near = valid[valid["best_epoch"] >= cfg.analysis.near_cap_fraction * valid["max_epochs"]]
    key = "jaccard_per_second" if eff["jaccard_per_second"].notna().any() else "jaccard_per_epoch"
    unit = "per 1000 training seconds" if key == "jaccard_per_second" else "per epoch"
    e2 = eff[["run_id", "best_val_jaccard", "epochs_run", "best_epoch", "train_seconds"]].copy()
    e2[f"Jaccard {unit}"] = eff[key] * (1000 if key == "jaccard_per_second" else 1)
    return (["## Convergence and efficiency", ""] + sections.left_out_note(runs)
            + [markdown_table(e2, {"train_seconds": lambda v: fmt(v, 1)}), "",
               figure(FIGURES[4], f"Left: best epoch vs best val Jaccard, colour = epochs run, dotted = max_epochs. "
                      f"Right: best val Jaccard {unit} ({valid['device'].iloc[0] if 'device' in valid else 'device'}), "
                      f"top {len(eff)}. Data: {len(near)} of {len(valid)} runs peaked at or after "
                      f"{cfg.analysis.near_cap_fraction:.0%} of max_epochs; most efficient: {eff['run_id'].iloc[0]}.")])


def section_recommendations(recs: list[recommend.Recommendation], next_runs: int, failed: bool) -> list[str]:
    L = ["## Recommendations", ""]
    if recs:
        for i, r in enumerate(recs, 1):
            L += [f"{i}. **{r.title}** (rule `{r.rule}`)", f"   - Evidence: {r.evidence}", f"   - Action: {r.action}"]
    else:
        L += ["No rule fired: no overfitting above the threshold, no best epoch near the cap, the best learning rate "
              "is inside the grid, no divergence, no resolution gap, replicate spread below the threshold."]
    what = ("proposes the fix of the failure above as its main change, not a refinement of a best configuration"
            if failed else "refines the best configuration")
    return L + ["", f"The proposed next search is [{NEXT_SEARCH}]({NEXT_SEARCH}) ({next_runs} runs); it {what}. Use "
                f"it as-is with `beadseg plan results/report/{NEXT_SEARCH} --write`.", ""]


def section_statistics(runs: pd.DataFrame, cfg: Config) -> list[str]:
    valid = stats.valid_runs(runs)
    return (["## Statistical summary", ""] + sections.left_out_note(runs) + section_summary(runs) + [""]
            + [f"### Replicates ({cfg.analysis.confidence:.0%} confidence intervals per configuration)", ""]
            + section_replicates(valid, cfg) + [""])


def failed_body(runs: pd.DataFrame, cfg: Config, baseline: dict[str, Any], recs: list[recommend.Recommendation],
                next_runs: int) -> list[str]:
    """What follows the Data section when no run is a result: the reference figure and what to change."""
    return (["## Runs", "", "No ranking, hyperparameter impact, learning curves, loss comparison, convergence, "
             "resolution or statistics: none of the runs is a result, so each would compare noise.", "",
             figure(FIGURES[0], fig1_caption(runs, cfg, baseline))]
            + section_recommendations(recs, next_runs, failed=True))


def results_body(runs: pd.DataFrame, histories: pd.DataFrame, numbers: dict[str, Any], cfg: Config,
                 baseline: dict[str, Any], recs: list[recommend.Recommendation], next_runs: int,
                 mask_kind: str | None = None) -> list[str]:
    """Every section about the runs that are results (each says which runs it left out)."""
    valid = stats.valid_runs(runs)
    test = splits.has_test(runs, baseline)
    resolution = ["## Resolution comparison (tile size)", ""] + sections.left_out_note(runs)
    return (section_top(runs, cfg, baseline) + splits.split_scores_section(runs, cfg, test)
            + splits.object_section(runs, mask_kind, test) + section_impact(runs) + section_curves(runs, histories)
            + section_loss_doc(runs, cfg) + section_math(numbers) + section_convergence(runs, cfg)
            + resolution + section_resolution(valid, numbers) + [""]
            + section_recommendations(recs, next_runs, failed=False) + section_statistics(runs, cfg))


def report_text(runs: pd.DataFrame, histories: pd.DataFrame, numbers: dict[str, Any], cfg: Config,
                recs: list[recommend.Recommendation], next_runs: int, baseline: dict[str, Any] | None = None,
                fingerprint: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None) -> str:
    baseline, fingerprint, manifest = baseline or {}, fingerprint or {}, manifest or {}
    L = _intro(cfg) + executive_summary(runs, cfg, baseline, fingerprint, manifest)
    L += splits.which_numbers_section(runs, baseline, manifest, fingerprint)
    L += sections.data_section(fingerprint, runs)
    if recommend.search_failed(runs):
        L += failed_body(runs, cfg, baseline, recs, next_runs)
    else:
        L += results_body(runs, histories, numbers, cfg, baseline, recs, next_runs,
                          splits.mask_kind(manifest, fingerprint))
    return "\n".join(L) + "\n"


def math_scope(numbers: dict[str, Any], runs: pd.DataFrame) -> str:
    """Whose parameters and models the loss analysis uses; degenerate / diverged runs are never used."""
    best = numbers.get("fig6_best_run")
    if best is None or recommend.search_failed(runs):
        return (f"**{sections.FAILED}**, so nothing below is a finding about a trained model: the curves use the "
                "train defaults and the pixel-gradient table has no model (n/a). Parameters (train defaults):")
    bad = stats.invalid_runs(runs)
    left = (f" Runs that are not results ({', '.join(f'{r.run_id} ({r.status})' for r in bad.itertuples())}) are "
            "not analysed: the pixel-gradient table uses only models of runs that are results."
            if not bad.empty else "")
    return f"Parameters of the best run ({best}).{left} Parameters:"


def math_text(numbers: dict[str, Any], runs: pd.DataFrame) -> str:
    f6 = numbers.get("fig6", {})
    f7 = numbers.get("fig7", {})
    a, g, w = f6.get("focal_alpha"), f6.get("focal_gamma"), f6.get("dice_weight")
    L = ["# Mathematical analysis of the losses", "", math_scope(numbers, runs) + f" α = {a}, γ = {g}, dice weight "
         f"w = {w}. Numbers computed by `beadseg figures` with the project's loss functions and torch autograd "
         "(results/report/analysis_numbers.json).", "",
         "## Equations", "",
         "With p = σ(x) (x: logit), y ∈ {0, 1}, p_t = p if y = 1 else 1 − p, α_t = α if y = 1 else 1 − α, sums over all "
         "pixels of a batch:", "", "```",
         "Dice:      L_dice  = 1 − (2 Σ p·y + ε) / (Σ p + Σ y + ε)            (ε = 1)",
         "Focal:     L_focal = mean( −α_t (1 − p_t)^γ log p_t )",
         f"Combined:  L       = w · L_dice + (1 − w) · L_focal                  (w = {w})"]
    if "tversky" in set(runs["loss"]):
        L.append("Tversky:   L_tv    = 1 − (TP + ε/2) / (TP + α_tv FP + β_tv FN + ε/2),  TP = Σ p·y, FP = Σ p(1−y), "
                 "FN = Σ (1−p) y")
    L += ["```", "", "## Focusing term (fig6)", "",
          f"- (1 − p_t)^γ at p_t = 0.5: {fmt(f6.get('modulation_pt_0.5'))}; at p_t = 0.9: "
          f"{fmt(f6.get('modulation_pt_0.9'))} (an easy pixel is down-weighted {fmt(f6.get('downweight_pct_pt_0.9'), 1)} %); "
          f"at p_t = 0.99: {fmt(f6.get('modulation_pt_0.99'))}.",
          f"- A hard pixel (p_t = 0.5) weighs {fmt(f6.get('hard_to_easy_weight_ratio'), 1)}× an easy one (p_t = 0.9).",
          f"- Gradient ratio hard/easy for a bead pixel: focal {fmt(f6.get('focal_grad_ratio_hard_easy_fg'), 1)}×, "
          f"without focal term (γ = 0) {fmt(f6.get('no_focal_grad_ratio_hard_easy_fg'), 1)}×, dice "
          f"{fmt(f6.get('dice_grad_ratio_hard_easy_fg'), 2)}×.",
          f"- Dice: at p_t = 0.5 a bead pixel gets {fmt(f6.get('dice_grad_fg_to_bg_pt_0.5'), 2)}× the gradient of a "
          f"background pixel (foreground fraction {pct(numbers.get('fig6_foreground_fraction'))} measured on the "
          "validation masks).", "",
          "## Pixel classes and gradient shares on the real validation data (fig7)", ""]
    if f7.get("full_image_pixel_share"):
        s = f7["full_image_pixel_share"]
        L += [f"Full validation images ({f7.get('val_images')}): background {pct(s['background'])}, foreground interior "
              f"{pct(s['foreground_interior'])}, boundary {pct(s['boundary'])} (foreground "
              f"{pct(f7.get('val_foreground_fraction'))}).", ""]
    L += ["| tile size | model | tiles | background | fg interior | boundary | mean p_t (bg / fg / boundary) | "
          "boundary share of |∂L/∂x|: γ=0 / focal / dice / combined | amplification | bg:boundary γ=0 → focal |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for size, p in f7.get("per_size", {}).items():
        ps = p["pixel_share"]
        if p.get("gradients"):
            gr = p["gradients"]
            mp = p["mean_p_t"]
            L.append(f"| {size} | {p['model_run']} | {p['n_tiles']} | {pct(ps['background'])} | "
                     f"{pct(ps['foreground_interior'])} | {pct(ps['boundary'])} | "
                     f"{fmt(mp['background'], 3)} / {fmt(mp['foreground_interior'], 3)} / {fmt(mp['boundary'], 3)} | "
                     + " / ".join(pct(gr[v]["share"]["boundary"]) for v in ("no_focal_term", "focal", "dice", "combined"))
                     + f" | {fmt(p['boundary_amplification'], 2)}× | "
                     f"{p['imbalance_background_to_boundary_without_focal']:.3g}:1 → "
                     f"{p['imbalance_background_to_boundary_with_focal']:.3g}:1 |")
        else:
            L.append(f"| {size} | n/a | {p['n_tiles']} | {pct(ps['background'])} | {pct(ps['foreground_interior'])} | "
                     f"{pct(ps['boundary'])} | n/a | n/a | n/a | n/a |")
    L += ["", "Reading: amplification = boundary share of the gradient with the focal term / without it (γ = 0, same α). "
          "A value above 1 means the focal term moves gradient towards boundary pixels; below 1 means the model already "
          "fits boundaries as well as the rest, or worse where the focal term favours other hard pixels. "
          "mean p_t shows which class is actually hard for the trained model.", ""]
    return "\n".join(L)


def key_findings(runs: pd.DataFrame, numbers: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """ANALYSIS_COMPLETE.md's findings: about the runs that are results only (none when the search failed)."""
    if recommend.search_failed(runs):
        return [f"- **{sections.FAILED}**: all {len(runs)} run(s) are degenerate or diverged; no finding about a "
                "configuration, loss or tile size can be drawn. Reasons per run: REPORT.md, Executive summary."]
    valid, bad = stats.valid_runs(runs), stats.invalid_runs(runs)
    L = [f"- {c}" for c in caveats(runs)]
    if not bad.empty:
        L.append(f"- Not results (left out of every finding): "
                 f"{', '.join(f'{r.run_id} ({r.status})' for r in bad.itertuples())}.")
    best = valid.iloc[0]
    test = splits.has_test(runs, baseline)
    on_test = (f"; test (held out, the number to quote) {fmt(best.get('test_jaccard'))} vs baseline "
               f"{fmt(baseline.get('test_jaccard'))}" if test else "; no test set, so every score is optimistic")
    L.append(f"- Best run {best['run_id']} (chosen on val): best val Jaccard {fmt(best['best_val_jaccard'])} (epoch "
             f"{int(best['best_epoch'])}), full-image val {fmt(best.get('full_val_jaccard'))} vs threshold baseline "
             f"({baseline.get('method')}) {fmt(baseline.get('full_val_jaccard'))}{on_test}.")
    lt = loss_table(runs)
    L.append("- Per loss (mean best val Jaccard, n): "
             + ", ".join(f"{r.loss} {fmt(r.mean)} (n={r.n})" for r in lt.itertuples()))
    ts = stats.tile_size_stats(valid)
    L.append("- Per tile size (best full-image Jaccard): "
             + ", ".join(f"{r.tile_size} px {fmt(r.best_full)}" for r in ts.itertuples()))
    per = numbers.get("fig7", {}).get("per_size", {})
    if per:
        L.append("- Gradient analysis: " + _fig7_sentence(per))
    return L


def complete_text(root: Path, runs: pd.DataFrame, recs: list[recommend.Recommendation], numbers: dict[str, Any],
                  baseline: dict[str, Any] | None = None) -> str:
    rdir = root / paths.REPORT_DIR
    files = [paths.report_file(), paths.REPORT_DIR / MATH_SUMMARY, paths.REPORT_DIR / NEXT_SEARCH,
             paths.analysis_numbers_file(), *[paths.FIGURES_DIR / f for f in FIGURES],
             paths.runs_table(), paths.histories_table(), paths.summary_json(), paths.baseline_file(),
             paths.fingerprint_file()]
    baseline = baseline or {}
    L = ["# Analysis complete", "", f"{len(runs)} run(s) analysed; report folder `{paths.REPORT_DIR}`.", "",
         "## Files", "", "| file | size |", "|---|---|"]
    total = 0
    for f in files:
        p = root / f
        size = p.stat().st_size if p.is_file() else None
        total += size or 0
        L.append(f"| `{f}` | {'missing' if size is None else f'{size / 1024:.1f} KiB'} |")
    L += [f"| total | {total / 1024:.1f} KiB |", "", "## Key findings", ""] + key_findings(runs, numbers, baseline)
    L += ["", "## Next steps", ""]
    for r in recs:
        L.append(f"- {r.title}: {r.action}")
    L += [f"- Plan the next search: `beadseg plan {paths.REPORT_DIR / NEXT_SEARCH} --write`, then run the pipeline.",
          "", f"Start with [REPORT.md](REPORT.md). Folder: `{rdir.relative_to(root) if rdir.is_relative_to(root) else rdir}`.", ""]
    return "\n".join(L)


def write_report(cfg: Config, root: Path = Path(".")) -> Path:
    runs = load_runs(root)
    histories = pd.read_csv(root / paths.histories_table())
    numbers = load_numbers(root)
    baseline, fingerprint, manifest = load_baseline(root), load_fingerprint(root), splits.load_manifest(root)
    recs = recommend.recommendations(runs, cfg)
    spec = recommend.next_search(runs, cfg, recs)
    table = recommend.check_next_search(spec, root)
    rdir = root / paths.REPORT_DIR
    failed = recommend.search_failed(runs)
    write_text(rdir / NEXT_SEARCH, recommend.render_next_search(spec, recs, len(table), failed=failed))
    write_text(rdir / MATH_SUMMARY, math_text(numbers, runs))
    target = root / paths.report_file()
    write_text(target, report_text(runs, histories, numbers, cfg, recs, len(table), baseline, fingerprint, manifest))
    write_text(rdir / COMPLETE, complete_text(root, runs, recs, numbers, baseline))
    return target
