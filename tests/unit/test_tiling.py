"""Tests for beadseg.data.tiling."""

from __future__ import annotations

import numpy as np
import pytest

from beadseg.data.tiling import (
    TileRecord,
    coverage_count,
    extract_tiles,
    pad_to_min,
    tile_origins,
)
from beadseg.errors import ConfigError, DataError

COMBOS = [
    (length, tile, stride)
    for tile in (1, 4, 7, 16, 64)
    for length in (tile, tile + 1, 2 * tile - 1, 2 * tile, 3 * tile + 5, 157, 203)
    for stride in sorted({1, max(1, tile // 3), max(1, tile // 2), max(1, tile - 1), tile})
    if length >= tile
]


@pytest.mark.parametrize(("length", "tile", "stride"), COMBOS)
def test_origins_cover_every_pixel(length: int, tile: int, stride: int) -> None:
    origins = tile_origins(length, tile, stride)
    assert origins[0] == 0
    assert origins[-1] == length - tile, "last tile must be flush with the end"
    assert len(set(origins)) == len(origins), "no duplicate origins"
    assert origins == sorted(origins)
    assert all(b - a <= stride for a, b in zip(origins, origins[1:])), "gaps between tiles"
    covered = np.zeros(length, dtype=int)
    for origin in origins:
        assert 0 <= origin <= length - tile
        covered[origin : origin + tile] += 1
    assert (covered >= 1).all()


@pytest.mark.parametrize(
    ("shape", "tile", "stride"), [((64, 64), 64, 64), ((157, 203), 64, 48), ((100, 65), 32, 32), ((9, 9), 3, 2)]
)
def test_coverage_count_complete(shape: tuple[int, int], tile: int, stride: int) -> None:
    counts = coverage_count(shape, tile, stride)
    assert counts.shape == shape
    assert (counts >= 1).all()
    n_tiles = len(tile_origins(shape[0], tile, stride)) * len(tile_origins(shape[1], tile, stride))
    assert counts.sum() == n_tiles * tile * tile


def test_origins_exact_values() -> None:
    assert tile_origins(512, 512, 256) == [0]
    assert tile_origins(1000, 512, 256) == [0, 256, 488]
    assert tile_origins(1024, 512, 256) == [0, 256, 512]
    assert tile_origins(10, 4, 4) == [0, 4, 6]


def test_stride_larger_than_tile_raises() -> None:
    with pytest.raises(ConfigError, match=r"stride 600 is larger than tile size 512.*<= 512"):
        tile_origins(1000, 512, 600)


@pytest.mark.parametrize("stride", [0, -3, 2.5, True, "a"])
def test_invalid_stride_raises(stride: object) -> None:
    with pytest.raises(ConfigError, match="stride"):
        tile_origins(100, 16, stride)  # type: ignore[arg-type]


@pytest.mark.parametrize("tile", [0, -1, 1.5, None])
def test_invalid_tile_raises(tile: object) -> None:
    with pytest.raises(ConfigError, match="tile size"):
        tile_origins(100, tile, 1)  # type: ignore[arg-type]


def test_origins_need_padded_length() -> None:
    with pytest.raises(ValueError, match="pad"):
        tile_origins(10, 16, 8)


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3), (5, 40), (15, 15), (16, 16), (40, 7)])
@pytest.mark.parametrize("mode", ["reflect", "symmetric", "edge", "constant"])
def test_pad_to_min_any_size(shape: tuple[int, int], mode: str) -> None:
    image = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1
    padded, original = pad_to_min(image, 16, mode=mode)
    assert original == shape
    assert padded.shape == (max(shape[0], 16), max(shape[1], 16))
    np.testing.assert_array_equal(padded[: shape[0], : shape[1]], image)
    if mode == "constant":
        assert padded[shape[0] :].sum() == 0 and padded[:, shape[1] :].sum() == 0
    else:
        # Non-constant modes only repeat existing values.
        assert set(np.unique(padded)) <= set(np.unique(image))


def test_pad_to_min_reflect_matches_numpy_when_possible() -> None:
    image = np.random.default_rng(0).random((10, 12))
    padded, _ = pad_to_min(image, 16)
    np.testing.assert_array_equal(padded, np.pad(image, ((0, 6), (0, 4)), mode="reflect"))


def test_pad_to_min_no_padding_needed() -> None:
    image = np.ones((20, 30))
    padded, original = pad_to_min(image, 16)
    assert padded.shape == (20, 30) and original == (20, 30)


