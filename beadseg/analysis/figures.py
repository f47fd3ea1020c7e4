"""The nine analysis figures, one function each: they only draw. fig1 and fig3-fig5 draw runs.csv / histories.csv
(and fig1 the threshold baseline, results/summary/baseline.json); fig2 (matched effects), fig6 and fig7 draw
the numbers ``beadseg measure`` wrote to results/report/analysis_numbers.json (:mod:`beadseg.analysis.numbers`);
fig8 draws a halving search's ladder from that file (or, for a grid, each run's score against its
optimizer steps); fig9 draws the best run's predicted beads from the files its evaluate step wrote
(:mod:`beadseg.analysis.predictions` reads and matches them). Nothing here is written for the report.

Only the runs that are results are drawn (:func:`beadseg.analysis.stats.valid_runs`): a degenerate or
diverged run never appears as a bar, a dot or a "best" anywhere; each figure says how many runs it
left out, and draws a plain message instead of a chart when no run is a result. fig1 also draws the
threshold baseline and the trivial "every pixel bead" score as reference lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from beadseg import paths  # noqa: E402
from beadseg.analysis import FIGURES, effects, stats  # noqa: E402
from beadseg.analysis.aggregate import load_runs  # noqa: E402
from beadseg.analysis.inputs import baseline_jaccard, load_baseline  # noqa: E402
from beadseg.analysis.numbers import (  # noqa: E402
    CLASSES,
    VARIANT_LABELS,
    VARIANTS,
    effect_numbers,
    load_numbers,
    number,
    per_size,
)
from beadseg.config import Config  # noqa: E402
from beadseg.fsutil import atomic_path  # noqa: E402

CLASS_LABELS = {"background": "background", "foreground_interior": "foreground interior", "boundary": "boundary"}
CLASS_COLORS = {"background": "#9e9e9e", "foreground_interior": "#1f77b4", "boundary": "#d62728"}


def save(fig: plt.Figure, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return target


def _short(run_id: str, n: int = 28) -> str:
    return run_id if len(run_id) <= n else run_id[: n - 1] + "…"


def _message(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=10, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def left_out_text(runs: pd.DataFrame) -> str:
    """'Left out (not results): a (degenerate), b (diverged)' or '' when every run is a result."""
    bad = stats.invalid_runs(runs)
    if bad.empty:
        return ""
    named = ", ".join(f"{_short(str(r.run_id), 24)} ({r.status})" for r in bad.head(6).itertuples())
    more = f" and {len(bad) - 6} more" if len(bad) > 6 else ""
    return f"Left out, not results: {named}{more}"


def no_result_text(runs: pd.DataFrame) -> str:
    return (f"No run is a result: all {len(runs)} run(s) are degenerate or diverged,\n"
            "so there is nothing to compare here (see REPORT.md, Executive summary).")


def message_figure(runs: pd.DataFrame, title: str, target: Path) -> Path:
    """The placeholder figure drawn when no run is a result."""
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    _message(ax, no_result_text(runs))
    ax.set_title(title)
    return save(fig, target)


def note_left_out(fig: plt.Figure, runs: pd.DataFrame) -> None:
    """A grey footnote naming the runs a figure leaves out (nothing when none)."""
    text = left_out_text(runs)
    if text:
        fig.text(0.5, -0.03, text, ha="center", va="top", fontsize=8, color="0.35", wrap=True)


# --------------------------------------------------------------------------- fig1


def reference_lines(ax: plt.Axes, baseline: dict[str, Any]) -> list[float]:
    """The threshold baseline's and the all-foreground prediction's full-image Jaccard as labelled lines."""
    drawn = []
    base = baseline_jaccard(baseline)
    if base is not None:
        ax.axhline(base, color="#9467bd", ls="--", lw=1.6,
                   label=f"threshold baseline ({baseline.get('method')}, full image): {base:.3f}")
        drawn.append(base)
    trivial = baseline.get("all_foreground_jaccard")
    if trivial is not None:
        ax.axhline(float(trivial), color="0.35", ls=":", lw=1.6,
                   label=f"every pixel bead (trivial, full image): {float(trivial):.3f}")
        drawn.append(float(trivial))
    return drawn


def _top_bars(ax: plt.Axes, top: pd.DataFrame, thr: float, ymax: float) -> None:
    x = np.arange(len(top))
    ax.bar(x - 0.2, top["best_val_jaccard"], 0.4, label="best val Jaccard (best epoch)", color="#2ca02c")
    ax.bar(x + 0.2, top["final_val_jaccard"], 0.4, label="final val Jaccard (last epoch)", color="#98df8a")
    if "full_val_jaccard" in top and top["full_val_jaccard"].notna().any():
        ax.scatter(x, top["full_val_jaccard"], marker="D", color="black", zorder=3, s=28,
                   label="full-image val Jaccard (best model)")
    for xi, r in zip(x, top.itertuples()):
        drop = float(r.overfit_drop)
        color = "#d62728" if drop > thr else "0.3"
        if drop > 0:
            ax.annotate("", xy=(xi + 0.2, r.final_val_jaccard), xytext=(xi + 0.2, r.best_val_jaccard),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})
        ax.text(float(xi), max(r.best_val_jaccard, r.final_val_jaccard) + 0.03 * max(ymax, 0.1),
                f"drop {100 * drop:.1f} %", ha="center", fontsize=8, color=color,
                fontweight="bold" if drop > thr else "normal")
    ax.set_xticks(x, [f"#{int(r['rank'])}\n{_short(str(r['run_id']))}" for _, r in top.iterrows()], fontsize=8)


def fig_top_configurations(runs: pd.DataFrame, cfg: Config, target: Path,
                           baseline: dict[str, Any] | None = None) -> Path:
    """Top-k results: best vs final val Jaccard bars, the overfitting drop annotated (red above threshold),
    the threshold baseline and the trivial all-bead score as reference lines.

    Degenerate and diverged runs are left out of the bars (named in a footnote): they are not results.
    """
    top = stats.valid_runs(runs).head(cfg.analysis.top_k)
    thr = cfg.analysis.overfit_drop_threshold
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 * len(top) + 2), 4.8))
    ymax = float(np.nanmax(top[["best_val_jaccard", "final_val_jaccard"]].to_numpy())) if len(top) else 0.0
    if len(top):
        _top_bars(ax, top, thr, ymax)
        ax.set_title(f"Top {len(top)} runs: best vs final val Jaccard (red: drop > {100 * thr:.0f} % = overfitting)")
    else:
        ax.text(0.5, 0.75, no_result_text(runs), ha="center", va="center", fontsize=10, transform=ax.transAxes,
                bbox={"facecolor": "white", "edgecolor": "0.6"})
        ax.set_xticks([])
        ax.set_title("Top runs: none (the search failed)")
    ymax = max([ymax, *reference_lines(ax, baseline or {})])
    ax.set_ylabel("validation Jaccard (IoU, 0–1)")
    ax.set_ylim(0, min(1.05, ymax * 1.3 + 0.05) + 0.17)  # headroom for labels and the legend
    ax.legend(loc="upper center", fontsize=8, ncol=3 if len(top) else 1)
    ax.grid(axis="y", alpha=0.3)
    note_left_out(fig, runs)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig2


MAX_IMPACT_ROWS, MAX_IMPACT_NOTES = 10, 4  # per fig2 panel (a TPE search has many values per setting)


@dataclass(frozen=True)
class ImpactRow:
    """One drawn comparison of fig2: "label_b − label_a" over matched pairs of configurations."""

    label: str
    mean: float
    low: float | None
    high: float | None
    n_pairs: int
    diffs: tuple[float, ...]


@dataclass(frozen=True)
class ImpactPanel:
    """fig2's panel of one varied setting: the matched comparisons it draws, and what it only writes."""

    setting: str
    status: str
    aliased_with: tuple[str, ...]
    rows: tuple[ImpactRow, ...]
    notes: tuple[str, ...]

    @property
    def title(self) -> str:
        if self.rows:
            return self.setting
        if self.aliased_with:
            return f"{self.setting}: confounded with {', '.join(self.aliased_with)}"
        return f"{self.setting} ({self.status})"


