"""REPORT.md sections about whether the search produced results at all, the threshold baseline and
the data set.

* :func:`warning_lines`: the fingerprint's warnings, repeated at the top of the executive summary.
* :func:`failure_lines`: "The search failed" and why, run by run, when no run is a result.
* :func:`not_result_lines`: the degenerate / diverged runs of a search that has results.
* :func:`baseline_lines`: best U-Net vs the threshold baseline (and whether the search beat it).
* :func:`optimism_lines`: the scores come from the images that also chose the epoch and the ranking.
* :func:`data_section`: the ``## Data`` section from results/summary/fingerprint.json.
* :func:`left_out_note`: the line every results section starts with when runs were left out.

Every sentence is built from runs.csv, baseline.json and fingerprint.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import pandas as pd

from beadseg.analysis import stats
from beadseg.analysis.aggregate import baseline_comparison
from beadseg.analysis.text import fmt, markdown_table, missing, pct

FAILED = "The search failed: no run learned to segment beads"


# --------------------------------------------------------------------------- runs that are not results


def _int(v: Any) -> str:
    return "n/a" if missing(v) else str(int(v))


def run_problem(run: pd.Series) -> str:
    """One bullet: a run that is not a result, with its reasons and likely causes."""
    rid, status = str(run["run_id"]), str(run["status"])
    if status == "diverged":
        return (f"- **{rid}** (diverged): the loss became NaN/inf after {_int(run.get('epochs_run'))} epoch(s) "
                f"(lr {stats.format_value('lr', run.get('lr'))}).")
    reasons = stats.list_text(run.get("degenerate_reasons")) or "no reason recorded"
    causes = stats.list_text(run.get("likely_causes"))
    how = (f"training {run.get('stop_reason') or 'ended'} after {_int(run.get('epochs_run'))} epoch(s), "
           f"{_int(run.get('optimizer_steps'))} optimizer steps")
    text = f"- **{rid}** (degenerate; {how}): {reasons}."
    return text + (f" Likely causes: {causes}." if causes else
                   " No likely cause was recorded: check the Data section below.")


def failure_lines(runs: pd.DataFrame) -> list[str]:
    """The executive summary of a search in which no run is a result."""
    n_deg = int((runs["status"] == "degenerate").sum())
    n_div = int((runs["status"] == "diverged").sum())
    return [f"**{FAILED}.** All {len(runs)} run(s) are not results ({n_deg} degenerate: no better than a trivial "
            f"prediction; {n_div} diverged), so this report names no best configuration and shows no ranking, "
            "comparison or statistic of them. Run by run:", "",
            *[run_problem(r) for _, r in runs.iterrows()], ""]


def not_result_lines(runs: pd.DataFrame) -> list[str]:
    """The degenerate / diverged runs of a search that has results ([] when every run is one)."""
    bad = stats.invalid_runs(runs)
    if bad.empty:
        return []
    return [f"**{len(bad)} of {len(runs)} run(s) are not results** and are left out of the ranking, the figures "
            "and every statistic below:", "", *[run_problem(r) for _, r in bad.iterrows()], ""]


def left_out_note(runs: pd.DataFrame) -> list[str]:
    """'Computed over the n results; left out: ...' ([] when every run is a result)."""
    bad = stats.invalid_runs(runs)
    if bad.empty:
        return []
    names = ", ".join(f"{r.run_id} ({r.status})" for r in bad.itertuples())
    return [f"*Computed over the {len(runs) - len(bad)} run(s) that are results; left out (not results): {names}.*",
            ""]


# --------------------------------------------------------------------------- baseline and optimism


def _method(baseline: Mapping[str, Any]) -> str:
    chosen = baseline.get("chosen_on", "train")
    where = "the training images" if chosen == "train" else f"the {chosen} images"
    return f"{baseline.get('method', 'threshold')}, chosen on {where}"


def trivial_sentence(baseline: Mapping[str, Any]) -> str:
    return (f"Predicting every pixel bead scores full-image Jaccard {fmt(baseline.get('all_foreground_jaccard'))} "
            f"(bead fraction of the validation pixels {pct(baseline.get('foreground_fraction'))}).")


def baseline_lines(runs: pd.DataFrame, baseline: Mapping[str, Any]) -> list[str]:
    """Best U-Net vs the threshold baseline on full-image validation Jaccard, and the verdict."""
    valid = stats.valid_runs(runs)
    if valid.empty:
        return [f"Threshold baseline ({_method(baseline)}): full-image Jaccard "
                f"{fmt(baseline.get('full_val_jaccard'))} on the same validation images. "
                + trivial_sentence(baseline), ""]
    best = valid.iloc[0]
    best_full = None if missing(best.get("full_val_jaccard")) else float(best["full_val_jaccard"])
    cmp = baseline_comparison(best_full, dict(baseline), failed=False)
    line = (f"**Best U-Net vs threshold baseline: full-image Jaccard {fmt(best_full)} vs "
            f"{fmt(cmp['baseline_full_val_jaccard'])}** ({_method(baseline)}; both on the same full validation "
            "images). ")
    if cmp["beats_baseline"] is None:
        line += "One of the two full-image scores is missing, so whether the search beats the baseline is unknown."
    elif cmp["beats_baseline"]:
        line += f"The best run beats the baseline by {fmt(cmp['best_full_val_jaccard_minus_baseline'])}."
    else:
        line += (f"**The search did not beat a plain threshold:** the best run ({best['run_id']}) scores "
                 f"{fmt(-cmp['best_full_val_jaccard_minus_baseline'])} less than the threshold baseline; "
                 "until a run does better, the threshold is the better segmentation.")
    return [line + " " + trivial_sentence(baseline), ""]


def optimism_lines() -> list[str]:
    return ["**These scores are optimistic.** Every score in this report is measured on the validation images, "
            "which also chose each run's best epoch and ranked the runs (and so picked the best one); a held-out "
            "test split, scored once at the end, will give the unbiased estimate (it comes later).", ""]


# --------------------------------------------------------------------------- data


def warning_lines(fingerprint: Mapping[str, Any]) -> list[str]:
    """The fingerprint's warnings as a quoted list for the top of the executive summary."""
    warnings = list(fingerprint.get("warnings") or [])
    if not warnings:
        return []
    return [f"> **Data warnings ({len(warnings)}, from the fingerprint; details in [Data](#data)):**", ">",
            *[f"> - {w}" for w in warnings], ""]


