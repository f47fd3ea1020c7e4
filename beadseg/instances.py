"""Instance-aware object metrics (StarDist / Cellpose style), numpy + scipy + scikit-image only.

Definitions
-----------
Instance label image
    An integer image: 0 is background, every other value is one object (bead). Functions here
    accept any integer ids and return int32 labels renumbered consecutively 1..n (``relabel``).

Matching
    True object ``t`` and predicted object ``p`` overlap by ``|t ∩ p|`` pixels and have
    ``IoU = |t ∩ p| / (|t| + |p| - |t ∩ p|)``. At a threshold ``τ`` they are matched one-to-one,
    greedily by descending IoU among the pairs with ``IoU >= τ``. For ``τ > 0.5`` an object has at
    most one candidate (two disjoint partners cannot both overlap it by more than half), so greedy
    matching is the optimal matching StarDist computes with the Hungarian algorithm.

    TP(τ) = matched pairs, FP(τ) = n_pred - TP, FN(τ) = n_true - TP, and

        AP(τ) = TP / (TP + FP + FN)

    which is StarDist's ``accuracy`` and Cellpose's ``average_precision`` (1.0 when both images
    are empty: nothing to find and nothing wrongly found).

Merges and splits (independent of τ)
    Predicted ``p`` *covers* true ``t`` when ``|t ∩ p| >= 0.5 |t|`` (most of the bead lies in
    ``p``); a *merge* is a predicted object covering >= 2 true objects. A *split* is a true object
    ``t`` with >= 2 predicted pieces ``p`` lying mostly inside it, ``|t ∩ p| >= 0.5 |p|``.

All pair statistics come from one sparse contingency table of the (true id, pred id) pairs that
actually overlap, built with ``np.unique`` over the foreground pixels: O(pixels), never a dense
n_true x n_pred matrix.

Scores of several images are pooled like StarDist's ``matching_dataset(by_image=False)``: sum the
counts over images, then compute the ratios (``pool_scores``), not the mean of per-image ratios.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.measure import label as _sk_label
from skimage.segmentation import watershed as _sk_watershed

from beadseg.data.io import is_instance_labels
from beadseg.errors import ConfigError
from beadseg.metrics import equivalent_diameter, label_components, to_numpy

__all__ = [
    "OBJECT_METHODS",
    "WATERSHED_MIN_DISTANCE_PX",
    "choose_object_method",
    "ObjectMatch",
    "label_objects",
    "match_objects",
    "object_scores",
    "pool_scores",
    "relabel",
    "threshold_key",
    "true_objects",
]

OBJECT_METHODS: tuple[str, ...] = ("components", "watershed")

#: Seed rule of the ``watershed`` method: seeds are the local maxima of the distance transform
#: (``peak_local_max(min_distance=3)``: a maximum within its 7x7 window, and more than 3 px, Chebyshev,
#: from any higher kept seed), found separately in each 4-connected component.
#: Why 3: the smallest beads (synthetic "hard" data: radius 2.5 px) touch with centres >= 0.86 (2.5 +
#: 2.5) = 4.3 px apart, so two touching small beads still get a seed each; while the spurious maxima
#: inside ONE bead (plateaus and ridges of the digitised distance transform, bumps from ragged edges
#: of a thresholded probability map) lie within ~3 px of its centre and collapse to one seed.
#: Measured in benchmarks/instance_objects.py: on thresholded noisy maps min_distance 2 over-splits
#: (76 splits vs 7 on the hard data; AP@0.5 0.862 vs 0.914 on drawn pairs) and 4 merges small
#: touching beads (AP@0.5 0.667 vs 0.730 on the hard data). An h-maxima rule (seed = a maximum rising
#: >= h above its saddle) was rejected: a small bead touching a big one rises only r_small minus the
#: neck half-width above the saddle, often < 0.5 px, so an h that ignores pixel-grid ripples merges
#: such pairs (AP@0.5 on 12 hard synthetic ground-truth masks: 0.87 at h = 0.5 and 0.68 at h = 1,
#: vs 0.90 with min_distance 3).
WATERSHED_MIN_DISTANCE_PX: int = 3


# --------------------------------------------------------------------------- labelling
def _ints(labels: Any, what: str) -> np.ndarray:
    """Integer view of a label image; bools become 0/1, integral floats are accepted."""
    a = to_numpy(labels)
    if a.dtype == np.bool_:
        return a.astype(np.int32)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{what} must hold integer ids, got non-integer values (a probability map?)")
        a = a.astype(np.int64)
    elif not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{what} must be an integer label image, got dtype {a.dtype}")
    if a.size and int(a.min()) < 0:
        raise ValueError(f"{what} has negative ids; labels must be >= 0 (0 = background)")
    return a


def relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive int32 labels 1..n of an instance label image (any int dtype, any ids); 0 stays 0.

    Ids keep their order: the smallest positive id becomes 1, the next 2, and so on. Costs
    O(pixels + max id) with a lookup table when ids are small, else one ``np.unique``.
    """
    a = _ints(labels, "labels")
    if a.size == 0:
        return np.zeros(a.shape, np.int32)
    top = int(a.max())
    if top <= 4 * a.size + 1024:
        present = np.bincount(a.ravel(), minlength=top + 1) > 0
        present[0] = False
        lut = np.zeros(top + 1, np.int32)
        lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
        return lut[a]
    ids, inverse = np.unique(a, return_inverse=True)
    offset = 0 if ids[0] == 0 else 1
    return (inverse.reshape(a.shape) + offset).astype(np.int32)


