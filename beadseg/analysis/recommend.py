"""Rule-based recommendations over runs.csv, each citing its evidence, and the next search grid.

Rules (thresholds from the ``analysis`` section of params.yaml). Every rule but ``degenerate`` and
``diverged`` looks at the runs that are results only (:func:`beadseg.analysis.stats.valid_runs`):

* ``degenerate``    runs learned nothing (status ``degenerate``) -> the fix their likely causes point
                     to: too few optimizer steps -> steps_per_epoch x4 and more patience; a tiny learning
                     rate -> lr grid 1e-4..3e-3; a training loss that did not fall -> a lower lr. When no
                     run is a result this is the main change of next_search.yaml.
* ``overfitting``   a top-k run lost more than ``overfit_drop_threshold`` (relative) between its best and
                     final val Jaccard -> stronger regularisation (dropout axis).
* ``epoch_cap``     the best run's best epoch is at or above ``near_cap_fraction`` x max_epochs -> train
                     longer, with more patience.
* ``lr_edge``       the best run's learning rate is the smallest / largest value searched -> extend the
                     grid that way (``lr_single``: only one value was searched -> bracket it).
* ``diverged``      runs diverged -> leave their learning rate (and larger) out of the next grid.
* ``resolution``    the largest tile size trails the smallest by more than ``resolution_margin`` full-image
                     Jaccard -> gradient accumulation and progressive training (init_from) for the large tiles.
* ``replicate_variance`` a configuration's std over seeds exceeds ``replicate_std_threshold`` -> more seeds;
  ``no_replicates``  no configuration was run with more than one seed -> add seeds before trusting a ranking.
* ``confounded``    a setting always changed together with another (:mod:`beadseg.analysis.effects`), so
                     their effects cannot be told apart -> run a configuration that differs in one of them only.

The effects on matched configurations (the same numbers fig2 and the impact section show) also choose the
second loss of the next grid: the loss that did best against the best run's loss in matched pairs, not the
loss with the highest mean over whatever else varied with it.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from beadseg.analysis import effects, stats
from beadseg.config import Config, validate
from beadseg.plan import expand_grid
from beadseg.quality import MIN_STEPS, TINY_LR

MAX_NEXT_RUNS = 24
STEPS_FACTOR = 4
# Settings of a run that describe how it was made, not what to search: never carried into the next search
# (init_from names old runs; epoch_offset / schedule_epochs place a halving rung inside a longer run).
NOT_CARRIED_AXES = ("init_from", "extra_tile_sizes", "epoch_offset", "schedule_epochs")
SAFE_LR_GRID: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)
# Keywords of the likely causes beadseg.quality.likely_causes writes, by the fix they call for.
CAUSE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "steps": ("optimizer steps",),
    "patience": ("early stopping ended it",),
    "tiny_lr": ("too small to move the weights",),
    "flat_loss": ("training loss did not fall",),
}


@dataclass
class Recommendation:
    rule: str
    title: str
    evidence: str
    action: str
    changes: dict[str, Any] = field(default_factory=dict)


def _fmt_lr(v: float) -> str:
    return stats.format_value("lr", v)


def _sentence(text: str) -> str:
    """``text`` with its first letter capitalised and a full stop."""
    return (text[:1].upper() + text[1:] + ".") if text else ""


def _round_lr(v: float) -> float:
    return float(f"{v:.2g}")


def _full_or_tile(runs: pd.DataFrame) -> tuple[str, str]:
    if "full_val_jaccard" in runs and runs["full_val_jaccard"].notna().all():
        return "full_val_jaccard", "full-image val Jaccard"
    return "best_val_jaccard", "tile-level best val Jaccard (full-image scores missing)"


def rule_overfitting(runs: pd.DataFrame, cfg: Config) -> Recommendation | None:
    thr = cfg.analysis.overfit_drop_threshold
    runs = stats.valid_runs(runs)
    top = runs.head(cfg.analysis.top_k)
    hit = top[top["overfit_drop"] > thr]
    if hit.empty:
        return None
    ev = "; ".join(f"{r.run_id}: best {r.best_val_jaccard:.4f} (epoch {int(r.best_epoch)}) -> final "
                   f"{r.final_val_jaccard:.4f}, drop {100 * r.overfit_drop:.1f} %" for r in hit.itertuples())
    best_dropout = float(runs.iloc[0]["dropout"])
    values = sorted({round(best_dropout, 2), round(min(0.9, best_dropout + 0.1), 2), round(min(0.9, best_dropout + 0.2), 2)})
    return Recommendation(
        "overfitting", "Stronger regularisation",
        f"{len(hit)} of the top {len(top)} runs lost more than {100 * thr:.0f} % of their best val Jaccard by the "
        f"last epoch ({ev}).",
        f"Search dropout {values} (best run used {best_dropout:g}); the best-epoch checkpoint is kept, so the drop "
        "costs nothing in the saved model but shows the model memorises the training tiles.",
        {"dropout": values})


def rule_epoch_cap(runs: pd.DataFrame, cfg: Config) -> Recommendation | None:
    runs = stats.valid_runs(runs)
    if runs.empty:
        return None
    best = runs.iloc[0]
    cap, frac = int(best["max_epochs"]), cfg.analysis.near_cap_fraction
    if best["best_epoch"] < frac * cap:
        return None
    near = runs[runs["best_epoch"] >= frac * runs["max_epochs"]]
    new_cap = int(cap * 2)
    new_patience = max(int(best["patience"]), int(math.ceil(0.25 * new_cap)))
    return Recommendation(
        "epoch_cap", "Train longer, with more patience",
        f"The best run {best['run_id']} reached its best val Jaccard at epoch {int(best['best_epoch'])} of "
        f"max_epochs {cap} (threshold {frac:.0%} of the cap); {len(near)} of {len(runs)} runs peaked that late.",
        f"Raise max_epochs to {new_cap} and patience to {new_patience}: the curves had not clearly levelled off.",
        {"max_epochs": new_cap, "patience": new_patience})


def rule_lr(runs: pd.DataFrame, cfg: Config) -> Recommendation | None:
    valid = stats.valid_runs(runs)
    if valid.empty:
        return None
    diverged = runs[runs["status"] == "diverged"]
    limit = float(diverged["lr"].min()) if not diverged.empty else math.inf
    runs = valid
    best = runs.iloc[0]
    lrs = sorted(float(v) for v in runs["lr"].unique())
    blr = float(best["lr"])
    if len(lrs) == 1:
        values = [v for v in (_round_lr(blr / 3), blr, _round_lr(blr * 3)) if v < limit] or [blr]
        return Recommendation(
            "lr_single", "Bracket the learning rate",
            f"Only one learning rate ({_fmt_lr(blr)}) was searched, so nothing shows whether it is near the optimum.",
            f"Search lr {[_fmt_lr(v) for v in values]}.", {"lr": values})
    if blr == lrs[0]:
        values = [v for v in (_round_lr(blr / 10), _round_lr(blr / 3)) if v >= TINY_LR] + [blr]
        side = "smallest"
    elif blr == lrs[-1]:
        values = [v for v in (blr, _round_lr(blr * 3), _round_lr(blr * 10)) if v < limit] or [blr]
        side = "largest"
    else:
        return None
    if len(values) == 1:
        return None
    return Recommendation(
        "lr_edge", f"Extend the learning-rate grid ({'down' if side == 'smallest' else 'up'})",
        f"The best run {best['run_id']} used lr {_fmt_lr(blr)}, the {side} of the values searched by runs that are "
        "results "
        f"{[_fmt_lr(v) for v in lrs]}: the optimum may lie beyond the grid.",
        f"Search lr {[_fmt_lr(v) for v in values]}.", {"lr": values})


def rule_diverged(runs: pd.DataFrame, cfg: Config) -> Recommendation | None:
    d = runs[runs["status"] == "diverged"]
    if d.empty:
        return None
    ev = ", ".join(f"{r.run_id} (lr {_fmt_lr(float(r.lr))}, {r.loss}, stopped after {int(r.epochs_run)} epochs)"
                   for r in d.itertuples())
    limit = float(d["lr"].min())
    return Recommendation(
        "diverged", "Avoid the learning rates that diverged",
        f"{len(d)} run(s) diverged (loss became NaN/inf): {ev}.",
        f"Keep the next grid below lr {_fmt_lr(limit)} or add warm-up (warmup_epochs) for those settings.",
        {"lr_below": limit})


def _confound_note(eff: dict[str, Any] | None, setting: str) -> str:
    """' (tile_size always changed together with batch_size here: ...)' when ``setting`` is aliased, else ''."""
    entry = effects.setting(eff or {}, setting)
    if entry is None or not entry["aliased_with"]:
        return ""
    return (f" In these runs {setting} always changed together with {', '.join(entry['aliased_with'])}, so the gap "
            f"is not the {setting}'s alone.")


def rule_resolution(runs: pd.DataFrame, cfg: Config, eff: dict[str, Any] | None = None) -> Recommendation | None:
    runs = stats.valid_runs(runs)
    sizes = sorted(int(s) for s in runs["tile_size"].unique())
    if len(sizes) < 2:
        return None
    col, what = _full_or_tile(runs)
    small, large = sizes[0], sizes[-1]
    gs, gl = runs[runs["tile_size"] == small], runs[runs["tile_size"] == large]
    bs, bl = float(gs[col].max()), float(gl[col].max())
    if not bl < bs - cfg.analysis.resolution_margin:
        return None
    eff_small = float(gs["effective_batch_size"].max()) if "effective_batch_size" in gs else float(gs["batch_size"].max())
    eff_large = float(gl["effective_batch_size"].max()) if "effective_batch_size" in gl else float(gl["batch_size"].max())
    steps = ""
    if "optimizer_steps" in runs and runs["optimizer_steps"].notna().any():
        per_epoch = (runs["optimizer_steps"] / runs["epochs_run"].where(runs["epochs_run"] > 0))
        ss, sl = per_epoch.loc[gs.index].mean(), per_epoch.loc[gl.index].mean()
        if math.isfinite(ss) and math.isfinite(sl):
            steps = f" Runs on {large} px tiles made {sl:.1f} optimizer steps per epoch against {ss:.1f} on {small} px."
    k = max(2, int(round(eff_small / eff_large))) if eff_large > 0 else 2
    return Recommendation(
        "resolution", f"Help the {large} px runs: gradient accumulation and progressive training",
        f"Best {what}: {bl:.4f} at {large} px against {bs:.4f} at {small} px (gap {bs - bl:.4f} > margin "
        f"{cfg.analysis.resolution_margin}). Effective batch (tiles): {eff_large:g} at {large} px, {eff_small:g} at "
        f"{small} px.{steps}{_confound_note(eff, 'tile_size')}",
        f"Add {large} px runs with accumulation_steps {k} and a {large} px run initialised from the best {small} px "
        "model (init_from, progressive training).",
        {"accumulation_steps": k, "small": small, "large": large})


def rule_replicates(runs: pd.DataFrame, cfg: Config) -> Recommendation | None:
    runs = stats.valid_runs(runs)
    if runs.empty:
        return None
    rep = stats.replicate_stats(runs, cfg.analysis.confidence)
    thr = cfg.analysis.replicate_std_threshold
    if rep.empty:
        if len(runs) < 2:
            return Recommendation("no_replicates", "Repeat the best configuration with more seeds",
                                  "Only one run exists: its score mixes the configuration's quality with seed luck.",
                                  "Run seeds [0, 1, 2].", {"seeds": [0, 1, 2]})
        return Recommendation(
            "no_replicates", "Add replicates (seeds) before trusting the ranking",
            f"None of the {len(runs)} runs shares its configuration with another run (one seed each), so "
            "differences between configurations cannot be separated from seed-to-seed noise.",
            "Run the next grid with seeds [0, 1, 2].", {"seeds": [0, 1, 2]})
    noisy = rep[rep["std"] > thr]
    if noisy.empty:
        return None
    ev = "; ".join(f"{r.runs}: std {r.std:.4f} over {r.n} seeds" for r in noisy.itertuples())
    return Recommendation(
        "replicate_variance", "More seeds per configuration",
        f"{len(noisy)} configuration(s) vary across seeds by more than std {thr}: {ev}.",
        "Run seeds [0, 1, 2, 3, 4] so the 95 % intervals shrink enough to rank configurations.",
        {"seeds": [0, 1, 2, 3, 4]})


def cause_kinds(causes: str) -> set[str]:
    """Which fixes (keys of CAUSE_KEYWORDS) a run's likely causes (runs.csv text) call for."""
    return {kind for kind, words in CAUSE_KEYWORDS.items() if any(w in causes for w in words)}


