"""Known-answer tests of the classical threshold baseline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from beadseg import paths
from beadseg.baseline import THRESHOLD_METHODS, choose_method, run_baseline, segment, write_baseline
from beadseg.errors import ConfigError, DataError
from beadseg.metrics import jaccard
from tests.helpers.tiny import make_tiny_project

SIZE = 256


def _disks(size: int = SIZE, radius: int = 8, spacing: int = 48) -> np.ndarray:
    """A grid of separate disks (bool)."""
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for cy in range(spacing // 2, size, spacing):
        for cx in range(spacing // 2, size, spacing):
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def _bright_disks(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright disks (0.8) on a dark, flat, slightly noisy background (0.1)."""
    mask = _disks()
    image = 0.1 + 0.7 * mask + np.random.default_rng(seed).normal(0.0, 0.01, mask.shape)
    return image.astype(np.float32), mask


def _ramp(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disks 0.3 above a linear background ramp rising 0.8 across the image: no global threshold fits."""
    mask = _disks()
    xx = np.mgrid[:SIZE, :SIZE][1]
    image = 0.8 * xx / SIZE + 0.3 * mask + np.random.default_rng(seed).normal(0.0, 0.01, mask.shape)
    return image.astype(np.float32), mask


def test_methods_are_unique_and_start_with_otsu() -> None:
    assert len(set(THRESHOLD_METHODS)) == len(THRESHOLD_METHODS)
    assert THRESHOLD_METHODS[0] == "otsu"
    assert {"local", "otsu_bgsub"} <= set(THRESHOLD_METHODS)


def test_otsu_segments_bright_disks_exactly() -> None:
    image, mask = _bright_disks()
    pred = segment(image, "otsu")
    assert pred.dtype == np.bool_ and pred.shape == mask.shape
    assert jaccard(pred, mask) >= 0.99


@pytest.mark.parametrize("method", THRESHOLD_METHODS)
def test_every_method_covers_bright_disks(method: str) -> None:
    # li / yen / triangle pick lower thresholds than otsu on the smoothed image, so their disks come out
    # larger (yen even picks up noise); every method must still cover the disks.
    image, mask = _bright_disks()
    pred = segment(image, method)
    assert np.count_nonzero(pred & mask) >= 0.98 * np.count_nonzero(mask)
    if method in ("otsu", "local", "otsu_bgsub"):
        assert jaccard(pred, mask) >= 0.9


def test_ramp_defeats_global_threshold_but_not_local_ones() -> None:
    image, mask = _ramp()
    assert jaccard(segment(image, "otsu"), mask) < 0.5
    assert jaccard(segment(image, "local"), mask) >= 0.95
    assert jaccard(segment(image, "otsu_bgsub"), mask) >= 0.95


def test_choose_method_picks_a_background_aware_method_on_ramps() -> None:
    pairs = {"a": _ramp(0), "b": _ramp(1)}
    method, scores = choose_method(pairs)
    assert method in ("local", "otsu_bgsub")
    assert set(scores) == set(THRESHOLD_METHODS)
    assert scores[method] == max(scores.values()) >= 0.95
    assert scores["otsu"] < 0.5


def test_choose_method_breaks_ties_by_listed_order() -> None:
    # A flat image without beads: every method finds nothing, all score 1.0; otsu is listed first.
    empty = np.zeros((32, 32), np.uint8)
    method, scores = choose_method({"a": (np.full((32, 32), 0.2, np.float32), empty)})
    assert set(scores.values()) == {1.0}
    assert method == THRESHOLD_METHODS[0]


def test_small_objects_removed_and_holes_filled() -> None:
    image = np.zeros((64, 64), np.float32)
    image[10:20, 10:20] = 1.0
    image[14:16, 14:16] = 0.0  # a hole
    image[40, 40] = 1.0  # a single bright pixel
    pred = segment(image, "otsu")
    assert pred[14:16, 14:16].all()
    assert not pred[38:43, 38:43].any()


def test_constant_image_gives_empty_mask() -> None:
    for method in THRESHOLD_METHODS:
        assert not segment(np.full((32, 32), 7.0, np.float32), method).any()


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(ConfigError) as info:
        segment(np.zeros((8, 8)), "magic")
    message = str(info.value)
    assert "magic" in message
    for method in THRESHOLD_METHODS:
        assert method in message


def test_trivial_references_closed_form() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[:10, :10] = 1  # 25 % foreground
    image = mask.astype(np.float32)
    result = run_baseline(train={"t": (image, mask)}, val={"v": (image, mask)})
    assert result["all_foreground_jaccard"] == pytest.approx(0.25)
    assert result["all_background_jaccard"] == 0.0
    assert result["chosen_on"] == "train"


def test_trivial_references_without_val_foreground() -> None:
    image, mask = _bright_disks()
    empty = np.zeros((16, 16), np.uint8)
    result = run_baseline(train={"t": (image, mask)}, val={"v": (np.zeros((16, 16), np.float32), empty)})
    assert result["all_foreground_jaccard"] == 0.0
    assert result["all_background_jaccard"] == 1.0
    # nothing matched: the mean diameter error is NaN in score_predictions and must become None
    assert result["bead_mean_diameter_error_px"] is None
    json.dumps(result, allow_nan=False)


def test_method_is_chosen_on_train_not_val() -> None:
    # Chosen on flat, noise-free disks (otsu is best there), scored on a ramp where otsu fails.
    flat = _bright_disks()
    ramp = _ramp()
    result = run_baseline(train={"flat": (flat[1].astype(np.float32), flat[1])}, val={"ramp": ramp})
    assert result["method"] == "otsu"
    assert result["full_val_jaccard"] == pytest.approx(result["val_jaccard_by_method"]["otsu"])
    assert result["full_val_jaccard"] < max(result["val_jaccard_by_method"].values())


def test_empty_splits_are_data_errors() -> None:
    image, mask = _bright_disks()
    with pytest.raises(DataError):
        run_baseline(train={}, val={"v": (image, mask)})
    with pytest.raises(DataError):
        run_baseline(train={"t": (image, mask)}, val={})


def test_write_baseline_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_tiny_project(tmp_path)
    result = write_baseline(cfg, root=tmp_path)
    written = json.loads((tmp_path / paths.baseline_file()).read_text())
    assert written == result
    assert written["method"] in THRESHOLD_METHODS
    assert written["chosen_on"] == "train"
    for key in ("full_val_jaccard", "full_val_dice", "bead_f1", "bead_precision", "bead_recall",
                "all_foreground_jaccard", "all_background_jaccard"):
        assert key in written
    assert written["n_val_images"] == 1 and written["n_train_images"] == 2 and written["n_test_images"] == 1
    assert written["test_jaccard"] > 0.7 and "test_bead_f1" in written and "test_ap_50" in written
    assert written["full_val_jaccard"] > 0.7  # the synthetic demo is easy for a threshold
    assert written["train_jaccard_by_method"][written["method"]] == max(written["train_jaccard_by_method"].values())
    assert 0.0 < written["all_foreground_jaccard"] < 0.3
    err = capsys.readouterr().err
    assert f"baseline: {written['method']} (chosen on 2 train images) full-image Jaccard" in err
    assert "on 1 val images" in err and "on 1 test images" in err
