"""Known-answer tests for beadseg.instances, on small hand-made label images.

Every expected number is derived in the comments from the pixel geometry of the drawn objects.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from beadseg.errors import ConfigError
from beadseg.instances import (
    OBJECT_METHODS,
    label_objects,
    object_scores,
    pool_scores,
    relabel,
    true_objects,
)
from beadseg.metrics import equivalent_diameter

THS = (0.5, 0.6, 0.7, 0.8, 0.9)


def disk(shape: tuple[int, int], center: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def box(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Bool rectangle rows y0..y1-1, cols x0..x1-1."""
    m = np.zeros(shape, bool)
    m[y0:y1, x0:x1] = True
    return m


def paint(shape: tuple[int, int], *objects: tuple[np.ndarray, int]) -> np.ndarray:
    """Instance image with each (mask, id) painted in turn (later wins)."""
    lab = np.zeros(shape, np.int32)
    for m, i in objects:
        lab[m] = i
    return lab


# --------------------------------------------------------------------------- relabel / true_objects
def test_relabel_sparse_ids_keep_order_and_background() -> None:
    a = np.array([[0, 7, 7], [300, 0, 7]], dtype=np.uint16)
    out = relabel(a)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, [[0, 1, 1], [2, 0, 1]])


def test_relabel_huge_ids_and_no_background() -> None:
    a = np.array([[2**40, 5], [5, 2**40]], dtype=np.int64)  # no 0 at all: ids 5 -> 1, 2**40 -> 2
    np.testing.assert_array_equal(relabel(a), [[2, 1], [1, 2]])


def test_relabel_rejects_negative_and_fractional_ids() -> None:
    with pytest.raises(ValueError, match="negative"):
        relabel(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="integer"):
        relabel(np.array([[0.0, 0.4]]))


def test_true_objects_binary_255_is_components() -> None:
    shape = (6, 12)
    touching = (box(shape, 0, 4, 0, 4) | box(shape, 0, 4, 4, 8)).astype(np.uint8) * 255
    assert true_objects(touching).max() == 1  # one 4-connected blob
    apart = (box(shape, 0, 4, 0, 4) | box(shape, 0, 4, 6, 10)).astype(np.uint8) * 255
    lab = true_objects(apart)
    assert lab.dtype == np.int32 and lab.max() == 2
    assert true_objects(apart > 0).max() == 2  # bool works the same


def test_true_objects_instance_ids_keep_touching_beads_apart() -> None:
    shape = (6, 12)
    lab = paint(shape, (box(shape, 0, 4, 0, 4), 5), (box(shape, 0, 4, 4, 8), 9))
    out = true_objects(lab)
    assert out.max() == 2
    assert np.count_nonzero(out == 1) == 16 and np.count_nonzero(out == 2) == 16
    # a single id is treated like a binary mask: its two separate pieces are two objects
    single = paint(shape, (box(shape, 0, 2, 0, 2) | box(shape, 4, 6, 9, 12), 7))
    assert true_objects(single).max() == 2


# --------------------------------------------------------------------------- label_objects
def test_label_objects_threshold_is_strict_and_uint8_masks_work() -> None:
    prob = np.zeros((5, 9))
    prob[1:3, 1:3] = 0.5  # not > 0.5: background
    prob[1:3, 5:7] = 0.51
    lab = label_objects(prob)
    assert lab.max() == 1 and np.count_nonzero(lab) == 4
    mask = np.zeros((5, 9), np.uint8)
    mask[1:3, 1:3] = 255
    assert label_objects(mask).max() == 1


@pytest.mark.parametrize("method", OBJECT_METHODS)
def test_min_area_drops_small_objects_and_relabels(method: str) -> None:
    m = np.zeros((9, 20), bool)
    m[0, 0] = True  # 1 px
    m[4, 3:6] = True  # 3 px
    m[0:2, 10:12] = True  # 4 px
    m[6:9, 15:18] = True  # 9 px
    assert label_objects(m, method=method, min_area=1).max() == 4
    lab = label_objects(m, method=method, min_area=4)
    assert lab.max() == 2
    assert sorted(np.bincount(lab.ravel())[1:].tolist()) == [4, 9]  # ids 1..2, no gaps
    assert label_objects(m, method=method, min_area=10).max() == 0


