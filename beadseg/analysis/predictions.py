"""fig9: what the best run's model did to a few held-out images, drawn from the files the evaluate step wrote.

Inputs, all written before the figures step: the best run's ``predictions.npz`` (its predicted beads per
image, :mod:`beadseg.predictions_file`) and ``per_image.csv`` (its per-image bead scores), and the split's
images and true beads (``data/split/<split>.npz``). No model runs here.

The split is test, or val where the run has no test images. The beads are matched with
:func:`beadseg.instances.match_objects`, the matching :func:`beadseg.instances.object_scores` counts, at
the run's first IoU threshold, so each panel's matched / missed / false beads are per_image.csv's
TP / FN / FP of that image; a file pair that disagrees (one rewritten without the other) is a DataError
naming the command to rerun. Shown: up to three images, the worst AP first (worst, median and best AP
when there are more), each as the plain image beside the image with outlines:

* matched beads: the true outline in white, the predicted outline in green;
* missed beads (true, no prediction matched): orange fill and outline;
* false beads (predicted, no true bead matched): magenta fill and outline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from beadseg import paths
from beadseg.errors import DataError
from beadseg.instances import ObjectMatch, match_objects, threshold_key, true_objects
from beadseg.predictions_file import read_predictions

#: RGB colours (0-1) of the overlay; outlines are drawn opaque in exactly these colours.
COLOURS: dict[str, tuple[float, float, float]] = {
    "true": (1.0, 1.0, 1.0),  # true outline of a matched bead
    "matched": (0.17, 0.80, 0.25),  # predicted outline of a matched bead
    "missed": (1.0, 0.55, 0.0),  # a true bead no prediction matched
    "false": (0.95, 0.10, 0.85),  # a predicted bead that matched no true bead
}
FILL_ALPHA = 0.35
MAX_SHOWN = 3


@dataclass(frozen=True)
class Panel:
    """One image of the figure: its pixels, the matching of its beads and its per_image.csv scores."""

    split: str
    stem: str
    image: np.ndarray
    match: ObjectMatch
    ap: float
    worst: bool

    def counts(self) -> dict[str, int]:
        tp, fp, fn = self.match.counts()
        return {"matched": tp, "missed": fn, "false": fp}


@dataclass(frozen=True)
class PredictionView:
    """What fig9 draws and REPORT.md names: the run, the split, the shown panels and the worst-AP image."""

    run_id: str
    split: str
    ap_key: str
    n_images: int
    panels: list[Panel]
    worst_stem: str
    worst_ap: float


def per_image_counts(row: pd.Series | dict[str, Any]) -> tuple[int, int, int]:
    """(TP, FP, FN) at the first IoU threshold from a per_image.csv row: TP = recall x n_true (recall is
    TP / n_true; 1.0 with no true beads, when TP is 0)."""
    n_true, n_pred = int(row["n_true"]), int(row["n_pred"])
    tp = round(float(row["recall"]) * n_true) if n_true else 0
    return tp, n_pred - tp, n_true - tp


def shown_order(aps: dict[str, float], n: int = MAX_SHOWN) -> list[str]:
    """The stems to draw: all when there are at most ``n``, worst AP first; else the worst, the median and the
    best AP (ties by name)."""
    ranked = sorted(aps, key=lambda s: (aps[s], s))
    if len(ranked) <= n:
        return ranked
    picks = [ranked[round(i * (len(ranked) - 1) / (n - 1))] for i in range(n)]
    return list(dict.fromkeys(picks))


def overlay(image: np.ndarray, match: ObjectMatch) -> np.ndarray:
    """RGB (H, W, 3) floats in [0, 1]: the image in grey (1st-99.8th percentile stretched), missed and false
    beads filled translucently, then every outline opaque in its :data:`COLOURS` colour."""
    img = np.asarray(image, dtype=np.float64)
    lo, hi = (np.percentile(img, (1.0, 99.8)) if img.size else (0.0, 1.0))
    grey = np.clip((img - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(img)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    true_lab, pred_lab = match.true_labels, match.pred_labels
    missed = np.isin(true_lab, match.missed) & (true_lab > 0)
    false = np.isin(pred_lab, match.false) & (pred_lab > 0)
    for mask, key in ((missed, "missed"), (false, "false")):
        rgb[mask] = (1 - FILL_ALPHA) * rgb[mask] + FILL_ALPHA * np.asarray(COLOURS[key])
    true_edges = find_boundaries(true_lab, mode="inner")
    pred_edges = find_boundaries(pred_lab, mode="inner")
    matched_true = np.isin(true_lab, match.pairs[:, 0]) & (true_lab > 0)
    matched_pred = np.isin(pred_lab, match.pairs[:, 1]) & (pred_lab > 0)
    for edges, key in ((true_edges & matched_true, "true"), (pred_edges & matched_pred, "matched"),
                       (true_edges & missed, "missed"), (pred_edges & false, "false")):
        rgb[edges] = COLOURS[key]
    return rgb


def _split_of(saved: dict[str, dict[str, np.ndarray]]) -> str | None:
    """test when the run has test images, else val; None when it has none (a run that was not scored)."""
    for split in ("test", "val"):
        if saved.get(split):
            return split
    return None


def prediction_view(run_id: str, root: Path = Path(".")) -> PredictionView:
    """Read run ``run_id``'s predictions.npz, per_image.csv and its split's images; match and check each image.

    Raises DataError (one line, the command to rerun) when a file is missing or the two files disagree."""
    from beadseg.data.prepare import load_split, load_split_objects

    saved = read_predictions(root / paths.predictions_file(run_id), run_id)
    split = _split_of(saved.labels)
    rerun = f"rerun `beadseg evaluate --run {run_id}`"
    if split is None:
        raise DataError(f"'{root / paths.predictions_file(run_id)}' holds no images: {rerun}")
    table = root / paths.per_image_file(run_id)
    if not table.is_file():
        raise DataError(f"'{table}' not found: {rerun}")
    rows = pd.read_csv(table, dtype={"image": str})
    rows = rows[rows["split"] == split].set_index("image")
    key = f"ap_{threshold_key(min(saved.iou_thresholds))}"
    labels = saved.labels[split]
    if sorted(rows.index) != sorted(labels) or key not in rows:
        raise DataError(f"'{table}' and '{paths.predictions_file(run_id)}' list different {split} images or "
                        f"scores: {rerun}")
    aps = {stem: float(rows.at[stem, key]) for stem in labels}
    order = shown_order(aps)
    images, truths = load_split(split, root), load_split_objects(split, root)
    worst = order[0]
    panels = []
    for stem in order:
        if stem not in images:
            raise DataError(f"image '{stem}' of '{table}' is not in '{paths.split_file(split)}': the split changed "
                            f"since the run was scored; {rerun}")
        match = match_objects(true_objects(truths[stem]), labels[stem], min(saved.iou_thresholds))
        if match.counts() != per_image_counts(rows.loc[stem]):
            (tp, fp, fn), (tp_csv, fp_csv, fn_csv) = match.counts(), per_image_counts(rows.loc[stem])
            raise DataError(f"'{paths.predictions_file(run_id)}' gives {split} image '{stem}' {tp} matched, {fp} "
                            f"false, {fn} missed beads, '{table}' {tp_csv}, {fp_csv}, {fn_csv}: one was rewritten "
                            f"without the other; {rerun}")
        panels.append(Panel(split, stem, images[stem][0], match, aps[stem], stem == worst))
    return PredictionView(run_id, split, key, len(labels), panels, worst, aps[worst])


# --------------------------------------------------------------------------- REPORT.md


@dataclass(frozen=True)
class WorstImage:
    """The best run's image with the lowest AP at the first IoU threshold, from its per_image.csv."""

    run_id: str
    split: str
    n_images: int
    ap_key: str
    stem: str
    ap: float
    matched: int
    missed: int
    false: int