def _signed(v: float) -> str:
    return f"{v:+.3f}"


def _not_drawn_note(setting: str, c: dict[str, Any]) -> str:
    name = f"{c['label_b']} − {c['label_a']}"
    if c["status"] == effects.ALIASED:
        others = c["always_with"] or c["changes_with"]
        joint = "; ".join(f"together with {j['with']}: {_signed(j['mean'])} ({j['n_pairs']} pair"
                          f"{'s' if j['n_pairs'] != 1 else ''})" for j in c["joint"])
        return (f"{name}: not separable from {', '.join(others)}" + (f"\n  ({joint})" if joint else ""))
    return (f"{name}: no matched pair; additive model {_signed(c['additive'])}\n  (assumes effects add; not drawn)"
            if c["additive"] is not None else f"{name}: no matched pair")


def impact_panels(effect_numbers: dict[str, Any]) -> list[ImpactPanel]:
    """What fig2 draws, per varied setting: its matched comparisons (rows) and notes for the rest."""
    panels = []
    for entry in effect_numbers.get("settings", []):
        rows = tuple(ImpactRow(f"{c['label_b']} − {c['label_a']}", float(c["mean"]), c["ci_low"], c["ci_high"],
                               int(c["n_pairs"]), tuple(float(p["diff"]) for p in c["pairs"]))
                     for c in effects.matched_contrasts(entry))
        notes = [_not_drawn_note(entry["setting"], c) for c in entry["contrasts"] if c["status"] != effects.MATCHED]
        if len(rows) > MAX_IMPACT_ROWS:
            notes.insert(0, f"{len(rows) - MAX_IMPACT_ROWS} more matched comparison(s), fewer pairs: see REPORT.md")
            rows = tuple(sorted(rows, key=lambda r: -r.n_pairs)[:MAX_IMPACT_ROWS])
        if len(notes) > MAX_IMPACT_NOTES:
            notes = notes[:MAX_IMPACT_NOTES] + [f"... and {len(notes) - MAX_IMPACT_NOTES} more (REPORT.md)"]
        panels.append(ImpactPanel(entry["setting"], entry["status"], tuple(entry["aliased_with"]), rows,
                                  tuple(notes)))
    return panels


