"""Tests for pairing, reading and normalising user image/mask TIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from beadseg.data.io import Pair, find_pairs, load_pair, normalize, read_image, read_mask, write_tiff
from beadseg.errors import ConfigError, DataError


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    return images, masks


def _img(shape: tuple[int, ...] = (32, 32), dtype: type = np.uint16) -> np.ndarray:
    return (np.arange(np.prod(shape)).reshape(shape) % 200).astype(dtype)


def test_find_pairs_sorted_and_case_insensitive(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    for name in ["b.tif", "a.TIFF", "c.tiff"]:
        tifffile.imwrite(images / name, _img())
    for name in ["b.tif", "a.tif", "c_masks.TIF"]:
        tifffile.imwrite(masks / name, _img())
    (images / "readme.txt").write_text("ignored")
    (images / ".a.tif.tmp.tif").write_bytes(b"")  # half-written temp file is ignored
    pairs = find_pairs(images, masks)
    assert [p.stem for p in pairs] == ["a", "b", "c"]
    assert pairs[0] == Pair("a", images / "a.TIFF", masks / "a.tif")
    assert pairs[2].mask == masks / "c_masks.TIF"


def test_mask_suffix_pairing(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    tifffile.imwrite(images / "a.tif", _img())
    tifffile.imwrite(masks / "a_mask.tif", _img())
    assert find_pairs(images, masks) == [Pair("a", images / "a.tif", masks / "a_mask.tif")]


def test_same_folder_with_mask_suffix(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", _img())
    tifffile.imwrite(folder / "a_mask.tif", _img())
    assert find_pairs(folder, folder) == [Pair("a", folder / "a.tif", folder / "a_mask.tif")]


def test_missing_folder(tmp_path: Path) -> None:
    _, masks = _folders(tmp_path)
    with pytest.raises(DataError, match=r"images folder '.*nowhere' does not exist: set data.images"):
        find_pairs(tmp_path / "nowhere", masks)
    with pytest.raises(DataError, match="masks folder .* does not exist: set data.masks"):
        find_pairs(tmp_path / "images", tmp_path / "nomasks")


def test_no_tiffs(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    (images / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="no .tif/.tiff images found"):
        find_pairs(images, masks)


def test_image_without_mask_names_file(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    for name in ["a.tif", "lonely.tif"]:
        tifffile.imwrite(images / name, _img())
    tifffile.imwrite(masks / "a.tif", _img())
    with pytest.raises(DataError) as info:
        find_pairs(images, masks)
    message = str(info.value)
    assert "lonely.tif" in message and "has no mask" in message and str(masks) in message
    assert "\n" not in message


def test_mask_without_image_names_both(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    tifffile.imwrite(images / "a.tif", _img())
    tifffile.imwrite(masks / "a.tif", _img())
    tifffile.imwrite(masks / "extra_mask.tif", _img())
    with pytest.raises(DataError) as info:
        find_pairs(images, masks)
    message = str(info.value)
    assert "extra_mask.tif" in message and str(images / "extra.tif") in message


def test_ambiguous_masks(tmp_path: Path) -> None:
    images, masks = _folders(tmp_path)
    tifffile.imwrite(images / "a.tif", _img())
    tifffile.imwrite(masks / "a.tif", _img())
    tifffile.imwrite(masks / "a_mask.tif", _img())
    with pytest.raises(DataError, match="both match stem 'a'"):
        find_pairs(images, masks)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.float32, np.float64])
def test_read_and_normalize_dtypes(tmp_path: Path, dtype: type) -> None:
    data = _img((40, 30), dtype) * (2 if np.dtype(dtype).kind == "f" else 1)
    tifffile.imwrite(tmp_path / "x.tif", data)
    image = read_image(tmp_path / "x.tif")
    assert image.dtype == np.float32 and image.shape == (40, 30)
    np.testing.assert_array_equal(image, data.astype(np.float32))
    norm = normalize(image)
    assert norm.dtype == np.float32
    assert norm.min() == 0.0 and norm.max() == 1.0


def test_singleton_dimensions_squeezed(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "x.tif", _img((1, 1, 20, 24)))
    assert read_image(tmp_path / "x.tif").shape == (20, 24)


@pytest.mark.parametrize("shape", [(3, 20, 24), (20, 24, 3)])
def test_stack_rejected(tmp_path: Path, shape: tuple[int, ...]) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", _img(shape, np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match=r"stack.tif' has shape \(.*\): only single-plane 2-D"):
        read_image(tmp_path / "stack.tif")


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "broken.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(DataError, match="broken.tif"):
        read_image(tmp_path / "broken.tif")
    with pytest.raises(DataError, match="missing.tif"):
        read_mask(tmp_path / "missing.tif")


def test_nan_image_rejected(tmp_path: Path) -> None:
    data = np.ones((8, 8), np.float32)
    data[2, 2] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", data)
    with pytest.raises(DataError, match="nan.tif.*NaN"):
        read_image(tmp_path / "nan.tif")


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[0, 1, 2], [3, 0, 7]], np.uint16),  # instance labels
        np.array([[0, 255, 255], [255, 0, 255]], np.uint8),
        np.array([[False, True, True], [True, False, True]]),
        np.array([[0.0, 0.5, 1.0], [2.0, 0.0, 1.0]], np.float32),
    ],
)
def test_read_mask_binary(tmp_path: Path, mask: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "m.tif", mask)
    out = read_mask(tmp_path / "m.tif")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.array([[0, 1, 1], [1, 0, 1]], np.uint8))


def test_normalize_constant_and_percentiles() -> None:
    assert not normalize(np.full((5, 5), 7.0)).any()
    sparse = np.zeros((100, 100), np.float32)
    sparse[0, 0] = 10.0  # percentiles coincide: falls back to min..max
    out = normalize(sparse)
    assert out[0, 0] == 1.0 and out[1, 1] == 0.0
    ramp = np.linspace(0, 1000, 10_000, dtype=np.float32).reshape(100, 100)
    out = normalize(ramp)
    assert out.min() == 0.0 and out.max() == 1.0 and 0.45 < out.mean() < 0.55
    with pytest.raises(ConfigError):
        normalize(ramp, low_pct=50, high_pct=10)


def test_load_pair_and_shape_mismatch(tmp_path: Path) -> None:
    write_tiff(tmp_path / "i.tif", _img((100, 100)))
    write_tiff(tmp_path / "m.tif", np.ones((100, 100), np.uint8) * 5)
    image, mask = load_pair(Pair("i", tmp_path / "i.tif", tmp_path / "m.tif"))
    assert image.dtype == np.float32 and 0.0 <= image.min() and image.max() <= 1.0
    assert mask.dtype == np.uint8 and mask.max() == 1
    write_tiff(tmp_path / "m2.tif", np.ones((100, 90), np.uint8))
    with pytest.raises(DataError) as info:
        load_pair(Pair("i", tmp_path / "i.tif", tmp_path / "m2.tif"))
    message = str(info.value)
    assert "m2.tif" in message and "i.tif" in message
    assert "(100, 90)" in message and "(100, 100)" in message


def test_write_tiff_deterministic(tmp_path: Path) -> None:
    data = _img((16, 16))
    write_tiff(tmp_path / "a.tif", data)
    write_tiff(tmp_path / "b.tif", data)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a.tif"), data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "b.tif"]  # no temp files left
