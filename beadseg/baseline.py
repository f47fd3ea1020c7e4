"""A classical threshold baseline, so a user can see whether the trained U-Nets beat a plain threshold.

Every method rescales the image to 0..1 (min..max; an affine change, so the thresholds below do
not depend on it), smooths it with a Gaussian of ``SMOOTH_SIGMA`` px, thresholds it, then removes
objects smaller than ``MIN_OBJECT_AREA`` px (4-connectivity, as the bead metrics count beads) and
fills holes. The methods (:data:`THRESHOLD_METHODS`):

``otsu``, ``li``, ``yen``, ``triangle``
    One global scikit-image threshold for the whole image.
``local``
    ``skimage.filters.threshold_local`` with a Gaussian-weighted block of ``LOCAL_BLOCK_SIZE`` =
    51 px: about twice the largest bead diameter of the synthetic demo (up to ~29 px), so a block
    centred on a bead still holds mostly background, yet small enough to follow uneven
    illumination. A pixel is foreground when it is brighter than its local mean by
    ``LOCAL_NOISE_OFFSET`` (5) times the image's noise level (robust standard deviation of
    neighbouring-pixel differences), at least ``LOCAL_MIN_OFFSET`` of the intensity range: without
    that margin half of a flat noisy background lies above its own mean.
``otsu_bgsub``
    Otsu after subtracting the background estimated by a grey opening with a
    ``BACKGROUND_SIZE`` = 41 px square (a white top-hat; larger than the largest demo bead, so the
    opening removes beads and keeps the smooth background). Handles ramps and vignetting.

Measured on the synthetic demo (512 px, seeds 0-5; pixel Jaccard): otsu 0.86-0.91, li 0.78-0.87,
yen 0.77-0.83, triangle 0.53-0.63, local 0.87-0.93, otsu_bgsub 0.87-0.92. On a steep linear ramp
(0 to 0.8 across the image, beads 0.3 above it) Otsu falls to 0.11 while local and otsu_bgsub
stay at 0.99.

The method is chosen on the training images (:func:`choose_method`) and scored on the full
validation images with the same :func:`beadseg.evaluate.score_predictions` the U-Nets get.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage import filters
from skimage.measure import label

from beadseg import paths
from beadseg.config import Config, EvaluationConfig
from beadseg.data.prepare import load_split, load_split_objects, manifest_entry
from beadseg.data.provenance import check_split
from beadseg.errors import ConfigError, DataError
from beadseg.evaluate import score_predictions
from beadseg.fsutil import json_safe, write_json
from beadseg.instances import choose_object_method
from beadseg.metrics import confusion, jaccard_from_counts
from beadseg.quality import trivial_scores

THRESHOLD_METHODS: tuple[str, ...] = ("otsu", "li", "yen", "triangle", "local", "otsu_bgsub")
SMOOTH_SIGMA = 1.0
MIN_OBJECT_AREA = 4
LOCAL_BLOCK_SIZE = 51
LOCAL_NOISE_OFFSET = 5.0
LOCAL_MIN_OFFSET = 0.01
BACKGROUND_SIZE = 41

Pairs = Mapping[str, tuple[np.ndarray, np.ndarray]]

_GLOBAL: dict[str, Callable[[np.ndarray], float]] = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "yen": filters.threshold_yen,
    "triangle": filters.threshold_triangle,
}


# --------------------------------------------------------------------------- segmentation


def _rescale(image: np.ndarray) -> np.ndarray | None:
    """``image`` as float64 scaled to 0..1 by min..max; None when it is constant (nothing to find)."""
    data = np.asarray(image, dtype=np.float64)
    if data.ndim != 2:
        raise DataError(f"baseline: expected a 2-D image, got shape {data.shape}")
    if data.size == 0 or not np.isfinite(data).all():
        raise DataError("baseline: the image is empty or contains NaN/infinite pixels")
    lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return None
    return (data - lo) / (hi - lo)


def noise_sigma(image: np.ndarray) -> float:
    """Robust noise standard deviation: MAD of horizontal pixel differences, / sqrt(2) (0 if flat)."""
    axis = 1 if image.shape[1] > 1 else 0
    if image.shape[axis] < 2:
        return 0.0
    diff = np.diff(image, axis=axis).ravel()
    mad = float(np.median(np.abs(diff - np.median(diff))))
    return 1.4826 * mad / math.sqrt(2.0)


def _local(smooth: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    offset = max(LOCAL_NOISE_OFFSET * noise_sigma(scaled), LOCAL_MIN_OFFSET)
    return smooth > filters.threshold_local(smooth, LOCAL_BLOCK_SIZE, method="gaussian", offset=-offset)


def _otsu_bgsub(smooth: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    residual = smooth - ndi.grey_opening(smooth, size=(BACKGROUND_SIZE, BACKGROUND_SIZE))
    if float(residual.max()) <= float(residual.min()):
        return np.zeros(smooth.shape, dtype=bool)
    return residual > filters.threshold_otsu(residual)


def _global(threshold: Callable[[np.ndarray], float]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda smooth, scaled: smooth > threshold(smooth)


#: method -> f(smoothed image, unsmoothed image; both scaled to 0..1) -> raw boolean mask
_THRESHOLDS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    **{name: _global(f) for name, f in _GLOBAL.items()},
    "local": _local,
    "otsu_bgsub": _otsu_bgsub,
}


def _clean(mask: np.ndarray) -> np.ndarray:
    """Drop 4-connected objects smaller than MIN_OBJECT_AREA px, then fill holes."""
    labels, n = label(mask, connectivity=1, return_num=True)
    if n:
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        keep = areas >= MIN_OBJECT_AREA
        keep[0] = False
        mask = keep[labels]
    return ndi.binary_fill_holes(mask)


def segment(image: np.ndarray, method: str) -> np.ndarray:
    """Boolean bead mask of a 2-D image by one of :data:`THRESHOLD_METHODS` (see module docstring)."""
    if method not in THRESHOLD_METHODS:
        raise ConfigError(f"unknown baseline threshold method '{method}': valid methods are "
                          f"{', '.join(THRESHOLD_METHODS)}")
    scaled = _rescale(image)
    if scaled is None:
        return np.zeros(np.shape(image), dtype=bool)
    smooth = ndi.gaussian_filter(scaled, SMOOTH_SIGMA)
    if float(smooth.max()) <= float(smooth.min()):
        return np.zeros(smooth.shape, dtype=bool)
    return _clean(_THRESHOLDS[method](smooth, scaled))


# --------------------------------------------------------------------------- choosing and scoring


def _pooled_jaccard(predictions: Mapping[str, np.ndarray], pairs: Pairs) -> float:
    tp = fp = fn = 0
    for stem, (_, mask) in pairs.items():
        a, b, c = confusion(predictions[stem], np.asarray(mask) > 0)
        tp, fp, fn = tp + a, fp + b, fn + c
    return jaccard_from_counts(tp, fp, fn)


def _segment_all(pairs: Pairs) -> dict[str, dict[str, np.ndarray]]:
    """{method: {stem: mask}} for every method."""
    return {m: {stem: segment(image, m) for stem, (image, _) in pairs.items()} for m in THRESHOLD_METHODS}


def _choose(segmented: Mapping[str, Mapping[str, np.ndarray]], pairs: Pairs) -> tuple[str, dict[str, float]]:
    scores = {m: _pooled_jaccard(segmented[m], pairs) for m in THRESHOLD_METHODS}
    best = max(THRESHOLD_METHODS, key=lambda m: (scores[m], -THRESHOLD_METHODS.index(m)))
    return best, scores


def choose_method(pairs: Pairs) -> tuple[str, dict[str, float]]:
    """The method with the best pixel Jaccard pooled over ``pairs`` ({stem: (image, mask)}), and every score.

    Pass the TRAINING images: the method is then never chosen on the images it is scored on, just
    as a U-Net never sees its validation images. Ties go to the method listed first in
    :data:`THRESHOLD_METHODS`.
    """
    if not pairs:
        raise DataError("baseline: no images to choose a threshold method on")
    return _choose(_segment_all(pairs), pairs)


def run_baseline(train: Pairs, val: Pairs, test: Pairs | None = None,
                 objects: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 evaluation: EvaluationConfig | None = None) -> dict[str, Any]:
    """Choose the method on ``train``, score it on ``val`` and ``test`` ({stem: (image, mask)} each).

    ``objects`` gives per split the ground truth of the bead scores (instance labels where the user's
    masks had them; default: the masks); ``evaluation`` the scoring settings the U-Nets get.

    Returns the method, the per-method Jaccard on train (used for the choice) and on val (for
    information only, never for the choice), the U-Net metrics of :func:`score_predictions`
    (full_val_jaccard, full_val_dice, bead_f1, ...), and the trivial all-foreground /
    all-background Jaccard on val. NaN values are None.
    """
    if not train:
        raise DataError("baseline: no training images to choose a threshold method on")
    if not val:
        raise DataError("baseline: no validation images to score the threshold baseline on")
    method, train_scores = choose_method(train)
    val_segmented = _segment_all(val)
    val_scores = {m: _pooled_jaccard(val_segmented[m], val) for m in THRESHOLD_METHODS}
    objects = objects or {}
    evaluation = evaluation or EvaluationConfig()
    if evaluation.objects == "auto":
        train_truth = objects.get("train") or {stem: mask for stem, (_, mask) in train.items()}
        evaluation = dataclasses.replace(evaluation, objects=choose_object_method(list(train_truth.values()))[0])
    scores: dict[str, Any] = {}
    for split, pairs in (("val", val), ("test", test or {})):
        segmented = (val_segmented[method] if split == "val" else
                     {stem: segment(image, method) for stem, (image, _) in pairs.items()})
        chosen = {stem: mask.astype(np.float32) for stem, mask in segmented.items()}
        truth = objects.get(split) or {stem: mask for stem, (_, mask) in pairs.items()}
        scores.update(score_predictions(chosen, truth, evaluation, split))
    result = {"method": method, "chosen_on": "train", "n_train_images": len(train), "objects": evaluation.objects,
              "train_jaccard_by_method": train_scores, "val_jaccard_by_method": val_scores,
              **trivial_scores(m for _, m in val.values()), **scores}
    return json_safe(result)


def write_baseline(cfg: Config, root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Run the baseline on the split written by ``beadseg split`` and write ``paths.baseline_file()``.

    ``cfg`` is accepted like every other step's (the baseline itself has no settings).
    """
    check_split(cfg.data, root, step="baseline")
    train = load_split("train", root)
    val = load_split("val", root)
    test = load_split("test", root)
    objects = {split: load_split_objects(split, root) for split in ("val", "test")}
    evaluation = cfg.evaluation
    if evaluation.objects == "auto":  # the method the split chose on the training masks, as the runs use
        evaluation = dataclasses.replace(evaluation, objects=str(manifest_entry("objects", root)))
    result = run_baseline(train, val, test, objects, evaluation)
    write_json(root / paths.baseline_file(), result)
    if progress:
        test_text = (f", {result['test_jaccard']:.3f} on {len(test)} test images" if test else "")
        print(f"baseline: {result['method']} (chosen on {len(train)} train images) full-image Jaccard "
              f"{result['full_val_jaccard']:.3f} on {len(val)} val images{test_text}", file=sys.stderr)
    return result