def _random_pair(shape: tuple[int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random(shape).astype(np.float32)
    mask = (rng.random(shape) > 0.7).astype(np.uint8) * 255
    return image, mask


def test_extract_tiles_content_and_records() -> None:
    image, mask = _random_pair((157, 203))
    tile, stride = 64, 48
    images, masks, records = extract_tiles(image, mask, tile, stride, source="a.tif", split="train")
    ys, xs = tile_origins(157, tile, stride), tile_origins(203, tile, stride)
    assert images.shape == (len(ys) * len(xs), tile, tile) and images.dtype == np.float16
    assert masks.shape == images.shape and masks.dtype == np.uint8
    assert len(records) == len(images)
    assert {(r.y, r.x) for r in records} == {(y, x) for y in ys for x in xs}
    for img, msk, rec in zip(images, masks, records):
        assert isinstance(rec, TileRecord)
        assert (rec.source, rec.split, rec.size, rec.padded) == ("a.tif", "train", tile, False)
        crop = image[rec.y : rec.y + tile, rec.x : rec.x + tile]
        mcrop = mask[rec.y : rec.y + tile, rec.x : rec.x + tile]
        np.testing.assert_array_equal(img, crop.astype(np.float16))
        np.testing.assert_array_equal(msk, (mcrop > 0).astype(np.uint8))
        assert rec.foreground_fraction == pytest.approx(float((mcrop > 0).mean()))
    # Fractions differ between tiles, so they really come from each crop.
    assert len({r.foreground_fraction for r in records}) > 1


def test_extract_tiles_foreground_fraction_known_values() -> None:
    image = np.zeros((8, 8), dtype=np.float32)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[:4, :4] = 1  # top-left quadrant only
    _, _, records = extract_tiles(image, mask, 4, 4, source="q", split="val")
    fractions = {(r.y, r.x): r.foreground_fraction for r in records}
    assert fractions == {(0, 0): 1.0, (0, 4): 0.0, (4, 0): 0.0, (4, 4): 0.0}


def test_extract_tiles_single_tile_when_length_equals_tile() -> None:
    image, mask = _random_pair((32, 32))
    images, _, records = extract_tiles(image, mask, 32, 16, source="s", split="train")
    assert len(records) == 1 and (records[0].y, records[0].x) == (0, 0)
    np.testing.assert_array_equal(images[0], image.astype(np.float16))


@pytest.mark.parametrize("shape", [(20, 30), (3, 100), (100, 3), (1, 1)])
def test_small_image_padded(shape: tuple[int, int]) -> None:
    image, mask = _random_pair(shape, seed=1)
    tile = 32
    images, masks, records = extract_tiles(image, mask, tile, 16, source="small.tif", split="train", policy="pad")
    assert len(records) >= 1
    assert images.shape[1:] == (tile, tile) and masks.shape[1:] == (tile, tile)
    assert all(r.padded for r in records)
    first = next(i for i, r in enumerate(records) if (r.y, r.x) == (0, 0))
    h, w = min(shape[0], tile), min(shape[1], tile)
    np.testing.assert_array_equal(images[first][:h, :w], image[:h, :w].astype(np.float16))
    # The mask is mirrored with the image (a reflected bead is a bead).
    padded_mask, _ = pad_to_min((mask > 0).astype(np.uint8), tile, mode="reflect")
    np.testing.assert_array_equal(masks[first], padded_mask[:tile, :tile])
    assert records[first].foreground_fraction == pytest.approx(float(padded_mask[:tile, :tile].mean()))


def test_small_image_skip() -> None:
    image, mask = _random_pair((20, 300))
    images, masks, records = extract_tiles(image, mask, 32, 16, source="small.tif", split="train", policy="skip")
    assert images.shape == (0, 32, 32) and masks.shape == (0, 32, 32) and records == []
    assert images.dtype == np.float16 and masks.dtype == np.uint8


def test_small_image_error() -> None:
    image, mask = _random_pair((20, 300))
    with pytest.raises(DataError, match=r"small\.tif.*\(20, 300\).*32") as info:
        extract_tiles(image, mask, 32, 16, source="small.tif", split="train", policy="error")
    assert "\n" not in str(info.value)


def test_large_image_unaffected_by_policy() -> None:
    image, mask = _random_pair((40, 40))
    for policy in ("pad", "skip", "error"):
        _, _, records = extract_tiles(image, mask, 32, 16, source="x", split="train", policy=policy)
        assert len(records) == 4 and not any(r.padded for r in records)


def test_unknown_policy() -> None:
    image, mask = _random_pair((40, 40))
    with pytest.raises(ConfigError, match=r"'crop'.*pad, skip, error"):
        extract_tiles(image, mask, 32, 16, source="x", split="train", policy="crop")


def test_mask_shape_mismatch() -> None:
    image, _ = _random_pair((40, 40))
    with pytest.raises(DataError, match=r"mask for 'x'"):
        extract_tiles(image, np.zeros((40, 41)), 32, 16, source="x", split="train")


def test_non_2d_image() -> None:
    with pytest.raises(DataError, match="2-D"):
        extract_tiles(np.zeros((40, 40, 3)), np.zeros((40, 40, 3)), 32, 16, source="rgb.png", split="train")


def test_pad_to_min_reflect_larger_than_image() -> None:
    """Pads far larger than the image keep reflecting (0 1 2 1 0 1 2 ...)."""
    padded, _ = pad_to_min(np.arange(3.0)[None, :].repeat(2, axis=0), 10)
    np.testing.assert_array_equal(padded[0], [0, 1, 2, 1, 0, 1, 2, 1, 0, 1])
    np.testing.assert_array_equal(padded[:, 0], [0] * 10)
