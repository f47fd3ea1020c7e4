"""REPORT.md text about which images each number comes from: the validation images chose (each run's
best epoch and the ranking of the runs), the test images chose nothing and give the estimate to quote.

* :func:`no_test_lines`: the loud note at the top when there is no held-out test set.
* :func:`best_score_lines`: the best run's val and test scores side by side (executive summary).
* :func:`test_pick_sentence`: said when ranking by test would have picked another run (it never re-ranks).
* :func:`which_numbers_section`: ``## Which numbers are which``: train / val / test, their use and size.
* :func:`split_scores_section`: val and test scores of the top runs.
* :func:`object_section`: bead metrics of the best run (merges, splits, AP per IoU threshold) and what
  the kind of mask (instance labels or binary) means for them.

Inputs: runs.csv (through the report), baseline.json, fingerprint.json and, where readable,
data/split/split.json (its ``test_note`` and ``mask_kind``; the fingerprint stands in when it is not).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from beadseg import paths
from beadseg.analysis import stats
from beadseg.analysis.aggregate import ap_keys, image_count
from beadseg.analysis.text import markdown_table, missing, score
from beadseg.config import Config

SPLITS = ("train", "val", "test")
USED_FOR = {
    "train": ("fits the weights (and chooses the threshold baseline's method)",
              "none (only the training loss in the learning curves)"),
    "val": ("chooses each run's best epoch (early stopping) and ranks the runs, so it picked the best run",
            "every *val* column, the ranking, every figure and statistic: optimistic for the chosen run"),
    "test": ("chooses nothing: every run is scored on it once, after training",
             "every *test* column: the estimate to quote"),
}


def load_manifest(root: Path) -> dict[str, Any]:
    """data/split/split.json, or {} when it is missing or unreadable (the report then says less)."""
    try:
        data = json.loads((root / paths.split_manifest()).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def has_test(runs: pd.DataFrame, baseline: Mapping[str, Any] | None = None) -> bool:
    """Whether the runs (or, failing them, the baseline) were scored on at least one test image."""
    return image_count(runs, "n_test_images", dict(baseline or {})) > 0


def test_reason(manifest: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str | None:
    return manifest.get("test_note") or fingerprint.get("test_note")


def mask_kind(manifest: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> str | None:
    """``instance``, ``binary`` or ``mixed`` (split.json, else the fingerprint's images); None if unknown."""
    if manifest.get("mask_kind"):
        return str(manifest["mask_kind"])
    kinds = {bool(img.get("instance_labels")) for img in (fingerprint.get("images") or {}).values()
             if "instance_labels" in img}
    if not kinds:
        return None
    return "mixed" if len(kinds) > 1 else ("instance" if kinds.pop() else "binary")


def no_test_lines(manifest: Mapping[str, Any], fingerprint: Mapping[str, Any]) -> list[str]:
    """The loud note at the top of a report without a test split."""
    reason, listed = test_reason(manifest, fingerprint), (manifest.get("splits") or {}).get("test")
    fix = ("To get one, set `data.test_fraction` in params.yaml (e.g. 0.2) with enough source images that train, val "
           "and test each get at least one (3 or more), then rerun the pipeline (the split changes, so every run "
           "trains again).")
    if reason:
        why = f"Why: {reason}. {fix}"
    elif listed:
        why = (f"Why: data/split/split.json lists {len(listed)} test image(s), but no run was scored on them: rerun "
               "`beadseg evaluate` for every run, then `beadseg aggregate` and `beadseg report`.")
    else:
        why = f"Why: not recorded (data/split/split.json is missing or unreadable). {fix}"
    return ["> **No held-out test set: every score in this report comes from the validation images, which chose "
            "each run's best epoch and ranked the runs, so every score is optimistic and none is an unbiased "
            f"estimate of the best run.** {why}", ""]


def ap_label(key: str) -> str:
    """``ap_50`` -> ``AP@0.5``."""
    return f"AP@{int(key.split('_')[-1]) / 100:g}"


def _first_ap(frame: pd.DataFrame | pd.Series) -> str | None:
    keys = ap_keys(frame.index if isinstance(frame, pd.Series) else frame.columns)
    return keys[0] if keys else None


def best_score_lines(valid: pd.DataFrame, test: bool) -> list[str]:
    """The best run's val and test scores side by side, and why test is the number to quote."""
    best = valid.iloc[0]
    rows = [("full-image Jaccard", "full_val_jaccard", "test_jaccard"),
            ("full-image Dice", "full_val_dice", "test_dice"), ("bead F1", "bead_f1", "test_bead_f1")]
    ap = _first_ap(best)
    if ap:
        rows.append((ap_label(ap), ap, f"test_{ap}"))
    rid, epoch = best["run_id"], int(best["best_epoch"])
    if not test:
        table = pd.DataFrame([{"score": name, "val (chose run and epoch)": score(best.get(v))} for name, v, _ in rows])
        return [markdown_table(table, {c: str for c in table.columns}), "",
                f"Run {rid} and its epoch {epoch} were chosen on these validation images, so these numbers are "
                "optimistic, and there is no test score to quote instead (see the note at the top).", ""]
    table = pd.DataFrame([{"score": name, "val (chose run and epoch)": score(best.get(v)), "test (held out)":
                           score(best.get(t))} for name, v, t in rows])
    pick = test_pick_sentence(valid)
    return [markdown_table(table, {c: str for c in table.columns}), "",
            f"Run {rid} and its epoch {epoch} were chosen on the {_int(best.get('n_val_images'))} validation "
            "image(s), so its val numbers are optimistic; the test numbers, from "
            f"{_int(best.get('n_test_images'))} image(s) that chose nothing, are the estimate to quote.", ""] \
        + ([pick, ""] if pick else [])


def _int(v: Any) -> str:
    return "n/a" if missing(v) else str(int(v))


def test_pick_sentence(valid: pd.DataFrame) -> str:
    """'' unless another result has a higher test Jaccard than the best run (chosen on val)."""
    if len(valid) < 2 or "test_jaccard" not in valid:
        return ""
    scores = pd.to_numeric(valid["test_jaccard"], errors="coerce")
    if scores.isna().all():
        return ""
    top = int(scores.idxmax())
    if top == 0 or (not missing(scores.iloc[0]) and scores.iloc[top] <= scores.iloc[0]):
        return ""
    other, best = valid.iloc[top], valid.iloc[0]
    return (f"**Ranked by test Jaccard, run {other['run_id']} ({score(other['test_jaccard'])}) would have been "
            f"picked, not {best['run_id']} ({score(best['test_jaccard'])}).** The ranking stays on validation: "
            "choosing by test would make the test score optimistic as well and leave no held-out estimate. It does "
            "mean the validation images separate these runs less clearly than their order suggests; more validation "
            "images or replicate seeds would tell.")


# --------------------------------------------------------------------------- which numbers are which


def _split_sizes(runs: pd.DataFrame, baseline: Mapping[str, Any], manifest: Mapping[str, Any],
                 fingerprint: Mapping[str, Any]) -> dict[str, str]:
    """Images per split: split.json, else the fingerprint, else what the runs were scored on."""
    entry = manifest.get("splits")
    listed: Mapping[str, Any] = entry if isinstance(entry, Mapping) else {}
    sizes = {}
    for name in SPLITS:
        if isinstance(listed.get(name), list):
            sizes[name] = str(len(listed[name]))
        elif "n_images" in (fingerprint.get("splits") or {}).get(name, {}):
            sizes[name] = _int(fingerprint["splits"][name]["n_images"])
        elif name == "train":
            sizes[name] = _int(pd.to_numeric(runs.get("train_images"), errors="coerce").max()) \
                if "train_images" in runs else "n/a"
        else:
            sizes[name] = str(image_count(runs, f"n_{name}_images", dict(baseline)))
    return sizes


def which_numbers_section(runs: pd.DataFrame, baseline: Mapping[str, Any], manifest: Mapping[str, Any],
                          fingerprint: Mapping[str, Any]) -> list[str]:
    """``## Which numbers are which``: each split, its size, what it decided and where its scores appear."""
    sizes = _split_sizes(runs, baseline, manifest, fingerprint)
    test = has_test(runs, baseline)
    rows = []
    for name in SPLITS:
        used, shown = USED_FOR[name]
        if name == "test" and not test:
            used, shown = f"nothing: there is no test set ({test_reason(manifest, fingerprint) or 'reason unknown'})", \
                "none"
        rows.append({"split": name, "images": sizes[name], "used for": used, "its scores in this report": shown})
    table = pd.DataFrame(rows)
    return ["## Which numbers are which", "", "Images are assigned to one split each, by source image.", "",
            markdown_table(table, {c: str for c in table.columns}), "",
            "Comparing runs with each other is what validation is for, so the ranking, figures, statistics and "
            "recommendations use val scores only; test appears in the executive summary, the validation and test "
            "table, the object metrics and the baseline comparison." if test else
            "Without a test set every number below is a validation score.", ""]


# --------------------------------------------------------------------------- per-split tables


def split_scores_section(runs: pd.DataFrame, cfg: Config, test: bool) -> list[str]:
    """Val and test scores of the top runs (ranked by val), and whether test would have picked another."""
    valid = stats.valid_runs(runs)
    top = valid.head(cfg.analysis.top_k)
    ap = _first_ap(valid)
    from beadseg.ranking import rank_column, rank_label

    ranks_by = rank_column(cfg.analysis.rank_by, runs.columns)
    cols = {"rank": "rank", "run_id": "run", "best_val_jaccard": "val Jaccard (tiles)",
            "full_val_jaccard": "val Jaccard", "test_jaccard": "test Jaccard", "bead_f1": "val bead F1",
            "test_bead_f1": "test bead F1"}
    if ap:
        cols.update({ap: f"val {ap_label(ap)}", f"test_{ap}": f"test {ap_label(ap)}"})
    if ranks_by in cols:
        cols[ranks_by] += " (ranks)"
    if not test:
        cols = {k: v for k, v in cols.items() if not k.startswith("test_")}
    table = top.reindex(columns=list(cols)).rename(columns=cols)
    L = [f"## Validation and test scores (top {len(top)})", "", f"Ranked by the {rank_label(cfg.analysis.rank_by, runs.columns)} "
         f"(`analysis.rank_by: {cfg.analysis.rank_by}`); pixel and bead scores side by side. \"Tiles\" is the "
         "tile-level Jaccard of the best epoch (what picked it); the other columns are full-image scores of the "
         "saved model.", "",
         markdown_table(table, {"rank": _int, "run": str, **{c: score for c in table.columns[2:]}}), ""]
    if not test:
        return L + ["No test columns: there is no test split, so these runs have validation scores only.", ""]
    pick = test_pick_sentence(valid)
    return L + [pick or "Ranked by test Jaccard, the same run would have been picked.", ""]


OBJECT_ROWS = (("bead F1", "bead_f1"), ("precision", "bead_precision"), ("recall", "bead_recall"),
               ("count error (predicted − true)", "bead_count_error"), ("mean IoU of matched beads",
                                                                        "bead_mean_matched_iou"),
               ("merges", "bead_merges"), ("splits", "bead_splits"))
COUNTS = {"bead_count_error", "bead_merges", "bead_splits"}


def _cell(col: str, v: Any) -> str:
    return _int(v) if col in COUNTS else score(v)


def mask_sentence(kind: str | None) -> str:
    if kind == "instance":
        return ("The masks carry instance labels (one id per bead), so touching beads are separate objects in the "
                "ground truth and the bead scores, merges and splits count beads.")
    binary = ("touching beads are one object in the ground truth (a connected component): a clump counts as one "
              "bead, a model that separates its beads is charged with splits, and merging them is invisible, so "
              "these scores count clumps rather than beads. Instance-label masks would count beads.")
    if kind == "binary":
        return "The masks are binary (0/1), so " + binary
    if kind == "mixed":
        return "Some masks carry instance labels and some are binary; in the binary ones " + binary
    return ("Whether the masks carry instance labels is not recorded (data/split/split.json unreadable); with binary "
            "masks " + binary)


def object_section(runs: pd.DataFrame, kind: str | None, test: bool) -> list[str]:
    """Bead metrics of the best run on val and test, AP at every IoU threshold, merges and splits."""
    best = stats.valid_runs(runs).iloc[0]
    aps = ap_keys(best.index)
    rows = [*OBJECT_ROWS, *((ap_label(k), k) for k in aps)]
    table = pd.DataFrame([{"score": name, "val": _cell(col, best.get(col)),
                           **({"test": _cell(col, best.get(f"test_{col}"))} if test else {})} for name, col in rows])
    split, pre = ("test", "test_") if test else ("validation", "")
    L = [f"## Object metrics of the best run ({best['run_id']})", "",
         "Predicted beads are matched one-to-one to the true beads. A *merge* is one predicted object covering two "
         "or more true beads; a *split* is one true bead cut into two or more predicted pieces. AP at an IoU "
         "threshold is matched / (matched + false + missed): the low threshold asks whether a bead was found, the "
         "high ones how closely its outline fits.", "", markdown_table(table, {c: str for c in table.columns}), "",
         f"On the {split} images the best run made {_int(best.get(pre + 'bead_merges'))} merge(s) and "
         f"{_int(best.get(pre + 'bead_splits'))} split(s)."]
    if len(aps) > 1:
        lo, hi = aps[0], aps[-1]
        L[-1] += (f" AP goes from {score(best.get(pre + lo))} at IoU {ap_label(lo)[3:]} to {score(best.get(pre + hi))} "
                  f"at IoU {ap_label(hi)[3:]}.")
    how = best.get("postprocessing")
    if isinstance(how, str) and how:
        L += ["", f"Beads were separated by {how}" + ("; the test images chose nothing." if "chosen" in how else ".")]
    return L + ["", mask_sentence(kind), ""]
