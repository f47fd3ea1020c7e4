"""Deterministic synthetic fluorescence microbead images with ground-truth masks.

Two difficulties (``DIFFICULTIES``):

``"demo"`` (default; its bytes never change, DVC hashes rely on it)
    Round in-focus beads of a few sizes (isolated and in touching clusters of
    2-5), blurred by a Gaussian PSF, under uneven illumination, with a few dim
    out-of-focus beads, and Poisson shot noise + Gaussian read noise on a
    camera offset. Easy: a global threshold already segments it well.

``"hard"``
    A benchmark where one global threshold fails but a small U-Net can learn:
    small, dense beads (radius 2.5-14 px, skewed to small; many touching
    clusters) whose brightness varies ~7x between beads, low photon counts,
    a wider PSF (sigma 1.5-3 px), strong vignetting/gradient times a structured
    background of large smooth autofluorescent blobs plus haze, bright debris
    (curved fibres and elongated angular shards) and many out-of-focus beads.

In both, the mask marks the in-focus beads only (disks of the bead radius;
debris, haze and out-of-focus beads are background) and all randomness comes
from ``np.random.default_rng(seed)``, so a seed always gives the same bytes.
``generate_labels`` gives the same disks as an instance-label image.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import draw

from beadseg.data.io import write_tiff
from beadseg.errors import ConfigError

BASE_RADII = (6.0, 9.0, 13.0)
RADIUS_JITTER = 0.1  # relative, uniform +-10 %
MAX_RADIUS = max(BASE_RADII) * (1.0 + RADIUS_JITTER)
CAMERA_OFFSET = 100.0
STEM_FORMAT = "bead_{:03d}"
DIFFICULTIES = ("demo", "hard")

# "hard" difficulty (see module docstring); the demo constants above are untouched.
HARD_RADIUS_RANGE = (2.5, 14.0)
HARD_PSF_SIGMA = (1.5, 3.0)


@dataclass(frozen=True)
class Bead:
    """One bead: centre (y, x) in pixels, radius, and cluster id (-1 when isolated)."""

    y: float
    x: float
    r: float
    cluster: int = -1


@dataclass(frozen=True)
class SynthSample:
    """A generated image, its mask, and the in-focus / out-of-focus beads drawn."""

    image: np.ndarray
    mask: np.ndarray
    beads: tuple[Bead, ...]
    blurred_beads: tuple[Bead, ...]
    debris: np.ndarray | None = None  # bool footprint of the (unmasked) debris; None for "demo"


def _draw_radius(rng: np.random.Generator) -> float:
    base = BASE_RADII[int(rng.integers(len(BASE_RADII)))]
    return float(base * rng.uniform(1.0 - RADIUS_JITTER, 1.0 + RADIUS_JITTER))


def _fits(y: float, x: float, r: float, placed: list[Bead], gap: float, size: int) -> bool:
    """True when a bead at (y, x, r) keeps ``gap`` px from all placed beads and its centre is on the image."""
    margin = 0.3 * r
    if not (margin <= y <= size - margin and margin <= x <= size - margin):
        return False
    if not placed:
        return True
    ys = np.fromiter((b.y for b in placed), float, len(placed))
    xs = np.fromiter((b.x for b in placed), float, len(placed))
    rs = np.fromiter((b.r for b in placed), float, len(placed))
    return bool(np.all(np.hypot(ys - y, xs - x) >= rs + r + gap))


def _place_cluster(rng: np.random.Generator, size: int, placed: list[Bead], cluster_id: int) -> list[Bead]:
    """Try to place 2-5 mutually touching beads; returns [] if it does not fit."""
    n = int(rng.integers(2, 6))
    r0 = _draw_radius(rng)
    y0, x0 = rng.uniform(0, size, 2)
    if not _fits(y0, x0, r0, placed, 3.0, size):
        return []
    cluster = [Bead(float(y0), float(x0), r0, cluster_id)]
    for _ in range(8 * n):
        if len(cluster) == n:
            break
        anchor = cluster[int(rng.integers(len(cluster)))]
        r = _draw_radius(rng)
        angle = rng.uniform(0, 2 * np.pi)
        dist = (anchor.r + r) * rng.uniform(0.88, 0.97)  # slight overlap: disks merge in the mask
        y, x = anchor.y + dist * np.sin(angle), anchor.x + dist * np.cos(angle)
        others = [b for b in cluster if b is not anchor]
        if _fits(y, x, r, placed, 3.0, size) and _fits(y, x, r, others, -0.12 * (r + MAX_RADIUS), size):
            cluster.append(Bead(float(y), float(x), r, cluster_id))
    return cluster if len(cluster) >= 2 else []


def _layout(rng: np.random.Generator, size: int) -> list[Bead]:
    """Place isolated beads and clusters until the target foreground fraction is reached."""
    target_area = rng.uniform(0.10, 0.15) * size * size
    placed: list[Bead] = []
    area = 0.0
    n_clusters = 0
    for _ in range(4000):
        if area >= target_area:
            break
        # Start with a cluster so every image has touching beads, then ~1 cluster in 7.
        if n_clusters == 0 or rng.random() < 0.15:
            new = _place_cluster(rng, size, placed, n_clusters)
            n_clusters += bool(new)
        else:
            r = _draw_radius(rng)
            y, x = rng.uniform(0, size, 2)
            new = [Bead(float(y), float(x), r)] if _fits(y, x, r, placed, 3.0, size) else []
        placed.extend(new)
        area += sum(np.pi * b.r**2 for b in new)
    return placed


def _layout_blurred(rng: np.random.Generator, size: int, in_focus: list[Bead]) -> list[Bead]:
    """A few out-of-focus beads that do not overlap the in-focus disks."""
    count = int(rng.integers(2, 5)) * max(1, (size * size) // (512 * 512))
    blurred: list[Bead] = []
    for _ in range(50 * count):
        if len(blurred) == count:
            break
        r = _draw_radius(rng) * 1.3
        y, x = rng.uniform(0, size, 2)
        if _fits(y, x, r, in_focus, 0.0, size) and _fits(y, x, r, blurred, 0.0, size):
            blurred.append(Bead(float(y), float(x), r))
    return blurred


def _window(b: Bead, size: int, pad: float) -> tuple[slice, slice, np.ndarray]:
    """Pixel window around a bead and the distance of each pixel centre to the bead centre."""
    y0, y1 = max(0, int(b.y - b.r - pad)), min(size, int(np.ceil(b.y + b.r + pad)) + 1)
    x0, x1 = max(0, int(b.x - b.r - pad)), min(size, int(np.ceil(b.x + b.r + pad)) + 1)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    return slice(y0, y1), slice(x0, x1), np.hypot(yy - b.y, xx - b.x)


def _render(beads: list[Bead], size: int, brightness: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Anti-aliased bead disks with a slightly brighter centre; fills ``mask`` when given."""
    canvas = np.zeros((size, size), np.float32)
    for bead, level in zip(beads, brightness):
        sy, sx, dist = _window(bead, size, 2.0)
        coverage = np.clip(bead.r + 0.5 - dist, 0.0, 1.0)
        profile = 0.6 + 0.4 * np.sqrt(np.clip(1.0 - (dist / bead.r) ** 2, 0.0, 1.0))
        canvas[sy, sx] += (level * coverage * profile).astype(np.float32)
        if mask is not None:
            mask[sy, sx] |= dist <= bead.r
    return canvas