def test_corner_touching_beads_are_two_components() -> None:
    m = np.zeros((6, 6), bool)
    m[0:3, 0:3] = True
    m[3:6, 3:6] = True  # touches only at a corner
    assert label_objects(m, min_area=0).max() == 2
    assert label_objects(m, method="watershed", min_area=0).max() == 2


def test_watershed_splits_two_touching_disks_components_merges() -> None:
    shape = (40, 60)
    a, b = disk(shape, (20, 20), 8), disk(shape, (20, 34), 8)  # centres 14 apart < 16: they overlap
    truth = paint(shape, (a, 1), (b & ~a, 2))
    mask = a | b
    comp = label_objects(mask, method="components")
    ws = label_objects(mask, method="watershed")
    assert comp.max() == 1
    assert ws.max() == 2
    s_comp = object_scores(truth, comp, (0.5,))
    assert s_comp["merges"] == 1 and s_comp["n_pred"] == 1
    s_ws = object_scores(truth, ws, (0.5, 0.9))
    assert s_ws["ap_50"] == 1.0 and s_ws["merges"] == 0 and s_ws["splits"] == 0


@pytest.mark.parametrize("radius", [2.5, 3, 4, 5.5, 8, 12, 15])
def test_watershed_keeps_a_single_disk_whole(radius: float) -> None:
    m = disk((40, 40), (19.5, 20), radius)
    assert label_objects(m, method="watershed", min_area=0).max() == 1


def test_watershed_keeps_a_square_plateau_whole() -> None:
    # the distance transform of a square has a ridge/plateau of equal maxima: still one seed
    m = box((20, 20), 3, 13, 4, 14)
    assert label_objects(m, method="watershed").max() == 1


@pytest.mark.parametrize(("radius", "gap"), [(2.5, 4.3), (3, 5.2), (4, 7.0)])
def test_watershed_splits_small_touching_beads(radius: float, gap: float) -> None:
    # centres 0.86-0.87 (r1 + r2) apart: the tightest touching pairs of the synthetic "hard" data
    shape = (30, 40)
    mask = disk(shape, (15, 15), radius) | disk(shape, (15, 15 + gap), radius)
    assert label_objects(mask, method="components", min_area=0).max() == 1
    assert label_objects(mask, method="watershed", min_area=0).max() == 2


def test_watershed_splits_a_chain_of_three_touching_disks() -> None:
    shape = (30, 70)
    mask = disk(shape, (15, 15), 7) | disk(shape, (15, 28), 7) | disk(shape, (15, 41), 7)
    assert label_objects(mask, method="components").max() == 1
    assert label_objects(mask, method="watershed").max() == 3


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        label_objects(np.zeros((4, 4)), method="stardist")
    msg = str(info.value)
    assert "stardist" in msg
    for m in OBJECT_METHODS:
        assert repr(m) in msg
    assert OBJECT_METHODS == ("components", "watershed")


# --------------------------------------------------------------------------- object_scores
def test_merge_of_two_touching_squares() -> None:
    shape = (6, 12)
    a, b = box(shape, 0, 4, 0, 4), box(shape, 0, 4, 4, 10)  # 16 px and 24 px, touching, ids 1, 2
    truth = paint(shape, (a, 1), (b, 2))
    pred = paint(shape, (a | b, 1))  # 40 px: IoU with a = 16/40 = 0.4, with b = 24/40 = 0.6
    s = object_scores(truth, pred, (0.5, 0.7))
    assert (s["n_true"], s["n_pred"]) == (2, 1)
    # t = 0.5: b matched -> TP 1, FP 0, FN 1, AP = 1 / 2
    assert (s["tp_50"], s["fp_50"], s["fn_50"]) == (1, 0, 1)
    assert s["ap_50"] == pytest.approx(0.5)
    # t = 0.7: nothing -> TP 0, FP 1, FN 2, AP 0
    assert (s["tp_70"], s["fp_70"], s["fn_70"], s["ap_70"]) == (0, 1, 2, 0.0)
    assert s["precision"] == 1.0 and s["recall"] == 0.5
    assert s["f1"] == pytest.approx(2 * 1 / 3)
    assert s["mean_matched_iou"] == pytest.approx(0.6)
    d = math.sqrt(4 * 40 / math.pi) - math.sqrt(4 * 24 / math.pi)
    assert s["diameter_error_sum_px"] == pytest.approx(d) and s["n_matched"] == 1
    assert s["count_error"] == -1
    assert s["merges"] == 1 and s["splits"] == 0


