"""Where training batches come from: a fixed number of optimizer steps per epoch, drawn with replacement.

An epoch is ``steps_per_epoch`` optimizer steps however many images or tiles exist (nnU-Net's fixed
iterations per epoch), so three annotated images train as long as three hundred. Two samplers:

* :class:`CropSampler` (``sampler: random_crop``): crops of the run's tile size at random offsets of the
  full training images (images smaller than a tile are mirrored at the border once, masks alike).
  A crop is picked pixel-uniformly over all images (an image twice the area is drawn twice as often);
  a fraction ``foreground_oversample`` of crops is centred on a random bead pixel, so sparse beads are
  seen often enough (nnU-Net's 1/3). With one 256² image and 256² tiles every crop is the whole image
  and only the augmentation varies it.
* :class:`TileSampler` (``sampler: tiles``): the stored tiles of ``data/tiles``, drawn uniformly with
  replacement.

Every draw comes from a ``torch.Generator`` the caller seeds per epoch, on the device the data lives on,
so a resumed run draws the same batches as an uninterrupted one and a GPU run never waits for the host.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from beadseg.data.tiling import pad_to_min

MAX_FOREGROUND_POINTS = 20_000  # per image: enough to centre crops on beads without holding every pixel


def split_pairs(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, S, S) image/mask pairs -> images (n, 1, S, S) and masks (n, 1, S, S) (views)."""
    return pairs[:, :1], pairs[:, 1:]


class TileSampler:
    """Uniform draws with replacement from stored tiles (N, 1, S, S), kept as (N, 2, S, S) float16
    image/mask pairs so one gather draws both."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.pairs = torch.cat((images.to(torch.float16), masks.to(torch.float16)), 1)
        self.device = self.pairs.device

    def __len__(self) -> int:
        return int(self.pairs.shape[0])

    def draw_pairs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` tiles as (n, 2, S, S) float16 image/mask pairs, on the sampler's device."""
        idx = torch.randint(0, len(self), (n,), generator=generator, device=self.device)
        return self.pairs.index_select(0, idx)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return split_pairs(self.draw_pairs(n, generator))