def _illumination(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth field in about [0.45, 1]: off-centre vignetting times a linear gradient."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    cy, cx = rng.uniform(0.3, 0.7, 2)
    vignette = 1.0 - rng.uniform(0.2, 0.4) * ((yy - cy) ** 2 + (xx - cx) ** 2) / 0.5
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 1.0 - rng.uniform(0.05, 0.25) * (np.cos(angle) * (yy - 0.5) + np.sin(angle) * (xx - 0.5) + 0.71) / 1.42
    return np.clip(vignette * gradient, 0.3, 1.0).astype(np.float32)


def _check_difficulty(difficulty: object) -> str:
    if not isinstance(difficulty, str) or difficulty not in DIFFICULTIES:
        raise ConfigError(
            f"synthetic difficulty={difficulty!r} is invalid: use one of {', '.join(map(repr, DIFFICULTIES))}"
        )
    return difficulty


# ---------------------------------------------------------------- "hard" difficulty


class _Packing:
    """Centres and radii of placed beads in growable arrays, for fast vectorised overlap checks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.yxr = np.empty((3, 256))
        self.n = 0

    def clearance(self, y: float, x: float, r: float) -> np.ndarray:
        """Gap between a disk at (y, x, r) and each placed disk (negative: overlap)."""
        ys, xs, rs = self.yxr[:, : self.n]
        return np.hypot(ys - y, xs - x) - rs - r

    def on_image(self, y: float, x: float, r: float) -> bool:
        margin = 0.3 * r
        return margin <= y <= self.size - margin and margin <= x <= self.size - margin

    def add(self, bead: Bead) -> None:
        if self.n == self.yxr.shape[1]:
            self.yxr = np.concatenate([self.yxr, np.empty_like(self.yxr)], axis=1)
        self.yxr[:, self.n] = bead.y, bead.x, bead.r
        self.n += 1


def _hard_radius(rng: np.random.Generator) -> float:
    """Radius in [2.5, 14] px, skewed to small (median ~5 px)."""
    low, high = HARD_RADIUS_RANGE
    return float(low + (high - low) * rng.beta(1.2, 3.6))


def _hard_cluster(rng: np.random.Generator, pack: _Packing, cluster_id: int) -> list[Bead]:
    """2-8 touching beads (slight overlap), >= 1 px from other beads; placed into ``pack``."""
    n = int(rng.integers(2, 9))
    r0 = _hard_radius(rng)
    y0, x0 = rng.uniform(0, pack.size, 2)
    if not pack.on_image(y0, x0, r0) or np.any(pack.clearance(y0, x0, r0) < 1.0):
        return []
    start = pack.n
    cluster = [Bead(float(y0), float(x0), r0, cluster_id)]
    pack.add(cluster[0])
    for _ in range(6 * n):
        if len(cluster) == n:
            break
        anchor = cluster[int(rng.integers(len(cluster)))]
        r = _hard_radius(rng)
        angle = rng.uniform(0, 2 * np.pi)
        dist = (anchor.r + r) * rng.uniform(0.86, 0.97)
        y, x = anchor.y + dist * np.sin(angle), anchor.x + dist * np.cos(angle)
        gaps = pack.clearance(y, x, r)
        members = pack.yxr[2, start : pack.n]
        if (
            pack.on_image(y, x, r)
            and np.all(gaps[:start] >= 1.0)
            and np.all(gaps[start:] >= -0.15 * (members + r))
        ):
            cluster.append(Bead(float(y), float(x), r, cluster_id))
            pack.add(cluster[-1])
    if len(cluster) < 2:
        pack.n = start  # drop the lone seed bead
        return []
    return cluster


def _hard_layout(rng: np.random.Generator, size: int) -> list[Bead]:
    """Dense layout: about 20-28 % foreground, ~40 % of placements are touching clusters."""
    target_area = rng.uniform(0.20, 0.28) * size * size
    attempts = 300 + int(12000 * size * size / 512**2)
    pack = _Packing(size)
    placed: list[Bead] = []
    area = 0.0
    n_clusters = 0
    for _ in range(attempts):
        if area >= target_area:
            break
        if n_clusters == 0 or rng.random() < 0.4:
            new = _hard_cluster(rng, pack, n_clusters)
            n_clusters += bool(new)
        else:
            r = _hard_radius(rng)
            y, x = rng.uniform(0, size, 2)
            gap = rng.uniform(1.0, 3.0)
            new = []
            if pack.on_image(y, x, r) and np.all(pack.clearance(y, x, r) >= gap):
                new = [Bead(float(y), float(x), r)]
                pack.add(new[0])
        placed.extend(new)
        area += sum(np.pi * b.r**2 for b in new)
    return placed


def _hard_blurred(rng: np.random.Generator, size: int) -> list[Bead]:
    """Out-of-focus beads (another focal plane: they may lie over in-focus beads)."""
    count = max(1, int(rng.integers(8, 20) * size * size / 512**2))
    return [
        Bead(float(y), float(x), _hard_radius(rng) * 1.3 + 2.0)
        for y, x in rng.uniform(0, size, (count, 2))
    ]


def _hard_illumination(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth field in about [0.25, 1]: strong off-centre vignetting times a steep gradient."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / np.float32(size)
    cy, cx = rng.uniform(0.2, 0.8, 2)
    vignette = 1.0 - rng.uniform(0.35, 0.6) * ((yy - cy) ** 2 + (xx - cx) ** 2) / 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (yy - 0.5) + np.sin(angle) * (xx - 0.5) + 0.71) / 1.42
    gradient = 1.0 - rng.uniform(0.2, 0.45) * ramp
    return np.clip(vignette * gradient, 0.25, 1.0).astype(np.float32)


def _hard_background(rng: np.random.Generator, size: int, peak: float) -> np.ndarray:
    """Structured autofluorescence: large smooth anisotropic blobs plus a finer haze (photons)."""
    step = 8  # computed on a coarse grid, then spline-upsampled: smooth and fast
    n = size // step + 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) * step
    field = np.zeros((n, n))
    n_blobs = max(2, int(rng.integers(5, 10) * size * size / 512**2))
    for _ in range(n_blobs):
        cy, cx = rng.uniform(-0.1 * size, 1.1 * size, 2)
        s_u, s_v = rng.uniform(15.0, 70.0, 2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u, v = np.cos(theta) * dy + np.sin(theta) * dx, -np.sin(theta) * dy + np.cos(theta) * dx
        field += peak * rng.uniform(0.25, 0.9) * np.exp(-0.5 * ((u / s_u) ** 2 + (v / s_v) ** 2))
    haze = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma=rng.uniform(1.2, 2.5), mode="wrap")
    haze /= max(float(haze.std()), 1e-12)
    field += peak * rng.uniform(0.04, 0.12) * np.exp(0.6 * haze)
    full = ndimage.zoom(field, step, order=3, mode="nearest")[:size, :size]
    return np.clip(full, 0.0, None).astype(np.float32)


def _fibre(rng: np.random.Generator, size: int, canvas: np.ndarray, level: float) -> None:
    """A curved fibre: a random-walk polyline 2-4 px wide, 20-100 px long."""
    n_steps = int(rng.integers(5, 26))
    width = int(rng.integers(2, 5))
    y, x = rng.uniform(0, size, 2)
    heading = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(0.05, 0.35)
    points = [(y, x)]
    for _ in range(n_steps):
        heading += rng.normal(0.0, bend)
        y, x = y + 4.0 * np.sin(heading), x + 4.0 * np.cos(heading)
        points.append((y, x))
    pts = np.asarray(points)
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        length = max(np.hypot(y1 - y0, x1 - x0), 1e-9)
        ny, nx = (x1 - x0) / length, -(y1 - y0) / length  # unit normal
        for k in range(width):
            off = k - (width - 1) / 2
            rr, cc, val = draw.line_aa(
                int(round(y0 + off * ny)), int(round(x0 + off * nx)),
                int(round(y1 + off * ny)), int(round(x1 + off * nx)),
            )
            keep = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
            rr, cc = rr[keep], cc[keep]
            canvas[rr, cc] = np.maximum(canvas[rr, cc], (level * val[keep]).astype(np.float32))


def _shard(rng: np.random.Generator, size: int, canvas: np.ndarray, level: float) -> None:
    """An elongated angular particle: a 3-6 vertex polygon, 12-32 px long, aspect 2-4."""
    n_vertices = int(rng.integers(3, 7))
    length = rng.uniform(12.0, 32.0)
    aspect = rng.uniform(2.0, 4.0)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    reach = rng.uniform(0.5, 1.0, n_vertices) * length / 2
    u, v = reach * np.cos(angles), reach * np.sin(angles) / aspect
    theta = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0, size, 2)
    rows = cy + np.sin(theta) * u + np.cos(theta) * v
    cols = cx + np.cos(theta) * u - np.sin(theta) * v
    rr, cc = draw.polygon(rows, cols, shape=(size, size))
    canvas[rr, cc] = np.maximum(canvas[rr, cc], np.float32(level))


def _hard_debris(rng: np.random.Generator, size: int, peak: float) -> np.ndarray:
    """Bright non-bead particles (fibres and shards) as a sharp photon canvas; never in the mask."""
    canvas = np.zeros((size, size), np.float32)
    scale = size * size / 512**2
    for _ in range(max(1, int(rng.integers(3, 8) * scale))):
        _fibre(rng, size, canvas, peak * rng.uniform(0.8, 2.0))
    for _ in range(max(1, int(rng.integers(8, 20) * scale))):
        _shard(rng, size, canvas, peak * rng.uniform(0.8, 2.5))
    return canvas


def _generate_hard(size: int, seed: int) -> SynthSample:
    rng = np.random.default_rng(seed)
    beads = _hard_layout(rng, size)
    blurred_beads = _hard_blurred(rng, size)

    mask = np.zeros((size, size), bool)
    peak = rng.uniform(200.0, 500.0)  # photons at the centre of the brightest beads
    levels = peak * np.exp(rng.uniform(np.log(0.15), 0.0, len(beads)))  # ~7x range, many dim
    sharp = _render(beads, size, levels, mask)
    debris = _hard_debris(rng, size, peak)
    signal = ndimage.gaussian_filter(sharp + debris, sigma=rng.uniform(*HARD_PSF_SIGMA))
    dim = _render(blurred_beads, size, peak * rng.uniform(0.3, 1.0, len(blurred_beads)), None)
    signal += ndimage.gaussian_filter(dim, sigma=rng.uniform(4.0, 8.0))

    background = _hard_background(rng, size, peak) + np.float32(rng.uniform(20.0, 60.0))
    photons = (signal + background) * _hard_illumination(rng, size)
    counts = rng.poisson(photons).astype(np.float32)
    gain = rng.uniform(0.8, 2.0)
    read_noise = rng.normal(0.0, rng.uniform(3.0, 8.0), (size, size)).astype(np.float32)
    adu = CAMERA_OFFSET + gain * counts + read_noise
    image = np.clip(np.rint(adu), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return SynthSample(image, mask.astype(np.uint8), tuple(beads), tuple(blurred_beads), debris > 0)


# ---------------------------------------------------------------- public API


def generate_sample(size: int, seed: int, difficulty: str = "demo") -> SynthSample:
    """Generate one image/mask pair and report the beads drawn (see module docstring)."""
    if _check_difficulty(difficulty) == "hard":
        return _generate_hard(size, seed)
    rng = np.random.default_rng(seed)
    beads = _layout(rng, size)
    blurred_beads = _layout_blurred(rng, size, beads)

    mask = np.zeros((size, size), bool)
    peak = rng.uniform(600.0, 2500.0)  # photons at the centre of a typical bead
    sharp = _render(beads, size, peak * rng.uniform(0.6, 1.4, len(beads)), mask)
    signal = ndimage.gaussian_filter(sharp, sigma=rng.uniform(1.0, 2.0))
    dim = _render(blurred_beads, size, peak * rng.uniform(0.3, 0.6, len(blurred_beads)), None)
    signal += ndimage.gaussian_filter(dim, sigma=rng.uniform(5.0, 8.0))

    background = rng.uniform(40.0, 120.0)
    photons = (signal + np.float32(background)) * _illumination(rng, size)
    counts = rng.poisson(photons).astype(np.float32)
    gain = rng.uniform(0.8, 1.5)
    read_noise = rng.normal(0.0, rng.uniform(2.0, 5.0), (size, size)).astype(np.float32)
    adu = CAMERA_OFFSET + gain * counts + read_noise
    image = np.clip(np.rint(adu), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return SynthSample(image, mask.astype(np.uint8), tuple(beads), tuple(blurred_beads))


def generate_pair(size: int, seed: int, difficulty: str = "demo") -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint16 HxW, mask uint8 HxW in {0, 1}) for a ``size`` x ``size`` field."""
    sample = generate_sample(size, seed, difficulty)
    return sample.image, sample.mask


def bead_labels(beads: tuple[Bead, ...] | list[Bead], size: int) -> np.ndarray:
    """Instance labels (int32) of bead disks: ids 1..n in drawing order, a later bead wins overlaps.

    The disks are exactly the mask's (``dist <= r`` on the same pixel windows); ids are made
    consecutive, so a bead hidden entirely under later beads gets no id.
    """
    labels = np.zeros((size, size), np.int32)
    for i, bead in enumerate(beads, start=1):
        sy, sx, dist = _window(bead, size, 2.0)
        labels[sy, sx][dist <= bead.r] = i
    present = np.unique(labels)
    if present.size - 1 != len(beads):  # some id lost entirely: renumber 1..n
        lookup = np.zeros(len(beads) + 1, np.int32)
        lookup[present] = np.arange(present.size, dtype=np.int32)
        labels = lookup[labels]
    return labels


def generate_labels(size: int, seed: int, difficulty: str = "demo") -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint16 HxW, labels int32 HxW): one id per in-focus bead, 0 = background.

    Same image as ``generate_pair(size, seed, difficulty)``; ``labels > 0`` equals its mask.
    """
    sample = generate_sample(size, seed, difficulty)
    return sample.image, bead_labels(sample.beads, size)


def image_seed(seed: int, index: int) -> int:
    """Seed of image ``index`` in a data set generated with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _validate(n_images: int, size: int, seed: int) -> None:
    if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 2:
        raise ConfigError(f"synthetic n_images={n_images!r} is invalid: use an integer >= 2")
    if isinstance(size, bool) or not isinstance(size, int) or size < 64:
        raise ConfigError(f"synthetic image size={size!r} is invalid: use an integer >= 64 (pixels)")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"synthetic seed={seed!r} is invalid: use an integer >= 0")


