"""Cutting images and masks into fixed-size square tiles (pure numpy).

The tiling always covers every pixel: tiles start at ``0, stride, 2*stride, ...``
and, when the last regular tile stops short of the border, one extra tile is
placed flush with the border. Images smaller than the tile are padded
bottom/right first (see :func:`pad_to_min`), so every tile has exactly the
requested size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from beadseg.errors import ConfigError, DataError

__all__ = [
    "SMALL_IMAGE_POLICIES",
    "TileRecord",
    "coverage_count",
    "extract_tiles",
    "pad_to_min",
    "tile_origins",
]

#: What :func:`extract_tiles` does with an image smaller than the tile.
SMALL_IMAGE_POLICIES: tuple[str, ...] = ("pad", "skip", "error")


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is integral (and not a bool), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        as_int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return as_int if as_int == value else None


def _check_tile(tile: int) -> int:
    """Return ``tile`` as an int, raising :class:`ConfigError` unless it is >= 1."""
    as_int = _as_int(tile)
    if as_int is None or as_int < 1:
        raise ConfigError(f"tile size {tile!r} is invalid; use a positive integer such as 256 or 512")
    return as_int


def _check_stride(stride: int, tile: int) -> int:
    """Return ``stride`` as an int, raising :class:`ConfigError` unless ``1 <= stride <= tile``."""
    as_int = _as_int(stride)
    if as_int is None or as_int < 1:
        raise ConfigError(f"tiling stride {stride!r} is invalid; use a positive integer <= the tile size {tile}")
    stride = as_int
    if stride > tile:
        raise ConfigError(
            f"tiling stride {stride} is larger than tile size {tile}: tiles would leave gaps; "
            f"use a stride <= {tile}"
        )
    return stride


def tile_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile start positions along one axis so that tiles of size ``tile`` cover ``[0, length)``.

    Origins are ``0, stride, 2*stride, ...`` while a tile fits; if the last of
    those does not reach ``length``, one extra origin ``length - tile`` (flush
    with the end) is appended. The result is strictly increasing (no duplicates).

    Args:
        length: Size of the axis; must be ``>= tile`` (pad first with :func:`pad_to_min`).
        tile: Tile size, ``>= 1``.
        stride: Step between tiles, ``1 <= stride <= tile``.

    Raises:
        ConfigError: ``tile`` or ``stride`` is invalid (e.g. stride larger than tile).
        ValueError: ``length < tile`` (a caller bug: the image was not padded).
    """
    tile = _check_tile(tile)
    stride = _check_stride(stride, tile)
    length = int(length)
    if length < tile:
        raise ValueError(f"axis length {length} is smaller than tile size {tile}; pad the image first (pad_to_min)")
    last = length - tile
    origins = list(range(0, last + 1, stride))
    if origins[-1] != last:
        origins.append(last)
    return origins


def _pad_axis_end(array: np.ndarray, axis: int, amount: int, mode: str) -> np.ndarray:
    """Pad ``amount`` elements at the end of ``axis``.

    numpy's ``reflect`` mode needs ``amount <= size - 1`` and ``symmetric`` needs
    ``amount <= size``; larger pads are applied iteratively, and a size-1 axis
    (which cannot be reflected) falls back to ``edge``.
    """
    step_mode: Any  # one of numpy's pad modes
    while amount > 0:
        size = array.shape[axis]
        if mode == "reflect":
            step_mode, step = ("reflect", min(amount, size - 1)) if size > 1 else ("edge", amount)
        elif mode == "symmetric":
            step_mode, step = "symmetric", min(amount, size)
        else:
            step_mode, step = mode, amount
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, step)
        array = np.pad(array, widths, mode=step_mode)
        amount -= step
    return array


def pad_to_min(image: np.ndarray, tile: int, mode: str = "reflect") -> tuple[np.ndarray, tuple[int, int]]:
    """Pad the bottom/right of ``image`` so both spatial sides are at least ``tile``.

    Works for any amount of padding (also for images much smaller than the
    tile, where plain numpy ``reflect`` padding would fail). Only the first two
    axes are padded; trailing axes (e.g. channels) are left alone.

    Args:
        image: Array of shape ``(H, W, ...)``.
        tile: Minimum side length.
        mode: A ``numpy.pad`` mode; ``"reflect"`` for images, ``"constant"``
            (zeros) for masks.

    Returns:
        The padded array (``image`` itself if no padding is needed) and the
        original ``(H, W)``.
    """
    tile = _check_tile(tile)
    image = np.asarray(image)
    if image.ndim < 2:
        raise DataError(f"expected an image with 2 spatial axes, got shape {image.shape}; check the input file")
    height, width = int(image.shape[0]), int(image.shape[1])
    if height == 0 or width == 0:
        raise DataError(f"cannot tile an empty image of shape {image.shape}; check the input file")
    padded = _pad_axis_end(image, 0, tile - height, mode)
    padded = _pad_axis_end(padded, 1, tile - width, mode)
    return padded, (height, width)


