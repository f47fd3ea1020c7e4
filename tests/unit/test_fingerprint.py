"""Known-answer tests of the data set fingerprint."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from beadseg import paths
from beadseg.config import validate
from beadseg.data.fingerprint import (
    MIN_STEPS,
    SOLIDITY_THRESHOLD,
    compute_fingerprint,
    fingerprint_warnings,
    image_stats,
    is_instance_labels,
    object_stats,
    run_budget,
    tile_count,
    write_fingerprint,
)
from beadseg.data.prepare import load_tiles
from beadseg.errors import ConfigError, DataError
from tests.helpers.tiny import make_tiny_project, tiny_params


def _disk(shape: tuple[int, int], cy: int, cx: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _three_disks() -> tuple[np.ndarray, list[int]]:
    """Instance labels: disks 1 and 2 (r=8) share a 4-adjacent edge, disk 3 (r=12) stands alone."""
    shape = (100, 100)
    labels = np.zeros(shape, np.uint16)
    a, b, c = _disk(shape, 20, 20, 8), _disk(shape, 20, 37, 8), _disk(shape, 65, 60, 12)
    assert not (a & b).any()  # test set-up: the disks do not overlap ...
    labels[a], labels[b], labels[c] = 1, 2, 3
    assert (labels[20, 28], labels[20, 29]) == (1, 2)  # ... but touch
    return labels, [int(a.sum()), int(b.sum()), int(c.sum())]


def _d(area: float) -> float:
    return math.sqrt(4 * area / math.pi)


# --------------------------------------------------------------------------- per image


def test_image_stats_known_percentiles() -> None:
    raw = np.arange(101, dtype=np.uint16).reshape(1, 101)
    stats = image_stats(raw)
    assert stats["dtype"] == "uint16" and stats["shape"] == [1, 101]
    assert (stats["min"], stats["max"]) == (0.0, 100.0)
    assert stats["p1"] == pytest.approx(1.0)
    assert stats["p50"] == pytest.approx(50.0)
    assert stats["p99"] == pytest.approx(99.0)
    assert stats["p99_8"] == pytest.approx(99.8)


def test_is_instance_labels() -> None:
    assert not is_instance_labels(np.zeros((4, 4), np.uint8))
    assert not is_instance_labels(np.array([[0, 1], [1, 0]]))
    assert not is_instance_labels(np.array([[0, 255], [255, 0]]))
    assert is_instance_labels(np.array([[0, 1], [2, 0]]))


def test_object_stats_instance_labels_exact() -> None:
    labels, areas = _three_disks()
    stats = object_stats(labels, instance=True)
    assert stats["count"] == 3
    assert stats["foreground_fraction"] == pytest.approx(sum(areas) / labels.size)
    diameters = sorted(_d(a) for a in areas)
    assert stats["diameter_px"]["min"] == pytest.approx(diameters[0])
    assert stats["diameter_px"]["median"] == pytest.approx(diameters[1])
    assert stats["diameter_px"]["max"] == pytest.approx(diameters[2])
    assert stats["diameter_px"]["p95"] == pytest.approx(np.percentile(diameters, 95))
    assert stats["touching_fraction"] == pytest.approx(2 / 3)
    assert stats["touching_estimated"] is False


def test_instance_objects_touching_only_diagonally_do_not_touch() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[1:3, 1:3] = 1
    labels[3:5, 3:5] = 2  # corner to corner: not 4-adjacent
    assert object_stats(labels, instance=True)["touching_fraction"] == 0.0
    labels[3, 2] = 2  # now an edge is shared
    assert object_stats(labels, instance=True)["touching_fraction"] == 1.0


def test_object_stats_binary_merges_touching_pair() -> None:
    labels, areas = _three_disks()
    stats = object_stats(labels > 0, instance=False)
    assert stats["count"] == 2  # the touching pair is one component
    assert stats["foreground_fraction"] == pytest.approx(sum(areas) / labels.size)
    low, high = sorted([_d(areas[0] + areas[1]), _d(areas[2])])
    assert (stats["diameter_px"]["min"], stats["diameter_px"]["max"]) == (pytest.approx(low), pytest.approx(high))
    assert stats["touching_fraction"] == pytest.approx(0.5)  # the merged pair has low solidity, the lone disk not
    assert stats["touching_estimated"] is True
    assert SOLIDITY_THRESHOLD <= 0.9


def test_object_stats_empty_mask() -> None:
    stats = object_stats(np.zeros((8, 8), np.uint8), instance=False)
    assert stats["count"] == 0 and stats["foreground_fraction"] == 0.0
    assert stats["touching_fraction"] is None
    assert stats["diameter_px"] == {"min": None, "median": None, "p95": None, "max": None}


# --------------------------------------------------------------------------- tiles and budgets


@pytest.mark.parametrize(("shape", "size", "stride", "policy", "expected"), [
    ((768, 768), 512, 512, "pad", 4),  # origins 0, 256 on each axis
    ((1024, 1024), 512, 512, "pad", 4),
    ((1024, 1024), 256, 128, "pad", 49),  # 0, 128, ..., 768: 7 per axis
    ((200, 200), 256, 256, "pad", 1),
    ((200, 200), 256, 256, "skip", 0),
    ((200, 200), 256, 256, "error", 0),
    ((200, 700), 256, 256, "pad", 3),  # padded to 256 x 700: 0, 256, 444 across
    ((200, 700), 256, 256, "skip", 0),
])
def test_tile_count(shape: tuple[int, int], size: int, stride: int, policy: str, expected: int) -> None:
    assert tile_count(shape, size, stride, policy) == expected


def test_tile_count_unknown_policy() -> None:
    with pytest.raises(ConfigError, match="pad, skip, error"):
        tile_count((10, 10), 8, 8, "crop")


def test_run_budget() -> None:
    cfg = validate(tiny_params(steps_per_epoch=40, max_epochs=10, patience=2, accumulation_steps=2,
                               extra_tile_sizes=[128]))
    budget = run_budget(cfg.run("a"))
    assert budget == {"tile_size": 64, "tile_sizes": [64, 128], "steps_per_epoch": 40, "max_epochs": 10,
                      "patience": 2, "max_optimizer_steps": 400, "min_optimizer_steps": 120,
                      "effective_batch_size": 8, "tiles_seen_max": 3200, "steps_before": 0}


# --------------------------------------------------------------------------- warnings


def _healthy() -> dict[str, Any]:
    """A fingerprint with nothing wrong."""
    split = {"n_images": 4, "count": 50, "foreground_fraction": 0.12, "touching_fraction": 0.2,
             "touching_estimated": True, "diameter_px": {"min": 10.0, "median": 20.0, "p95": 28.0, "max": 30.0}}
    budget = {"tile_size": 256, "tile_sizes": [256], "min_optimizer_steps": 450, "max_optimizer_steps": 1250}
    return {
        "images": {f"im{i}": {"split": "train" if i < 4 else "val", "shape": [512, 512]} for i in range(5)},
        "splits": {"train": copy.deepcopy(split), "val": {**copy.deepcopy(split), "n_images": 1}},
        "tiling": {"sizes": [256, 512], "small_images": "pad"},
        "runs": {"a": dict(budget), "b": {**budget, "tile_size": 512, "tile_sizes": [512]}},
    }


def test_no_warnings_when_healthy() -> None:
    assert fingerprint_warnings(_healthy()) == []


def test_warning_val_without_foreground() -> None:
    fp = _healthy()
    fp["splits"]["val"].update(foreground_fraction=0.0, count=0)
    [warning] = fingerprint_warnings(fp)
    assert "validation" in warning and "no foreground" in warning


def test_warning_object_larger_than_tile() -> None:
    fp = _healthy()
    fp["splits"]["val"]["diameter_px"]["max"] = 300.0
    [warning] = fingerprint_warnings(fp)
    assert "300 px" in warning and "tile size 256" in warning and "run a" in warning
    assert "run b" not in warning


def test_warning_tile_larger_than_every_image() -> None:
    fp = _healthy()
    for image in fp["images"].values():
        image["shape"] = [400, 480]
    [warning] = fingerprint_warnings(fp)
    assert "tile size 512 is larger than every image" in warning
    assert "run b" in warning and "mirrored at the border" in warning and "400" in warning
    fp["tiling"]["small_images"] = "skip"
    [warning] = fingerprint_warnings(fp)
    assert "run b get no tiles" in warning
    fp["images"]["im0"]["shape"] = [600, 600]  # one image is large enough: no warning
    assert fingerprint_warnings(fp) == []


def test_warning_few_optimizer_steps() -> None:
    fp = _healthy()
    fp["runs"]["b"]["min_optimizer_steps"] = MIN_STEPS - 50
    [warning] = fingerprint_warnings(fp)
    assert warning.startswith(f"run b can stop after {MIN_STEPS - 50} optimizer steps: raise steps_per_epoch "
                              "or patience")
    fp["runs"]["b"]["min_optimizer_steps"] = MIN_STEPS
    assert fingerprint_warnings(fp) == []


def test_warning_one_training_image() -> None:
    fp = _healthy()
    fp["splits"]["train"]["n_images"] = 1
    [warning] = fingerprint_warnings(fp)
    assert "only 1 training image" in warning


@pytest.mark.parametrize(("fraction", "text"), [(0.0005, "below 0.1 %"), (0.95, "above 90 %")])
def test_warning_train_foreground_fraction(fraction: float, text: str) -> None:
    fp = _healthy()
    fp["splits"]["train"]["foreground_fraction"] = fraction
    [warning] = fingerprint_warnings(fp)
    assert "training foreground fraction" in warning and text in warning
    fp["splits"]["train"]["foreground_fraction"] = 0.001
    assert fingerprint_warnings(fp) == []


# --------------------------------------------------------------------------- end to end


def _tiles_written(root: Path, size: int, split: str) -> int:
    return len(load_tiles(size, split, root)[0])


def test_compute_fingerprint_tiny_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_tiny_project(tmp_path)
    fp = write_fingerprint(cfg, root=tmp_path)
    assert json.loads((tmp_path / paths.fingerprint_file()).read_text()) == fp
    assert [fp["splits"][s]["n_images"] for s in ("train", "val", "test")] == [2, 1, 1]
    assert set(fp["images"]) == {"bead_000", "bead_001", "bead_002", "bead_003"}
    for size in cfg.tiling.sizes:
        for split in ("train", "val"):
            assert fp["tiles_per_size"][str(size)][split] == _tiles_written(tmp_path, size, split)
    image = next(iter(fp["images"].values()))
    assert image["shape"] == [128, 128] and image["intensity"]["dtype"] == "uint16"
    assert image["intensity"]["min"] >= 100  # raw camera counts (offset 100), not normalised
    assert image["instance_labels"] is False and image["objects"]["touching_estimated"] is True
    assert 0.05 < fp["splits"]["train"]["foreground_fraction"] < 0.3
    run = cfg.run("a")
    expected = run.steps_per_epoch * min(run.max_epochs, run.patience + 1)
    assert expected < MIN_STEPS and fp["runs"]["a"]["min_optimizer_steps"] == expected
    assert fp["warnings"] == [f"run a can stop after {expected} optimizer steps: raise steps_per_epoch or patience "
                              f"(early stopping should not come before {MIN_STEPS} steps)"]
    err = capsys.readouterr().err
    assert f"fingerprint: warning: run a can stop after {expected} optimizer steps" in err
    assert "fingerprint: 2 train / 1 val / 1 test images" in err


def test_no_test_set_is_a_warning_naming_the_reason(tmp_path: Path) -> None:
    params = tiny_params()
    params["data"]["test_fraction"] = 0.0
    cfg = make_tiny_project(tmp_path, params)
    fp = write_fingerprint(cfg, root=tmp_path, progress=False)
    assert fp["splits"]["test"]["n_images"] == 0
    (warning,) = [w for w in fp["warnings"] if "test" in w]
    assert warning.startswith("no held-out test set (data.test_fraction is 0)")


def test_compute_fingerprint_padded_tiles_and_relative_paths(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    params = tiny_params(steps_per_epoch=100, tile_size=256)
    params["tiling"] = {"sizes": [64, 256], "stride_fraction": 0.5, "small_images": "pad"}
    root = tmp_path / "project"
    cfg = make_tiny_project(root, params)
    # split.json paths relative to the project root, read from another working directory
    manifest_path = root / paths.split_manifest()
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["images"].values():
        entry["image"] = str(Path(entry["image"]).relative_to(root))
        entry["mask"] = str(Path(entry["mask"]).relative_to(root))
    manifest_path.write_text(json.dumps(manifest))
    monkeypatch.chdir(tmp_path)
    fp = compute_fingerprint(cfg, root)
    for size in (64, 256):
        for split in ("train", "val"):
            assert fp["tiles_per_size"][str(size)][split] == _tiles_written(root, size, split)
    assert fp["tiles_per_size"]["256"] == {"train": 2, "val": 1}  # the test image is never tiled
    assert fp["tiles_per_size"]["64"] == {"train": 18, "val": 9}  # stride 32: origins 0, 32, 64 per axis
    [warning] = fp["warnings"]
    assert "tile size 256 is larger than every image" in warning and "run a" in warning


def test_compute_fingerprint_needs_split(tmp_path: Path) -> None:
    cfg = validate(tiny_params())
    with pytest.raises(DataError, match="beadseg split"):
        compute_fingerprint(cfg, tmp_path)