def _to_uint16_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Instance labels as uint16; more than 65535 objects cannot be stored that way."""
    if int(labels.max(initial=0)) > np.iinfo(np.uint16).max:
        raise ConfigError(
            f"{name}: {int(labels.max())} objects do not fit a uint16 label image: use a smaller image size"
        )
    return labels.astype(np.uint16)


def _remove_stale(folder: Path, keep: set[str]) -> None:
    for path in folder.glob("bead_*.tif"):
        if path.stem not in keep:
            path.unlink()


def write_dataset(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    n_images: int,
    size: int,
    seed: int,
    progress: bool = True,
    difficulty: str = "demo",
    instance_labels: bool = False,
) -> list[str]:
    """Write ``bead_000.tif`` ... to both folders (byte-identical for the same arguments).

    Images are uint16; masks are uint8 0/1, or with ``instance_labels`` uint16 instance
    labels (one id per bead, see ``generate_labels``). Stale ``bead_*.tif`` files from a
    larger earlier data set are removed. Returns the stems.
    """
    _validate(n_images, size, seed)
    _check_difficulty(difficulty)
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    stems = [STEM_FORMAT.format(i) for i in range(n_images)]
    for i, stem in enumerate(stems):
        if progress:
            print(f"synth: image {i + 1}/{n_images} {stem}.tif", file=sys.stderr, flush=True)
        sample = generate_sample(size, image_seed(seed, i), difficulty)
        image, mask = sample.image, sample.mask
        if instance_labels:
            mask = _to_uint16_labels(bead_labels(sample.beads, size), f"{stem}.tif")
        write_tiff(images_dir / f"{stem}.tif", image)
        write_tiff(masks_dir / f"{stem}.tif", mask)
    keep = set(stems)
    _remove_stale(images_dir, keep)
    _remove_stale(masks_dir, keep)
    return stems
