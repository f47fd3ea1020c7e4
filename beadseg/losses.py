"""Segmentation losses on logits, plus a name -> loss registry.

Every loss takes ``logits`` and ``target`` of shape (N, 1, H, W) (targets 0/1; soft targets in
[0, 1] also work) and returns a scalar tensor. Inputs are cast to float32 first so the losses are
safe under mixed precision, and log-probabilities come from ``logsigmoid`` /
``binary_cross_entropy_with_logits`` (never ``log(sigmoid(x))``), so huge logits do not give
inf/NaN. Notation: ``p = sigmoid(logits)``, ``y = target``, sums run over the whole batch.

Registry names (:data:`LOSSES`, :func:`build_loss`):

==========  ======================================================================
dice        soft_dice_loss
focal       focal_loss(alpha=focal_alpha, gamma=focal_gamma)
combined    dice_weight * dice + (1 - dice_weight) * focal          (dice_weight 0.7)
tversky     tversky_loss(alpha=tversky_alpha, beta=tversky_beta)
bce         bce_loss
dice_bce    dice_weight * dice + (1 - dice_weight) * bce            (dice_weight 0.5)
boundary    combined + boundary_bce_loss(width=boundary_width, weight=boundary_weight)
==========  ======================================================================

Target terms (:data:`TARGET_TERMS`, :func:`build_target_loss`): a network with more outputs than the bead
mask (``train.target``) is trained on ``loss(mask logits, mask) + weight * term(other logits, other targets)``:

=============  ==================================================================
mask_distance  distance_bce_loss: binary cross-entropy against the normalised distance (soft targets)
=============  ==================================================================
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from beadseg.errors import ConfigError

LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = [
    "LOSSES",
    "LOSS_PARAMS",
    "TARGET_TERMS",
    "bce_loss",
    "boundary_bce_loss",
    "boundary_combined_loss",
    "boundary_weight_map",
    "build_loss",
    "build_target_loss",
    "distance_bce_loss",
    "combined_loss",
    "dice_bce_loss",
    "focal_loss",
    "focal_modulation",
    "soft_dice_loss",
    "tversky_loss",
]


def _prepare(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Check shapes match and cast both to float32."""
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    return logits.float(), target.float()


# --------------------------------------------------------------------------- region losses
def soft_dice_loss(logits: Tensor, target: Tensor, eps: float = 1.0) -> Tensor:
    """Soft Dice loss over the whole batch.

    L = 1 - (2 * sum(p*y) + eps) / (sum(p) + sum(y) + eps)
    """
    x, y = _prepare(logits, target)
    p = torch.sigmoid(x)
    inter = (p * y).sum()
    return 1.0 - (2.0 * inter + eps) / (p.sum() + y.sum() + eps)


def tversky_loss(
    logits: Tensor, target: Tensor, alpha: float = 0.5, beta: float = 0.5, eps: float = 1.0
) -> Tensor:
    """Soft Tversky loss (Salehi et al., 2017) over the whole batch.

    TP = sum(p*y), FP = sum(p*(1-y)), FN = sum((1-p)*y)
    L  = 1 - (TP + eps/2) / (TP + alpha*FP + beta*FN + eps/2)

    ``alpha`` weighs false positives and ``beta`` false negatives. The smoothing term is written
    as ``eps/2`` so that ``alpha = beta = 0.5`` reproduces :func:`soft_dice_loss` with the same
    ``eps`` exactly (multiply numerator and denominator by 2 to see it).
    """
    x, y = _prepare(logits, target)
    p = torch.sigmoid(x)
    tp = (p * y).sum()
    fp = (p * (1.0 - y)).sum()
    fn = ((1.0 - p) * y).sum()
    half_eps = 0.5 * eps
    return 1.0 - (tp + half_eps) / (tp + alpha * fp + beta * fn + half_eps)


# --------------------------------------------------------------------------- pixel losses
def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy: L = mean(-(y log p + (1-y) log(1-p))), from logits."""
    x, y = _prepare(logits, target)
    return F.binary_cross_entropy_with_logits(x, y)


def focal_modulation(p_t: Any, gamma: float) -> Any:
    """Focal modulating factor (1 - p_t)**gamma, for numpy arrays, tensors or floats.

    ``p_t`` is the probability assigned to the true class. With gamma = 0 the factor is 1.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if isinstance(p_t, Tensor):
        return torch.pow(1.0 - p_t, gamma)
    return np.power(1.0 - np.asarray(p_t, dtype=np.float64), gamma)


