"""U-Net family for binary bead segmentation (plain, residual, attention-gated).

Architecture (``depth`` = number of resolution levels, ``C_i = base_channels * 2**i``)::

    encoder level i (i = 0 .. depth-2):  block(C_{i-1} -> C_i), then 2x2 max-pool
    bottleneck (level depth-1):          block(C_{depth-2} -> C_{depth-1})  [+ Dropout2d]
    decoder level i (i = depth-2 .. 0):  up = ConvTranspose2d(C_{i+1} -> C_i, k=2, s=2)
                                         skip_i' = gate(skip_i, up)            (attention only)
                                         block(cat[skip_i', up] : 2 C_i -> C_i) [+ Dropout2d]
    head:                                1x1 conv C_0 -> out_channels  (raw logits, no sigmoid)

A *block* is ``conv3x3 -> norm -> ReLU -> conv3x3 -> norm -> ReLU``; with ``residual=True`` the
second ReLU is applied to ``norm(conv(...)) + shortcut(x)`` where the shortcut is the identity or
a 1x1 projection (conv + norm) when the channel count changes (He et al., 2016).

Attention gates follow Oktay et al. (2018), "Attention U-Net": with skip features ``x`` and the
upsampled decoder features ``g`` (same resolution),
``alpha = sigmoid(psi(ReLU(W_x x + W_g g)))`` and the gated skip is ``x * alpha``
(``W_x``, ``W_g``: 1x1 conv + norm; ``psi``: 1x1 conv to one channel).

The input height and width must be divisible by ``2**(depth-1)``.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor, nn

from beadseg.errors import ConfigError

NORMS: tuple[str, ...] = ("batch", "group", "instance", "none")
MIN_DEPTH = 3
MAX_DEPTH = 6


# --------------------------------------------------------------------------- validation
def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer in [low, high]; else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        valid = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name}={value} is out of range: valid values are {valid}")
    return value


def _check_dropout(value: object) -> float:
    """Dropout probability must be a real number with 0 <= p < 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"dropout must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"dropout={value} is out of range: valid values are 0 <= dropout < 1")
    return value


def _check_norm(norm: object, base_channels: int, groups: object) -> tuple[str, int]:
    """Validate the norm name and, for GroupNorm, that ``groups`` divides every channel count."""
    if not isinstance(norm, str) or norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}: valid norms are {', '.join(NORMS)}")
    if norm != "group":
        return norm, groups  # type: ignore[return-value]  # unused by other norms
    groups = _check_int("groups", groups, 1)
    # Channel counts are base_channels * 2**i, so divisibility of base_channels suffices.
    if base_channels % groups != 0:
        raise ConfigError(
            f"norm 'group' needs base_channels divisible by groups: "
            f"base_channels={base_channels}, groups={groups}"
        )
    return norm, groups


# --------------------------------------------------------------------------- building blocks
def make_norm(norm: str, channels: int, groups: int = 8) -> nn.Module:
    """Normalisation layer for ``channels`` feature maps (``nn.Identity`` for "none")."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(groups, channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {norm!r}: valid norms are {', '.join(NORMS)}")


def _conv(in_ch: int, out_ch: int, kernel: int, norm: str) -> nn.Conv2d:
    """kxk conv with 'same' padding; no bias when a norm layer follows (it would be redundant)."""
    return nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=(norm == "none"))


class ConvBlock(nn.Module):
    """Two 3x3 conv-norm-ReLU layers, optionally residual, optionally followed by Dropout2d.

    plain:    y = ReLU(N(W2 * ReLU(N(W1 * x))))
    residual: y = ReLU(N(W2 * ReLU(N(W1 * x))) + S(x)),  S = identity or N(1x1 conv)
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        norm: str = "batch",
        groups: int = 8,
        dropout: float = 0.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.conv1 = _conv(in_ch, out_ch, 3, norm)
        self.norm1 = make_norm(norm, out_ch, groups)
        self.conv2 = _conv(out_ch, out_ch, 3, norm)
        self.norm2 = make_norm(norm, out_ch, groups)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if residual:
            if in_ch == out_ch:
                self.shortcut = nn.Identity()
            else:
                self.shortcut = nn.Sequential(
                    _conv(in_ch, out_ch, 1, norm), make_norm(norm, out_ch, groups)
                )
        self.dropout: nn.Module = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.dropout(self.act(out))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al., 2018) on a skip connection.

    alpha = sigmoid(psi(ReLU(W_x x + W_g g))),  output = x * alpha  (alpha: one channel,
    broadcast over the skip channels). ``g`` must have the same spatial size as ``x``.
    """

    def __init__(
        self, skip_ch: int, gate_ch: int, inter_ch: int, norm: str = "batch", groups: int = 8
    ) -> None:
        super().__init__()
        self.w_x = nn.Sequential(
            _conv(skip_ch, inter_ch, 1, norm), make_norm(norm, inter_ch, groups)
        )
        self.w_g = nn.Sequential(
            _conv(gate_ch, inter_ch, 1, norm), make_norm(norm, inter_ch, groups)
        )
        self.act = nn.ReLU(inplace=True)
        self.psi = nn.Conv2d(inter_ch, 1, kernel_size=1, bias=True)

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        alpha = torch.sigmoid(self.psi(self.act(self.w_x(x) + self.w_g(g))))
        return x * alpha


class UpBlock(nn.Module):
    """Decoder level: transposed-conv upsampling, optional attention gate, concat, ConvBlock."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        norm: str,
        groups: int,
        dropout: float,
        residual: bool,
        attention: bool,
    ) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
        self.gate = AttentionGate(out_ch, out_ch, out_ch, norm, groups) if attention else None
        self.block = ConvBlock(2 * out_ch, out_ch, norm, groups, dropout, residual)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        up = self.up(x)
        if self.gate is not None:
            skip = self.gate(skip, up)
        return self.block(torch.cat([skip, up], dim=1))


