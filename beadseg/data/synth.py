"""Deterministic synthetic fluorescence microbead images with ground-truth masks.

Each image shows round in-focus beads of a few sizes (isolated and in touching
clusters of 2-5), blurred by a Gaussian PSF, under uneven illumination, with a
few dim out-of-focus beads, and Poisson shot noise + Gaussian read noise on a
camera offset. The mask marks the in-focus beads only (disks of the bead
radius). All randomness comes from ``np.random.default_rng(seed)``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from beadseg.data.io import write_tiff
from beadseg.errors import ConfigError

BASE_RADII = (6.0, 9.0, 13.0)
RADIUS_JITTER = 0.1  # relative, uniform +-10 %
MAX_RADIUS = max(BASE_RADII) * (1.0 + RADIUS_JITTER)
CAMERA_OFFSET = 100.0
STEM_FORMAT = "bead_{:03d}"


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


def generate_sample(size: int, seed: int) -> SynthSample:
    """Generate one image/mask pair and report the beads drawn (see module docstring)."""
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


def generate_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint16 HxW, mask uint8 HxW in {0, 1}) for a ``size`` x ``size`` field."""
    sample = generate_sample(size, seed)
    return sample.image, sample.mask


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
) -> list[str]:
    """Write ``bead_000.tif`` ... to both folders (byte-identical for the same arguments).

    Stale ``bead_*.tif`` files from a larger earlier data set are removed. Returns the stems.
    """
    _validate(n_images, size, seed)
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    stems = [STEM_FORMAT.format(i) for i in range(n_images)]
    for i, stem in enumerate(stems):
        if progress:
            print(f"synth: image {i + 1}/{n_images} {stem}.tif", file=sys.stderr, flush=True)
        image, mask = generate_pair(size, image_seed(seed, i))
        write_tiff(images_dir / f"{stem}.tif", image)
        write_tiff(masks_dir / f"{stem}.tif", mask)
    keep = set(stems)
    _remove_stale(images_dir, keep)
    _remove_stale(masks_dir, keep)
    return stems