def focal_loss(
    logits: Tensor, target: Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> Tensor:
    """Sigmoid focal loss (Lin et al., 2017), averaged over all pixels.

    L = mean(-alpha_t * (1 - p_t)**gamma * log(p_t)),
    p_t = p if y = 1 else 1 - p,  alpha_t = alpha if y = 1 else 1 - alpha.

    ``-log(p_t)`` is the per-pixel BCE and ``1 - p_t`` is computed as ``sigmoid(-/+x)``, so both
    are accurate for large logits. With gamma = 0 this is the alpha-weighted BCE.
    """
    x, y = _prepare(logits, target)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")  # = -log(p_t)
    one_minus_pt = y * torch.sigmoid(-x) + (1.0 - y) * torch.sigmoid(x)
    alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y)
    if gamma == 0:
        modulation: Tensor | float = 1.0
    else:
        # The clamp keeps d/dx (1-p_t)**gamma finite for gamma < 1 where 1-p_t underflows to 0
        # (there ce == 0, so the loss value is unaffected).
        modulation = one_minus_pt.clamp_min(1e-12).pow(gamma)
    return (alpha_t * modulation * ce).mean()


# --------------------------------------------------------------------------- mixtures
def dice_bce_loss(logits: Tensor, target: Tensor, dice_weight: float = 0.5) -> Tensor:
    """L = w * soft_dice + (1 - w) * bce, with w = dice_weight."""
    return dice_weight * soft_dice_loss(logits, target) + (1.0 - dice_weight) * bce_loss(
        logits, target
    )