def _degenerate_fix(d: pd.DataFrame, kinds: set[str]) -> tuple[dict[str, Any], list[str]]:
    """Setting changes and their plain-language actions for the degenerate runs ``d``."""
    changes: dict[str, Any] = {}
    actions: list[str] = []
    more_steps = "steps" in kinds or not kinds
    if more_steps or "patience" in kinds:
        pat = int(d["patience"].max())
        changes["patience"] = max(2 * pat, pat + 4)
    if more_steps:
        spe = int(d["steps_per_epoch"].max())
        epochs = min(int(d["max_epochs"].min()), changes["patience"] + 1)  # before early stopping can end a run
        changes["steps_per_epoch"] = max(spe * STEPS_FACTOR, math.ceil(MIN_STEPS / max(1, epochs)))
        actions.append(f"raise steps_per_epoch {spe} -> {changes['steps_per_epoch']} (at least x{STEPS_FACTOR}, and "
                       f"enough that early stopping cannot end a run before {MIN_STEPS} optimizer steps)")
    if "patience" in changes:
        actions.append(f"raise patience {pat} -> {changes['patience']}")
    if "tiny_lr" in kinds:
        changes["lr"] = list(SAFE_LR_GRID)
        actions.append(f"search lr {[_fmt_lr(v) for v in SAFE_LR_GRID]}")
    elif "flat_loss" in kinds:
        lr = float(d["lr"].min())
        changes["lr"] = [v for v in (_round_lr(lr / 10), _round_lr(lr / 3)) if v >= TINY_LR] or [lr]
        actions.append(f"lower the learning rate: search lr {[_fmt_lr(v) for v in changes['lr']]} "
                       f"(the runs used {_fmt_lr(lr)}+), after checking that the masks match the images")
    return changes, actions