def test_prediction_covering_one_bead_and_a_corner_of_another_is_no_merge() -> None:
    shape = (6, 12)
    a, b = box(shape, 0, 4, 0, 4), box(shape, 0, 4, 4, 8)
    truth = paint(shape, (a, 1), (b, 2))
    pred = paint(shape, (a | box(shape, 0, 2, 4, 6), 1))  # all of a, 4 of b's 16 px (< half)
    s = object_scores(truth, pred, (0.5,))
    assert s["merges"] == 0


def test_split_of_a_rectangle_into_two_pieces() -> None:
    shape = (6, 12)
    truth = paint(shape, (box(shape, 0, 4, 0, 10), 3))  # 40 px
    pred = paint(shape, (box(shape, 0, 4, 0, 4), 1), (box(shape, 0, 4, 4, 10), 2))  # 16 + 24 px
    s = object_scores(truth, pred, (0.5, 0.7))
    # IoUs 16/40 = 0.4 and 24/40 = 0.6: at 0.5 TP 1, FP 1, FN 0 -> AP 1/2; at 0.7 AP 0/(0+2+1)
    assert (s["tp_50"], s["fp_50"], s["fn_50"]) == (1, 1, 0)
    assert s["ap_50"] == pytest.approx(0.5) and s["ap_70"] == 0.0
    assert s["precision"] == 0.5 and s["recall"] == 1.0
    assert s["splits"] == 1 and s["merges"] == 0
    assert s["count_error"] == 1


def test_disk_split_into_two_halves() -> None:
    shape = (30, 30)
    d = disk(shape, (15, 15), 9)
    left = d & (np.arange(30)[None, :] < 15)
    right = d & ~left  # holds the centre column: more than half the disk
    truth = paint(shape, (d, 1))
    pred = paint(shape, (left, 4), (right, 8))
    s = object_scores(truth, pred, (0.5, 0.9))
    assert s["splits"] == 1 and s["merges"] == 0
    area, a_right = np.count_nonzero(d), np.count_nonzero(right)
    assert a_right * 2 > area > np.count_nonzero(left) * 2
    assert (s["tp_50"], s["fp_50"], s["fn_50"]) == (1, 1, 0)  # the right half, IoU a_right / area > 0.5
    assert s["mean_matched_iou"] == pytest.approx(a_right / area)
    assert s["tp_90"] == 0 and s["ap_90"] == 0.0


def test_perfect_prediction_with_other_ids() -> None:
    shape = (40, 40)
    truth = paint(shape, (disk(shape, (10, 10), 5), 1), (disk(shape, (10, 25), 6), 2),
                  (disk(shape, (28, 18), 8), 3))
    pred = np.where(truth > 0, 1000 - 7 * truth, 0).astype(np.int64)  # ids 993, 986, 979
    s = object_scores(truth, pred, THS)
    for k in ("50", "60", "70", "80", "90"):
        assert s[f"ap_{k}"] == 1.0 and s[f"tp_{k}"] == 3 and s[f"fp_{k}"] == 0 and s[f"fn_{k}"] == 0
    assert s["precision"] == s["recall"] == s["f1"] == 1.0
    assert s["mean_matched_iou"] == 1.0 and s["diameter_error_sum_px"] == 0.0 and s["n_matched"] == 3
    assert s["merges"] == 0 and s["splits"] == 0 and s["count_error"] == 0


