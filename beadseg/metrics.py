"""Pixel- and object-level segmentation metrics (numpy; torch tensors are accepted too).

Pixel metrics, from the confusion counts tp, fp, fn:

    jaccard = tp / (tp + fp + fn)          dice = 2 tp / (2 tp + fp + fn)

Both are defined as 1.0 when prediction and target are both empty (tp + fp + fn = 0): nothing
to find and nothing wrongly found. Use the ``*_from_counts`` forms to accumulate counts over a
whole validation epoch (dataset-level score) instead of averaging per-tile scores.

Non-bool inputs are binarised as ``x > 0.5`` (works for 0/1 floats, probabilities, 0/255 and
label images).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from skimage.measure import label as _label

__all__ = [
    "bead_metrics",
    "confusion",
    "dice",
    "dice_from_counts",
    "equivalent_diameter",
    "jaccard",
    "jaccard_from_counts",
]


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or a (possibly CUDA, grad-requiring) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_bool(x: Any) -> np.ndarray:
    """Boolean mask: bool arrays unchanged, anything else thresholded at 0.5."""
    a = _to_numpy(x)
    return a if a.dtype == np.bool_ else a > 0.5


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_bool(pred), _as_bool(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}")
    return p, t


# --------------------------------------------------------------------------- pixel metrics
def confusion(pred: Any, target: Any) -> tuple[int, int, int]:
    """Pixel counts (tp, fp, fn) of boolean masks ``pred`` vs ``target``."""
    p, t = _pair(pred, target)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return tp, fp, fn


def jaccard_from_counts(tp: int, fp: int, fn: int) -> float:
    """IoU = tp / (tp + fp + fn); 1.0 when tp + fp + fn = 0 (both masks empty)."""
    denom = tp + fp + fn
    return 1.0 if denom == 0 else float(tp) / float(denom)


def dice_from_counts(tp: int, fp: int, fn: int) -> float:
    """Dice = 2 tp / (2 tp + fp + fn); 1.0 when tp + fp + fn = 0 (both masks empty)."""
    denom = 2 * tp + fp + fn
    return 1.0 if denom == 0 else 2.0 * float(tp) / float(denom)


def jaccard(pred: Any, target: Any) -> float:
    """Pixel IoU of two masks (1.0 if both are empty)."""
    return jaccard_from_counts(*confusion(pred, target))


def dice(pred: Any, target: Any) -> float:
    """Pixel Dice / F1 of two masks (1.0 if both are empty)."""
    return dice_from_counts(*confusion(pred, target))


# --------------------------------------------------------------------------- object metrics
def _squeeze_2d(mask: np.ndarray, what: str) -> np.ndarray:
    m = np.squeeze(mask) if mask.ndim > 2 else mask
    if m.ndim != 2:
        raise ValueError(f"{what} must be a 2-D mask, got shape {mask.shape}")
    return m


def _label_components(
    mask: np.ndarray, connectivity: int, min_area: int = 0
) -> tuple[np.ndarray, int]:
    """Label connected components, drop those with area < min_area, relabel 1..n."""
    lab, n = _label(mask, connectivity=connectivity, return_num=True)
    if min_area > 1 and n > 0:
        areas = np.bincount(lab.ravel(), minlength=n + 1)
        keep = areas >= min_area
        keep[0] = False
        lut = np.zeros(n + 1, dtype=lab.dtype)
        lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=lab.dtype)
        lab, n = lut[lab], int(keep.sum())
    return lab, n


def _match(true_lab: np.ndarray, n_true: int, pred_lab: np.ndarray, n_pred: int,
           iou_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of labelled objects at IoU >= threshold.

    The sparse contingency table of (true label, pred label) pairs over overlapping pixels is
    built with ``np.unique`` on a combined key, so the cost is O(pixels), not O(n_true*n_pred).
    Candidate pairs are then matched greedily by descending IoU (for thresholds >= 0.5 every
    object has at most one candidate, so greedy is optimal).

    Returns (matched true labels, matched pred labels, true areas, pred areas).
    """
    area_t = np.bincount(true_lab.ravel(), minlength=n_true + 1).astype(np.int64)
    area_p = np.bincount(pred_lab.ravel(), minlength=n_pred + 1).astype(np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if n_true == 0 or n_pred == 0:
        return empty, empty, area_t, area_p
    both = (true_lab > 0) & (pred_lab > 0)
    key = true_lab[both].astype(np.int64) * (n_pred + 1) + pred_lab[both].astype(np.int64)
    pairs, inter = np.unique(key, return_counts=True)
    t_idx, p_idx = np.divmod(pairs, n_pred + 1)
    iou = inter / (area_t[t_idx] + area_p[p_idx] - inter)
    cand = iou >= iou_threshold
    t_idx, p_idx, iou = t_idx[cand], p_idx[cand], iou[cand]
    order = np.argsort(-iou, kind="stable")
    used_t = np.zeros(n_true + 1, dtype=bool)
    used_p = np.zeros(n_pred + 1, dtype=bool)
    mt: list[int] = []
    mp: list[int] = []
    for t, p in zip(t_idx[order].tolist(), p_idx[order].tolist()):
        if not used_t[t] and not used_p[p]:
            used_t[t] = used_p[p] = True
            mt.append(t)
            mp.append(p)
    return np.asarray(mt, dtype=np.int64), np.asarray(mp, dtype=np.int64), area_t, area_p


def equivalent_diameter(area: Any) -> np.ndarray:
    """Diameter of the disk with the same area: d = sqrt(4 A / pi)."""
    return np.sqrt(4.0 * np.asarray(area, dtype=np.float64) / math.pi)


def bead_metrics(
    pred_mask: Any,
    true_mask: Any,
    iou_threshold: float = 0.5,
    min_area: int = 4,
    connectivity: int = 1,
) -> dict[str, float | int]:
    """Object-level (per-bead) detection metrics of a predicted vs. a true 2-D mask.

    Beads are connected components (``skimage.measure.label``; ``connectivity=1`` i.e.
    4-connectivity by default, so beads touching only at a corner count as two). Predicted
    components smaller than ``min_area`` px are discarded; all true components count. True and
    predicted beads are matched one-to-one when their IoU >= ``iou_threshold``.

    Returns a dict with
        n_true, n_pred, n_matched (TP),
        count_error = n_pred - n_true, abs_count_error,
        precision = TP / n_pred   (1.0 if n_pred = 0: no false detections),
        recall    = TP / n_true   (1.0 if n_true = 0: nothing to miss),
        f1        = 2 TP / (n_pred + n_true)  (1.0 if both are 0; 0.0 if exactly one is 0),
        mean_diameter_error_px = mean |d_pred - d_true| over matched pairs with equivalent
            diameters d = sqrt(4 A / pi); NaN if nothing matched.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    pred = _squeeze_2d(_as_bool(pred_mask), "pred_mask")
    true = _squeeze_2d(_as_bool(true_mask), "true_mask")
    if pred.shape != true.shape:
        raise ValueError(f"pred_mask and true_mask shapes differ: {pred.shape} vs {true.shape}")

    true_lab, n_true = _label_components(true, connectivity)
    pred_lab, n_pred = _label_components(pred, connectivity, min_area)
    mt, mp, area_t, area_p = _match(true_lab, n_true, pred_lab, n_pred, iou_threshold)
    tp = int(mt.size)

    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2.0 * tp / (n_pred + n_true) if (n_pred + n_true) else 1.0
    if tp:
        d_pred = equivalent_diameter(area_p[mp])
        d_true = equivalent_diameter(area_t[mt])
        diam_err = float(np.mean(np.abs(d_pred - d_true)))
    else:
        diam_err = float("nan")
    return {
        "n_true": n_true,
        "n_pred": n_pred,
        "n_matched": tp,
        "count_error": n_pred - n_true,
        "abs_count_error": abs(n_pred - n_true),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "mean_diameter_error_px": diam_err,
    }