def rule_degenerate(runs: pd.DataFrame, cfg: Config) -> Recommendation | None:
    """Runs that learned nothing: the fix their likely causes point to (more steps, patience, another lr)."""
    d = runs[runs["status"] == "degenerate"]
    if d.empty:
        return None
    causes = {str(r.run_id): stats.list_text(getattr(r, "likely_causes", None)) for r in d.itertuples()}
    kinds = set().union(*(cause_kinds(c) for c in causes.values()))
    changes, actions = _degenerate_fix(d, kinds)
    ev = " ".join(f"[{rid}] {c or 'no likely cause recorded'}." for rid, c in causes.items())
    note = "" if kinds else (f" No recorded cause points elsewhere, so the most common one is assumed: too few "
                             f"optimizer steps (fewer than {MIN_STEPS} rarely train a U-Net).")
    failed = stats.valid_runs(runs).empty
    return Recommendation(
        "degenerate", "Fix the runs that learned nothing" + (" (the search failed)" if failed else ""),
        f"{len(d)} of {len(runs)} run(s) are degenerate (no better than a trivial prediction). Likely causes: "
        f"{ev}{note}",
        _sentence("; ".join(actions)), changes)


def _other_value(entry: dict[str, Any], value: Any) -> Any:
    """Another value of the setting ``entry`` (the first one that is not ``value``)."""
    return next(v for v in entry["values"] if effects.value_key(v) != effects.value_key(value))


