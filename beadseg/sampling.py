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


# The square's symmetries as (transpose, vertical flip, horizontal flip), applied in that order: flips alone
# make 4 of them, quarter turns alone 4 (rot90 by k = 1, 2, 3: transpose + vflip, vflip + hflip, transpose +
# hflip), both together all 8. A crop draws one of the allowed ones uniformly.
SYMMETRIES = {
    (True, False): ((0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1)),
    (False, True): ((0, 0, 0), (1, 1, 0), (0, 1, 1), (1, 0, 1)),
    (True, True): tuple((t, v, h) for t in (0, 1) for v in (0, 1) for h in (0, 1)),
}


def symmetry_table(flips: bool, rot90: bool, device: torch.device) -> torch.Tensor | None:
    """(K, 3) int64 table of the symmetries a run draws from (None: no flips, no rotations)."""
    if not (flips or rot90):
        return None
    return torch.tensor(SYMMETRIES[flips, rot90], dtype=torch.int64, device=device)


def symmetry_coefficients(table: torch.Tensor | None, tile: int) -> torch.Tensor | None:
    """Each symmetry of ``table`` (:func:`symmetry_table`) as the coefficients of its gather index for crops of
    ``tile``: (K, 6) int64 rows (a_r, b_r, a_c, b_c, a_0, b_0) such that, for an image row length W, output
    pixel (r, c) of a crop with top-left pixel ``start`` reads pixel
    ``start + (a_0 + b_0 W) + (a_r + b_r W) r + (a_c + b_c W) c`` (see :func:`window_index`)."""
    if table is None:
        return None
    rows = []
    for transpose, flip_v, flip_h in table.tolist():
        sign_v, shift_v = 1 - 2 * flip_v, flip_v * (tile - 1)  # r1 = sign_v * r + shift_v
        sign_h, shift_h = 1 - 2 * flip_h, flip_h * (tile - 1)  # c1 = sign_h * c + shift_h
        if transpose:  # reads row c1, column r1
            rows.append((sign_v, 0, 0, sign_h, shift_v, shift_h))
        else:  # reads row r1, column c1
            rows.append((0, sign_v, sign_h, 0, shift_h, shift_v))
    return torch.tensor(rows, dtype=torch.int64, device=table.device)


