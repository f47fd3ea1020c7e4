"""Tests for the "hard" difficulty of the synthetic generator and for instance labels."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.measure import label, regionprops

from beadseg.data.synth import (
    DIFFICULTIES,
    Bead,
    bead_labels,
    generate_labels,
    generate_pair,
    generate_sample,
    image_seed,
    write_dataset,
)
from beadseg.errors import ConfigError

SIZE = 384
SEEDS = (0, 1, 2)


@cache
def _sample(difficulty: str, seed: int, size: int = SIZE):  # noqa: ANN202 - cached SynthSample
    return generate_sample(size, seed, difficulty)


def _otsu_jaccard(image: np.ndarray, mask: np.ndarray) -> float:
    smooth = ndimage.gaussian_filter(image.astype(np.float32), 1.0)
    pred = smooth > threshold_otsu(smooth)
    truth = mask.astype(bool)
    return float((pred & truth).sum() / (pred | truth).sum())


def _median_bead_snr(image: np.ndarray, labels: np.ndarray) -> float:
    """Median over beads of (mean inside - median of nearby background) / background noise std.

    The noise std is a robust (MAD) estimate from differences of horizontally adjacent background
    pixels, so smooth background structure does not count as noise.
    """
    im = image.astype(np.float64)
    background = ~ndimage.binary_dilation(labels > 0, iterations=3)
    diffs = np.diff(im, axis=1)[background[:, 1:] & background[:, :-1]]
    sigma = 1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2.0)
    ids = np.arange(1, labels.max() + 1)
    inside = np.asarray(ndimage.mean(im, labels, ids))
    near = ndimage.grey_dilation(labels, size=21) * background  # background within ~10 px of each bead
    local = np.asarray(ndimage.median(im, near, ids))
    return float(np.nanmedian((inside - local) / sigma))


# ---------------------------------------------------------------- API and determinism


def test_difficulties_constant() -> None:
    assert DIFFICULTIES == ("demo", "hard")


@pytest.mark.parametrize("bad", ["easy", "HARD", "", None, 1])
def test_unknown_difficulty_is_config_error(tmp_path: Path, bad: object) -> None:
    for call in (
        lambda: generate_sample(64, 0, bad),  # type: ignore[arg-type]
        lambda: generate_pair(64, 0, bad),  # type: ignore[arg-type]
        lambda: generate_labels(64, 0, bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError, match="difficulty") as info:
            call()
        assert "'demo'" in str(info.value) and "'hard'" in str(info.value)
    with pytest.raises(ConfigError, match="difficulty"):
        write_dataset(
            tmp_path / "i", tmp_path / "m", 2, 64, 0, progress=False, difficulty=bad  # type: ignore[arg-type]
        )
    assert not (tmp_path / "i").exists()


def test_demo_default_unchanged() -> None:
    """Explicit difficulty="demo" is exactly the old call (tests/test_synth.py pins the rest)."""
    for seed in (0, 5):
        old_image, old_mask = generate_pair(128, seed)
        image, mask = generate_pair(128, seed, difficulty="demo")
        assert np.array_equal(old_image, image) and np.array_equal(old_mask, mask)
        old = generate_sample(128, seed)
        assert old.debris is None
        assert old.beads == generate_sample(128, seed, "demo").beads


def test_hard_deterministic_and_seed_sensitive() -> None:
    a = generate_sample(192, 3, "hard")
    b = generate_sample(192, 3, "hard")
    c = generate_sample(192, 4, "hard")
    assert a.image.tobytes() == b.image.tobytes() and a.mask.tobytes() == b.mask.tobytes()
    assert a.beads == b.beads and np.array_equal(a.debris, b.debris)
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.mask, c.mask)
    # Hard is its own model, not the demo image with another name.
    assert not np.array_equal(a.image, generate_sample(192, 3).image)


@pytest.mark.parametrize("seed", SEEDS)
def test_hard_pair_format(seed: int) -> None:
    sample = _sample("hard", seed)
    image, mask = sample.image, sample.mask
    assert image.dtype == np.uint16 and image.shape == (SIZE, SIZE)
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1}
    assert 0.12 <= mask.mean() <= 0.35
    assert image.min() > 0 and image.max() < np.iinfo(np.uint16).max  # no clipping either way
    radii = np.array([b.r for b in sample.beads])
    assert radii.min() >= 2.5 and radii.max() <= 14.0
    assert np.median(radii) < 0.5 * (2.5 + 14.0)  # skewed to small
    assert radii.max() > 2.5 * radii.min()  # widely varying


@pytest.mark.parametrize("size", [32, 64, 100])
def test_hard_small_sizes(size: int) -> None:
    image, labels = generate_labels(size, 0, "hard")
    assert image.shape == labels.shape == (size, size) and labels.max() >= 1





# ---------------------------------------------------------------- hard is harder


def test_hard_has_more_smaller_beads() -> None:
    def stats(difficulty: str) -> tuple[float, float]:
        per_mp = [len(_sample(difficulty, s).beads) / SIZE**2 * 1e6 for s in SEEDS]
        diam = [2 * np.median([b.r for b in _sample(difficulty, s).beads]) for s in SEEDS]
        return float(np.mean(per_mp)), float(np.median(diam))

    demo_density, demo_diam = stats("demo")
    hard_density, hard_diam = stats("hard")
    # Measured (384 px, seeds 0-2): demo 353-488 beads/MP, median diameter 17.1-19.2 px;
    # hard 2421-2794 beads/MP, median diameter 9.1-9.3 px.
    assert hard_density > 3 * demo_density
    assert hard_diam < 0.7 * demo_diam


def test_hard_has_many_touching_beads() -> None:
    sample = _sample("hard", 0)
    _, n_components = ndimage.label(sample.mask)
    clustered = sum(b.cluster >= 0 for b in sample.beads)
    assert clustered > 0.3 * len(sample.beads)
    assert n_components < 0.8 * len(sample.beads)


def test_hard_has_lower_snr() -> None:
    demo = [_median_bead_snr(_sample("demo", s).image, bead_labels(_sample("demo", s).beads, SIZE)) for s in SEEDS]
    hard = [_median_bead_snr(_sample("hard", s).image, bead_labels(_sample("hard", s).beads, SIZE)) for s in SEEDS]
    # Measured (384 px, seeds 0-2): demo median SNR 95-171, hard 7.7-10.5.
    assert max(hard) < 15.0
    assert np.median(hard) < 0.25 * np.median(demo)
    assert min(hard) > 1.5  # still visible: a network can learn it


def test_hard_bead_brightness_varies() -> None:
    sample = _sample("hard", 1)
    labels = bead_labels(sample.beads, SIZE)
    smooth = ndimage.gaussian_filter(sample.image.astype(np.float64), 1.0)
    peaks = np.asarray(ndimage.maximum(smooth, labels, np.arange(1, labels.max() + 1)))
    local = ndimage.minimum_filter(ndimage.gaussian_filter(smooth, 8), 41)
    floor = np.asarray(ndimage.mean(local, labels, np.arange(1, labels.max() + 1)))
    contrast = peaks - floor
    assert np.percentile(contrast, 90) > 3 * np.percentile(contrast, 10)


def test_hard_debris_outside_mask_and_bright() -> None:
    for seed in SEEDS:
        sample = _sample("hard", seed)
        assert sample.debris is not None and sample.debris.dtype == bool
        outside = sample.debris & (sample.mask == 0)
        assert outside.sum() > 50
        # Debris is not round: its pieces (fibres, shards) are elongated.
        pieces = regionprops(label(sample.debris, connectivity=2))
        assert len(pieces) >= 2
        elongation = [p.axis_major_length / max(p.axis_minor_length, 1.0) for p in pieces if p.area >= 10]
        assert np.median(elongation) > 2.0
        # The image is brighter on debris than on the typical background.
        background = (sample.mask == 0) & ~ndimage.binary_dilation(sample.debris, iterations=4)
        assert np.median(sample.image[outside]) > np.median(sample.image[background])


def test_global_otsu_fails_on_hard_but_not_on_demo() -> None:
    demo = [_otsu_jaccard(_sample("demo", s).image, _sample("demo", s).mask) for s in SEEDS]
    hard = [_otsu_jaccard(_sample("hard", s).image, _sample("hard", s).mask) for s in SEEDS]
    # Measured (384 px, seeds 0-2): demo 0.880-0.906, hard 0.397-0.449
    # (384 px, seeds 0-11: hard 0.32-0.46; 512 px, seeds 0-5: demo 0.856-0.914, hard 0.25-0.37).
    # A background-subtracted threshold tuned on the truth reaches only ~0.61-0.69 on hard.
    assert min(demo) >= 0.8
    assert max(hard) <= 0.55
    assert np.mean(demo) - np.mean(hard) >= 0.35


def test_hard_background_is_uneven() -> None:
    """Background level varies across the field by much more than the noise."""
    sample = _sample("hard", 2)
    bg = np.where(sample.mask == 0, sample.image.astype(np.float64), np.nan)
    blocks = bg.reshape(8, SIZE // 8, 8, SIZE // 8)
    levels = np.nanmedian(blocks, axis=(1, 3))
    demo = _sample("demo", 2)
    dbg = np.where(demo.mask == 0, demo.image.astype(np.float64), np.nan)
    dlevels = np.nanmedian(dbg.reshape(8, SIZE // 8, 8, SIZE // 8), axis=(1, 3))
    hard_spread = np.nanpercentile(levels, 95) / np.nanpercentile(levels, 5)
    demo_spread = np.nanpercentile(dlevels, 95) / np.nanpercentile(dlevels, 5)
    assert hard_spread > 1.5 and hard_spread > demo_spread


# ---------------------------------------------------------------- instance labels


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("seed", [0, 7])
def test_labels_match_mask_and_are_consecutive(difficulty: str, seed: int) -> None:
    image, labels = generate_labels(256, seed, difficulty)
    pair_image, mask = generate_pair(256, seed, difficulty)
    assert labels.dtype == np.int32 and labels.shape == mask.shape
    assert np.array_equal(image, pair_image)
    assert np.array_equal((labels > 0).astype(np.uint8), mask)
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(ids.size))
    beads = generate_sample(256, seed, difficulty).beads
    assert ids.size - 1 == len(beads)  # every bead keeps at least one pixel here
    # Touching beads keep separate ids: fewer connected components than labels.
    assert ndimage.label(mask)[1] < labels.max()


def test_later_bead_wins_overlap() -> None:
    beads = (Bead(20.0, 20.0, 8.0), Bead(20.0, 32.0, 8.0))
    labels = bead_labels(beads, 48)
    assert labels[20, 26] == 2  # overlap zone goes to the later bead
    assert labels[20, 14] == 1 and labels[20, 38] == 2
    hidden = bead_labels((Bead(20.0, 20.0, 3.0), Bead(20.0, 20.0, 9.0), Bead(5.0, 5.0, 3.0)), 48)
    assert set(np.unique(hidden).tolist()) == {0, 1, 2}  # fully hidden bead: ids stay consecutive


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_write_dataset_instance_labels(tmp_path: Path, difficulty: str) -> None:
    stems = write_dataset(
        tmp_path / "img", tmp_path / "lab", 2, 96, 3, progress=False, difficulty=difficulty, instance_labels=True
    )
    write_dataset(tmp_path / "img2", tmp_path / "bin", 2, 96, 3, progress=False, difficulty=difficulty)
    for i, stem in enumerate(stems):
        image = tifffile.imread(tmp_path / "img" / f"{stem}.tif")
        labels = tifffile.imread(tmp_path / "lab" / f"{stem}.tif")
        binary = tifffile.imread(tmp_path / "bin" / f"{stem}.tif")
        assert labels.dtype == np.uint16 and binary.dtype == np.uint8
        assert (tmp_path / "img" / f"{stem}.tif").read_bytes() == (tmp_path / "img2" / f"{stem}.tif").read_bytes()
        expected_image, expected_labels = generate_labels(96, image_seed(3, i), difficulty)
        assert np.array_equal(image, expected_image)
        assert np.array_equal(labels, expected_labels)
        assert np.array_equal((labels > 0).astype(np.uint8), binary)


def test_write_dataset_hard_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_dataset(tmp_path / name / "i", tmp_path / name / "m", 2, 96, 1, progress=False, difficulty="hard")
    for sub in ("i", "m"):
        for path in sorted((tmp_path / "a" / sub).glob("*.tif")):
            assert path.read_bytes() == (tmp_path / "b" / sub / path.name).read_bytes()
    demo = tmp_path / "demo"
    write_dataset(demo / "i", demo / "m", 2, 96, 1, progress=False)
    assert (demo / "i/bead_000.tif").read_bytes() != (tmp_path / "a/i/bead_000.tif").read_bytes()