def _draw_matched(ax: plt.Axes, panel: ImpactPanel) -> None:
    y = np.arange(len(panel.rows))[::-1]
    for yi, row in zip(y, panel.rows):
        ax.scatter(row.diffs, [yi] * len(row.diffs), s=18, color="0.55", zorder=2)
        if row.low is not None and row.high is not None:
            ax.errorbar([row.mean], [yi], xerr=[[row.mean - row.low], [row.high - row.mean]], fmt="none",
                        ecolor="#1f77b4", capsize=4, lw=1.6, zorder=3)
        ax.scatter([row.mean], [yi], marker="D", s=46, color="#1f77b4", zorder=4)
    ax.axvline(0.0, color="0.3", lw=1, ls="--")
    ax.set_yticks(y, [f"{r.label}\n(n={r.n_pairs} pair{'s' if r.n_pairs != 1 else ''})" for r in panel.rows],
                  fontsize=8)
    lim = min(1.0, max([0.01] + [abs(v) for r in panel.rows for v in (r.mean, r.low, r.high, *r.diffs)
                                 if v is not None]))  # a Jaccard difference lies in [-1, 1]
    ax.set_xlim(-1.15 * lim, 1.15 * lim)
    ax.set_ylim(-0.7, len(panel.rows) - 0.3)
    ax.set_xlabel("difference in best val Jaccard", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    if panel.notes:
        ax.annotate("\n".join(panel.notes), xy=(0, 0), xycoords="axes fraction", xytext=(0, -30),
                    textcoords="offset points", fontsize=7, va="top", color="#8c2d04")


def _draw_not_separable(ax: plt.Axes, panel: ImpactPanel) -> None:
    ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor="none", edgecolor="0.6", hatch="//",
                           lw=0))
    head = ("NOT AN EFFECT: cannot be separated" if panel.status == effects.ALIASED else
            "No matched pair: not measured")
    ax.text(0.5, 0.5, head + "\n\n" + "\n".join(panel.notes), transform=ax.transAxes, ha="center", va="center",
            fontsize=8, wrap=True, bbox={"facecolor": "white", "edgecolor": "#8c2d04"})
    ax.set_xticks([])
    ax.set_yticks([])


def panel_height(row: list[ImpactPanel]) -> float:
    """Inches for one row of fig2's panels: room for the most comparisons and note lines in it."""
    drawn = max(len(p.rows) for p in row)
    notes = max(sum(n.count("\n") + 1 for n in p.notes) if p.rows else 0 for p in row)
    return max(3.0, 1.3 + 0.5 * drawn) + 0.16 * notes


def fig_hyperparameter_impact(runs: pd.DataFrame, effect_numbers: dict[str, Any], target: Path) -> Path:
    """One panel per varied setting: its effect measured on matched configurations (equal in every other
    setting, seeds averaged): each pair's difference (grey dots), their mean (diamond) and its interval where
    there are at least 2 pairs. A setting the design cannot separate from another is a hatched panel naming
    it, never an effect (results only; :mod:`beadseg.analysis.effects` measured it)."""
    everything, runs = runs, stats.valid_runs(runs)
    if runs.empty:
        return message_figure(everything, "Hyperparameter impact", target)
    panels = impact_panels(effect_numbers)
    if not panels:
        fig, ax = plt.subplots(figsize=(6.5, 3))
        n = len(runs)
        _message(ax, f"No training setting varies across the {n} run(s)" + (" (only the seed)" if n > 1 else "")
                 + ":\nthere is no hyperparameter impact to show.")
        ax.set_title("Hyperparameter impact")
        return save(fig, target)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    heights = [panel_height(panels[r * ncols:(r + 1) * ncols]) for r in range(nrows)]
    fig, axs = plt.subplots(nrows, ncols, figsize=(4.9 * ncols, sum(heights) + 0.8), squeeze=False,
                            gridspec_kw={"height_ratios": heights})
    for ax, panel in zip(axs.flat, panels):
        if panel.rows:
            _draw_matched(ax, panel)
        else:
            _draw_not_separable(ax, panel)
        ax.set_title(panel.title, fontsize=10)
    for ax in list(axs.flat)[len(panels):]:
        ax.set_visible(False)
    conf = float(effect_numbers.get("confidence", 0.95))
    fig.suptitle("Hyperparameter impact on matched configurations (equal in every other setting, seeds averaged):"
                 f"\nb − a per pair (grey), mean (diamond), {conf:.0%} t-interval where n ≥ 2; hatched: "
                 "not separable from another setting", fontsize=10)
    note_left_out(fig, everything)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig3