def combined_loss(
    logits: Tensor,
    target: Tensor,
    dice_weight: float = 0.7,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """L = w * soft_dice + (1 - w) * focal(alpha, gamma), with w = dice_weight."""
    dice = soft_dice_loss(logits, target)
    focal = focal_loss(logits, target, alpha=alpha, gamma=gamma)
    return dice_weight * dice + (1.0 - dice_weight) * focal


# --------------------------------------------------------------------------- boundary
def boundary_weight_map(target: Tensor, width: int = 2, weight: float = 5.0) -> Tensor:
    """Per-pixel weights: ``weight`` within ``width`` px of a mask boundary, 1 elsewhere.

    With B = (target > 0.5), D = dilate(B) and E = erode(B) by a (2*width+1)^2 square
    (max-pooling, i.e. Chebyshev distance), the band is D & ~E: pixels on either side of an
    edge within ``width`` px of it. The image border is not treated as an edge (erosion ignores
    out-of-image pixels). Returns a float32 tensor shaped like ``target``, without gradient;
    works on any device. ``width = 0`` gives all ones.
    """
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    with torch.no_grad():
        b = (target.detach() > 0.5).float()
        if width == 0:
            return torch.ones_like(b)
        squeeze = b.dim() == 3
        if squeeze:
            b = b.unsqueeze(1)
        k = 2 * width + 1
        dilated = F.max_pool2d(b, k, stride=1, padding=width)
        eroded = -F.max_pool2d(-b, k, stride=1, padding=width)
        band = dilated - eroded  # 1 in the band, 0 elsewhere
        w = 1.0 + (float(weight) - 1.0) * band
        return w.squeeze(1) if squeeze else w


def boundary_bce_loss(
    logits: Tensor, target: Tensor, width: int = 2, weight: float = 5.0
) -> Tensor:
    """Boundary-weighted BCE: L = sum(w * bce) / sum(w), w = boundary_weight_map(target)."""
    x, y = _prepare(logits, target)
    w = boundary_weight_map(y, width=width, weight=weight)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    return (w * ce).sum() / w.sum().clamp_min(1e-12)


def boundary_combined_loss(
    logits: Tensor,
    target: Tensor,
    dice_weight: float = 0.7,
    alpha: float = 0.25,
    gamma: float = 2.0,
    width: int = 2,
    weight: float = 5.0,
) -> Tensor:
    """The "boundary" loss (registry name "boundary").

    L = combined(dice_weight, alpha, gamma) + boundary_bce(width, weight)
    """
    return combined_loss(logits, target, dice_weight, alpha, gamma) + boundary_bce_loss(
        logits, target, width=width, weight=weight
    )


# --------------------------------------------------------------------------- registry
#: Parameter names build_loss accepts (a loss uses only the ones relevant to it).
LOSS_PARAMS: tuple[str, ...] = (
    "dice_weight",
    "focal_alpha",
    "focal_gamma",
    "tversky_alpha",
    "tversky_beta",
    "boundary_weight",
    "boundary_width",
)

# loss name -> (function, {build_loss param name: function keyword})
LOSSES: dict[str, tuple[Callable[..., Tensor], dict[str, str]]] = {
    "dice": (soft_dice_loss, {}),
    "focal": (focal_loss, {"focal_alpha": "alpha", "focal_gamma": "gamma"}),
    "combined": (
        combined_loss,
        {"dice_weight": "dice_weight", "focal_alpha": "alpha", "focal_gamma": "gamma"},
    ),
    "tversky": (tversky_loss, {"tversky_alpha": "alpha", "tversky_beta": "beta"}),
    "bce": (bce_loss, {}),
    "dice_bce": (dice_bce_loss, {"dice_weight": "dice_weight"}),
    "boundary": (
        boundary_combined_loss,
        {
            "dice_weight": "dice_weight",
            "focal_alpha": "alpha",
            "focal_gamma": "gamma",
            "boundary_width": "width",
            "boundary_weight": "weight",
        },
    ),
}


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(float(value)):
        raise ConfigError(f"loss parameter {name} must be a number, got {value!r}")
    return float(value)


def _validate_param(name: str, value: object) -> float | int:
    """Range-check one loss parameter; raise ConfigError naming it and the valid range."""
    if name == "boundary_width":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ConfigError(
                f"loss parameter boundary_width={value!r} is invalid: "
                "valid values are integers >= 1"
            )
        return int(value)
    v = _real(name, value)
    if name in ("dice_weight", "focal_alpha", "tversky_alpha", "tversky_beta"):
        ok, valid = 0.0 <= v <= 1.0, "0 <= value <= 1"
    elif name == "focal_gamma":
        ok, valid = v >= 0.0 and math.isfinite(v), "finite values >= 0"
    elif name == "boundary_weight":
        ok, valid = 1.0 <= v and math.isfinite(v), "finite values >= 1"
    else:  # pragma: no cover - guarded by build_loss
        raise ConfigError(f"unknown loss parameter {name!r}")
    if not ok:
        raise ConfigError(f"loss parameter {name}={v} is out of range: valid values are {valid}")
    return v


def build_loss(name: str, **params: Any) -> LossFn:
    """Return ``loss(logits, target) -> scalar`` for the registered loss ``name``.

    ``params`` may contain any of :data:`LOSS_PARAMS`; only those relevant to ``name`` are
    validated and used, the others are ignored. A parameter given as None uses the function's
    default.

    Raises:
        ConfigError: unknown loss name (lists valid names), a parameter name not in
            :data:`LOSS_PARAMS` (likely a typo), or a relevant parameter out of range.
    """
    if name not in LOSSES:
        raise ConfigError(f"unknown loss {name!r}: valid losses are {', '.join(sorted(LOSSES))}")
    unknown = sorted(set(params) - set(LOSS_PARAMS))
    if unknown:
        raise ConfigError(
            f"unknown loss parameter {unknown[0]!r}: valid parameters are {', '.join(LOSS_PARAMS)}"
        )
    fn, mapping = LOSSES[name]
    kwargs = {
        mapping[key]: _validate_param(key, value)
        for key, value in params.items()
        if key in mapping and value is not None
    }
    loss = functools.partial(fn, **kwargs)
    functools.update_wrapper(loss, fn)  # keep __name__/__doc__ for logging
    return loss


def distance_bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against a soft target in [0, 1] (a normalised distance
    map): minimal where the predicted value equals the target, bounded for any logit."""
    x, y = logits.float(), target.float()
    return F.binary_cross_entropy_with_logits(x, y)


#: target -> the loss of its extra output channels (channel 0, the mask, always takes the run's loss).
TARGET_TERMS: dict[str, LossFn] = {"mask_distance": distance_bce_loss}


def build_target_loss(target: str, mask_loss: LossFn, weight: float = 1.0) -> LossFn:
    """The loss of a network trained for ``target``: ``mask_loss`` on channel 0 plus ``weight`` times the target's
    term (:data:`TARGET_TERMS`) on the remaining channels; ``mask`` is ``mask_loss`` itself."""
    if target == "mask":
        return mask_loss
    if target not in TARGET_TERMS:
        raise ConfigError(f"unknown target {target!r}: valid targets are mask, {', '.join(sorted(TARGET_TERMS))}")
    term = TARGET_TERMS[target]
    w = _real("distance_weight", weight)

    def loss(logits: Tensor, target_maps: Tensor) -> Tensor:
        return mask_loss(logits[:, :1], target_maps[:, :1]) + w * term(logits[:, 1:], target_maps[:, 1:])

    return loss
