"""REPORT.md sections about the runs that are results, read off runs.csv / histories.csv (through
:mod:`beadseg.analysis.stats`): the top runs and fig1, learning curves (fig3),
convergence and efficiency (fig5), the statistical summary with replicates, and the recommendations.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from beadseg.analysis import FIGURES, recommend, sections, stats
from beadseg.analysis.text import NEXT_SEARCH, figure, fmt, markdown_table, pct
from beadseg.config import Config

RANK_COLUMNS = ["rank", "run_id", "best_val_jaccard", "final_val_jaccard", "overfit_drop", "full_val_jaccard",
                "best_epoch", "epochs_run", "status"]


SETTING_FORMATS = {a: (lambda v, a=a: stats.format_value(a, v)) for a in stats.SETTINGS}


def top_table(runs: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The top-k results with the ranking columns and the varied settings."""
    cols = [c for c in RANK_COLUMNS if c in runs] + [a for a in stats.varied_axes(runs) if a in runs]
    return runs.head(cfg.analysis.top_k)[cols]


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
    """``## Top k runs``: the ranking table and fig1."""
    valid = stats.valid_runs(runs)
    k = min(cfg.analysis.top_k, len(valid))
    return ([f"## Top {k} runs", ""] + sections.left_out_note(runs)
            + [markdown_table(top_table(valid, cfg), {"overfit_drop": pct, **SETTING_FORMATS}), "",
               figure(FIGURES[0], fig1_caption(runs, cfg, baseline))])


def _val_loss_text(histories: pd.DataFrame, best: pd.Series) -> str:
    """The best run's val loss at its best epoch and at its last epoch (histories.csv)."""
    hb = histories[histories["run_id"] == best["run_id"]]
    at_best = hb.loc[hb["epoch"] == best["best_epoch"], "val_loss"]
    if hb.empty or at_best.empty:
        return "the best run has no history rows"
    return (f"at its best epoch the best run's val loss is {fmt(float(at_best.iloc[0]))}"
            f" and its last val loss {fmt(float(hb['val_loss'].iloc[-1]))}")


def section_curves(runs: pd.DataFrame, histories: pd.DataFrame) -> list[str]:
    """``## Learning curves``: fig3 (best and worst result) and its caption."""
    valid = stats.valid_runs(runs)
    best, worst = valid.iloc[0], valid.iloc[-1]
    gap = _val_loss_text(histories, best)
    cap = (f"Train/val loss and val Jaccard per epoch of the best ({best['run_id']}, best epoch "
           f"{int(best['best_epoch'])}) " + (f"and worst ({worst['run_id']}, {fmt(worst['best_val_jaccard'])}, "
                                              f"{worst['status']}) run" if len(valid) > 1 else "(only) run")
           + f" that is a result; dashed line: best epoch. Data: {gap}.")
    return ["## Learning curves", ""] + sections.left_out_note(runs) + [figure(FIGURES[2], cap)]


def section_convergence(runs: pd.DataFrame, cfg: Config) -> list[str]:
    """``## Convergence and efficiency``: the efficiency table and fig5."""
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


def section_replicates(runs: pd.DataFrame, cfg: Config) -> list[str]:
    """Per configuration run with several seeds: mean, std and confidence interval."""
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


def section_statistics(runs: pd.DataFrame, cfg: Config) -> list[str]:
    """``## Statistical summary``: the search summary and the replicates."""
    valid = stats.valid_runs(runs)
    return (["## Statistical summary", ""] + sections.left_out_note(runs) + section_summary(runs) + [""]
            + [f"### Replicates ({cfg.analysis.confidence:.0%} confidence intervals per configuration)", ""]
            + section_replicates(valid, cfg) + [""])


def section_recommendations(recs: list[recommend.Recommendation], next_runs: int, failed: bool) -> list[str]:
    """``## Recommendations``: every rule that fired, and the proposed next search."""
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
