"""Known-answer tests for beadseg.losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from beadseg.errors import ConfigError
from beadseg.losses import (
    LOSS_PARAMS,
    LOSSES,
    bce_loss,
    boundary_bce_loss,
    boundary_combined_loss,
    boundary_weight_map,
    build_loss,
    combined_loss,
    dice_bce_loss,
    focal_loss,
    focal_modulation,
    soft_dice_loss,
    tversky_loss,
)

BIG = 50.0


@pytest.fixture
def square() -> torch.Tensor:
    y = torch.zeros(2, 1, 16, 16)
    y[:, :, 4:10, 5:12] = 1.0
    return y


@pytest.fixture
def random_pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g) * 3
    target = (torch.rand(2, 1, 8, 8, generator=g) > 0.6).float()
    return logits, target


def _logits_for(mask: torch.Tensor) -> torch.Tensor:
    return (mask * 2 - 1) * BIG


# --------------------------------------------------------------------------- dice
def test_dice_perfect_prediction_is_zero(square: torch.Tensor) -> None:
    assert soft_dice_loss(_logits_for(square), square).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_complement_is_one(square: torch.Tensor) -> None:
    # p = 1 - y: no overlap -> L = 1 - eps / (N + eps) with N = total pixels.
    loss = soft_dice_loss(_logits_for(1 - square), square, eps=1e-6).item()
    assert loss == pytest.approx(1.0, abs=1e-6)


def test_dice_hand_computed() -> None:
    # logits 0 -> p = 0.5 everywhere; 4 pixels, y = [1, 1, 0, 0]
    # sum(p y) = 1, sum(p) = 2, sum(y) = 2 -> L = 1 - (2 + 1) / (4 + 1) = 0.4
    y = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert soft_dice_loss(torch.zeros_like(y), y).item() == pytest.approx(0.4)
    assert soft_dice_loss(torch.zeros_like(y), y, eps=0.0).item() == pytest.approx(0.5)


def test_dice_is_batch_level_not_per_sample() -> None:
    y = torch.zeros(2, 1, 2, 2)
    y[0] = 1.0  # sample 0 full, sample 1 empty
    logits = torch.full_like(y, -BIG)
    logits[0] = BIG
    assert soft_dice_loss(logits, y).item() == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- focal
def test_focal_gamma0_is_alpha_weighted_bce(random_pair) -> None:
    x, y = random_pair
    alpha = 0.3
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    expected = ((alpha * y + (1 - alpha) * (1 - y)) * ce).mean()
    assert focal_loss(x, y, alpha=alpha, gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-6)
    # alpha = 0.5, gamma = 0 -> half the plain BCE
    assert focal_loss(x, y, alpha=0.5, gamma=0.0).item() == pytest.approx(
        0.5 * bce_loss(x, y).item(), rel=1e-6
    )


def test_focal_hand_computed_single_pixel() -> None:
    # x = 0 -> p = 0.5, y = 1: -0.25 * 0.5**2 * log(0.5)
    x = torch.zeros(1, 1, 1, 1)
    y = torch.ones(1, 1, 1, 1)
    assert focal_loss(x, y, alpha=0.25, gamma=2.0).item() == pytest.approx(0.25 * 0.25 * math.log(2))


def test_focal_bounded_by_weighted_bce_pointwise(random_pair) -> None:
    x, y = random_pair
    for gamma in (0.5, 1.0, 2.0, 5.0):
        for i in range(x.numel()):
            xi, yi = x.view(-1)[i].view(1, 1, 1, 1), y.view(-1)[i].view(1, 1, 1, 1)
            focal = focal_loss(xi, yi, alpha=0.5, gamma=gamma).item()
            assert focal <= 0.5 * bce_loss(xi, yi).item() + 1e-7


def test_focal_downweights_easy_examples() -> None:
    y = torch.ones(1, 1, 1, 1)
    easy, hard = torch.full_like(y, 3.0), torch.full_like(y, -3.0)
    ratio_easy = focal_loss(easy, y, gamma=2).item() / focal_loss(easy, y, gamma=0).item()
    ratio_hard = focal_loss(hard, y, gamma=2).item() / focal_loss(hard, y, gamma=0).item()
    assert ratio_easy < 0.01 < 0.9 < ratio_hard


def test_focal_modulation_numpy_and_torch() -> None:
    p = np.array([0.0, 0.5, 0.9, 1.0])
    np.testing.assert_allclose(focal_modulation(p, 2.0), [1.0, 0.25, 0.01, 0.0], atol=1e-12)
    np.testing.assert_allclose(focal_modulation(p, 0.0), 1.0)
    t = focal_modulation(torch.tensor([0.5]), 3.0)
    assert isinstance(t, torch.Tensor) and t.item() == pytest.approx(0.125)


# --------------------------------------------------------------------------- tversky
def test_tversky_half_half_equals_dice(random_pair) -> None:
    x, y = random_pair
    for eps in (0.0, 1.0, 1e-3):
        assert tversky_loss(x, y, 0.5, 0.5, eps=eps).item() == pytest.approx(
            soft_dice_loss(x, y, eps=eps).item(), rel=1e-6
        )


def test_tversky_penalises_fn_with_beta() -> None:
    # prediction misses half the object (pure FN): higher beta -> higher loss
    y = torch.zeros(1, 1, 4, 4)
    y[..., :2, :] = 1.0
    x = torch.full_like(y, -BIG)
    x[..., 0, :] = BIG
    low = tversky_loss(x, y, alpha=0.7, beta=0.3, eps=0.0).item()
    high = tversky_loss(x, y, alpha=0.3, beta=0.7, eps=0.0).item()
    # TP = 4, FN = 4, FP = 0 -> 1 - 4 / (4 + beta * 4)
    assert low == pytest.approx(1 - 4 / (4 + 0.3 * 4), abs=1e-6)
    assert high == pytest.approx(1 - 4 / (4 + 0.7 * 4), abs=1e-6)


# --------------------------------------------------------------------------- mixtures
def test_combined_is_weighted_sum(random_pair) -> None:
    x, y = random_pair
    expected = 0.7 * soft_dice_loss(x, y) + 0.3 * focal_loss(x, y, 0.25, 2.0)
    assert combined_loss(x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    got = combined_loss(x, y, dice_weight=0.2, alpha=0.6, gamma=1.0)
    expected = 0.2 * soft_dice_loss(x, y) + 0.8 * focal_loss(x, y, 0.6, 1.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_dice_bce_is_weighted_sum(random_pair) -> None:
    x, y = random_pair
    expected = 0.5 * soft_dice_loss(x, y) + 0.5 * bce_loss(x, y)
    assert dice_bce_loss(x, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_bce_matches_torch(random_pair) -> None:
    x, y = random_pair
    assert bce_loss(x, y).item() == pytest.approx(F.binary_cross_entropy_with_logits(x, y).item())


# --------------------------------------------------------------------------- boundary
def test_boundary_map_on_square() -> None:
    y = torch.zeros(1, 1, 20, 20)
    y[..., 6:14, 6:14] = 1.0
    w = boundary_weight_map(y, width=2, weight=5.0)[0, 0]
    assert w.shape == (20, 20)
    assert set(w.unique().tolist()) == {1.0, 5.0}
    band = w == 5.0
    # inside core (>= 2 px from every edge) and far outside stay at 1
    assert not band[8:12, 8:12].any()
    assert not band[:4, :].any() and not band[16:, :].any()
    # edge pixels on both sides are weighted
    assert band[6, 10] and band[7, 10] and band[5, 10] and band[4, 10]
    assert not band[3, 10] and not band[8, 10]
    # band = 12x12 dilated square minus 4x4 eroded core
    assert int(band.sum()) == 12 * 12 - 4 * 4


def test_boundary_map_ignores_image_border_and_empty() -> None:
    full = torch.ones(1, 1, 8, 8)
    assert torch.equal(boundary_weight_map(full), torch.ones_like(full))
    empty = torch.zeros(1, 1, 8, 8)
    assert torch.equal(boundary_weight_map(empty), torch.ones_like(empty))
    assert torch.equal(boundary_weight_map(full, width=0), torch.ones_like(full))


def test_boundary_bce_normalised_by_weight_sum(square: torch.Tensor) -> None:
    x = torch.randn_like(square)
    w = boundary_weight_map(square, 2, 5.0)
    ce = F.binary_cross_entropy_with_logits(x, square, reduction="none")
    expected = (w * ce).sum() / w.sum()
    assert boundary_bce_loss(x, square).item() == pytest.approx(expected.item(), rel=1e-6)
    # weight = 1 -> plain BCE
    assert boundary_bce_loss(x, square, weight=1.0).item() == pytest.approx(
        bce_loss(x, square).item(), rel=1e-6
    )


def test_boundary_combined(square: torch.Tensor) -> None:
    x = torch.randn_like(square)
    expected = combined_loss(x, square) + boundary_bce_loss(x, square)
    assert boundary_combined_loss(x, square).item() == pytest.approx(expected.item(), rel=1e-6)


# --------------------------------------------------------------------------- numerics
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_stable_and_differentiable_for_huge_logits(name: str, square: torch.Tensor) -> None:
    x = (_logits_for(1 - square) * 1e3).requires_grad_()  # confidently wrong, |x| = 5e4
    loss = build_loss(name)(x, square)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.isfinite(x.grad).all()


def test_fractional_gamma_gradient_is_finite(square: torch.Tensor) -> None:
    x = _logits_for(square).mul(10).requires_grad_()  # confidently right, 1 - p_t underflows
    focal_loss(x, square, gamma=0.5).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_half_precision_input_gives_float32(name: str, random_pair) -> None:
    x, y = random_pair
    loss = build_loss(name)(x.half(), y.half())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(build_loss(name)(x.half().float(), y).item(), rel=1e-5)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="same shape"):
        soft_dice_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


# --------------------------------------------------------------------------- registry
def test_registry_names() -> None:
    assert set(LOSSES) == {"dice", "focal", "combined", "tversky", "bce", "dice_bce", "boundary"}


def test_build_loss_uses_relevant_params_and_ignores_others(random_pair) -> None:
    x, y = random_pair
    every = dict(
        dice_weight=0.4, focal_alpha=0.6, focal_gamma=1.0, tversky_alpha=0.3,
        tversky_beta=0.7, boundary_weight=3.0, boundary_width=1,
    )
    assert set(every) == set(LOSS_PARAMS)
    cases = {
        "dice": soft_dice_loss(x, y),
        "bce": bce_loss(x, y),
        "focal": focal_loss(x, y, 0.6, 1.0),
        "combined": combined_loss(x, y, 0.4, 0.6, 1.0),
        "tversky": tversky_loss(x, y, 0.3, 0.7),
        "dice_bce": dice_bce_loss(x, y, 0.4),
        "boundary": boundary_combined_loss(x, y, 0.4, 0.6, 1.0, width=1, weight=3.0),
    }
    for name, expected in cases.items():
        assert build_loss(name, **every)(x, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_build_loss_defaults(random_pair) -> None:
    x, y = random_pair
    assert build_loss("combined")(x, y).item() == pytest.approx(combined_loss(x, y).item())
    assert build_loss("dice_bce", dice_weight=None)(x, y).item() == pytest.approx(
        dice_bce_loss(x, y).item()
    )
    assert build_loss("combined").__name__ == "combined_loss"


def test_build_loss_unknown_name() -> None:
    with pytest.raises(ConfigError) as exc:
        build_loss("dic")
    assert str(exc.value) == (
        "unknown loss 'dic': valid losses are bce, boundary, combined, dice, dice_bce, focal, tversky"
    )


def test_build_loss_unknown_param() -> None:
    with pytest.raises(ConfigError, match="'dice_weigth'.*dice_weight"):
        build_loss("dice", dice_weigth=0.5)


@pytest.mark.parametrize(
    "name, params, pattern",
    [
        ("combined", {"dice_weight": 1.5}, "dice_weight=1.5"),
        ("dice_bce", {"dice_weight": -0.1}, "dice_weight=-0.1"),
        ("focal", {"focal_gamma": -1.0}, "focal_gamma"),
        ("focal", {"focal_alpha": 2.0}, "focal_alpha"),
        ("tversky", {"tversky_beta": 1.2}, "tversky_beta"),
        ("boundary", {"boundary_weight": 0.5}, "boundary_weight"),
        ("boundary", {"boundary_width": 0}, "boundary_width"),
        ("focal", {"focal_gamma": "two"}, "focal_gamma"),
    ],
)
def test_build_loss_out_of_range(name: str, params: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_loss(name, **params)


def test_irrelevant_out_of_range_param_is_ignored() -> None:
    logits = torch.linspace(-3, 3, 64).reshape(1, 1, 8, 8)
    target = (torch.arange(64).reshape(1, 1, 8, 8) % 3 == 0).float()
    odd = build_loss("dice", focal_gamma=-1.0)  # focal_gamma is irrelevant to dice: accepted, and no effect
    assert float(odd(logits, target)) == pytest.approx(float(build_loss("dice")(logits, target)))