def rule_confounded(runs: pd.DataFrame, cfg: Config, eff: dict[str, Any] | None = None) -> Recommendation | None:
    """Settings that always changed together: name them, and the single run that would separate them."""
    valid = stats.valid_runs(runs)
    if valid.empty or eff is None:
        return None
    aliased = [e for e in eff["settings"] if e["aliased_with"]]
    if not aliased:
        return None
    best = valid.iloc[0]
    groups: list[tuple[str, ...]] = []
    for e in aliased:
        group = tuple(sorted([e["setting"], *e["aliased_with"]]))
        if group not in groups:
            groups.append(group)
    ev = "; ".join(" and ".join(g) + " always changed together" for g in groups)
    first = aliased[0]
    change = _other_value(first, best[first["setting"]])
    return Recommendation(
        "confounded", "Separate the settings that always changed together",
        f"{ev}, so no run pair shows what one of them does on its own (fig2 draws them hatched, not as effects).",
        f"Run a configuration that differs from another in one of them only, e.g. the best run {best['run_id']} "
        f"with {first['setting']} {stats.format_value(first['setting'], change)} and "
        f"{', '.join(first['aliased_with'])} unchanged.",
        {"aliased": [list(g) for g in groups]})


RULES = (rule_degenerate, rule_overfitting, rule_epoch_cap, rule_lr, rule_diverged, rule_resolution,
         rule_replicates, rule_confounded)
