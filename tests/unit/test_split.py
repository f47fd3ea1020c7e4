"""The split step: train / val / test by source image, instance labels kept, nothing written on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from beadseg import paths
from beadseg.config import validate
from beadseg.data.prepare import load_split, load_split_objects, run_split, split_normalization, split_stems
from beadseg.errors import ConfigError, DataError

STEMS = [f"img{i:02d}" for i in range(12)]


def folder_params(root: Path, **data) -> dict:
    return {"data": {"source": "folder", "images": str(root / "images"), "masks": str(root / "masks"), **data},
            "tiling": {"sizes": [32]}, "train": {"tile_size": 32}, "runs": {"a": {}}, "finetune": {}}


def write_folder(root: Path, n: int, instance: bool = True, size: int = 48) -> None:
    """``n`` images with two touching squares each, masks as instance labels (ids 7 and 300) or 0/255."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        labels = np.zeros((size, size), np.uint16)
        labels[10:20, 10:20] = 7
        labels[10:20, 20:26] = 300  # touches the first square: one connected component
        image = (rng.normal(100, 5, (size, size)) + 200 * (labels > 0)).astype(np.uint16)
        tifffile.imwrite(root / "images" / f"s{i}.tif", image)
        tifffile.imwrite(root / "masks" / f"s{i}.tif", labels if instance else (labels > 0).astype(np.uint8) * 255)


@pytest.mark.parametrize(("n", "val", "test", "expected"), [
    (12, 0.25, 0.25, (6, 3, 3)),
    (12, 0.25, 0.0, (9, 3, 0)),
    (3, 0.25, 0.25, (1, 1, 1)),
    (2, 0.25, 0.25, (1, 1, 0)),  # too few images: train and val keep one each, no test set
    (5, 0.2, 0.6, (1, 1, 3)),
])
def test_split_sizes_keep_one_train_and_one_val_image(n, val, test, expected):
    parts = split_stems(STEMS[:n], val, seed=0, test_fraction=test)
    assert tuple(len(parts[k]) for k in ("train", "val", "test")) == expected
    assert sorted(parts["train"] + parts["val"] + parts["test"]) == sorted(STEMS[:n])


def test_the_val_images_do_not_depend_on_the_test_fraction():
    assert split_stems(STEMS, 0.25, 3, 0.0)["val"] == split_stems(STEMS, 0.25, 3, 0.3)["val"]


def test_fractions_leaving_nothing_to_train_on_are_refused():
    with pytest.raises(ConfigError, match="test_fraction"):
        split_stems(STEMS, 0.5, 0, 0.5)


def test_instance_labels_are_kept_for_scoring_and_binarised_for_training(tmp_path):
    write_folder(tmp_path, 4)
    cfg = validate(folder_params(tmp_path, test_fraction=0.25))
    parts = run_split(cfg.data, root=tmp_path, progress=False)
    manifest = json.loads((tmp_path / paths.split_manifest()).read_text())
    assert manifest["mask_kind"] == "instance" and manifest["test_note"] is None
    assert manifest["splits"] == parts and len(parts["test"]) == 1
    objects = load_split_objects("test", tmp_path)
    (stem,) = parts["test"]
    assert sorted(np.unique(objects[stem])) == [0, 7, 300]
    _, mask = load_split("test", tmp_path)[stem]
    assert mask.dtype == np.uint8 and sorted(np.unique(mask)) == [0, 1]
    assert split_normalization(tmp_path) == {"method": "percentile", "low_pct": 1.0, "high_pct": 99.8}


def test_binary_masks_have_no_labels_and_a_missing_test_set_is_recorded(tmp_path):
    write_folder(tmp_path, 2, instance=False)
    cfg = validate(folder_params(tmp_path, test_fraction=0.25))
    run_split(cfg.data, root=tmp_path, progress=False)
    manifest = json.loads((tmp_path / paths.split_manifest()).read_text())
    assert manifest["mask_kind"] == "binary"
    assert "too few" in manifest["test_note"]
    assert load_split("test", tmp_path) == {}
    val = load_split_objects("val", tmp_path)
    assert all(sorted(np.unique(m)) == [0, 1] for m in val.values())


@pytest.mark.parametrize("broken_split", ["train", "val", "test"])
def test_a_bad_file_in_any_split_leaves_no_new_output(tmp_path, broken_split):
    write_folder(tmp_path, 6)
    cfg = validate(folder_params(tmp_path, test_fraction=0.34))
    parts = split_stems([f"s{i}" for i in range(6)], cfg.data.val_fraction, cfg.data.split_seed, cfg.data.test_fraction)
    (tmp_path / "images" / f"{parts[broken_split][0]}.tif").write_bytes(b"")  # a zero-byte TIFF
    with pytest.raises(DataError, match=parts[broken_split][0]):
        run_split(cfg.data, root=tmp_path, progress=False)
    assert not (tmp_path / paths.SPLIT_DIR).exists() or not any((tmp_path / paths.SPLIT_DIR).iterdir())


def test_a_tile_size_that_fails_on_val_writes_no_train_tiles(tmp_path):
    from beadseg.config import TilingConfig
    from beadseg.data.prepare import run_tile, save_arrays

    big, small = np.zeros((128, 128), np.float16), np.zeros((32, 32), np.float16)
    save_arrays(tmp_path / paths.split_file("train"), {"img__a": big, "mask__a": big.astype(np.uint8)})
    save_arrays(tmp_path / paths.split_file("val"), {"img__b": small, "mask__b": small.astype(np.uint8)})
    with pytest.raises(DataError, match="no val tiles of size 64"):
        run_tile(TilingConfig(sizes=(64,), stride_fraction=1.0, small_images="skip"), 64, root=tmp_path, progress=False)
    assert not (tmp_path / paths.tiles_dir(64)).exists() or not any((tmp_path / paths.tiles_dir(64)).iterdir())


@pytest.mark.parametrize("seed", range(5))
def test_no_source_image_is_in_two_splits_nor_in_two_tile_sets(tmp_path, seed):
    from beadseg.data.prepare import run_tile

    write_folder(tmp_path, 7)
    cfg = validate(folder_params(tmp_path, test_fraction=0.3, split_seed=seed))
    parts = run_split(cfg.data, root=tmp_path, progress=False)
    train, val, test = (set(parts[k]) for k in ("train", "val", "test"))
    assert not (train & val or train & test or val & test) and len(train | val | test) == 7
    run_tile(cfg.tiling, 32, root=tmp_path, progress=False)
    rows = (tmp_path / paths.tiles_manifest(32)).read_text().splitlines()[1:]
    sources = {split: {r.split(",")[1] for r in rows if r.startswith(split + ",")} for split in ("train", "val")}
    assert sources["train"] == train and sources["val"] == val  # test images are never tiled