def fig_learning_curves(runs: pd.DataFrame, histories: pd.DataFrame, target: Path) -> Path:
    """Best and worst result: train/val loss and val Jaccard per epoch, best epoch marked."""
    everything, runs = runs, stats.valid_runs(runs)
    if runs.empty:
        return message_figure(everything, "Learning curves", target)
    picks = [("best", runs.iloc[0]), ("worst", runs.iloc[-1])] if len(runs) > 1 else [("only run", runs.iloc[0])]
    fig, axes = plt.subplots(len(picks), 2, figsize=(11.5, 3.8 * len(picks)), squeeze=False)
    for row, (label, run) in zip(axes, picks):
        h = histories[histories["run_id"] == run["run_id"]]
        title = f"{label}: {_short(str(run['run_id']), 34)}"
        if h.empty:
            for ax in row:
                _message(ax, f"{run['run_id']}: no finished epoch ({run['status']})")
                ax.set_title(title)
            continue
        row[0].plot(h["epoch"], h["train_loss"], marker=".", label="train loss")
        row[0].plot(h["epoch"], h["val_loss"], marker=".", label="val loss")
        row[0].set(xlabel="epoch", ylabel=f"loss ({run['loss']}, unitless)", title=f"{title} — loss")
        row[1].plot(h["epoch"], h["val_jaccard"], marker=".", color="tab:green", label="val Jaccard")
        be = int(run["best_epoch"])
        row[1].axvline(be, color="grey", ls="--", label=f"best epoch {be}")
        row[1].scatter([be], [run["best_val_jaccard"]], marker="*", s=150, color="#d62728", zorder=3,
                       label=f"best {run['best_val_jaccard']:.3f}")
        row[0].axvline(be, color="grey", ls="--")
        row[1].set(xlabel="epoch", ylabel="val Jaccard (IoU)", ylim=(0, 1),
                   title=f"{title} — val Jaccard ({run['status']})")
        for ax in row:
            ax.legend(loc="best", fontsize=8)
            ax.grid(alpha=0.3)
    note_left_out(fig, everything)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig4


def fig_loss_comparison(runs: pd.DataFrame, target: Path) -> Path:
    """Violin (n >= 2) and box plots of best val Jaccard by loss type, every result as a dot, n per group."""
    everything, runs = runs, stats.valid_runs(runs)
    if runs.empty:
        return message_figure(everything, "Loss comparison", target)
    table = stats.loss_stats(runs)
    groups = [runs.loc[runs["loss"] == loss, "best_val_jaccard"].to_numpy(float) for loss in table["loss"]]
    labels = [f"{loss}\n(n={len(g)})" for loss, g in zip(table["loss"], groups)]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    pos = np.arange(1, len(groups) + 1)
    rng = np.random.default_rng(0)
    violin_pos = [p for p, g in zip(pos, groups) if len(g) >= 2]
    if violin_pos:
        parts = a1.violinplot([g for g in groups if len(g) >= 2], positions=violin_pos, showmeans=True)
        for body in parts["bodies"]:
            body.set_alpha(0.4)
    a2.boxplot(groups, positions=pos, widths=0.5)
    for ax in (a1, a2):
        for p, g in zip(pos, groups):
            ax.scatter(p + rng.uniform(-0.06, 0.06, len(g)), g, s=22, color="black", zorder=3)
        ax.set_xticks(pos, labels)
        ax.set_xlabel("loss type")
        ax.grid(axis="y", alpha=0.3)
    a1.set_ylabel("best val Jaccard (IoU)")
    a1.set_title("Violin where n ≥ 2 (dots: one run each)")
    a2.set_title("Box plot (median, quartiles; dots: runs)")
    if (table["n"] < 2).any() or len(table) < 2:
        fig.text(0.5, 0.0, "Caution: groups with n = 1 (or a single loss type) are not evidence for a ranking "
                 "of losses.", ha="center", fontsize=9, color="#d62728")
    fig.suptitle("Loss comparison: best val Jaccard per run, grouped by loss type", fontsize=11)
    note_left_out(fig, everything)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig5