def _drop_small(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Remove objects with fewer than ``min_area`` pixels, then relabel 1..n (int32)."""
    if min_area > 1 and labels.size:
        areas = np.bincount(labels.ravel())
        small = areas < min_area
        small[0] = False
        if small.any():
            labels = np.where(small[labels], 0, labels)
    return relabel(labels)


def _components(mask: np.ndarray, min_area: int) -> np.ndarray:
    """4-connected (face-connected in n-D) components, small ones dropped, int32 1..n."""
    lab, _ = label_components(mask, connectivity=1, min_area=min_area)
    return lab.astype(np.int32, copy=False)


def _watershed(mask: np.ndarray, min_area: int, min_distance: int = WATERSHED_MIN_DISTANCE_PX) -> np.ndarray:
    """Split touching beads: watershed of the negated distance transform from its local maxima.

    Seeds: ``peak_local_max`` of the Euclidean distance transform, > ``min_distance`` px apart, per
    4-connected mask component (a seed never serves two components; see
    ``WATERSHED_MIN_DISTANCE_PX``). The flood is restricted to the mask with 4-connectivity; a
    component that got no seed stays one object.
    """
    if not mask.any():
        return np.zeros(mask.shape, np.int32)
    comp = _sk_label(mask, connectivity=1)
    dist = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=comp, exclude_border=False)
    seeds = np.zeros(mask.shape, np.int32)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = _sk_watershed(-dist, seeds, mask=mask, connectivity=1).astype(np.int32)
    orphans = mask & (labels == 0)
    if orphans.any():
        labels[orphans] = int(labels.max()) + comp[orphans]
    return _drop_small(labels, min_area)


def label_objects(prob: np.ndarray, threshold: float = 0.5, method: str = "components",
                  min_area: int = 4, seed_distance: int = WATERSHED_MIN_DISTANCE_PX) -> np.ndarray:
    """Instance label image (int32, 0 = background, 1..n) of a probability map (or 0/1 mask).

    Pixels ``> threshold`` are bead (a bool mask is used as is). ``method``:

    ``"components"``
        4-connected components of the mask: touching beads stay one object.
    ``"watershed"``
        Splits touching beads: the Euclidean distance transform of the binary mask is flooded
        (``skimage.segmentation.watershed`` on its negative, restricted to the mask) from seeds at
        its local maxima more than ``seed_distance`` px apart (default ``WATERSHED_MIN_DISTANCE_PX``, 3:
        see there for why; the evaluate step chooses it per run on its validation predictions).

    Objects smaller than ``min_area`` px are dropped and labels renumbered consecutively 1..n.
    Raises ``ConfigError`` for an unknown method (the message lists ``OBJECT_METHODS``).
    """
    if method not in OBJECT_METHODS:
        raise ConfigError(
            f"object method {method!r} is unknown: use one of {', '.join(map(repr, OBJECT_METHODS))}"
        )
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 0:
        raise ValueError(f"min_area must be an integer >= 0, got {min_area!r}")
    p = to_numpy(prob)
    mask = p if p.dtype == np.bool_ else p > threshold
    if method == "components":
        return _components(mask, int(min_area))
    if isinstance(seed_distance, bool) or not isinstance(seed_distance, (int, np.integer)) or seed_distance < 1:
        raise ValueError(f"seed_distance must be an integer >= 1, got {seed_distance!r}")
    return _watershed(mask, int(min_area), int(seed_distance))


def true_objects(mask: np.ndarray) -> np.ndarray:
    """Ground-truth instances (int32, 1..n).

    If ``mask`` has more than one distinct positive value it *is* an instance label image and is
    only relabelled (touching beads with different ids stay separate). Otherwise (binary 0/1,
    0/255, bool, or a label image holding a single id) its 4-connected components are the objects.
    """
    a = _ints(mask, "mask")
    if is_instance_labels(a):
        return relabel(a)
    return _components(a > 0, 0)


# --------------------------------------------------------------------------- scoring
def threshold_key(t: float) -> str:
    """Key suffix of an IoU threshold: ``f"{round(t * 100):02d}"`` (0.5 -> "50", 0.75 -> "75")."""
    return f"{round(t * 100):02d}"


def _check_thresholds(iou_thresholds: Sequence[float]) -> list[float]:
    ts = [float(t) for t in iou_thresholds]
    if not ts:
        raise ValueError("iou_thresholds must not be empty")
    bad = [t for t in ts if not 0.0 < t <= 1.0]
    if bad:
        raise ValueError(f"IoU thresholds must be in (0, 1], got {bad}")
    keys = [threshold_key(t) for t in ts]
    if len(set(keys)) != len(keys):
        raise ValueError(f"IoU thresholds {ts} give duplicate keys {keys} (they round to the same percent)")
    return ts


def _pairs(true_lab: np.ndarray, n_true: int, pred_lab: np.ndarray, n_pred: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sparse contingency table: overlapping (t, p) ids, their intersections, and all areas."""
    area_t = np.bincount(true_lab.ravel(), minlength=n_true + 1).astype(np.int64)
    area_p = np.bincount(pred_lab.ravel(), minlength=n_pred + 1).astype(np.int64)
    both = (true_lab > 0) & (pred_lab > 0)
    key = true_lab[both].astype(np.int64) * (n_pred + 1) + pred_lab[both].astype(np.int64)
    pairs, inter = np.unique(key, return_counts=True)
    t_idx, p_idx = np.divmod(pairs, n_pred + 1)
    return t_idx, p_idx, inter.astype(np.int64), area_t, area_p


def _greedy_match(t_idx: np.ndarray, p_idx: np.ndarray, iou: np.ndarray, threshold: float
                  ) -> np.ndarray:
    """Indices (into the pair arrays) of a one-to-one matching, greedy by IoU among IoU >= threshold."""
    cand = np.flatnonzero(iou >= threshold)
    cand = cand[np.argsort(-iou[cand], kind="stable")]
    used_t: set[int] = set()
    used_p: set[int] = set()
    keep: list[int] = []
    for i, t, p in zip(cand.tolist(), t_idx[cand].tolist(), p_idx[cand].tolist(), strict=True):
        if t not in used_t and p not in used_p:
            used_t.add(t)
            used_p.add(p)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _overlaps(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[Any, ...]:
    """(true_lab, pred_lab relabelled 1..n, n_true, n_pred, t_idx, p_idx, inter, area_t, area_p, iou of each pair)."""
    t_raw, p_raw = to_numpy(true_labels), to_numpy(pred_labels)
    if t_raw.shape != p_raw.shape:
        raise ValueError(f"true_labels and pred_labels shapes differ: {t_raw.shape} vs {p_raw.shape}")
    true_lab, pred_lab = relabel(t_raw), relabel(p_raw)
    n_true, n_pred = int(true_lab.max(initial=0)), int(pred_lab.max(initial=0))
    t_idx, p_idx, inter, area_t, area_p = _pairs(true_lab, n_true, pred_lab, n_pred)
    iou = inter / (area_t[t_idx] + area_p[p_idx] - inter) if inter.size else inter.astype(float)
    return true_lab, pred_lab, n_true, n_pred, t_idx, p_idx, inter, area_t, area_p, iou


@dataclass(frozen=True)
class ObjectMatch:
    """Which beads :func:`object_scores` matched at one IoU threshold, by id in the relabelled images.

    ``true_labels`` / ``pred_labels`` are the inputs relabelled 1..n (int32), ``pairs`` the matched
    (true id, pred id) rows (shape (TP, 2)). Missed = true ids not in ``pairs``, false = predicted ids not in it.
    """

    true_labels: np.ndarray
    pred_labels: np.ndarray
    pairs: np.ndarray
    iou_threshold: float

    @property
    def n_true(self) -> int:
        return int(self.true_labels.max(initial=0))

    @property
    def n_pred(self) -> int:
        return int(self.pred_labels.max(initial=0))

    @property
    def missed(self) -> np.ndarray:
        """True ids without a match (FN), ascending."""
        return np.setdiff1d(np.arange(1, self.n_true + 1), self.pairs[:, 0])

    @property
    def false(self) -> np.ndarray:
        """Predicted ids without a match (FP), ascending."""
        return np.setdiff1d(np.arange(1, self.n_pred + 1), self.pairs[:, 1])

    def counts(self) -> tuple[int, int, int]:
        """(TP, FP, FN): ``object_scores``' ``tp_k``, ``fp_k``, ``fn_k`` at this threshold."""
        tp = int(self.pairs.shape[0])
        return tp, self.n_pred - tp, self.n_true - tp


def match_objects(true_labels: np.ndarray, pred_labels: np.ndarray, iou_threshold: float = 0.5) -> ObjectMatch:
    """The one-to-one matching :func:`object_scores` counts at ``iou_threshold`` (same table, same greedy rule):
    which predicted bead matched which true bead, for drawing matched / missed / false beads."""
    (threshold,) = _check_thresholds((iou_threshold,))
    true_lab, pred_lab, _, _, t_idx, p_idx, _, _, _, iou = _overlaps(true_labels, pred_labels)
    keep = _greedy_match(t_idx, p_idx, iou, threshold)
    pairs = np.stack([t_idx[keep], p_idx[keep]], axis=1).astype(np.int64).reshape(-1, 2)
    return ObjectMatch(true_lab, pred_lab, pairs, threshold)


def _ratios(tp: int, n_true: int, n_pred: int) -> tuple[float, float, float]:
    """(precision, recall, f1) with the empty-set conventions of ``object_scores``."""
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2.0 * tp / (n_true + n_pred) if (n_true + n_pred) else 1.0
    return float(precision), float(recall), float(f1)


def _ap(tp: int, fp: int, fn: int) -> float:
    denom = tp + fp + fn
    return 1.0 if denom == 0 else tp / denom


def object_scores(true_labels: np.ndarray, pred_labels: np.ndarray,
                  iou_thresholds: Sequence[float] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> dict[str, Any]:
    """Instance scores of one image (both inputs are instance label images, any integer ids).

    Keys: ``n_true``, ``n_pred``; per threshold t with k = ``threshold_key(t)``: ``tp_k``,
    ``fp_k``, ``fn_k``, ``ap_k`` (AP = TP / (TP + FP + FN), 1.0 if both images are empty); at the
    lowest threshold: ``precision`` (1.0 if n_pred = 0), ``recall`` (1.0 if n_true = 0), ``f1`` =
    2 TP / (n_true + n_pred) (1.0 if both are 0), ``mean_matched_iou`` (NaN if nothing matched),
    ``diameter_error_sum_px`` = sum over matched pairs of |d_pred - d_true| with equivalent
    diameters d = sqrt(4 A / pi), ``n_matched``; and ``count_error`` = n_pred - n_true, ``merges``,
    ``splits`` (see the module docstring). A label image holding one id is one object: binary
    masks should go through ``true_objects`` / ``label_objects`` first. Raises ValueError when the
    shapes differ.
    """
    ts = _check_thresholds(iou_thresholds)
    _, _, n_true, n_pred, t_idx, p_idx, inter, area_t, area_p, iou = _overlaps(true_labels, pred_labels)

    out: dict[str, Any] = {"n_true": n_true, "n_pred": n_pred}
    matched: dict[float, np.ndarray] = {}
    for t in ts:
        m = _greedy_match(t_idx, p_idx, iou, t)
        matched[t] = m
        tp = int(m.size)
        k = threshold_key(t)
        out[f"tp_{k}"], out[f"fp_{k}"], out[f"fn_{k}"] = tp, n_pred - tp, n_true - tp
        out[f"ap_{k}"] = float(_ap(tp, n_pred - tp, n_true - tp))

    first = matched[min(ts)]
    tp = int(first.size)
    out["precision"], out["recall"], out["f1"] = _ratios(tp, n_true, n_pred)
    out["mean_matched_iou"] = float(np.mean(iou[first])) if tp else math.nan
    d_true = equivalent_diameter(area_t[t_idx[first]])
    d_pred = equivalent_diameter(area_p[p_idx[first]])
    out["diameter_error_sum_px"] = float(np.sum(np.abs(d_pred - d_true)))
    out["n_matched"] = tp
    out["count_error"] = n_pred - n_true

    covers = inter * 2 >= area_t[t_idx]  # p covers t: |t ∩ p| >= 0.5 |t|
    inside = inter * 2 >= area_p[p_idx]  # p lies mostly inside t: |t ∩ p| >= 0.5 |p|
    out["merges"] = int(np.count_nonzero(np.bincount(p_idx[covers], minlength=n_pred + 1) >= 2))
    out["splits"] = int(np.count_nonzero(np.bincount(t_idx[inside], minlength=n_true + 1) >= 2))
    return out


_SUMMED = ("n_true", "n_pred", "merges", "splits", "diameter_error_sum_px", "n_matched", "count_error")


def pool_scores(per_image: Sequence[Mapping[str, Any]], iou_thresholds: Sequence[float]) -> dict[str, Any]:
    """Pool ``object_scores`` of several images as StarDist's ``matching_dataset(by_image=False)``.

    TP/FP/FN per threshold, n_true, n_pred, merges, splits, diameter_error_sum_px, n_matched and
    count_error are summed over images; ``ap_k``, precision, recall and f1 are then computed from
    the sums (so a crowded image weighs more than a sparse one; this is not the mean of per-image
    APs). ``mean_matched_iou`` is weighted by each image's matches; ``mean_diameter_error_px`` =
    diameter_error_sum_px / n_matched (NaN if 0); ``count_error_rel`` = count_error / n_true (0.0
    when n_true = 0); ``n_images``. ``iou_thresholds`` must be those the images were scored with.
    With zero images the counts are 0, ``n_images`` is 0 and every ratio is NaN.
    """
    ts = _check_thresholds(iou_thresholds)
    keys = [threshold_key(t) for t in ts]
    counts = [f"{c}_{k}" for k in keys for c in ("tp", "fp", "fn")]
    for i, s in enumerate(per_image):
        missing = [c for c in (*_SUMMED, *counts, "mean_matched_iou") if c not in s]
        if missing:
            raise ValueError(f"per_image[{i}] lacks {missing}: score it with the same iou_thresholds")
    out: dict[str, Any] = {}
    for c in ("n_true", "n_pred"):
        out[c] = int(sum(int(s[c]) for s in per_image))
    for k in keys:
        tp, fp, fn = (int(sum(int(s[f"{c}_{k}"]) for s in per_image)) for c in ("tp", "fp", "fn"))
        out[f"tp_{k}"], out[f"fp_{k}"], out[f"fn_{k}"] = tp, fp, fn
        out[f"ap_{k}"] = float(_ap(tp, fp, fn)) if per_image else math.nan
    n_images = len(per_image)
    lowest = threshold_key(min(ts))
    if n_images:
        out["precision"], out["recall"], out["f1"] = _ratios(out[f"tp_{lowest}"], out["n_true"], out["n_pred"])
    else:
        out["precision"] = out["recall"] = out["f1"] = math.nan
    n_matched = int(sum(int(s["n_matched"]) for s in per_image))
    iou_sum = sum(float(s["mean_matched_iou"]) * int(s["n_matched"]) for s in per_image if int(s["n_matched"]))
    out["mean_matched_iou"] = iou_sum / n_matched if n_matched else math.nan
    out["diameter_error_sum_px"] = float(sum(float(s["diameter_error_sum_px"]) for s in per_image))
    out["n_matched"] = n_matched
    out["count_error"] = int(sum(int(s["count_error"]) for s in per_image))
    out["merges"] = int(sum(int(s["merges"]) for s in per_image))
    out["splits"] = int(sum(int(s["splits"]) for s in per_image))
    out["mean_diameter_error_px"] = out["diameter_error_sum_px"] / n_matched if n_matched else math.nan
    if n_images:
        out["count_error_rel"] = out["count_error"] / out["n_true"] if out["n_true"] else 0.0
    else:
        out["count_error_rel"] = math.nan
    out["n_images"] = n_images
    return out


def choose_object_method(truths: Sequence[np.ndarray], min_area: int = 4,
                         iou_threshold: float = 0.5) -> tuple[str, dict[str, float]]:
    """The object method that best turns the user's own masks back into their beads (``auto``).

    Each method labels the BINARY version of every ground truth in ``truths`` (pass the training
    images' masks: the method is then never chosen on the images it is scored on) and is scored
    against the true instances at ``iou_threshold`` (pooled AP). With instance labels this picks
    ``watershed`` when the user's beads touch and are round, and ``components`` when the objects are
    irregular (where the watershed over-splits them); measured in benchmarks/instance_objects.py.
    Binary masks define their beads as connected components, so ``components`` is returned without
    scoring. Ties go to ``components`` (the simpler, faster one). Returns the method and each
    method's AP (empty for binary masks).
    """
    if not any(is_instance_labels(np.asarray(t)) for t in truths):
        return "components", {}
    objects = [true_objects(t) for t in truths]
    key = f"ap_{threshold_key(iou_threshold)}"
    scores = {}
    for method in OBJECT_METHODS:
        rows = [object_scores(o, label_objects(o > 0, method=method, min_area=min_area), (iou_threshold,))
                for o in objects]
        scores[method] = float(pool_scores(rows, (iou_threshold,))[key])
    best = max(OBJECT_METHODS, key=lambda m: (scores[m], -OBJECT_METHODS.index(m)))
    return best, scores