NEEDS_EFFECTS = (rule_resolution, rule_confounded)


def recommendations(runs: pd.DataFrame, cfg: Config, eff: dict[str, Any] | None = None) -> list[Recommendation]:
    """Every rule that fires. ``eff``: the measured effects (analysis numbers, key ``effects``); computed from
    ``runs`` by the same function when not given."""
    eff = effects.effects(runs, cfg.analysis.confidence) if eff is None else eff
    return [r for rule in RULES
            if (r := (rule(runs, cfg, eff) if rule in NEEDS_EFFECTS else rule(runs, cfg))) is not None]


def search_failed(runs: pd.DataFrame) -> bool:
    """True when no run is a result (every run is degenerate or diverged)."""
    return stats.valid_runs(runs).empty


# --------------------------------------------------------------------------- next search


def _plain(v: Any) -> Any:
    """numpy / pandas scalars -> plain Python for YAML."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v.is_integer() and not isinstance(v, bool):
        return v
    return v


def second_loss(runs: pd.DataFrame, best: pd.Series, eff: dict[str, Any] | None) -> str | None:
    """The loss to try beside the best run's: the one that did best against it in matched pairs; without a
    matched comparison, the loss with the highest mean (mixed with the other settings: a guess)."""
    entry = effects.setting(eff or {}, "loss")
    matched = effects.best_other_value(entry, best["loss"]) if entry else None
    if matched is not None:
        return str(matched)
    losses = [v for v in stats.loss_stats(stats.valid_runs(runs))["loss"] if v != best["loss"]]
    return str(losses[0]) if losses else None


def _next_grid(runs: pd.DataFrame, best: pd.Series, by_rule: dict[str, Recommendation],
               eff: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """The axes of the next grid: every tile size, the best (and second) loss, the lrs and dropouts the rules ask."""
    grid: dict[str, list[Any]] = {"tile_size": sorted(int(s) for s in runs["tile_size"].unique())}
    second = second_loss(runs, best, eff)
    grid["loss"] = [str(best["loss"])] + ([second] if second else [])
    lr_rec = by_rule.get("lr_edge") or by_rule.get("lr_single")
    lrs = list(lr_rec.changes["lr"]) if lr_rec else [float(best["lr"])]
    if "diverged" in by_rule:
        lrs = [v for v in lrs if v < by_rule["diverged"].changes["lr_below"]] or [float(best["lr"])]
    grid["lr"] = [float(v) for v in lrs]
    if "overfitting" in by_rule:
        grid["dropout"] = list(by_rule["overfitting"].changes["dropout"])
    return grid


def _next_fixed(runs: pd.DataFrame, cfg: Config, best: pd.Series, grid: dict[str, list[Any]],
                by_rule: dict[str, Recommendation]) -> dict[str, Any]:
    """Settings fixed at the best run's value (varied axes not in the grid), plus the epoch cap rule's change."""
    fixed: dict[str, Any] = {}
    for axis in stats.varied_axes(runs):
        if axis not in grid and axis not in NOT_CARRIED_AXES:
            fixed[axis] = _plain(best[axis])
    if "dropout" not in grid and "dropout" not in fixed and \
            float(best["dropout"]) != cfg.train_defaults.to_dict()["dropout"]:
        fixed["dropout"] = float(best["dropout"])
    if "epoch_cap" in by_rule:
        fixed.update(by_rule["epoch_cap"].changes)
    return fixed


def _grid_size(grid: dict[str, list[Any]], seeds: list[Any] | None) -> int:
    n = 1
    for v in grid.values():
        n *= len(v)
    return n * (len(seeds) if seeds else 1)


def _trim(grid: dict[str, list[Any]], seeds: list[Any] | None, best_lr: float) -> list[Any] | None:
    """Keep the next search affordable: trim the least informative axes first (``grid`` in place); the seeds."""
    while _grid_size(grid, seeds) > MAX_NEXT_RUNS:
        if seeds and len(seeds) > 2:
            seeds = seeds[:max(2, len(seeds) - 2)] if len(seeds) > 3 else seeds[:2]
        elif len(grid.get("loss", [])) > 1:
            grid["loss"] = grid["loss"][:1]
        elif len(grid.get("dropout", [])) > 2:
            grid["dropout"] = grid["dropout"][:2]
        elif len(grid.get("lr", [])) > 2:
            grid["lr"] = grid["lr"][-2:] if grid["lr"][-1] == best_lr else grid["lr"][:2]
        elif len(grid.get("tile_size", [])) > 1:
            grid["tile_size"] = grid["tile_size"][:1]
        else:
            break
    return seeds


def _find_run(table: dict[str, dict[str, Any]], size: int, point: dict[str, Any], seed0: Any) -> str | None:
    """The run of the expanded grid at ``point`` with tile size ``size`` (and the first seed)."""
    for rid, over in table.items():
        if over["tile_size"] == size and all(over.get(k) == v for k, v in point.items()) and \
                (seed0 is None or over.get("seed") == seed0):
            return rid
    return None


def _add_resolution_runs(spec: dict[str, Any], best: pd.Series, res: Recommendation) -> None:
    """The resolution rule's large-tile run (``include``) and its progressive variant (``res.changes``)."""
    grid, seeds = spec["grid"], spec.get("seeds")
    table = expand_grid(spec)
    point = {"loss": grid["loss"][0], "lr": float(best["lr"]) if float(best["lr"]) in grid["lr"] else grid["lr"][-1]}
    if "dropout" in grid:
        point["dropout"] = grid["dropout"][0]
    small_id = _find_run(table, res.changes["small"], point, seeds[0] if seeds else None)
    if not small_id:
        return
    base = {k: v for k, v in table[small_id].items() if k != "seed"}
    large = res.changes["large"]
    spec["include"] = {f"t{large}_acc{res.changes['accumulation_steps']}": {
        **base, "tile_size": large, "accumulation_steps": res.changes["accumulation_steps"]}}
    # Progressive training needs a finetune entry (init_from is not allowed in runs): suggested
    # as a comment by render_next_search.
    res.changes["finetune"] = {f"t{large}_from_t{res.changes['small']}": {
        **base, "tile_size": large, "init_from": small_id}}