def fig_convergence(runs: pd.DataFrame, target: Path) -> Path:
    """Best epoch vs best Jaccard coloured by epochs run; efficiency ranking (Jaccard per training second);
    results only."""
    everything, runs = runs, stats.valid_runs(runs)
    if runs.empty:
        return message_figure(everything, "Convergence and efficiency", target)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1, 1.1]})
    sc = a1.scatter(runs["best_epoch"], runs["best_val_jaccard"], c=runs["epochs_run"], cmap="viridis", s=60,
                    edgecolors="black", vmin=0, vmax=max(1, int(runs["max_epochs"].max())))
    cap = int(runs["max_epochs"].max())
    a1.axvline(cap, color="grey", ls=":", label=f"max_epochs {cap}")
    for i, r in enumerate(runs.head(3).itertuples()):
        right = r.best_epoch > 0.6 * cap
        a1.annotate(f"#{i + 1} {_short(str(r.run_id), 22)}", (r.best_epoch, r.best_val_jaccard),
                    textcoords="offset points", xytext=(-40 if right else 40, -14 * i - 4), ha="right" if right else "left",
                    va="center", fontsize=7, arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.6})
    fig.colorbar(sc, ax=a1, label="epochs run")
    a1.set(xlabel="best epoch", ylabel="best val Jaccard (IoU)", title="Convergence: when each run peaked",
           xlim=(0, cap + 1))
    lo, hi = float(runs["best_val_jaccard"].min()), float(runs["best_val_jaccard"].max())
    pad = max(0.02, 0.12 * (hi - lo))
    a1.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad))
    a1.legend(fontsize=8, loc="best")
    a1.grid(alpha=0.3)
    eff = stats.efficiency(runs)
    per_second = eff["jaccard_per_second"].notna().any()
    key = "jaccard_per_second" if per_second else "jaccard_per_epoch"
    device = str(runs["device"].iloc[0]).upper() if "device" in runs and runs["device"].notna().any() else "device"
    y = np.arange(len(eff))[::-1]
    a2.barh(y, eff[key] * (1000 if per_second else 1), color="#ff7f0e")
    a2.set_yticks(y, [_short(str(r), 30) for r in eff["run_id"]], fontsize=8)
    unit = f"best val Jaccard per 1000 {device}-seconds of training" if per_second else "best val Jaccard per epoch"
    a2.set(xlabel=unit, title=f"Efficiency ranking (top {len(eff)})")
    for yi, r in zip(y, eff.itertuples()):
        a2.text(getattr(r, key) * (1000 if per_second else 1), yi, f" J={r.best_val_jaccard:.3f}, {int(r.epochs_run)} ep",
                va="center", fontsize=7)
    a2.set_xlim(0, float(eff[key].max() * (1000 if per_second else 1)) * 1.45 if len(eff) else 1)
    a2.grid(axis="x", alpha=0.3)
    note_left_out(fig, everything)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig8


def _ladders(ax: plt.Axes, ladder: dict[str, Any]) -> None:
    """One line per configuration through its scores at the rungs it reached; x marks where it stopped."""
    colors = plt.get_cmap("tab10")
    last = len(ladder["budgets"]) - 1
    for i, cid in enumerate(ladder["configs"]):
        pts = [p for p in ladder["ladders"][cid] if p["score"] is not None]
        if not pts:
            continue
        xs, ys = [p["epochs"] for p in pts], [p["score"] for p in pts]
        winner = pts[-1]["run_id"] == ladder["winner"]
        ax.plot(xs, ys, marker="o", color=colors(i % 10), lw=2.5 if winner else 1.2, label=_short(cid, 30),
                zorder=3 if winner else 2)
        if ladder["finished"] and ladder["reached"][cid] < last:
            ax.scatter([xs[-1]], [ys[-1]], marker="x", s=70, color="black", zorder=4)
    ax.set_xticks(ladder["budgets"])
    ax.set(xlabel="epochs trained (cumulative, rung budgets)", ylabel="full-image val Jaccard",
           title=f"Successive halving (eta {ladder['eta']}): score at each rung; x = stopped there")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")


def _compute_bars(ax: plt.Axes, ladder: dict[str, Any]) -> None:
    used, full = ladder["steps_used"], ladder["steps_full_grid"]
    ax.barh([1, 0], [full, used], color=["#bdbdbd", "#2ca02c"])
    ax.set_yticks([1, 0], ["full grid, full budget", "this search"])
    ax.text(used, 0, f" {used} steps ({100 * used / full:.0f} %)" if full else f" {used} steps", va="center", fontsize=8)
    ax.text(full, 1, f" {full} steps", va="center", fontsize=8)
    ax.set_xlim(0, full * 1.35 if full else 1)
    ax.set(xlabel="optimizer steps", title="Compute")