def test_shifted_square_iou_two_thirds_lands_between_thresholds() -> None:
    shape = (8, 8)
    truth = paint(shape, (box(shape, 1, 6, 1, 6), 1))  # 5x5 = 25 px
    pred = paint(shape, (box(shape, 1, 6, 2, 7), 1))  # shifted 1 px: overlap 20, union 30, IoU 2/3
    s = object_scores(truth, pred, THS)
    assert s["tp_50"] == 1 and s["tp_60"] == 1
    assert (s["tp_70"], s["fp_70"], s["fn_70"]) == (0, 1, 1)
    assert s["ap_60"] == 1.0 and s["ap_70"] == 0.0 and s["ap_90"] == 0.0
    assert s["mean_matched_iou"] == pytest.approx(2 / 3)
    assert s["diameter_error_sum_px"] == pytest.approx(0.0)  # same area


def test_empty_vs_empty() -> None:
    z = np.zeros((5, 5), np.int32)
    s = object_scores(z, z, THS)
    assert (s["n_true"], s["n_pred"], s["n_matched"], s["merges"], s["splits"]) == (0, 0, 0, 0, 0)
    assert all(s[f"ap_{k}"] == 1.0 for k in ("50", "60", "70", "80", "90"))
    assert s["precision"] == s["recall"] == s["f1"] == 1.0
    assert math.isnan(s["mean_matched_iou"]) and s["diameter_error_sum_px"] == 0.0


def test_prediction_only_false_positives_and_missed_truth() -> None:
    shape = (10, 10)
    z = np.zeros(shape, np.int32)
    pred = paint(shape, (box(shape, 0, 2, 0, 2), 1), (box(shape, 4, 6, 4, 6), 2), (box(shape, 8, 10, 8, 10), 3))
    s = object_scores(z, pred, (0.5,))
    assert (s["tp_50"], s["fp_50"], s["fn_50"], s["ap_50"]) == (0, 3, 0, 0.0)
    assert (s["precision"], s["recall"], s["f1"]) == (0.0, 1.0, 0.0)
    assert s["count_error"] == 3 and math.isnan(s["mean_matched_iou"])
    s = object_scores(pred, z, (0.5,))  # everything missed
    assert (s["tp_50"], s["fp_50"], s["fn_50"], s["ap_50"]) == (0, 0, 3, 0.0)
    assert (s["precision"], s["recall"], s["f1"]) == (1.0, 0.0, 0.0)


def test_keys_are_exact() -> None:
    z = np.zeros((3, 3), np.int32)
    keys = set(object_scores(z, z, (0.5, 0.75)))
    per_t = {f"{c}_{k}" for c in ("tp", "fp", "fn", "ap") for k in ("50", "75")}
    assert keys == per_t | {"n_true", "n_pred", "precision", "recall", "f1", "mean_matched_iou",
                            "diameter_error_sum_px", "n_matched", "count_error", "merges", "splits"}


def test_precision_recall_use_the_lowest_threshold_whatever_the_order() -> None:
    shape = (8, 8)
    truth = paint(shape, (box(shape, 1, 6, 1, 6), 1))
    pred = paint(shape, (box(shape, 1, 6, 2, 7), 1))  # IoU 2/3
    s = object_scores(truth, pred, (0.9, 0.5))
    assert s["f1"] == 1.0 and s["n_matched"] == 1 and s["ap_90"] == 0.0


def test_shape_mismatch_and_bad_thresholds() -> None:
    with pytest.raises(ValueError, match="shape"):
        object_scores(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError):
        object_scores(np.zeros((4, 4), int), np.zeros((4, 4), int), (0.0,))
    with pytest.raises(ValueError, match="duplicate"):
        object_scores(np.zeros((4, 4), int), np.zeros((4, 4), int), (0.5, 0.501))