def next_search(runs: pd.DataFrame, cfg: Config, recs: list[Recommendation],
                eff: dict[str, Any] | None = None) -> dict[str, Any]:
    """The proposed next grid (beadseg plan format): best result's settings, axes from the fired rules and
    the measured effects ``eff`` (computed from ``runs`` when not given).

    When no run is a result, :func:`failed_search_spec` proposes the fix of the failure instead.
    """
    if search_failed(runs):
        return failed_search_spec(runs, cfg, recs)
    eff = effects.effects(runs, cfg.analysis.confidence) if eff is None else eff
    by_rule = {r.rule: r for r in recs}
    best = stats.valid_runs(runs).iloc[0]
    grid = _next_grid(runs, best, by_rule, eff)
    fixed = _next_fixed(runs, cfg, best, grid, by_rule)
    rep = by_rule.get("replicate_variance") or by_rule.get("no_replicates")
    seeds = _trim(grid, list(rep.changes["seeds"]) if rep else None, float(best["lr"]))
    spec: dict[str, Any] = {"grid": dict(grid), "fixed": fixed}
    if seeds:
        spec["seeds"] = seeds
    res = by_rule.get("resolution")
    if res and res.changes["large"] in grid["tile_size"] and res.changes["small"] in grid["tile_size"]:
        _add_resolution_runs(spec, best, res)
    return spec


def _failure_lrs(runs: pd.DataFrame, by_rule: dict[str, Recommendation]) -> list[float]:
    """The lr grid of a failed search: the degenerate fix's (empty: keep the lr), below every diverged lr."""
    lrs = [float(v) for v in by_rule["degenerate"].changes.get("lr", [])] if "degenerate" in by_rule else []
    diverged = by_rule.get("diverged")
    if diverged is None:
        return lrs
    limit = float(diverged.changes["lr_below"])
    below = [v for v in lrs or sorted({float(v) for v in runs["lr"]}) if v < limit]
    return below or [_round_lr(limit / 10), _round_lr(limit / 3)]