def fig_budget_vs_score(runs: pd.DataFrame, numbers: dict[str, Any], target: Path) -> Path:
    """A halving search's ladder and compute; for a grid, each result's score against the steps it took."""
    ladder = numbers.get("search")
    if ladder:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
        _ladders(a1, ladder)
        _compute_bars(a2, ladder)
        fig.tight_layout()
        return save(fig, target)
    everything, valid = runs, stats.valid_runs(runs)
    if valid.empty or "optimizer_steps" not in valid:
        return message_figure(everything, "Budget vs score", target)
    fig, ax = plt.subplots(figsize=(8, 4.6))
    score = valid["full_val_jaccard"].fillna(valid["best_val_jaccard"])
    ax.scatter(valid["optimizer_steps"], score, s=50, edgecolors="black", zorder=3)
    for i, r in enumerate(valid.head(3).itertuples()):
        ax.annotate(f"#{i + 1} {_short(str(r.run_id), 24)}", (r.optimizer_steps, score.iloc[i]), fontsize=7,
                    textcoords="offset points", xytext=(6, -10 * i))
    ax.set(xlabel="optimizer steps the run took", ylabel="full-image val Jaccard",
           title="Grid search: every run at its own budget (no halving)")
    ax.grid(alpha=0.3)
    note_left_out(fig, everything)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig6


def _fig6_losses(ax: plt.Axes, curves: dict[str, Any], f6: dict[str, Any], numbers: dict[str, Any]) -> None:
    pt, a, g = curves["p_t"], f6["focal_alpha"], f6["focal_gamma"]
    fg = 100 * number(numbers.get("fig6_foreground_fraction"))
    fg_label = f"fg {fg:.1f} %" + ("" if numbers.get("fig6_foreground_fraction_measured") else ", a default")
    ax.plot(pt, curves["ce"], color="black", ls=":", label="cross-entropy −log p_t")
    ax.plot(pt, curves["focal_fg"], color="#d62728", label=f"focal, bead pixel (α={a:g}, γ={g:g})")
    ax.plot(pt, curves["focal_bg"], color="#ff9896", label=f"focal, background pixel (1−α={1 - a:g})")
    ax.plot(pt, curves["dice"], color="#1f77b4", lw=2, label=f"dice, all pixels at p_t ({fg_label})")
    ax.set(xlabel="p_t: predicted probability of the true class", ylabel="loss (unitless)", ylim=(0, 2.5),
           title="Loss vs prediction quality")


def _fig6_focusing(ax: plt.Axes, curves: dict[str, Any], f6: dict[str, Any]) -> None:
    pt, g = curves["p_t"], f6["focal_gamma"]
    for gm in curves["gammas"]:
        ax.plot(pt, curves["modulation"][f"{gm:g}"], label=f"γ = {gm:g}" + (" (runs)" if gm == g else ""),
                lw=2.5 if gm == g else 1.3)
    m09 = number(f6.get("modulation_pt_0.9"))
    ax.axvline(0.9, color="grey", ls=":")
    ax.annotate(f"p_t = 0.9, γ={g:g}: weight {m09:.3g}\n(down-weighted {100 * (1 - m09):.1f} %)",
                (0.9, m09), xytext=(0.35, 0.55), fontsize=8, arrowprops={"arrowstyle": "->"})
    ax.set(xlabel="p_t: predicted probability of the true class", ylabel="focusing term (1 − p_t)^γ",
           title="Focal focusing term", ylim=(0, 1.02))


def _fig6_gradients(ax: plt.Axes, curves: dict[str, Any]) -> None:
    styles = {"dice": "#1f77b4", "focal": "#d62728", "combined": "#9467bd", "no_focal_term": "black"}
    for name, color in styles.items():
        ax.plot(curves["p_t"], curves["grad"][name]["fg"], color=color, label=f"{VARIANT_LABELS[name]}, bead pixel")
        ax.plot(curves["p_t"], curves["grad"][name]["bg"], color=color, ls="--", label="… background pixel")
    ax.set_yscale("log")
    ax.set(xlabel="p_t: predicted probability of the true class", ylabel="N × |∂L/∂logit| per pixel (log)",
           title="Per-pixel gradient magnitude")


def fig_loss_mathematics(numbers: dict[str, Any], target: Path) -> Path:
    """Dice vs focal as functions of p_t, the focusing term for several gamma, per-pixel gradient magnitudes
    (the curves ``beadseg measure`` computed)."""
    curves, f6 = numbers["fig6_curves"], numbers["fig6"]
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.6))
    _fig6_losses(axs[0], curves, f6, numbers)
    _fig6_focusing(axs[1], curves, f6)
    _fig6_gradients(axs[2], curves)
    for ax in axs:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fg = ("the measured validation foreground fraction" if numbers.get("fig6_foreground_fraction_measured")
          else "a default foreground fraction (not measured)")
    fig.suptitle("Loss mathematics, computed with beadseg.losses and autograd (dice: a 64×64 image with "
                 f"{fg}, every pixel at p_t)", fontsize=10)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig7