@dataclass(frozen=True)
class TileRecord:
    """Where one tile came from.

    Attributes:
        source: Identifier of the source image (usually its file name).
        split: Dataset split (``"train"``, ``"val"``, ...).
        y: Row of the tile's top-left corner in the (padded) source image.
        x: Column of the tile's top-left corner in the (padded) source image.
        size: Tile side length.
        foreground_fraction: Fraction of mask pixels > 0 in the tile (padding counts as background).
        padded: True if the source image had to be padded up to the tile size.
    """

    source: str
    split: str
    y: int
    x: int
    size: int
    foreground_fraction: float
    padded: bool


def extract_tiles(
    image: np.ndarray,
    mask: np.ndarray,
    tile: int,
    stride: int,
    source: str,
    split: str,
    policy: str = "pad",
) -> tuple[np.ndarray, np.ndarray, list[TileRecord]]:
    """Cut a 2-D image and its mask into overlapping ``tile x tile`` tiles covering every pixel.

    Args:
        image: 2-D image ``(H, W)``.
        mask: 2-D mask of the same shape; any value > 0 is foreground.
        tile: Tile side length.
        stride: Step between tiles, ``1 <= stride <= tile``.
        source: Name of the source image (stored in the records, used in errors).
        split: Dataset split stored in the records.
        policy: What to do if the image is smaller than ``tile`` along either
            axis: ``"pad"`` (reflect-pad the image and its mask alike, flag the
            records ``padded=True``), ``"skip"`` (return zero tiles; the caller
            should warn) or ``"error"`` (raise :class:`DataError`).

    Returns:
        ``images`` of shape ``(N, tile, tile)`` float16, ``masks`` of shape
        ``(N, tile, tile)`` uint8 with values 0/1, and ``N`` :class:`TileRecord`.

    Raises:
        ConfigError: Unknown policy, invalid tile or stride.
        DataError: Image/mask not 2-D or shapes differ; image too small with policy ``"error"``.
    """
    if policy not in SMALL_IMAGE_POLICIES:
        raise ConfigError(f"unknown small-image policy {policy!r}; use one of: {', '.join(SMALL_IMAGE_POLICIES)}")
    tile = _check_tile(tile)
    stride = _check_stride(stride, tile)
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 2:
        raise DataError(f"image {source!r} has shape {image.shape}; expected a 2-D grayscale image")
    if mask.shape != image.shape:
        raise DataError(
            f"mask for {source!r} has shape {mask.shape} but the image has shape {image.shape}; "
            "provide a mask of the same size as its image"
        )

    empty: tuple[np.ndarray, np.ndarray, list[TileRecord]] = (
        np.zeros((0, tile, tile), dtype=np.float16),
        np.zeros((0, tile, tile), dtype=np.uint8),
        [],
    )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"image {source!r} is empty (shape {image.shape}); remove or replace the file")

    small = image.shape[0] < tile or image.shape[1] < tile
    if small:
        if policy == "skip":
            return empty
        if policy == "error":
            raise DataError(
                f"image {source!r} has shape {image.shape}, smaller than the tile size {tile}; "
                "use a smaller tile size or set the small-image policy to 'pad' or 'skip'"
            )
        image, _ = pad_to_min(image, tile, mode="reflect")
        # The mask is mirrored with the image: reflected beads are beads. A zero mask under a mirrored
        # image would teach the model to call visible beads background and score right answers as wrong.
        mask, _ = pad_to_min(mask, tile, mode="reflect")

    binary = (mask > 0).astype(np.uint8)
    ys = tile_origins(image.shape[0], tile, stride)
    xs = tile_origins(image.shape[1], tile, stride)
    count = len(ys) * len(xs)
    images = np.empty((count, tile, tile), dtype=np.float16)
    masks = np.empty((count, tile, tile), dtype=np.uint8)
    records: list[TileRecord] = []
    index = 0
    for y in ys:
        for x in xs:
            images[index] = image[y : y + tile, x : x + tile]
            crop = binary[y : y + tile, x : x + tile]
            masks[index] = crop
            records.append(
                TileRecord(
                    source=source,
                    split=split,
                    y=y,
                    x=x,
                    size=tile,
                    foreground_fraction=float(crop.mean()),
                    padded=small,
                )
            )
            index += 1
    return images, masks, records


def coverage_count(shape: tuple[int, int], tile: int, stride: int) -> np.ndarray:
    """How many tiles of the :func:`tile_origins` grid cover each pixel of an image of ``shape``.

    Returns an int array of ``shape``; every entry is ``>= 1`` when the tiling is complete.
    """
    height, width = int(shape[0]), int(shape[1])
    rows = np.zeros(height, dtype=np.int64)
    cols = np.zeros(width, dtype=np.int64)
    for y in tile_origins(height, tile, stride):
        rows[y : y + tile] += 1
    for x in tile_origins(width, tile, stride):
        cols[x : x + tile] += 1
    return np.outer(rows, cols)