def window_index(start: torch.Tensor, width: torch.Tensor, coefficients: torch.Tensor | None,
                 rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(n, tile, tile) flat indices of n crops (top-left pixel ``start``, image row length ``width``), each
    transformed by its symmetry, given as its row of :func:`symmetry_coefficients` (n, 6; None: none): a flip
    or rotation moves pixels, so it is an affine change of the index. One full-size op, whatever the symmetry."""
    n = start.shape[0]
    if coefficients is None:
        return (start.view(n, 1, 1) + width.view(n, 1, 1) * rows) + cols
    steps = coefficients[:, 0::2] + coefficients[:, 1::2] * width.view(n, 1)  # (n, 3): row step, column step, base
    step_r, step_c, base = steps.unbind(1)
    return ((start + base).view(n, 1, 1) + step_r.view(n, 1, 1) * rows) + step_c.view(n, 1, 1) * cols


def apply_symmetry(x: torch.Tensor, symmetry: torch.Tensor) -> torch.Tensor:
    """Transform each (.., S, S) sample of ``x`` by its symmetry (n, 3): the reference the gathered crops of
    :func:`window_index` equal (tests), with static shapes."""
    out = x
    for axis, op in enumerate((lambda a: a.transpose(-2, -1), lambda a: a.flip(-2), lambda a: a.flip(-1))):
        pick = (symmetry[:, axis] > 0).view(-1, *([1] * (x.dim() - 1)))
        out = torch.where(pick, op(out), out)
    return out


def _draw_symmetry(n: int, u: torch.Tensor, table: torch.Tensor | None) -> torch.Tensor | None:
    """Row of ``table`` for each of the n uniform numbers ``u`` (None without a table)."""
    if table is None:
        return None
    return table[(u * len(table)).long().clamp_max(len(table) - 1)]


class TileSampler:
    """Uniform draws with replacement from stored tiles (N, 1, S, S), gathered like crops (whole tiles)."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor) -> None:
        self.size = int(images.shape[-1])
        self.device = images.device
        self.flat_images = images.to(torch.float16).reshape(-1)
        self.flat_masks = (masks > 0).to(torch.uint8).reshape(-1)
        steps = torch.arange(self.size, device=self.device)
        self.rows, self.cols = steps.view(1, -1, 1), steps.view(1, 1, -1)
        self._count = int(images.shape[0])

    def __len__(self) -> int:
        return self._count

    def draw(self, n: int, generator: torch.Generator,
             symmetries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` tiles as (n, 1, S, S) float16 images and uint8 masks on the sampler's device, each under a
        symmetry drawn from ``symmetries`` (:func:`symmetry_coefficients` of the tile size) when given."""
        u = torch.rand(2, n, generator=generator, dtype=torch.float64, device=self.device)
        which = (u[0] * len(self)).long().clamp_max(len(self) - 1)
        width = torch.full((n,), self.size, dtype=torch.int64, device=self.device)
        index = window_index(which * (self.size * self.size), width, _draw_symmetry(n, u[1], symmetries),
                             self.rows, self.cols)
        return (torch.take(self.flat_images, index).unsqueeze(1), torch.take(self.flat_masks, index).unsqueeze(1))


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
    images and masks are kept as flat buffers, a crop is gathered by computed indices (its flip / rotation
    folded into them, :func:`window_index`), and the random numbers come from ``generator``, which must
    live on the same device. Nothing is read back to the host, so on a GPU a draw never waits for the card."""

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], tile: int,
                 foreground_oversample: float, device: torch.device, seed: int = 0,
                 extra: Sequence[np.ndarray] | None = None) -> None:
        """``extra``: one more target map per image (``train.target`` mask_distance: each bead's normalised
        distance), gathered with the mask: :meth:`draw` then returns (n, 2, tile, tile) float16 targets."""
        if not images:
            raise ValueError("CropSampler needs at least one image")
        if extra is not None and len(extra) != len(images):
            raise ValueError(f"CropSampler: {len(extra)} extra target maps for {len(images)} images")
        self.tile = tile
        self.device = torch.device(device)
        self.foreground_oversample = float(foreground_oversample)
        flat_images, flat_masks, flat_extra, all_points, table = [], [], [], [], []
        pixels_so_far = points_so_far = 0
        for i, (image, mask) in enumerate(zip(images, masks)):
            more = None if extra is None else np.asarray(extra[i], np.float32)
            if image.shape[0] < tile or image.shape[1] < tile:
                image, _ = pad_to_min(np.asarray(image, np.float32), tile, mode="reflect")
                mask, _ = pad_to_min(np.asarray(mask), tile, mode="reflect")
                if more is not None:
                    more, _ = pad_to_min(more, tile, mode="reflect")
            flat_images.append(np.asarray(image, np.float16).ravel())
            flat_masks.append((np.asarray(mask) > 0).ravel().astype(np.uint8))
            if more is not None:
                flat_extra.append(more.ravel().astype(np.float16))
            points = foreground_points(mask, MAX_FOREGROUND_POINTS, seed + i)
            all_points.append(points)
            # per image: first pixel, bead points (first, count), height, width
            table.append((pixels_so_far, points_so_far, len(points), image.shape[0], image.shape[1]))
            pixels_so_far += image.shape[0] * image.shape[1]
            points_so_far += len(points)
        all_points.append(np.zeros((1, 2), np.int64))  # a harmless row to index when an image has no bead
        self.flat_images = torch.from_numpy(np.concatenate(flat_images)).to(self.device)
        self.flat_masks = torch.from_numpy(np.concatenate(flat_masks)).to(self.device)
        self.flat_extra = torch.from_numpy(np.concatenate(flat_extra)).to(self.device) if flat_extra else None
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

    def draw(self, n: int, generator: torch.Generator,
             symmetries: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` crops as (n, 1, tile, tile) float16 images and uint8 masks (0/1) on the sampler's device, each
        under a symmetry drawn from the table ``symmetries`` (:func:`symmetry_table`) when given. With an extra
        target map the targets are (n, 2, tile, tile) float16: the mask, then the extra map."""
        u = torch.rand(6, n, generator=generator, dtype=torch.float64, device=self.device)
        u_image, u_point, u_centre, _, _, u_symmetry = u.unbind(0)
        info = self.table[torch.searchsorted(self.cumulative, u_image, right=True)]
        first_pixel, first_point, count, _, width = info.unbind(1)
        # a uniform bead pixel of the chosen image (any valid row when it has none: then it is not used)
        centres = self.points[first_point + torch.minimum((u_point * count).long(), count - 1)]
        use_centre = (u_centre < self.foreground_oversample) & (count > 0)
        top, left = crop_origins(info[:, 3:], self.tile, centres, use_centre, u[3:5].t()).unbind(1)
        index = window_index(top * width + left + first_pixel, width, _draw_symmetry(n, u_symmetry, symmetries),
                             self.rows, self.cols)
        images, masks = torch.take(self.flat_images, index).unsqueeze(1), torch.take(self.flat_masks, index).unsqueeze(1)
        if self.flat_extra is None:
            return images, masks
        return images, torch.cat((masks.to(torch.float16), torch.take(self.flat_extra, index).unsqueeze(1)), 1)


def choose_size(sizes: Sequence[int], rng: random.Random) -> int:
    """One tile size per micro-batch (multi-scale runs mix sizes batch by batch). Drawn on the host
    (``rng`` is a seeded :class:`random.Random`): the choice sets tensor shapes, so it must be known there."""
    if len(sizes) == 1:
        return sizes[0]
    return sizes[rng.randrange(len(sizes))]


Sampler = CropSampler | TileSampler