def _fig7_pixels(ax: plt.Axes, per: dict[str, dict[str, Any]]) -> None:
    """Pixel shares by class, one bar group per class, one hatch per tile size."""
    sizes = list(per)
    cx = np.arange(len(CLASSES))
    wd = 0.8 / len(sizes)
    for i, s in enumerate(sizes):
        vals = np.array([100 * number(per[s]["pixel_share"].get(c)) for c in CLASSES])
        xs = cx + (i - (len(sizes) - 1) / 2) * wd
        ax.bar(xs, vals, wd * 0.92, color=[CLASS_COLORS[c] for c in CLASSES], edgecolor="white",
               hatch="" if i == 0 else "//", label=f"{s} px tiles ({per[s]['n_tiles']} val tiles)")
        for xi, v in zip(xs, vals):
            if np.isfinite(v):
                ax.text(float(xi), v * 1.08, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
    ax.set_yscale("log")
    ax.set_xticks(cx, [CLASS_LABELS[c] for c in CLASSES])
    ax.set(ylabel="share of validation pixels (%, log)", title="Pixels by difficulty class (number: %)",
           ylim=(None, 400))
    leg = ax.legend(fontsize=7, loc="upper right")
    for h in leg.legend_handles:
        if isinstance(h, Patch):
            h.set_facecolor("white")
            h.set_edgecolor("black")


def _fig7_shares(ax: plt.Axes, per: dict[str, dict[str, Any]]) -> None:
    """Each class's share of the gradient per loss variant, stacked, one hatch per tile size."""
    sizes = list(per)
    labels_v = {"no_focal_term": "γ=0", "focal": "focal", "dice": "dice", "combined": "combined"}
    width = 0.8 / len(sizes)
    centers = np.arange(len(VARIANTS))
    for i, s in enumerate(sizes):
        gr = per[s].get("gradients")
        if not gr:
            continue
        xs = centers + (i - (len(sizes) - 1) / 2) * width
        bottom = np.zeros(len(VARIANTS))
        for c in CLASSES:
            vals = np.array([100 * number(gr[v]["share"][c]) for v in VARIANTS])
            ax.bar(xs, vals, width * 0.92, bottom=bottom, color=CLASS_COLORS[c], edgecolor="white",
                   hatch="" if i == 0 else "//", label=f"{CLASS_LABELS[c]} ({s} px)")
            if c == "boundary":
                for xi, v, b in zip(xs, vals, bottom):
                    ax.text(float(xi), b + v / 2, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white")
            bottom += vals
    ax.set_xticks(centers, [labels_v[v] for v in VARIANTS])
    ax.set(xlabel="loss (model's real predictions on validation tiles)",
           ylabel="share of total |∂L/∂logit| (%)", title="Who receives the gradient (white number: boundary %)",
           ylim=(0, 125))
    ax.legend(fontsize=6.5, ncol=len(sizes), loc="upper center")


def _fig7_ratios(ax: plt.Axes, per: dict[str, dict[str, Any]]) -> None:
    """Boundary amplification and background:boundary imbalance per tile size."""
    sizes = list(per)
    x = np.arange(len(sizes))
    bars = [("boundary_amplification", "boundary amplification (focal / γ=0)", "#d62728"),
            ("imbalance_background_to_boundary_without_focal", "background:boundary, γ=0", "0.45"),
            ("imbalance_background_to_boundary_with_focal", "background:boundary, focal", "0.75")]
    w, drawn = 0.25, []
    for j, (key, lab, col) in enumerate(bars):
        v = np.array([number(per[s].get(key)) for s in sizes], dtype=float)
        ax.bar(x + (j - 1) * w, v, w, label=lab, color=col)
        for xi, vi in zip(x + (j - 1) * w, v):
            if np.isfinite(vi):
                ax.text(float(xi), vi, f"{vi:.3g}×" if j == 0 else f"{vi:.3g}:1", ha="center", va="bottom", fontsize=7)
                drawn.append(float(vi))
    ax.set_xticks(x, [f"{s} px\n(model {_short(str(per[s].get('model_run')), 18)})" for s in sizes], fontsize=7)
    ax.set(ylabel="ratio (×)", title="Amplification and imbalance of gradient")
    ax.set_yscale("log")
    ax.set_ylim(None, max(drawn or [1.0]) * 30)
    ax.legend(fontsize=7, loc="upper center", ncol=1)


def fig_pixel_gradients(numbers: dict[str, Any], target: Path) -> Path:
    """Per tile size: pixel shares by class and each class's share of |dL/dlogit| with/without the focal term."""
    per = per_size(numbers)
    fig, axs = plt.subplots(1, 3, figsize=(16, 4.8), gridspec_kw={"width_ratios": [1, 1.5, 1]})
    if not per:
        for ax in axs:
            _message(ax, "no validation data or models: " + str(numbers.get("fig7", {}).get("note", "")))
        return save(fig, target)
    _fig7_pixels(axs[0], per)
    if not any(p.get("gradients") for p in per.values()):
        notes = "\n".join(f"{s} px: {p.get('note', 'no model')}" for s, p in per.items())
        _message(axs[1], f"No gradient analysis:\n{notes}\n(degenerate and diverged runs are never analysed)")
        axs[2].set_visible(False)
        fig.tight_layout()
        return save(fig, target)
    _fig7_shares(axs[1], per)
    _fig7_ratios(axs[2], per)
    for ax in axs:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Pixel classes (boundaries: skimage find_boundaries, thick) and their share of the loss gradient, "
                 "from the best model per tile size on the real validation images", fontsize=10)
    fig.tight_layout()
    return save(fig, target)


# --------------------------------------------------------------------------- fig9


def fig_predictions(runs: pd.DataFrame, root: Path, target: Path) -> Path:
    """The best run's predicted beads on up to three test images (val without test), from the files evaluate
    wrote (:mod:`beadseg.analysis.predictions`): each image plain and with matched / missed / false beads."""
    from beadseg.analysis import predictions
    from beadseg.analysis.splits import ap_label
    from beadseg.errors import DataError

    title = "Predictions of the best run"
    valid = stats.valid_runs(runs)
    if valid.empty:
        return message_figure(runs, title, target)
    try:
        view = predictions.prediction_view(str(valid.iloc[0]["run_id"]), root)
    except DataError as exc:
        fig, ax = plt.subplots(figsize=(7.5, 3.2))
        _message(ax, f"Nothing to draw: {exc}")
        ax.set_title(title)
        return save(fig, target)
    n = len(view.panels)
    side = 4.2 * min(1.0, max(p.image.shape[0] / p.image.shape[1] for p in view.panels))
    fig, axs = plt.subplots(n, 2, figsize=(9, 0.6 + side * n + 0.4), squeeze=False)
    label = ap_label(view.ap_key)
    for row, panel in zip(axs, view.panels):
        row[0].imshow(panel.image, cmap="gray", vmin=float(np.percentile(panel.image, 1)),
                      vmax=float(np.percentile(panel.image, 99.8)), interpolation="nearest")
        row[0].set_title(f"{panel.split} image {panel.stem}" + ("  (worst AP)" if panel.worst else ""),
                         fontsize=9, fontweight="bold" if panel.worst else "normal")
        row[1].imshow(predictions.overlay(panel.image, panel.match), interpolation="nearest")
        c = panel.counts()
        row[1].set_title(f"{label} {panel.ap:.3f}: {c['matched']} matched, {c['missed']} missed, "
                         f"{c['false']} false", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Patch(facecolor=predictions.COLOURS[k], edgecolor="0.3", label=text) for k, text in (
        ("true", "true outline (matched bead)"), ("matched", "predicted outline (matched)"),
        ("missed", "missed: true bead, no match"), ("false", "false: predicted, no true bead"))]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    shown = "" if n == view.n_images else f", {n} of {view.n_images} shown (worst, median and best AP)"
    fig.suptitle(f"Best run {_short(view.run_id, 40)} on its {view.split} images{shown}: beads matched one-to-one "
                 f"at IoU ≥ {label[3:]}, as in per_image.csv\nworst {label}: {view.worst_stem} "
                 f"({view.worst_ap:.3f})", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save(fig, target)


# --------------------------------------------------------------------------- all


def make_figures(cfg: Config, root: Path = Path(".")) -> list[Path]:
    """Draw the nine figures from runs.csv, histories.csv, baseline.json, the analysis numbers file and (fig9) the
    best run's predictions.npz and per_image.csv with its split's images."""
    runs = load_runs(root)
    histories = pd.read_csv(root / paths.histories_table())
    baseline = load_baseline(root)
    numbers = load_numbers(root)
    out = root / paths.FIGURES_DIR
    return [
        fig_top_configurations(runs, cfg, out / FIGURES[0], baseline),
        fig_hyperparameter_impact(runs, effect_numbers(numbers), out / FIGURES[1]),
        fig_learning_curves(runs, histories, out / FIGURES[2]),
        fig_loss_comparison(runs, out / FIGURES[3]),
        fig_convergence(runs, out / FIGURES[4]),
        fig_loss_mathematics(numbers, out / FIGURES[5]),
        fig_pixel_gradients(numbers, out / FIGURES[6]),
        fig_budget_vs_score(runs, numbers, out / FIGURES[7]),
        fig_predictions(runs, root, out / FIGURES[8]),
    ]