def failed_search_spec(runs: pd.DataFrame, cfg: Config, recs: list[Recommendation]) -> dict[str, Any]:
    """next_search.yaml when no run is a result: the searched settings of the highest-scoring run, with
    the fix of rule ``degenerate`` (steps, patience, lr) as its main change; lr below any that diverged."""
    by_rule = {r.rule: r for r in recs}
    template = runs.iloc[0]
    sizes = sorted(int(s) for s in runs["tile_size"].unique())
    grid: dict[str, list[Any]] = {"tile_size": sizes, "loss": [str(template["loss"])],
                                  "lr": _failure_lrs(runs, by_rule) or [float(template["lr"])]}
    fixed: dict[str, Any] = {}
    for axis in stats.varied_axes(runs):
        if axis not in grid and axis not in (*NOT_CARRIED_AXES, "steps_per_epoch", "patience"):
            fixed[axis] = _plain(template[axis])
    fix = by_rule["degenerate"].changes if "degenerate" in by_rule else {}
    fixed.update({k: v for k, v in fix.items() if k in ("steps_per_epoch", "patience")})
    while len(grid["tile_size"]) * len(grid["lr"]) > MAX_NEXT_RUNS and len(grid["lr"]) > 1:
        grid["lr"] = grid["lr"][1:]
    return {"grid": grid, "fixed": fixed}


def check_next_search(spec: dict[str, Any], root: Path) -> dict[str, dict[str, Any]]:
    """Expand the grid and validate the resulting run table against the current params.yaml."""
    table = expand_grid(spec)
    params_path = root / "params.yaml"
    if params_path.is_file():
        params = yaml.safe_load(params_path.read_text()) or {}
        params["runs"] = table
        params["finetune"] = dict(spec.get("finetune") or {})  # the old finetune runs start from old run ids
        params.pop("search", None)  # a halving search's record names the old runs
        validate(params, source=f"{params_path} with next_search.yaml")
    return table


def failure_header(recs: list[Recommendation]) -> list[str]:
    """Comment lines that open next_search.yaml when the search failed."""
    main = next((r for r in recs if r.rule == "degenerate"), None) or next((r for r in recs if r.rule == "diverged"),
                                                                           None)
    lines = ["# THE SEARCH FAILED: no run learned to segment beads (every run is degenerate or diverged).",
             "# This grid is not a refinement of a best configuration (there is none): its main change is the fix"]
    if main is not None:
        lines += [f"# {part}" for part in textwrap.wrap(f"of rule '{main.rule}': {main.action}", 98)]
    return lines


def render_next_search(spec: dict[str, Any], recs: list[Recommendation], n_runs: int, failed: bool = False) -> str:
    shaping = recs if failed else [r for r in recs if r.rule != "degenerate"]
    head = ["# Proposed next search, written by `beadseg report` from the rules in REPORT.md (Recommendations).",
            *(failure_header(recs) if failed else []),
            "# Use as-is:  beadseg plan results/report/next_search.yaml --write   (replaces the runs of params.yaml)",
            f"# Expands to {n_runs} runs. Rules that shaped it: "
            + (", ".join(r.rule for r in shaping) if shaping else "none fired (the grid re-runs the best settings)"),
            *([] if failed or len(shaping) == len(recs) else
              ["# Rule 'degenerate' fired for runs that are not results; its fix is not applied here, because the",
               "# best configuration trained: see REPORT.md (Recommendations) to rerun those runs."]),
            ""]
    body = yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=100)
    tail = []
    for r in recs:
        if r.rule == "resolution" and r.changes.get("finetune"):
            snippet = yaml.safe_dump({"finetune": r.changes["finetune"]}, sort_keys=False, default_flow_style=None,
                                     width=100)
            tail = ["", "# Progressive training (rule 'resolution'): after `plan --write`, add this to params.yaml",
                    "# (init_from is only allowed in the finetune table):",
                    *[f"#   {line}" for line in snippet.splitlines()]]
    return "\n".join(head) + body + ("\n".join(tail) + "\n" if tail else "")
