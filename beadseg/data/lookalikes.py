"""Robustness test sets with looks that the demo generator never makes.

Users bring their own images, so the training defaults must hold on data that
was not made by ``beadseg.data.synth``'s demo model (uint16 camera counts,
Gaussian PSF, Poisson + read noise, vignetting). Each generator here has its
own imaging model and returns ``(image, labels)`` with ``labels`` an int32
instance-label image (0 = background, objects 1..n, consecutive):

``blobs_pair`` -- irregular, non-round objects
    Connected shapes from ``skimage.data.binary_blobs`` (bead-sized, ~18-26 %
    cover; labels = 8-connected components). Object intensity saturates
    inside and falls off at the edge (Gaussian blur), on an additive smooth
    background (tilted plane + broad glow), with additive Gaussian noise and
    salt (hot-pixel) noise, quantised to **8-bit** (uint8). Checks that models
    do not rely on roundness, 16-bit ranges or Poisson statistics.

``disks_pair`` -- round and mildly elliptical objects of many sizes
    Disks/ellipses from ``skimage.draw.ellipse`` (radii 4-20 px, aspect <=
    1.35, some touching pairs/triples), per-object brightness, an Airy-disk
    PSF (diffraction rings, not a Gaussian), a linear background ramp and pure
    Poisson noise at moderate SNR, as **float32** in arbitrary units (~0-2,
    no camera offset). Checks the float input path and normalisation.

``touching_pair`` -- dense clumps of touching, irregular objects
    Clusters of 2-5 objects of mixed shapes (ellipses of aspect up to 2.2,
    and "beans": two overlapping disks of unequal size) pressed together with
    **no background gap** between neighbours (the later object yields the
    shared pixels), plus some isolated objects; ~30-40 % cover. Each object
    has its own brightness and a faint dimming along borders it shares with
    a neighbour (as touching nuclei show), under a Gaussian PSF, a smooth
    background and Poisson + Gaussian read noise, as **uint16** camera
    counts with an offset. Checks that bead scores hold where beads touch
    and are not round (what separates touching beads cannot be learnt from
    gaps in the mask).

``hard`` (via ``write_folder``)
    ``synth``'s ``difficulty="hard"`` field with instance labels: dense small
    beads, structured background, debris.

``write_folder`` writes any of them as ``img_000.tif`` ... into an images and a
masks folder (masks as uint16 instance labels), byte-identical for the same
arguments, so one function builds every robustness test folder. All
randomness comes from ``np.random.default_rng(seed)`` (``binary_blobs`` gets a
seed drawn from it); results are deterministic for a given numpy/scikit-image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage, signal, special
from skimage import draw
from skimage.data import binary_blobs
from skimage.measure import label as connected_components

from beadseg.data.io import write_tiff
from beadseg.data.synth import generate_labels, image_seed
from beadseg.errors import ConfigError

LOOKALIKE_KINDS = ("blobs", "disks", "touching", "hard")
STEM_FORMAT = "img_{:03d}"
MIN_SIZE = 32

BLOB_SIZE_PX = 20.0  # binary_blobs "blob size" in pixels, whatever the image size
BLOB_MIN_AREA = 12  # components smaller than this (px) are dropped from image and labels
DISK_RADII = (4.0, 20.0)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber the ids present in ``labels`` to 1..n (0 stays background), as int32."""
    present = np.unique(labels)
    present = present[present > 0]
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.int32)
    lookup[present] = np.arange(1, present.size + 1, dtype=np.int32)
    return lookup[labels]


def _smooth_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Tilted plane plus one broad off-centre glow, in [0, 1] (float64)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    plane = 0.5 + 0.5 * (np.cos(angle) * (yy - 0.5) + np.sin(angle) * (xx - 0.5)) / 0.71
    cy, cx = rng.uniform(0.0, 1.0, 2)
    glow = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(0.2, 0.4) ** 2))
    return 0.5 * plane + 0.5 * glow


