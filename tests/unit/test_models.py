"""Tests for beadseg.models (UNet variants and the registry)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from beadseg.errors import BeadsegError, ConfigError
from beadseg.losses import dice_bce_loss
from beadseg.models import MODELS, UNet, build_model, register_model
from beadseg.models.unet import AttentionGate


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and they stall badly when another
    process holds a core (CI, parallel runs), so run this module single-threaded."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("depth", [3, 4, 5, 6])
@pytest.mark.parametrize("name", ["unet", "residual_unet", "attention_unet"])
def test_output_shape_matches_input(name: str, depth: int) -> None:
    model = build_model(name, depth=depth, base_channels=4, groups=2)
    x = torch.randn(2, 1, 64, 32)
    out = model(x)  # training mode: also checks norms get >1 value per channel
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_logits_are_not_squashed() -> None:
    model = UNet(depth=3, base_channels=4).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 16, 16) * 50)
    # No sigmoid: logits may leave [0, 1] (weights are random, so check a loose property).
    assert out.min() < 0 or out.max() > 1


def test_in_out_channels() -> None:
    model = UNet(in_channels=3, out_channels=2, depth=3, base_channels=4)
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 2, 16, 16)


def test_channels_double_per_level() -> None:
    model = UNet(depth=5, base_channels=8)
    assert model.channels == (8, 16, 32, 64, 128)
    assert len(model.encoders) == 4 and len(model.decoders) == 4
    assert _count(model, nn.MaxPool2d) == 1 and _count(model, nn.ConvTranspose2d) == 4


def test_batch_norm_default_and_convs_without_bias() -> None:
    model = UNet(depth=3, base_channels=4)
    assert _count(model, nn.BatchNorm2d) > 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and m is not model.head:
            assert m.bias is None
        if isinstance(m, nn.ReLU):
            assert m.inplace


def test_group_norm_builds_groupnorm_only() -> None:
    model = UNet(depth=3, base_channels=8, norm="group", groups=4)
    gns = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    # 2 per block, 5 blocks (2 encoder, bottleneck, 2 decoder)
    assert len(gns) == 10
    assert all(m.num_groups == 4 for m in gns)
    assert _count(model, nn.BatchNorm2d) == 0
    assert model(torch.randn(1, 1, 16, 16)).shape == (1, 1, 16, 16)


def test_instance_norm() -> None:
    model = UNet(depth=3, base_channels=4, norm="instance")
    ins = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(ins) == 10 and all(m.affine for m in ins)
    assert _count(model, nn.BatchNorm2d) == 0


def test_no_norm_uses_conv_bias() -> None:
    model = UNet(depth=3, base_channels=4, norm="none")
    assert _count(model, nn.BatchNorm2d) + _count(model, nn.GroupNorm) == 0
    assert _count(model, nn.InstanceNorm2d) == 0
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_residual_variant_adds_projection_shortcuts() -> None:
    plain = build_model("unet", depth=4, base_channels=4)
    res = build_model("residual_unet", depth=4, base_channels=4)
    assert res.residual and not plain.residual
    # every block changes channels -> one 1x1 projection conv per block (7 blocks)
    n1x1 = lambda m: sum(  # noqa: E731
        isinstance(c, nn.Conv2d) and c.kernel_size == (1, 1) for c in m.modules()
    )
    assert n1x1(res) - n1x1(plain) == 7
    assert _n_params(res) > _n_params(plain)


def test_attention_variant_adds_gates() -> None:
    plain = build_model("unet", depth=4, base_channels=4)
    att = build_model("attention_unet", depth=4, base_channels=4)
    assert _count(att, AttentionGate) == 3 and _count(plain, AttentionGate) == 0
    assert _n_params(att) > _n_params(plain)


def test_attention_gate_scales_skip_between_0_and_1() -> None:
    gate = AttentionGate(4, 4, 4, norm="none")
    x = torch.rand(1, 4, 8, 8) + 0.1
    out = gate(x, torch.randn(1, 4, 8, 8))
    assert out.shape == x.shape
    assert (out >= 0).all() and (out <= x).all()


def test_dropout_adds_dropout2d() -> None:
    assert _count(UNet(depth=4, base_channels=4), nn.Dropout2d) == 0
    model = UNet(depth=4, base_channels=4, dropout=0.2)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout2d)]
    assert len(drops) == 4  # bottleneck + 3 decoder blocks
    assert all(m.p == 0.2 for m in drops)


def test_channels_last_forward_matches_contiguous() -> None:
    model = build_model("attention_unet", depth=3, base_channels=4, residual=True).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as exc:
        build_model("unett")
    msg = str(exc.value)
    assert "'unett'" in msg
    assert "attention_unet, residual_unet, unet" in msg
    assert "\n" not in msg
    assert isinstance(exc.value, BeadsegError)


def test_unknown_model_kwarg() -> None:
    with pytest.raises(ConfigError, match="unknown parameter 'dept'.*depth"):
        build_model("unet", dept=3)


@pytest.mark.parametrize("depth", [2, 7, 0, -1])
def test_bad_depth(depth: int) -> None:
    with pytest.raises(ConfigError, match=rf"depth={depth}.*3\.\.6"):
        UNet(depth=depth)


def test_non_integer_depth() -> None:
    with pytest.raises(ConfigError, match="depth"):
        UNet(depth=3.5)  # type: ignore[arg-type]


def test_bad_groups_names_both_values() -> None:
    with pytest.raises(ConfigError, match=r"base_channels=12, groups=8"):
        build_model("unet", base_channels=12, norm="group", groups=8)


def test_bad_norm_lists_valid() -> None:
    with pytest.raises(ConfigError, match="'layer'.*batch, group, instance, none"):
        UNet(norm="layer")


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_dropout(p: float) -> None:
    with pytest.raises(ConfigError, match="dropout"):
        UNet(dropout=p)


def test_contradictory_variant_flag() -> None:
    with pytest.raises(ConfigError, match="residual_unet"):
        build_model("residual_unet", residual=False)
    # consistent or extra flags are fine
    m = build_model("attention_unet", depth=3, base_channels=4, attention=True, residual=True)
    assert m.attention and m.residual


def test_indivisible_input_size_is_value_error() -> None:
    model = UNet(depth=4, base_channels=4)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(depth-1\) = 8.*36x32"):
        model(torch.randn(1, 1, 36, 32))


def test_register_model_decorator() -> None:
    @register_model("_tiny_test_model")
    def tiny(width: int = 2) -> nn.Module:
        return nn.Conv2d(1, 1, 1)

    try:
        assert isinstance(build_model("_tiny_test_model", width=3), nn.Conv2d)
        with pytest.raises(ValueError):
            register_model("_tiny_test_model")(tiny)
    finally:
        MODELS.pop("_tiny_test_model")


@pytest.mark.parametrize("name", ["unet", "residual_unet", "attention_unet"])
def test_training_decreases_loss_on_square(name: str) -> None:
    y = torch.zeros(2, 1, 16, 16)
    y[:, :, 4:11, 5:13] = 1.0
    x = y * 2.0 - 1.0 + 0.3 * torch.randn_like(y)
    model = build_model(name, depth=3, base_channels=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        opt.zero_grad()
        loss = dice_bce_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