def _shapes(images: list[Mapping[str, Any]]) -> str:
    counts = Counter("×".join(str(int(s)) for s in img.get("shape", [])[:2]) for img in images)
    return ", ".join(f"{shape} ({n})" for shape, n in sorted(counts.items())) or "n/a"


def _dtypes(images: list[Mapping[str, Any]]) -> str:
    return ", ".join(sorted({str(img.get("intensity", {}).get("dtype", "n/a")) for img in images})) or "n/a"


def _diameters(d: Mapping[str, Any]) -> str:
    return " / ".join(fmt(d.get(k), 1) for k in ("min", "median", "p95", "max"))


def _touching(split: Mapping[str, Any]) -> str:
    value = pct(split.get("touching_fraction"))
    return f"{value} (estimated)" if split.get("touching_estimated") and value != "n/a" else value


def split_table(fingerprint: Mapping[str, Any]) -> pd.DataFrame:
    """One row per split: images, sizes, pixel types, beads, diameters, foreground, touching."""
    images = list(fingerprint.get("images", {}).values())
    rows = []
    for name, s in fingerprint.get("splits", {}).items():
        mine = [img for img in images if img.get("split") == name]
        rows.append({"split": name, "images": _int(s.get("n_images")), "image sizes (px)": _shapes(mine),
                     "pixel types": _dtypes(mine), "beads": _int(s.get("count")),
                     "diameter px (min / median / p95 / max)": _diameters(s.get("diameter_px", {})),
                     "foreground": pct(s.get("foreground_fraction")), "touching beads": _touching(s)})
    return pd.DataFrame(rows)


def tiles_table(fingerprint: Mapping[str, Any]) -> pd.DataFrame:
    tiles = fingerprint.get("tiles_per_size", {})
    splits = list(fingerprint.get("splits", {})) or ["train", "val"]
    rows = [{"tile size (px)": size, **{f"{s} tiles": _int(n.get(s)) for s in splits}}
            for size, n in sorted(tiles.items(), key=lambda kv: int(kv[0]))]
    return pd.DataFrame(rows)


def steps_table(fingerprint: Mapping[str, Any], runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: its step budget (max, and min before early stopping can end it) and what it actually ran."""
    ran = runs.set_index("run_id") if "run_id" in runs else pd.DataFrame()
    rows = []
    for rid, b in fingerprint.get("runs", {}).items():
        done = ran.loc[rid] if rid in ran.index else {}
        rows.append({"run": rid, "tile size": _int(b.get("tile_size")), "steps/epoch": _int(b.get("steps_per_epoch")),
                     "max epochs": _int(b.get("max_epochs")), "patience": _int(b.get("patience")),
                     "max optimizer steps": _int(b.get("max_optimizer_steps")),
                     "min optimizer steps (early stop)": _int(b.get("min_optimizer_steps")),
                     "steps run": _int(done.get("optimizer_steps")) if len(done) else "n/a",
                     "status": str(done.get("status")) if len(done) else "not run"})
    return pd.DataFrame(rows)


def _table(frame: pd.DataFrame, empty: str) -> list[str]:
    return [markdown_table(frame, {c: str for c in frame.columns}) if not frame.empty else empty, ""]


def data_section(fingerprint: Mapping[str, Any], runs: pd.DataFrame) -> list[str]:
    """## Data: splits, tiles per size, optimizer steps per run and every fingerprint warning."""
    warnings = list(fingerprint.get("warnings") or [])
    min_steps = fingerprint.get("min_steps")
    L = ["## Data", "", "From results/summary/fingerprint.json (`beadseg fingerprint`, read from the raw image and "
         "mask files). Touching beads are exact with instance labels (one id per bead) and *estimated* from "
         "clump shape with binary masks.", ""]
    L += _table(split_table(fingerprint), "No split in the fingerprint.")
    L += ["**Tiles per size**", ""] + _table(tiles_table(fingerprint), "No tile sizes in the fingerprint.")
    L += ["**Optimizer steps per run**: at most steps/epoch × max epochs; at least steps/epoch × (patience + 1) "
          "epochs before early stopping can end the run"
          + (f" (a U-Net from scratch usually needs {min_steps}+)" if min_steps else "") + ".", ""]
    L += _table(steps_table(fingerprint, runs), "No runs in the fingerprint.")
    L += [f"**Warnings ({len(warnings)})**", ""]
    L += [f"- **Warning:** {w}" for w in warnings] if warnings else \
        ["- None: nothing in the data or the step budgets makes training meaningless."]
    return L + [""]
