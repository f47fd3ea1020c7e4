"""Pixel segmentation metrics and the array helpers object scoring builds on (numpy; torch tensors are
accepted too). Bead (object) matching and scores live in :mod:`beadseg.instances`, the one implementation.

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
    "confusion",
    "dice",
    "dice_from_counts",
    "equivalent_diameter",
    "jaccard",
    "jaccard_from_counts",
    "label_components",
    "to_numpy",
]


def to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or a (possibly CUDA, grad-requiring) torch tensor."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _as_bool(x: Any) -> np.ndarray:
    """Boolean mask: bool arrays unchanged, anything else thresholded at 0.5."""
    a = to_numpy(x)
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
def label_components(
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


def equivalent_diameter(area: Any) -> np.ndarray:
    """Diameter of the disk with the same area: d = sqrt(4 A / pi)."""
    return np.sqrt(4.0 * np.asarray(area, dtype=np.float64) / math.pi)
