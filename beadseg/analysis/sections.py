"""REPORT.md sections about whether the search produced results at all, the threshold baseline and
the data set.

* :func:`warning_lines`: the fingerprint's warnings, repeated at the top of the executive summary.
* :func:`failure_lines`: "The search failed" and why, run by run, when no run is a result.
* :func:`not_result_lines`: the degenerate / diverged runs of a search that has results.
* :func:`baseline_lines`: best U-Net vs the threshold baseline (and whether the search beat it), on the
  test images when there are any, else on validation (it says which).
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
from beadseg.analysis.aggregate import baseline_comparison, baseline_test_comparison
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


# --------------------------------------------------------------------------- baseline


def _method(baseline: Mapping[str, Any]) -> str:
    chosen = baseline.get("chosen_on", "train")
    where = "the training images" if chosen == "train" else f"the {chosen} images"
    return f"{baseline.get('method', 'threshold')}, chosen on {where}"


def trivial_sentence(baseline: Mapping[str, Any]) -> str:
    return (f"Predicting every pixel bead scores full-image Jaccard {fmt(baseline.get('all_foreground_jaccard'))} "
            f"(bead fraction of the validation pixels {pct(baseline.get('foreground_fraction'))}).")


def _failed_baseline(baseline: Mapping[str, Any], test: bool) -> list[str]:
    on_test = (f" and {fmt(baseline.get('test_jaccard'))} on the {_int(baseline.get('n_test_images'))} held-out test "
               "images" if test else "")
    return [f"Threshold baseline ({_method(baseline)}): full-image Jaccard {fmt(baseline.get('full_val_jaccard'))} on "
            f"the same validation images{on_test}. " + trivial_sentence(baseline), ""]


def _verdict(run_id: str, beats: bool | None, diff: float | None, split: str) -> str:
    if beats is None or diff is None:
        return "One of the two full-image scores is missing, so whether the search beats the baseline is unknown."
    if beats:
        return f"The best run beats the baseline by {fmt(diff)}."
    return (f"**The search did not beat a plain threshold:** on the {split} images the best run ({run_id}) scores "
            f"{fmt(-diff)} less than the threshold baseline; until a run does better, the threshold is the better "
            "segmentation.")


def baseline_lines(runs: pd.DataFrame, baseline: Mapping[str, Any], test: bool = False) -> list[str]:
    """Best U-Net vs the threshold baseline on full-image Jaccard and the verdict: on the test images when
    both have a test score (``test``: the search has a test split), else on validation, which it says."""
    valid = stats.valid_runs(runs)
    if valid.empty:
        return _failed_baseline(baseline, test)
    best = valid.iloc[0]
    best_full = None if missing(best.get("full_val_jaccard")) else float(best["full_val_jaccard"])
    best_test = None if missing(best.get("test_jaccard")) else float(best["test_jaccard"])
    val = baseline_comparison(best_full, dict(baseline), failed=False)
    on_test = baseline_test_comparison(best_test, dict(baseline), False, test)
    if on_test["beats_baseline_on_test"] is not None:
        a, b, beats = best_test, on_test["baseline_test_jaccard"], on_test["beats_baseline_on_test"]
        diff, split = on_test["best_test_jaccard_minus_baseline"], "test"
        where = (f"both on the same {_int(best.get('n_test_images'))} held-out test images; on the validation "
                 f"images {fmt(best_full)} vs {fmt(val['baseline_full_val_jaccard'])}")
    else:
        a, b, beats = best_full, val["baseline_full_val_jaccard"], val["beats_baseline"]
        diff, split = val["best_full_val_jaccard_minus_baseline"], "validation"
        where = ("both on the same full validation images; " + ("a test score is missing, so the comparison falls "
                 "back to validation" if test else "there is no test split, so this is measured on the images that "
                 "chose the best run"))
    line = (f"**Best U-Net vs threshold baseline on the {split} images: full-image Jaccard {fmt(a)} vs {fmt(b)}** "
            f"({_method(baseline)}; {where}). " + _verdict(str(best["run_id"]), beats, diff, split))
    if split == "test" and val["beats_baseline"] is not None and val["beats_baseline"] != beats:
        line += " On the validation images the verdict is the opposite; the test comparison is the one to trust."
    return [line + " " + trivial_sentence(baseline), ""]


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
    splits = fingerprint.get("splits", {})
    order = {"train": 0, "val": 1, "test": 2}  # JSON files keep keys sorted; the table reads in pipeline order
    for name, s in sorted(splits.items(), key=lambda kv: order.get(kv[0], len(order))):
        mine = [img for img in images if img.get("split") == name]
        rows.append({"split": name, "images": _int(s.get("n_images")), "image sizes (px)": _shapes(mine),
                     "pixel types": _dtypes(mine), "beads": _int(s.get("count")),
                     "diameter px (min / median / p95 / max)": _diameters(s.get("diameter_px", {})),
                     "foreground": pct(s.get("foreground_fraction")), "touching beads": _touching(s)})
    return pd.DataFrame(rows)


def tiles_table(fingerprint: Mapping[str, Any]) -> pd.DataFrame:
    tiles = fingerprint.get("tiles_per_size", {})
    cut = {s for n in tiles.values() for s in n}  # only train and val are cut into tiles
    splits = [s for s in fingerprint.get("splits", {}) if s in cut] or ["train", "val"]
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
