"""Batch sampling: crop positions (known answers), foreground oversampling, padding, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beadseg.sampling import (
    CropSampler,
    TileSampler,
    apply_symmetry,
    crop_origin,
    crop_origins,
    foreground_points,
    symmetry_coefficients,
    symmetry_table,
)


@pytest.mark.parametrize(
    ("centre", "u", "expected"),
    [
        ((50, 40), (0.0, 0.0), (34, 24)),  # centred: 50 - 16, 40 - 16
        ((2, 3), (0.0, 0.0), (0, 0)),  # near the top-left corner: shifted inside
        ((99, 79), (0.0, 0.0), (68, 48)),  # bottom-right corner: 100 - 32, 80 - 32
        (None, (0.0, 0.0), (0, 0)),
        (None, (0.999999, 0.999999), (68, 48)),  # uniform draw spans every valid corner
        (None, (0.5, 0.5), (34, 24)),  # int(0.5 * 69), int(0.5 * 49)
    ],
)
def test_crop_origin_known_answers(centre, u, expected):
    assert crop_origin((100, 80), 32, centre, u) == expected


def test_crop_origin_refuses_an_image_smaller_than_the_crop():
    with pytest.raises(ValueError, match="smaller than the crop"):
        crop_origin((20, 80), 32, None, (0.0, 0.0))


def _image_with_one_bead(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    image = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), np.uint8)
    mask[100:104, 10:14] = 1  # a 4x4 bead: 0.1 % of the pixels
    image[mask > 0] = 1.0
    return image, mask


def test_foreground_oversampling_puts_beads_in_the_requested_share_of_crops():
    image, mask = _image_with_one_bead()
    share = {}
    for fraction in (0.0, 1.0):
        sampler = CropSampler([image], [mask], 16, fraction, torch.device("cpu"))
        _, masks = sampler.draw(400, torch.Generator().manual_seed(0))
        share[fraction] = float((masks.flatten(1).amax(1) > 0).float().mean())
    # uniform crops of 16 px contain the bead with probability about (16+3)^2 / 113^2 ~ 3 %
    assert share[0.0] < 0.1
    assert share[1.0] == 1.0


def test_crops_come_from_images_in_proportion_to_their_area():
    small = np.zeros((32, 32), np.float32)
    large = np.ones((64, 64), np.float32)  # four times the area
    masks = [np.zeros_like(small, np.uint8), np.zeros_like(large, np.uint8)]
    sampler = CropSampler([small, large], masks, 32, 0.0, torch.device("cpu"))
    images, _ = sampler.draw(2000, torch.Generator().manual_seed(1))
    from_large = float((images.flatten(1).amax(1) > 0).float().mean())
    assert from_large == pytest.approx(0.8, abs=0.03)


def test_images_smaller_than_the_crop_are_mirrored_with_their_masks():
    image = np.arange(20 * 24, dtype=np.float32).reshape(20, 24) / 480
    mask = np.zeros((20, 24), np.uint8)
    mask[15:20, 0:5] = 1  # touches the bottom border: its mirror image is a bead too
    sampler = CropSampler([image], [mask], 32, 0.0, torch.device("cpu"))
    x, y = sampler.draw(1, torch.Generator().manual_seed(0))
    assert x.shape == (1, 1, 32, 32) and y.shape == (1, 1, 32, 32)
    np.testing.assert_array_equal(y[0, 0, :20, :24].numpy(), mask)
    assert int(y[0, 0, 20:, :5].sum()) > 0  # mirrored bead below the image is labelled


def test_draws_are_seeded():
    image, mask = _image_with_one_bead()
    sampler = CropSampler([image], [mask], 16, 0.33, torch.device("cpu"))
    a = sampler.draw(8, torch.Generator().manual_seed(7))
    b = sampler.draw(8, torch.Generator().manual_seed(7))
    c = sampler.draw(8, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_foreground_points_are_capped_and_seeded():
    mask = np.ones((50, 50), np.uint8)
    p1, p2 = foreground_points(mask, 100, 3), foreground_points(mask, 100, 3)
    assert p1.shape == (100, 2) and np.array_equal(p1, p2)
    assert len(foreground_points(np.zeros((5, 5)), 100, 0)) == 0


def test_tile_sampler_draws_with_replacement():
    tiles = torch.arange(3, dtype=torch.float16).view(3, 1, 1, 1).expand(3, 1, 4, 4).contiguous()
    sampler = TileSampler(tiles, torch.zeros(3, 1, 4, 4, dtype=torch.uint8))
    x, _ = sampler.draw(30, torch.Generator().manual_seed(0))
    assert x.shape == (30, 1, 4, 4) and set(x[:, 0, 0, 0].tolist()) == {0.0, 1.0, 2.0}


def test_crop_origins_of_a_batch_agree_with_crop_origin():
    """The tensor version (static shapes, no host reads) gives the same corners as the pure function."""
    rng = np.random.default_rng(0)
    n, tile = 200, 32
    sizes = torch.as_tensor(rng.integers(tile, 120, (n, 2)))
    centres = torch.as_tensor(rng.integers(0, 120, (n, 2)))
    use_centre = torch.as_tensor(rng.random(n) < 0.5)
    u = torch.as_tensor(rng.random((n, 2)))
    u[:3] = torch.tensor([[0.0, 0.0], [0.999999, 0.999999], [0.5, 0.5]], dtype=torch.float64)
    corners = crop_origins(sizes, tile, centres, use_centre, u)
    for k in range(n):
        centre = (int(centres[k, 0]), int(centres[k, 1])) if use_centre[k] else None
        expected = crop_origin((int(sizes[k, 0]), int(sizes[k, 1])), tile, centre, (float(u[k, 0]), float(u[k, 1])))
        assert (int(corners[k, 0]), int(corners[k, 1])) == expected, k


def test_a_crop_is_the_image_window_at_its_origin():
    """Gathered crops are exact windows of the image: each one is found at some offset of the image."""
    image = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)  # every value unique (exact in float16 < 2048)
    mask = (image % 7 == 0).astype(np.uint8)
    sampler = CropSampler([image], [mask], 16, 0.5, torch.device("cpu"))
    x, y = sampler.draw(20, torch.Generator().manual_seed(3))
    for k in range(20):
        top, left = divmod(int(x[k, 0, 0, 0]), 50)
        np.testing.assert_array_equal(x[k, 0].float().numpy(), image[top:top + 16, left:left + 16])
        np.testing.assert_array_equal(y[k, 0].numpy(), mask[top:top + 16, left:left + 16])


@pytest.mark.parametrize("flips_rot90", [(True, False), (False, True), (True, True)])
def test_symmetries_folded_into_the_gather_equal_transforming_the_crops(flips_rot90):
    """A crop drawn under a symmetry is exactly the plain crop (same random numbers) flipped / rotated."""
    image = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    mask = (image > 0.7).astype(np.uint8)
    table = symmetry_table(*flips_rot90, torch.device("cpu"))
    for sampler in (CropSampler([image], [mask], 32, 0.5, torch.device("cpu")),
                    TileSampler(torch.from_numpy(image[None, None, :32, :32].repeat(3, 0)),
                                torch.from_numpy(mask[None, None, :32, :32].repeat(3, 0)))):
        n = 64
        rows = 6 if isinstance(sampler, CropSampler) else 2
        u = torch.rand(rows, n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)[-1]
        symmetry = table[(u * len(table)).long()]
        x, y = sampler.draw(n, torch.Generator().manual_seed(5), symmetry_coefficients(table, 32))
        x0, y0 = sampler.draw(n, torch.Generator().manual_seed(5))
        assert torch.equal(x, apply_symmetry(x0, symmetry)) and torch.equal(y, apply_symmetry(y0, symmetry))
        assert len({tuple(s.tolist()) for s in symmetry}) == len(table)  # every allowed symmetry drawn


def test_symmetry_table_names_the_square_symmetries():
    assert symmetry_table(False, False, torch.device("cpu")) is None
    x = torch.arange(16.0).view(1, 1, 4, 4)
    rotations = symmetry_table(False, True, torch.device("cpu"))
    got = [apply_symmetry(x, row[None]) for row in rotations]
    assert all(torch.equal(g, torch.rot90(x, k, (-2, -1))) for k, g in enumerate(got))