def _dense_reference(true: np.ndarray, pred: np.ndarray, min_area: int) -> tuple[int, int, int]:
    """(n_true, n_pred, matched) by the textbook O(n_true x n_pred) IoU matrix and greedy matching at 0.5."""
    from scipy import ndimage

    t, n_t = ndimage.label(true)
    p, n_p = ndimage.label(pred)
    keep = [i for i in range(1, n_p + 1) if (p == i).sum() >= min_area]
    iou = np.array([[((t == a) & (p == b)).sum() / ((t == a) | (p == b)).sum() for b in keep]
                    for a in range(1, n_t + 1)]).reshape(n_t, len(keep))
    matched, used_t, used_p = 0, set(), set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        a, b = divmod(int(flat), len(keep))
        if iou[a, b] >= 0.5 and a not in used_t and b not in used_p:
            used_t.add(a)
            used_p.add(b)
            matched += 1
    return n_t, len(keep), matched


def test_agrees_with_a_dense_reference_on_binary_masks() -> None:
    rng = np.random.default_rng(1)
    for _ in range(5):
        true = rng.random((48, 48)) > 0.6
        pred = true ^ (rng.random((48, 48)) > 0.9)
        s = object_scores(true_objects(true), label_objects(pred, min_area=4), (0.5,))
        n_true, n_pred, matched = _dense_reference(true, pred, min_area=4)
        assert (s["n_true"], s["n_pred"], s["tp_50"]) == (n_true, n_pred, matched)
        assert s["f1"] == pytest.approx(2 * matched / (n_true + n_pred))


def test_many_objects_is_sparse_and_fast() -> None:
    # 65 536 objects each side: a dense n_true x n_pred table would need 4.3e9 cells
    lab = np.zeros((1024, 1024), np.int32)
    ids = np.arange(1, 256 * 256 + 1, dtype=np.int32).reshape(256, 256)
    for dy in range(3):
        for dx in range(3):
            lab[dy::4, dx::4] = ids
    s = object_scores(lab, lab, (0.5, 0.9))  # a dense table would need ~17 GB: this finishing is the check
    assert s["n_true"] == s["tp_90"] == 65536 and s["ap_90"] == 1.0


# --------------------------------------------------------------------------- pool_scores
def test_pool_sums_counts_not_mean_of_aps() -> None:
    shape = (20, 20)
    three = paint(shape, (box(shape, 0, 3, 0, 3), 1), (box(shape, 5, 8, 5, 8), 2), (box(shape, 12, 15, 12, 15), 3))
    img_a = object_scores(three, three, (0.5,))  # TP 3, FP 0, FN 0, AP 1
    t_b = paint(shape, (box(shape, 0, 4, 0, 4), 1))
    p_b = paint(shape, (box(shape, 10, 14, 10, 14), 1))
    img_b = object_scores(t_b, p_b, (0.5,))  # TP 0, FP 1, FN 1, AP 0
    pooled = pool_scores([img_a, img_b], (0.5,))
    assert (pooled["tp_50"], pooled["fp_50"], pooled["fn_50"]) == (3, 1, 1)
    assert pooled["ap_50"] == pytest.approx(3 / 5)  # not (1 + 0) / 2
    assert pooled["f1"] == pytest.approx(2 * 3 / 8)
    assert pooled["precision"] == pytest.approx(3 / 4) and pooled["recall"] == pytest.approx(3 / 4)
    assert (pooled["n_true"], pooled["n_pred"], pooled["n_images"]) == (4, 4, 2)
    assert pooled["count_error"] == 0 and pooled["count_error_rel"] == 0.0