# --------------------------------------------------------------------------- the network
class UNet(nn.Module):
    """U-Net with ``depth`` resolution levels returning per-pixel logits of shape (N, out, H, W).

    Args:
        in_channels: image channels.
        out_channels: output logit channels (1 for binary bead masks).
        depth: number of resolution levels, 3..6 (``depth - 1`` poolings).
        base_channels: channels at full resolution; level i has ``base_channels * 2**i``.
        dropout: Dropout2d probability in the bottleneck and decoder blocks (0 <= p < 1).
        norm: "batch", "group" (GroupNorm with ``groups``), "instance" (affine) or "none".
        groups: GroupNorm groups; must divide ``base_channels`` when ``norm="group"``.
        residual: residual conv blocks with 1x1 projection shortcuts.
        attention: attention gates on the skip connections.

    Raises:
        ConfigError: for an invalid hyperparameter.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        depth: int = 4,
        base_channels: int = 16,
        dropout: float = 0.0,
        norm: str = "batch",
        groups: int = 8,
        residual: bool = False,
        attention: bool = False,
    ) -> None:
        super().__init__()
        in_channels = _check_int("in_channels", in_channels, 1)
        out_channels = _check_int("out_channels", out_channels, 1)
        depth = _check_int("depth", depth, MIN_DEPTH, MAX_DEPTH)
        base_channels = _check_int("base_channels", base_channels, 1)
        dropout = _check_dropout(dropout)
        norm, groups = _check_norm(norm, base_channels, groups)

        self.depth = depth
        self.in_channels = in_channels
        self.residual = bool(residual)
        self.attention = bool(attention)
        chans = [base_channels * 2**i for i in range(depth)]
        self.channels = tuple(chans)

        self.encoders = nn.ModuleList()
        prev = in_channels
        for ch in chans[:-1]:
            self.encoders.append(ConvBlock(prev, ch, norm, groups, 0.0, self.residual))
            prev = ch
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.bottleneck = ConvBlock(prev, chans[-1], norm, groups, dropout, self.residual)
        self.decoders = nn.ModuleList(
            UpBlock(chans[i + 1], chans[i], norm, groups, dropout, self.residual, self.attention)
            for i in reversed(range(depth - 1))
        )
        self.head = nn.Conv2d(chans[0], out_channels, kernel_size=1)

    @property
    def size_multiple(self) -> int:
        """Input H and W must be multiples of this (``2**(depth-1)``)."""
        return 2 ** (self.depth - 1)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"UNet expects input of shape (N, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"UNet expects {self.in_channels} input channel(s), got {x.shape[1]}")
        h, w = x.shape[-2:]
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"input height and width must be divisible by 2**(depth-1) = {m} "
                f"for depth={self.depth}, got {h}x{w}; pad or crop the tiles"
            )

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        skips: list[Tensor] = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip)
        return self.head(x)
