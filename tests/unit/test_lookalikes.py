"""Tests for the robustness ("look-alike") test-set generators."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage.measure import label, regionprops

from beadseg.data.lookalikes import LOOKALIKE_KINDS, blobs_pair, disks_pair, touching_pair, write_folder
from beadseg.data.synth import generate_labels, image_seed
from beadseg.errors import ConfigError

PAIRS = {"blobs": blobs_pair, "disks": disks_pair, "touching": touching_pair}
DTYPES = {"blobs": np.uint8, "disks": np.float32, "touching": np.uint16, "hard": np.uint16}


def _consecutive(labels: np.ndarray) -> bool:
    ids = np.unique(labels)
    return bool(ids[0] == 0 and np.array_equal(ids, np.arange(ids.size)))


def test_kinds_constant() -> None:
    assert LOOKALIKE_KINDS == ("blobs", "disks", "touching", "hard")


@pytest.mark.parametrize("kind", ["blobs", "disks", "touching"])
@pytest.mark.parametrize("size", [32, 200])
@pytest.mark.parametrize("seed", [0, 3])
def test_pair_format(kind: str, size: int, seed: int) -> None:
    image, labels = PAIRS[kind](size, seed)
    assert image.shape == labels.shape == (size, size)
    assert image.dtype == DTYPES[kind] and labels.dtype == np.int32
    assert labels.max() >= 1 and _consecutive(labels)
    assert np.isfinite(image).all()


@pytest.mark.parametrize("kind", ["blobs", "disks", "touching"])
def test_deterministic_and_seed_sensitive(kind: str) -> None:
    a_img, a_lab = PAIRS[kind](128, 5)
    b_img, b_lab = PAIRS[kind](128, 5)
    c_img, c_lab = PAIRS[kind](128, 6)
    assert a_img.tobytes() == b_img.tobytes() and a_lab.tobytes() == b_lab.tobytes()
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_lab, c_lab)


@pytest.mark.parametrize("kind", ["blobs", "disks", "touching"])
def test_objects_brighter_than_background(kind: str) -> None:
    image, labels = PAIRS[kind](256, 1)
    im = image.astype(np.float64)
    far = ~ndimage.binary_dilation(labels > 0, iterations=4)
    noise = np.std(np.diff(im, axis=1)[far[:, 1:] & far[:, :-1]]) / np.sqrt(2)
    assert np.median(im[labels > 0]) - np.median(im[far]) > 3 * noise
    assert 0.05 < (labels > 0).mean() < 0.45


def test_blobs_are_connected_components_and_irregular() -> None:
    image, labels = blobs_pair(384, 2)
    # Labels are the 8-connected components of the foreground: relabelling changes nothing.
    relabelled = label(labels > 0, connectivity=2)
    assert relabelled.max() == labels.max()
    # Each id is one connected piece, no two ids touch.
    for region in regionprops(labels):
        assert label(region.image, connectivity=2).max() == 1
    solidity = np.array([r.solidity for r in regionprops(labels)])
    assert solidity.min() < 0.85  # some irregular (non-convex) shapes
    areas = np.bincount(labels.ravel())[1:]
    assert 30 < np.median(areas) < 600  # bead-sized, not specks or continents
    # 8-bit with Gaussian noise and salt: isolated saturated pixels in the background.
    assert image.dtype == np.uint8
    assert (image[labels == 0] == 255).sum() > 10


def test_disks_sizes_shapes_and_touching() -> None:
    image, labels = disks_pair(512, 4)
    regions = regionprops(labels)
    whole = [r for r in regions if r.solidity > 0.9 and r.area > 40]  # not bitten by a neighbour or the edge
    radii = np.array([r.equivalent_diameter_area / 2 for r in whole])
    assert len(whole) > 0.6 * len(regions)
    assert radii.max() <= 21.0 and radii.min() >= 3.0
    assert radii.max() > 3 * radii.min()  # radii 4-20 px
    ratios = np.array([r.axis_major_length / r.axis_minor_length for r in whole])
    assert ratios.max() > 1.15 and np.median(ratios) < 1.4  # mildly elliptical, mostly round
    # Some objects touch: distinct labels are 4-neighbours somewhere.
    a, b = labels[:, :-1], labels[:, 1:]
    assert ((a > 0) & (b > 0) & (a != b)).sum() > 10
    assert ndimage.label(labels > 0)[1] < labels.max()
    assert image.dtype == np.float32 and image.min() >= 0.0


def test_disks_noise_is_poisson_like() -> None:
    """Background variance grows with its mean (shot noise), unlike additive Gaussian noise."""
    image, labels = disks_pair(512, 0)
    far = ~ndimage.binary_dilation(labels > 0, iterations=12)
    mean = ndimage.uniform_filter(image.astype(np.float64), 15)
    sq = ndimage.uniform_filter(image.astype(np.float64) ** 2, 15)
    var = sq - mean**2
    m, v = mean[far], var[far]
    low, high = m < np.percentile(m, 20), m > np.percentile(m, 80)
    assert np.median(v[high]) > 1.2 * np.median(v[low])


@pytest.mark.parametrize("kind", LOOKALIKE_KINDS)
def test_write_folder_round_trip(tmp_path: Path, kind: str) -> None:
    stems = write_folder(tmp_path / "img", tmp_path / "msk", kind, 2, 64, seed=9)
    assert stems == ["img_000", "img_001"]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["img_000.tif", "img_001.tif"]
    assert sorted(p.name for p in (tmp_path / "msk").iterdir()) == ["img_000.tif", "img_001.tif"]
    for i, stem in enumerate(stems):
        image = tifffile.imread(tmp_path / "img" / f"{stem}.tif")
        mask = tifffile.imread(tmp_path / "msk" / f"{stem}.tif")
        if kind == "hard":
            expected_image, expected_labels = generate_labels(64, image_seed(9, i), "hard")
        else:
            expected_image, expected_labels = PAIRS[kind](64, image_seed(9, i))
        assert image.dtype == DTYPES[kind] and mask.dtype == np.uint16
        assert np.array_equal(image, expected_image)
        assert np.array_equal(mask, expected_labels)
        assert mask.max() >= 1
    # Images of one folder differ; a second call is byte-identical and drops stale files.
    a, b = (tifffile.imread(tmp_path / "img" / f"{s}.tif") for s in stems)
    assert not np.array_equal(a, b)
    before = {p.name: p.read_bytes() for p in (tmp_path / "img").iterdir()}
    write_folder(tmp_path / "img", tmp_path / "msk", kind, 1, 64, seed=9)
    assert [p.name for p in (tmp_path / "img").iterdir()] == ["img_000.tif"]
    assert (tmp_path / "img" / "img_000.tif").read_bytes() == before["img_000.tif"]
    assert [p.name for p in (tmp_path / "msk").iterdir()] == ["img_000.tif"]


def test_write_folder_keeps_other_files(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "notes.txt").write_text("keep")
    write_folder(tmp_path / "img", tmp_path / "msk", "disks", 1, 48, seed=0)
    assert (tmp_path / "img" / "notes.txt").read_text() == "keep"
    assert not list((tmp_path / "img").glob(".*"))  # no temp files left behind


@pytest.mark.parametrize(
    ("kind", "n_images", "size", "seed", "words"),
    [
        ("cells", 1, 64, 0, ("kind", "'blobs'", "'disks'", "'hard'")),
        (None, 1, 64, 0, ("kind",)),
        ("blobs", 0, 64, 0, ("n_images", ">= 1")),
        ("blobs", 1.5, 64, 0, ("n_images",)),
        ("disks", 1, 31, 0, ("size", ">= 32")),
        ("hard", 1, True, 0, ("size",)),
        ("hard", 1, 64, -1, ("seed",)),
    ],
)
def test_write_folder_invalid(
    tmp_path: Path, kind: object, n_images: object, size: object, seed: object, words: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as info:
        write_folder(tmp_path / "i", tmp_path / "m", kind, n_images, size, seed)  # type: ignore[arg-type]
    for word in words:
        assert word in str(info.value)
    assert not (tmp_path / "i").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("func", [blobs_pair, disks_pair, touching_pair])
def test_pair_rejects_tiny_size(func) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="size"):
        func(16, 0)


def test_touching_objects_share_borders_with_no_gap_and_are_not_round() -> None:
    """Most objects press against a neighbour with no background between them, so a 0/1 mask cannot tell them
    apart (one connected component holds several objects), and many are far from round."""
    from skimage.measure import label as components
    from skimage.measure import regionprops

    _, labels = touching_pair(256, 2)
    n = int(labels.max())
    right, down = labels[:, 1:] * labels[:, :-1], labels[1:, :] * labels[:-1, :]
    pairs = [(labels[:, 1:] != labels[:, :-1]) & (right > 0), (labels[1:, :] != labels[:-1, :]) & (down > 0)]
    touching = set(np.unique(labels[:, 1:][pairs[0]])) | set(np.unique(labels[1:, :][pairs[1]]))
    assert len(touching) >= 0.5 * n, (len(touching), n)
    assert components(labels > 0, connectivity=1).max() < 0.7 * n  # clumps: fewer components than objects
    elongated = [p for p in regionprops(labels) if p.minor_axis_length > 0 and
                 p.major_axis_length / p.minor_axis_length > 1.4]
    assert len(elongated) >= 0.3 * n
