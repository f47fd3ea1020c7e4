"""Tests for the synthetic bead generator and data set writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from beadseg.data.synth import MAX_RADIUS, generate_pair, generate_sample, write_dataset
from beadseg.errors import ConfigError


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tif"))}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a/img", tmp_path / "a/msk", 3, 96, seed=7, progress=False)
    b = write_dataset(tmp_path / "b/img", tmp_path / "b/msk", 3, 96, seed=7, progress=False)
    assert a == b == ["bead_000", "bead_001", "bead_002"]
    assert _bytes(tmp_path / "a/img") == _bytes(tmp_path / "b/img")
    assert _bytes(tmp_path / "a/msk") == _bytes(tmp_path / "b/msk")
    assert len(_bytes(tmp_path / "a/img")) == 3


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a/img", tmp_path / "a/msk", 2, 96, seed=1, progress=False)
    write_dataset(tmp_path / "b/img", tmp_path / "b/msk", 2, 96, seed=2, progress=False)
    assert _bytes(tmp_path / "a/img") != _bytes(tmp_path / "b/img")
    # Images within one data set differ too.
    img0, img1 = (tifffile.imread(tmp_path / f"a/img/bead_00{i}.tif") for i in range(2))
    assert not np.array_equal(img0, img1)


def test_generate_pair_deterministic_and_seed_sensitive() -> None:
    im1, m1 = generate_pair(128, 3)
    im2, m2 = generate_pair(128, 3)
    im3, _ = generate_pair(128, 4)
    assert np.array_equal(im1, im2) and np.array_equal(m1, m2)
    assert not np.array_equal(im1, im3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pair_content(seed: int) -> None:
    image, mask = generate_pair(256, seed)
    assert image.dtype == np.uint16 and image.shape == (256, 256)
    assert mask.dtype == np.uint8 and mask.shape == (256, 256)
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert 0.08 <= mask.mean() <= 0.20
    inside, outside = image[mask == 1].mean(), image[mask == 0].mean()
    assert inside > 2 * outside
    # Camera offset plus noise: background is neither zero nor saturated.
    assert 50 < np.percentile(image, 5) < 1000


def test_touching_beads_exist() -> None:
    sample = generate_sample(256, 11)
    labels, n_components = ndimage.label(sample.mask)
    assert n_components < len(sample.beads)  # some beads share a component
    areas = np.bincount(labels.ravel())[1:]
    assert areas.max() > np.pi * MAX_RADIUS**2  # bigger than any single bead disk
    assert any(b.cluster >= 0 for b in sample.beads)


def test_out_of_focus_beads_not_in_mask() -> None:
    sample = generate_sample(256, 5)
    assert sample.blurred_beads
    for bead in sample.blurred_beads:
        y, x = int(round(bead.y)), int(round(bead.x))
        if 0 <= y < 256 and 0 <= x < 256:
            assert sample.mask[y, x] == 0


def test_stale_files_removed_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img, msk = tmp_path / "img", tmp_path / "msk"
    write_dataset(img, msk, 4, 64, seed=0, progress=False)
    (img / "notes.txt").write_text("keep me")
    stems = write_dataset(img, msk, 2, 64, seed=0, progress=True)
    assert stems == ["bead_000", "bead_001"]
    assert sorted(p.name for p in img.glob("*.tif")) == ["bead_000.tif", "bead_001.tif"]
    assert sorted(p.name for p in msk.glob("*.tif")) == ["bead_000.tif", "bead_001.tif"]
    assert (img / "notes.txt").exists()
    assert not list(img.glob(".*"))  # no temp files left behind
    err = capsys.readouterr().err
    assert "synth: image 1/2 bead_000.tif" in err and "synth: image 2/2 bead_001.tif" in err
    assert tifffile.imread(img / "bead_000.tif").dtype == np.uint16
    assert tifffile.imread(msk / "bead_000.tif").dtype == np.uint8


@pytest.mark.parametrize(
    ("n_images", "size", "seed", "word"),
    [(1, 64, 0, "n_images"), (2, 32, 0, "size"), (2, 64, -1, "seed"), (2.5, 64, 0, "n_images")],
)
def test_invalid_arguments(tmp_path: Path, n_images: object, size: object, seed: object, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        write_dataset(tmp_path / "i", tmp_path / "m", n_images, size, seed, progress=False)  # type: ignore[arg-type]
    assert not (tmp_path / "i").exists()