def worst_image(run_id: str, root: Path = Path(".")) -> WorstImage | None:
    """Read run ``run_id``'s per_image.csv: its worst-AP test image (val without test); None when the file is
    missing or holds no image (the report then says fig9 has nothing to show)."""
    from beadseg.analysis.aggregate import ap_keys

    table = root / paths.per_image_file(run_id)
    if not table.is_file():
        return None
    rows = pd.read_csv(table, dtype={"image": str})
    keys = ap_keys(rows.columns)
    split = next((s for s in ("test", "val") if (rows["split"] == s).any()), None)
    if split is None or not keys:
        return None
    rows = rows[rows["split"] == split]
    aps = {str(r["image"]): float(r[keys[0]]) for _, r in rows.iterrows()}
    stem = shown_order(aps)[0]
    tp, fp, fn = per_image_counts(rows[rows["image"] == stem].iloc[0])
    return WorstImage(run_id, split, len(rows), keys[0], stem, aps[stem], tp, fn, fp)


def report_lines(worst: WorstImage | None, figure_name: str) -> list[str]:
    """The paragraph under the object metrics: what fig9 shows and which image the best run did worst on."""
    from beadseg.analysis.splits import ap_label
    from beadseg.analysis.text import figure

    if worst is None:
        return ["The best run has no per-image scores to draw (its per_image.csv is missing or empty: rerun "
                "`beadseg evaluate` for it), so the predictions figure shows a note instead.", "",
                figure(figure_name, "The best run's predictions: nothing to draw."), ""]
    label = ap_label(worst.ap_key)
    shown = worst.n_images if worst.n_images <= MAX_SHOWN else MAX_SHOWN
    which = f"its {worst.n_images}" if shown == worst.n_images else f"{shown} of its {worst.n_images}"
    cap = (f"Best run {worst.run_id} on {which} {worst.split} image(s), worst {label} first: "
           f"each image plain and with its beads matched at IoU ≥ {label[3:]} (white true and green predicted "
           "outline: matched; orange: missed; magenta: false), counts as in per_image.csv.")
    return [f"What the best run's model did to the {worst.split} images is drawn below. Its worst {worst.split} "
            f"image is **{worst.stem}**: {label} {worst.ap:.3f}, with {worst.matched} bead(s) matched, "
            f"{worst.missed} missed and {worst.false} false (every image's scores are in "
            f"results/runs/{worst.run_id}/per_image.csv).", "", figure(figure_name, cap), ""]
