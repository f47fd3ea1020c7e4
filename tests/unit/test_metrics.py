"""Known-answer tests for beadseg.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beadseg.instances import label_objects, object_scores, true_objects
from beadseg.metrics import (
    confusion,
    dice,
    dice_from_counts,
    equivalent_diameter,
    jaccard,
    jaccard_from_counts,
)


def disk(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


# --------------------------------------------------------------------------- pixel metrics
def test_confusion_and_scores_two_pixel_overlap() -> None:
    pred = np.zeros((4, 4), bool)
    target = np.zeros((4, 4), bool)
    pred[0, 0:3] = True  # 3 px
    target[0, 1:4] = True  # 3 px, overlap at (0,1), (0,2)
    assert confusion(pred, target) == (2, 1, 1)
    assert jaccard(pred, target) == pytest.approx(2 / 4)
    assert dice(pred, target) == pytest.approx(4 / 6)


def test_disjoint_and_identical() -> None:
    a = np.zeros((3, 3), bool)
    b = a.copy()
    a[0, 0] = True
    b[2, 2] = True
    assert jaccard(a, b) == 0.0 and dice(a, b) == 0.0
    assert jaccard(a, a) == 1.0 and dice(a, a) == 1.0


def test_both_empty_is_one() -> None:
    z = np.zeros((5, 5), bool)
    assert jaccard(z, z) == 1.0 and dice(z, z) == 1.0
    assert jaccard_from_counts(0, 0, 0) == 1.0 and dice_from_counts(0, 0, 0) == 1.0


def test_one_empty_is_zero() -> None:
    z = np.zeros((5, 5), bool)
    o = np.ones((5, 5), bool)
    assert jaccard(z, o) == 0.0 and dice(o, z) == 0.0


def test_counts_accumulate_dataset_level() -> None:
    # tile 1: perfect tiny object; tile 2: big object half found. Dataset-level != mean per tile.
    p1 = np.zeros((4, 4), bool); t1 = p1.copy(); p1[0, 0] = t1[0, 0] = True  # noqa: E702
    p2 = np.zeros((4, 4), bool); t2 = np.ones((4, 4), bool); p2[:2] = True  # noqa: E702
    tp, fp, fn = (a + b for a, b in zip(confusion(p1, t1), confusion(p2, t2)))
    assert (tp, fp, fn) == (9, 0, 8)
    assert jaccard_from_counts(tp, fp, fn) == pytest.approx(9 / 17)
    assert dice_from_counts(tp, fp, fn) == pytest.approx(18 / 26)
    assert jaccard_from_counts(tp, fp, fn) != pytest.approx((jaccard(p1, t1) + jaccard(p2, t2)) / 2)


def test_accepts_torch_and_non_bool() -> None:
    pred = torch.tensor([[0.9, 0.2], [0.7, 0.0]])  # > 0.5 -> [[1,0],[1,0]]
    target = np.array([[255, 255], [0, 0]], dtype=np.uint8)
    assert confusion(pred, target) == (1, 1, 1)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        confusion(np.zeros((2, 2)), np.zeros((2, 3)))


# --------------------------------------------------------------------------- bead metrics
# The one implementation of bead matching is beadseg.instances (what the evaluate step scores with); these are
# its known answers on 0/1 masks, whose beads are their 4-connected components.
SHAPE = (64, 64)


def bead_metrics(pred: np.ndarray, true: np.ndarray, min_area: int = 4) -> dict[str, float]:
    """object_scores of a 0/1 prediction against a 0/1 truth at IoU 0.5, with the mean diameter error."""
    m = object_scores(true_objects(true.astype(np.uint8)), label_objects(pred, method="components", min_area=min_area),
                      (0.5,))
    n = m["n_matched"]
    return {**m, "abs_count_error": abs(m["count_error"]),
            "mean_diameter_error_px": m["diameter_error_sum_px"] / n if n else math.nan}


def test_bead_metrics_shifted_missing_extra() -> None:
    true = disk(SHAPE, (16, 16), 6) | disk(SHAPE, (45, 45), 6)
    # disk A found, shifted 1 px (IoU well above 0.5); disk B missed; one false positive.
    pred = disk(SHAPE, (17, 16), 6) | disk(SHAPE, (16, 48), 5)
    m = bead_metrics(pred, true)
    assert m["n_true"] == 2 and m["n_pred"] == 2 and m["n_matched"] == 1
    assert m["count_error"] == 0 and m["abs_count_error"] == 0
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)
    assert m["mean_diameter_error_px"] == pytest.approx(0.0)  # shifted copy: same area


def test_bead_metrics_recall_half_count_error() -> None:
    true = disk(SHAPE, (16, 16), 6) | disk(SHAPE, (45, 45), 6)
    pred = disk(SHAPE, (16, 17), 6)
    m = bead_metrics(pred, true)
    assert (m["n_true"], m["n_pred"], m["n_matched"]) == (2, 1, 1)
    assert m["count_error"] == -1 and m["abs_count_error"] == 1
    assert m["precision"] == 1.0 and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 / 3)


def test_bead_metrics_large_shift_is_not_a_match() -> None:
    true = disk(SHAPE, (32, 20), 6)
    pred = disk(SHAPE, (32, 28), 6)  # IoU < 0.5
    m = bead_metrics(pred, true)
    assert m["n_matched"] == 0 and m["f1"] == 0.0
    assert math.isnan(m["mean_diameter_error_px"])


def test_bead_metrics_diameter_error_known_radius() -> None:
    true = disk(SHAPE, (32, 32), 10)
    pred = disk(SHAPE, (32, 32), 8)
    m = bead_metrics(pred, true)
    assert m["n_matched"] == 1  # IoU ~ 0.64
    d_true = equivalent_diameter(true.sum())
    d_pred = equivalent_diameter(pred.sum())
    assert m["mean_diameter_error_px"] == pytest.approx(abs(d_true - d_pred))
    assert m["mean_diameter_error_px"] == pytest.approx(4.0, abs=0.3)  # |2*10 - 2*8|


def test_equivalent_diameter() -> None:
    assert equivalent_diameter(math.pi * 25) == pytest.approx(10.0)


def test_bead_metrics_min_area_drops_small_predictions() -> None:
    true = disk(SHAPE, (32, 32), 6)
    pred = true.copy()
    pred[2, 2] = pred[60, 60] = pred[2, 60] = True  # 1-px specks
    m = bead_metrics(pred, true, min_area=4)
    assert m["n_pred"] == 1 and m["precision"] == 1.0
    assert bead_metrics(pred, true, min_area=1)["n_pred"] == 4


def test_bead_metrics_connectivity() -> None:
    true = np.zeros((8, 8), bool)
    true[1:3, 1:3] = True
    true[3:5, 3:5] = True  # touches the first square only at a corner
    assert bead_metrics(true, true, min_area=1)["n_true"] == 2  # 4-connectivity: a corner does not join beads


def test_bead_metrics_empty_cases() -> None:
    z = np.zeros(SHAPE, bool)
    one = disk(SHAPE, (32, 32), 6)
    both_empty = bead_metrics(z, z)
    assert both_empty["precision"] == both_empty["recall"] == both_empty["f1"] == 1.0
    assert both_empty["n_true"] == both_empty["n_pred"] == 0
    assert math.isnan(both_empty["mean_diameter_error_px"])
    no_pred = bead_metrics(z, one)
    assert (no_pred["precision"], no_pred["recall"], no_pred["f1"]) == (1.0, 0.0, 0.0)
    no_true = bead_metrics(one, z)
    assert (no_true["precision"], no_true["recall"], no_true["f1"]) == (0.0, 1.0, 0.0)
    assert no_true["count_error"] == 1


def test_bead_labelling_accepts_a_torch_probability_map() -> None:
    one = disk(SHAPE, (32, 32), 6)
    m = bead_metrics(torch.from_numpy(one.astype(np.float32)), one)  # type: ignore[arg-type]
    assert m["f1"] == 1.0


def test_bead_metrics_fast_on_large_image() -> None:
    rng = np.random.default_rng(0)
    n_side = 45  # 2025 beads on a 2048x2048 grid
    step = 2048 // n_side
    yy, xx = np.mgrid[:2048, :2048]
    cy = (yy // step) * step + step // 2
    cx = (xx // step) * step + step // 2
    true = ((yy - cy) ** 2 + (xx - cx) ** 2 <= 16**2) & (yy < n_side * step) & (xx < n_side * step)
    pred = np.roll(true, 2, axis=1)
    pred &= rng.random(pred.shape) > 0.01  # some noise holes
    m = bead_metrics(pred, true)  # sparse matching: a dense 2025 x 2025 IoU table per threshold is not built
    assert m["n_true"] == n_side**2
    assert m["recall"] > 0.99
