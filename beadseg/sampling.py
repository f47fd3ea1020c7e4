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

Every draw comes from a ``torch.Generator`` the caller seeds per epoch, so a resumed run draws the same
batches as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from beadseg.data.tiling import pad_to_min

MAX_FOREGROUND_POINTS = 20_000  # per image: enough to centre crops on beads without holding every pixel


class TileSampler:
    """Uniform draws with replacement from stored tiles (N, 1, S, S)."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self), (n,), generator=generator).to(self.images.device)
        return self.images.index_select(0, idx), self.masks.index_select(0, idx)


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


class CropSampler:
    """Random crops of one tile size from full images, a fraction centred on beads."""

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], tile: int,
                 foreground_oversample: float, device: torch.device, seed: int = 0) -> None:
        if not images:
            raise ValueError("CropSampler needs at least one image")
        self.tile = tile
        self.foreground_oversample = float(foreground_oversample)
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.points: list[np.ndarray] = []
        weights = []
        for i, (image, mask) in enumerate(zip(images, masks)):
            if image.shape[0] < tile or image.shape[1] < tile:
                image, _ = pad_to_min(np.asarray(image, np.float32), tile, mode="reflect")
                mask, _ = pad_to_min(np.asarray(mask), tile, mode="reflect")
            self.images.append(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float16)).to(device))
            self.masks.append(torch.from_numpy(np.ascontiguousarray((mask > 0).astype(np.uint8))).to(device))
            self.points.append(foreground_points(mask, MAX_FOREGROUND_POINTS, seed + i))
            weights.append(float(image.shape[0] * image.shape[1]))
        self.weights = torch.tensor(weights, dtype=torch.float64)

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` crops as (n, 1, tile, tile) float16 images and uint8 masks."""
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator).tolist()
        u = torch.rand(n, 3, generator=generator, dtype=torch.float64).tolist()
        xs, ys = [], []
        for k, i in enumerate(which):
            centre = None
            points = self.points[i]
            if len(points) and u[k][2] < self.foreground_oversample:
                j = int(torch.randint(0, len(points), (1,), generator=generator))
                centre = (int(points[j, 0]), int(points[j, 1]))
            image, mask = self.images[i], self.masks[i]
            y, x = crop_origin((image.shape[0], image.shape[1]), self.tile, centre, (u[k][0], u[k][1]))
            xs.append(image[y:y + self.tile, x:x + self.tile])
            ys.append(mask[y:y + self.tile, x:x + self.tile])
        return torch.stack(xs)[:, None], torch.stack(ys)[:, None]


def choose_size(sizes: Sequence[int], generator: torch.Generator) -> int:
    """One tile size per micro-batch (multi-scale runs mix sizes batch by batch)."""
    if len(sizes) == 1:
        return sizes[0]
    return sizes[int(torch.randint(0, len(sizes), (1,), generator=generator))]


Sampler = CropSampler | TileSampler