def test_pool_weights_iou_by_matches_and_pools_diameter_error() -> None:
    shape = (20, 20)
    three = paint(shape, (box(shape, 0, 3, 0, 3), 1), (box(shape, 5, 8, 5, 8), 2), (box(shape, 12, 15, 12, 15), 3))
    img_a = object_scores(three, three, (0.5,))  # 3 matches, IoU 1
    t_b = paint(shape, (box(shape, 1, 6, 1, 6), 1))  # 25 px
    p_b = paint(shape, (box(shape, 1, 6, 2, 8), 1), (box(shape, 10, 12, 10, 12), 2))  # 30 px: IoU 20/35
    img_b = object_scores(t_b, p_b, (0.5,))
    pooled = pool_scores([img_a, img_b], (0.5,))
    assert pooled["mean_matched_iou"] == pytest.approx((3 * 1.0 + 20 / 35) / 4)
    d_err = float(equivalent_diameter(30) - equivalent_diameter(25))
    assert pooled["mean_diameter_error_px"] == pytest.approx(d_err / 4)
    assert pooled["count_error"] == 1 and pooled["count_error_rel"] == pytest.approx(1 / 4)


def test_pool_merges_splits_and_empty_truth() -> None:
    shape = (6, 12)
    a, b = box(shape, 0, 4, 0, 4), box(shape, 0, 4, 4, 10)
    merged = object_scores(paint(shape, (a, 1), (b, 2)), paint(shape, (a | b, 1)), (0.5,))
    split = object_scores(paint(shape, (a | b, 1)), paint(shape, (a, 1), (b, 2)), (0.5,))
    pooled = pool_scores([merged, split], (0.5,))
    assert pooled["merges"] == 1 and pooled["splits"] == 1
    z = np.zeros(shape, np.int32)
    only_fp = pool_scores([object_scores(z, paint(shape, (a, 1)), (0.5,))], (0.5,))
    assert only_fp["count_error"] == 1 and only_fp["count_error_rel"] == 0.0
    assert math.isnan(only_fp["mean_diameter_error_px"])


def test_pool_of_zero_images() -> None:
    pooled = pool_scores([], (0.5, 0.75))
    assert pooled["n_images"] == 0 and pooled["n_true"] == 0
    for key in ("ap_50", "ap_75", "precision", "recall", "f1", "mean_matched_iou", "mean_diameter_error_px",
                "count_error_rel"):
        assert math.isnan(pooled[key]), key


def test_pool_needs_the_same_thresholds() -> None:
    z = np.zeros((3, 3), np.int32)
    with pytest.raises(ValueError, match="iou_thresholds"):
        pool_scores([object_scores(z, z, (0.5,))], (0.5, 0.75))


# --------------------------------------------------------------------------- auto: the method chosen on the masks
def test_auto_picks_watershed_for_touching_round_beads() -> None:
    from beadseg.instances import choose_object_method

    shape = (40, 80)
    chain = [(disk(shape, (20, 10 + 15 * i), 8), i + 1) for i in range(3)]  # three touching beads in a row
    labels = paint(shape, *chain, (disk(shape, (20, 70), 6), 4))
    method, scores = choose_object_method([labels])
    # components makes the chain one object overlapping each bead by about a third (no match): only the
    # lone bead is found, AP = 1 TP / (1 TP + 1 FP + 3 FN) = 0.2; watershed finds all four
    assert method == "watershed"
    assert scores["components"] == pytest.approx(1 / 5) and scores["watershed"] == 1.0


def test_auto_picks_components_for_irregular_objects_the_watershed_cuts() -> None:
    from beadseg.instances import choose_object_method

    shape = (40, 80)
    dumbbell = disk(shape, (20, 12), 7) | disk(shape, (20, 36), 7) | box(shape, 18, 23, 12, 36)  # one object
    labels = paint(shape, (dumbbell, 5), (disk(shape, (20, 65), 6), 9))
    method, scores = choose_object_method([labels])
    assert label_objects(labels > 0, method="watershed").max() > 2  # the watershed cuts the dumbbell
    assert method == "components" and scores["components"] == 1.0 > scores["watershed"]


def test_auto_with_binary_masks_is_components_without_scoring() -> None:
    from beadseg.instances import choose_object_method

    shape = (40, 80)
    binary = (disk(shape, (20, 14), 8) | disk(shape, (20, 29), 8)).astype(np.uint8) * 255
    assert choose_object_method([binary]) == ("components", {})