def blobs_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint8 HxW, labels int32 HxW): irregular blobs, 8-bit, Gaussian + salt noise."""
    _check_size(size)
    rng = np.random.default_rng(seed)
    fraction = min(0.5, BLOB_SIZE_PX / size)  # binary_blobs scales blob size with the image
    foreground = binary_blobs(
        length=size,
        blob_size_fraction=fraction,
        n_dim=2,
        volume_fraction=rng.uniform(0.18, 0.26),
        rng=int(rng.integers(2**31)),
    )
    labels = connected_components(foreground, connectivity=2).astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas < BLOB_MIN_AREA
    small[0] = True
    labels[small[labels]] = 0
    labels = _relabel(labels)

    n = int(labels.max())
    levels = np.concatenate([[0.0], rng.uniform(0.35, 0.75, n)])  # per-object brightness
    objects = ndimage.gaussian_filter(levels[labels], sigma=rng.uniform(0.8, 2.0))
    background = rng.uniform(0.05, 0.25) * _smooth_background(rng, size) + rng.uniform(0.02, 0.08)
    image = objects + background + rng.normal(0.0, rng.uniform(0.025, 0.05), (size, size))
    salt = rng.random((size, size)) < rng.uniform(0.001, 0.004)
    image[salt] = 1.0
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8), labels


def _airy_kernel(radius_px: float) -> np.ndarray:
    """Normalised Airy pattern whose first dark ring is at ``radius_px``; 3 rings wide."""
    half = int(np.ceil(3.3 * radius_px))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    v = 3.8317 * np.hypot(yy, xx) / radius_px  # first zero of J1
    with np.errstate(invalid="ignore", divide="ignore"):
        psf = np.where(v > 0, (2.0 * special.j1(v) / v) ** 2, 1.0)
    return psf / psf.sum()


Ellipse = tuple[float, float, float, float, float]  # y, x, r_row (major), r_col, rotation


def _polar_radius(e: Ellipse, phi: float) -> float:
    """Distance from the centre to the edge of ``skimage.draw.ellipse(*e)`` along direction ``phi``.

    ``phi`` is measured from the column axis towards the row axis; skimage puts the ``r_row``
    axis at ``phi = pi/2 - rotation``.
    """
    _, _, a, b, rotation = e
    psi = phi - (np.pi / 2 - rotation)
    return float(a * b / np.hypot(b * np.cos(psi), a * np.sin(psi)))


def _ellipse_objects(rng: np.random.Generator, size: int) -> list[Ellipse]:
    """Ellipses (radii 4-20 px, aspect <= 1.35): isolated, and ~30 % in touching groups of 2-3."""
    objects: list[Ellipse] = []
    bounds = np.empty((0, 3))  # y, x, major radius (bounding circle) of each object
    target = rng.uniform(0.15, 0.25) * size * size
    area = 0.0

    def free(y: float, x: float, r: float, skip: int = -1) -> bool:
        """On the image and >= 2 px from every bounding circle except ``skip``'s."""
        if not (0 <= y < size and 0 <= x < size):
            return False
        gaps = np.hypot(bounds[:, 0] - y, bounds[:, 1] - x) - bounds[:, 2] - r
        if skip >= 0:
            gaps[skip] = np.inf
        return bool(np.all(gaps >= 2.0))

    def shape() -> tuple[float, float, float]:
        r = float(np.exp(rng.uniform(np.log(DISK_RADII[0]), np.log(DISK_RADII[1]))))
        return r, r / rng.uniform(1.0, 1.35), rng.uniform(-np.pi, np.pi)

    for _ in range(200 + int(3000 * size * size / 512**2)):
        if area >= target:
            break
        r_row, r_col, rot = shape()
        y, x = rng.uniform(0, size, 2)
        if not free(y, x, r_row):
            continue
        group: list[Ellipse] = [(float(y), float(x), r_row, r_col, rot)]
        bounds = np.vstack([bounds, [y, x, r_row]])
        if rng.random() < 0.3:  # one or two neighbours whose edges meet on the line between centres
            for _ in range(int(rng.integers(1, 3))):
                anchor = group[-1]
                n_row, n_col, n_rot = shape()
                phi = rng.uniform(0, 2 * np.pi)
                candidate: Ellipse = (0.0, 0.0, n_row, n_col, n_rot)
                dist = _polar_radius(anchor, phi) + _polar_radius(candidate, phi + np.pi)
                ny, nx = anchor[0] + dist * np.sin(phi), anchor[1] + dist * np.cos(phi)
                if free(ny, nx, n_row, skip=len(bounds) - 1):
                    group.append((float(ny), float(nx), n_row, n_col, n_rot))
                    bounds = np.vstack([bounds, [ny, nx, n_row]])
        objects.extend(group)
        area += sum(np.pi * e[2] * e[3] for e in group)
    return objects