def foreground_points(mask: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """(K, 2) int coordinates of bead pixels (a seeded random subset of at most ``limit``)."""
    points = np.argwhere(mask > 0)
    if len(points) > limit:
        keep = np.random.default_rng(seed).choice(len(points), size=limit, replace=False)
        points = points[np.sort(keep)]
    return points.astype(np.int64)


def crop_origin(shape: tuple[int, int], tile: int, centre: tuple[int, int] | None, u: tuple[float, float]) -> tuple[int, int]:
    """Top-left corner of a ``tile`` crop of an image of ``shape`` (already at least ``tile`` per axis).

    ``centre`` given: the crop is centred on it, shifted inside the image. Otherwise the corner is uniform
    over all valid positions, from the two uniform numbers ``u`` in [0, 1).
    """
    span_y, span_x = shape[0] - tile, shape[1] - tile
    if span_y < 0 or span_x < 0:
        raise ValueError(f"image {shape} is smaller than the crop {tile}: pad it first")
    if centre is not None:
        y = min(max(centre[0] - tile // 2, 0), span_y)
        x = min(max(centre[1] - tile // 2, 0), span_x)
        return int(y), int(x)
    return min(int(u[0] * (span_y + 1)), span_y), min(int(u[1] * (span_x + 1)), span_x)


def crop_origins(sizes: torch.Tensor, tile: int, centres: torch.Tensor, use_centre: torch.Tensor,
                 u: torch.Tensor) -> torch.Tensor:
    """:func:`crop_origin` for a batch, as tensor ops with static shapes (no host synchronisation).

    ``sizes``: (n, 2) int64 image heights and widths (each at least ``tile``); ``centres``: (n, 2) int64 bead
    pixels, used where ``use_centre`` (n,) is true; ``u``: (n, 2) uniform numbers in [0, 1). Returns the
    (n, 2) top-left corners (row, column)."""
    spans = sizes - tile
    uniform = torch.minimum((u * (spans + 1)).long(), spans)
    centred = torch.minimum((centres - tile // 2).clamp_min(0), spans)
    return torch.where(use_centre[:, None], centred, uniform)


class CropSampler:
    """Random crops of one tile size from full images, a fraction centred on beads.

    Every draw is the same few dozen tensor ops on the device the images live on, whatever the batch: the
    images and masks are kept as one flat buffer of (image, mask) pixel pairs, a crop is gathered by
    computed indices, and the random numbers come from ``generator``, which must live on the same device.
    Nothing is read back to the host, so on a GPU a draw never waits for the card."""

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], tile: int,
                 foreground_oversample: float, device: torch.device, seed: int = 0) -> None:
        if not images:
            raise ValueError("CropSampler needs at least one image")
        self.tile = tile
        self.device = torch.device(device)
        self.foreground_oversample = float(foreground_oversample)
        pixels, all_points, table = [], [], []
        pixels_so_far = points_so_far = 0
        for i, (image, mask) in enumerate(zip(images, masks)):
            if image.shape[0] < tile or image.shape[1] < tile:
                image, _ = pad_to_min(np.asarray(image, np.float32), tile, mode="reflect")
                mask, _ = pad_to_min(np.asarray(mask), tile, mode="reflect")
            pair = np.stack((np.asarray(image, np.float16).ravel(), (np.asarray(mask) > 0).ravel().astype(np.float16)), 1)
            pixels.append(pair)
            points = foreground_points(mask, MAX_FOREGROUND_POINTS, seed + i)
            all_points.append(points)
            # per image: first pixel, bead points (first, count), height, width
            table.append((pixels_so_far, points_so_far, len(points), image.shape[0], image.shape[1]))
            pixels_so_far += image.shape[0] * image.shape[1]
            points_so_far += len(points)
        all_points.append(np.zeros((1, 2), np.int64))  # a harmless row to index when an image has no bead
        self.pixels = torch.from_numpy(np.concatenate(pixels)).to(self.device)  # (P, 2) image, mask
        self.points = torch.from_numpy(np.concatenate(all_points).astype(np.int64)).to(self.device)
        self.table = torch.tensor(table, dtype=torch.int64, device=self.device)
        areas = np.array([h * w for *_, h, w in table], np.float64)
        cumulative = np.cumsum(areas) / areas.sum()  # pixel-uniform: twice the area, twice as often
        cumulative[-1] = 1.0  # every u < 1 falls inside
        self.cumulative = torch.from_numpy(cumulative).to(self.device)
        steps = torch.arange(tile, device=self.device)
        self.rows, self.cols = steps.view(1, tile, 1), steps.view(1, 1, tile)

    def __len__(self) -> int:
        return int(self.table.shape[0])

    def draw_pairs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` crops as (n, 2, tile, tile) float16 image/mask pairs, on the sampler's device."""
        u = torch.rand(5, n, generator=generator, dtype=torch.float64, device=self.device)
        u_image, u_point, u_centre, _, _ = u.unbind(0)
        info = self.table[torch.searchsorted(self.cumulative, u_image, right=True)]
        first_pixel, first_point, count, _, width = info.unbind(1)
        # a uniform bead pixel of the chosen image (any valid row when it has none: then it is not used)
        centres = self.points[first_point + torch.minimum((u_point * count).long(), count - 1)]
        use_centre = (u_centre < self.foreground_oversample) & (count > 0)
        top, left = crop_origins(info[:, 3:], self.tile, centres, use_centre, u[3:].t()).unbind(1)
        start = (top * width + left + first_pixel).view(n, 1, 1)
        index = start + width.view(n, 1, 1) * self.rows + self.cols  # (n, tile, tile)
        return self.pixels[index].permute(0, 3, 1, 2)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` crops as (n, 1, tile, tile) float16 images and masks (0/1), on the sampler's device."""
        return split_pairs(self.draw_pairs(n, generator))


def choose_size(sizes: Sequence[int], rng: random.Random) -> int:
    """One tile size per micro-batch (multi-scale runs mix sizes batch by batch). Drawn on the host
    (``rng`` is a seeded :class:`random.Random`): the choice sets tensor shapes, so it must be known there."""
    if len(sizes) == 1:
        return sizes[0]
    return sizes[rng.randrange(len(sizes))]


Sampler = CropSampler | TileSampler