def disks_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (image float32 HxW, labels int32 HxW): disks/ellipses, Airy blur, Poisson noise."""
    _check_size(size)
    rng = np.random.default_rng(seed)
    objects = _ellipse_objects(rng, size)
    labels = np.zeros((size, size), np.int32)
    sharp = np.zeros((size, size), np.float64)
    levels = rng.uniform(0.4, 1.0, len(objects))
    for i, ((y, x, r_row, r_col, rot), level) in enumerate(zip(objects, levels), start=1):
        rr, cc = draw.ellipse(y, x, r_row, r_col, shape=(size, size), rotation=rot)
        labels[rr, cc] = i  # later object wins an overlap
        sharp[rr, cc] = level
    labels = _relabel(labels)

    blurred = signal.fftconvolve(sharp, _airy_kernel(rng.uniform(1.5, 3.0)), mode="same")
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    ramp = 0.5 + (np.cos(angle) * (yy - 0.5) + np.sin(angle) * (xx - 0.5)) / 1.42
    background = rng.uniform(0.05, 0.15) + rng.uniform(0.05, 0.3) * ramp
    photons_per_unit = rng.uniform(40.0, 120.0)  # moderate SNR: a level-1 object has ~40-120 photons
    expected = np.clip(blurred + background, 0.0, None) * photons_per_unit
    image = rng.poisson(expected) / photons_per_unit
    return image.astype(np.float32), labels


def _touching_shape(rng: np.random.Generator, size: int, y: float, x: float, scale: float) -> np.ndarray:
    """A boolean mask of one irregular object centred near (y, x): an elongated ellipse or a bean."""
    yy, xx = np.ogrid[0:size, 0:size]
    if rng.random() < 0.5:  # ellipse, aspect 1.2-2.2
        a = scale * rng.uniform(1.1, 1.5)
        b = a / rng.uniform(1.2, 2.2)
        t = rng.uniform(0, np.pi)
        u = (xx - x) * np.cos(t) + (yy - y) * np.sin(t)
        v = -(xx - x) * np.sin(t) + (yy - y) * np.cos(t)
        return np.asarray((u / a) ** 2 + (v / b) ** 2 <= 1.0)
    r1, r2 = scale * rng.uniform(0.8, 1.1), scale * rng.uniform(0.5, 0.8)  # bean: two overlapping disks
    t = rng.uniform(0, 2 * np.pi)
    d = 0.8 * r1
    y2, x2 = y + d * np.sin(t), x + d * np.cos(t)
    return np.asarray(((yy - y) ** 2 + (xx - x) ** 2 <= r1 * r1) | ((yy - y2) ** 2 + (xx - x2) ** 2 <= r2 * r2))


def touching_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (image uint16 HxW, labels int32 HxW): clumps of touching irregular objects, Gaussian PSF."""
    _check_size(size)
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    target = rng.uniform(0.30, 0.40) * size * size
    n = 0
    for _ in range(60 + int(400 * size * size / 512**2)):
        if np.count_nonzero(labels) >= target:
            break
        scale = float(np.exp(rng.uniform(np.log(5.0), np.log(11.0))))
        cy, cx = rng.uniform(scale, size - scale, 2)
        members = 1 if rng.random() < 0.25 else int(rng.integers(2, 6))
        y, x = cy, cx
        for _ in range(members):
            shape = _touching_shape(rng, size, y, x, scale) & (labels == 0)
            if np.count_nonzero(shape) >= 16:
                n += 1
                labels[shape] = n
            step = scale * rng.uniform(1.3, 1.8)  # the next member's centre: close enough to press against it
            angle = rng.uniform(0, 2 * np.pi)
            y = float(np.clip(y + step * np.sin(angle), 0, size - 1))
            x = float(np.clip(x + step * np.cos(angle), 0, size - 1))
    labels = _relabel(labels)
    levels = np.concatenate([[0.0], rng.uniform(0.45, 1.0, int(labels.max()))])
    sharp = levels[labels]
    shared = (ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(np.where(labels > 0, labels, 2**30), size=3))
    sharp = np.where(shared & (labels > 0), sharp * rng.uniform(0.75, 0.9), sharp)  # faint dimming at borders
    blurred = ndimage.gaussian_filter(sharp, sigma=rng.uniform(1.0, 1.8))
    background = rng.uniform(0.05, 0.2) * _smooth_background(rng, size) + rng.uniform(0.03, 0.08)
    photons = rng.uniform(60.0, 200.0)
    counts = rng.poisson(np.clip(blurred + background, 0, None) * photons) + rng.normal(100.0, 3.0, (size, size))
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16), labels


def _hard_pair(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return generate_labels(size, seed, difficulty="hard")


_GENERATORS: dict[str, Callable[[int, int], tuple[np.ndarray, np.ndarray]]] = {
    "blobs": blobs_pair,
    "disks": disks_pair,
    "touching": touching_pair,
    "hard": _hard_pair,
}


def _check_size(size: object) -> None:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ConfigError(f"look-alike image size={size!r} is invalid: use an integer >= {MIN_SIZE} (pixels)")


def _validate(kind: object, n_images: object, size: object, seed: object) -> None:
    if not isinstance(kind, str) or kind not in LOOKALIKE_KINDS:
        raise ConfigError(
            f"look-alike kind={kind!r} is invalid: use one of {', '.join(map(repr, LOOKALIKE_KINDS))}"
        )
    if isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer)) or n_images < 1:
        raise ConfigError(f"look-alike n_images={n_images!r} is invalid: use an integer >= 1")
    _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"look-alike seed={seed!r} is invalid: use an integer >= 0")


def write_folder(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    kind: str,
    n_images: int,
    size: int,
    seed: int,
) -> list[str]:
    """Write ``img_000.tif`` ... (same stems) to both folders; returns the stems.

    Images keep their generator's dtype (blobs uint8, disks float32, touching and hard uint16);
    masks are uint16 instance labels. Stale ``img_*.tif`` files left by a larger
    earlier call are removed, so a folder is byte-identical for the same arguments.
    """
    _validate(kind, n_images, size, seed)
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    generate = _GENERATORS[kind]
    stems = [STEM_FORMAT.format(i) for i in range(int(n_images))]
    for i, stem in enumerate(stems):
        image, labels = generate(int(size), image_seed(int(seed), i))
        if int(labels.max(initial=0)) > np.iinfo(np.uint16).max:
            raise ConfigError(
                f"{stem}.tif: {int(labels.max())} objects do not fit a uint16 label image: use a smaller size"
            )
        write_tiff(images_dir / f"{stem}.tif", image)
        write_tiff(masks_dir / f"{stem}.tif", labels.astype(np.uint16))
    keep = set(stems)
    for folder in (images_dir, masks_dir):
        for path in folder.glob("img_*.tif"):
            if path.stem not in keep:
                path.unlink()
    return stems
