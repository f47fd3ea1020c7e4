"""Stitched sliding-window prediction for full-size images.

A full image is reflect-padded up to the tile size where needed, cut into
overlapping ``tile x tile`` windows (the same grid as training tiles, see
:func:`beadseg.data.tiling.tile_origins`), each window is run through the model,
and the sigmoid probabilities are blended with a smooth window so that tile
borders do not show. Because every window has exactly the tile size, images of
any size work with models that need inputs divisible by their stride.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from beadseg.data.tiling import _check_tile, pad_to_min, tile_origins
from beadseg.errors import ConfigError, DataError

__all__ = ["BLEND_KINDS", "blend_window", "predict_full"]

#: Window shapes accepted by :func:`blend_window`.
BLEND_KINDS: tuple[str, ...] = ("cosine", "uniform")

#: Largest allowed overlap fraction (beyond this the stride gets tiny and inference very slow).
MAX_OVERLAP = 0.9


def blend_window(tile: int, kind: str = "cosine", floor: float = 1e-3) -> np.ndarray:
    """Per-pixel weights used to blend overlapping tile predictions.

    ``"cosine"`` is a separable Hann window ``sin^2(pi (i + 0.5) / tile)``,
    symmetric and peaked in the centre, rescaled to ``[floor, 1]`` so that edge
    pixels still get a (small) positive weight. ``"uniform"`` is all ones.

    Returns:
        float32 array of shape ``(tile, tile)``, strictly positive.
    """
    tile = _check_tile(tile)
    if kind == "uniform":
        return np.ones((tile, tile), dtype=np.float32)
    if kind != "cosine":
        raise ConfigError(f"unknown blend window {kind!r}; use one of: {', '.join(BLEND_KINDS)}")
    if not 0.0 < floor <= 1.0:
        raise ConfigError(f"blend window floor {floor!r} must be in (0, 1]")
    ramp = np.sin(np.pi * (np.arange(tile, dtype=np.float64) + 0.5) / tile) ** 2
    window = np.outer(ramp, ramp)
    window = window / window.max()
    return (floor + (1.0 - floor) * window).astype(np.float32)


def _check_overlap(overlap: float) -> float:
    """Return ``overlap`` as float, raising :class:`ConfigError` unless it is in ``[0, MAX_OVERLAP]``."""
    try:
        value = float(overlap)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(overlap, bool) or not 0.0 <= value <= MAX_OVERLAP:
        raise ConfigError(
            f"inference overlap {overlap!r} is out of range; use a fraction between 0 and {MAX_OVERLAP} (e.g. 0.25)"
        )
    return value


def _to_probabilities(logits: torch.Tensor, batch: int, tile: int) -> torch.Tensor:
    """Check the model output shape and turn ``(B, C, t, t)`` / ``(B, t, t)`` logits into float32 probabilities
    ``(B, C, t, t)`` (channel 0: bead; more channels for targets such as ``mask_distance``)."""
    if logits.ndim == 3:
        logits = logits[:, None]
    if logits.ndim != 4 or tuple(logits.shape[:1]) + tuple(logits.shape[2:]) != (batch, tile, tile):
        raise ValueError(
            f"model returned shape {tuple(logits.shape)} for input tiles of {tile}x{tile}; "
            f"expected ({batch}, C, {tile}, {tile}) logits"
        )
    return torch.sigmoid(logits.float())


def predict_full(
    model: torch.nn.Module,
    image: np.ndarray,
    tile: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    all_channels: bool = False,
) -> np.ndarray:
    """Predict a foreground probability map for a whole normalised 2-D image of any size.

    The image is reflect-padded bottom/right up to ``tile`` where needed, cut
    into ``tile x tile`` windows with stride ``round(tile * (1 - overlap))``
    (plus windows flush with the bottom/right border), and the windows are run
    through ``model`` in batches of ``batch_size`` under
    :func:`torch.inference_mode` with the model in eval mode (its previous
    training mode is restored afterwards). Sigmoid probabilities are accumulated
    with :func:`blend_window` weights, divided by the accumulated weights and
    cropped back to ``(H, W)``.

    Args:
        model: Maps ``(B, 1, tile, tile)`` float32 input to ``(B, 1, tile, tile)``
            (or ``(B, tile, tile)``) logits; must already be on ``device``.
        image: Normalised 2-D float image ``(H, W)``.
        tile: Window side; must suit the model (e.g. divisible by its total stride).
        overlap: Fraction of the window shared by neighbours, in ``[0, 0.9]``.
        batch_size: Windows per forward pass.
        device: Device the input windows are sent to.
        amp_dtype: If given and ``device`` is CUDA, run the model under
            :func:`torch.autocast` with this dtype; ignored on CPU.
        channels_last: Send input in ``torch.channels_last`` memory format.
        all_channels: Return every output channel ``(C, H, W)`` (a ``mask_distance`` network's second channel
            is its predicted normalised distance), not only the bead probability.

    Returns:
        float32 probability map of shape ``(H, W)`` (``(C, H, W)`` with ``all_channels``).

    Raises:
        ConfigError: Invalid ``tile``, ``overlap`` or ``batch_size``.
        DataError: ``image`` is not a non-empty 2-D array.
    """
    tile = _check_tile(tile)
    overlap = _check_overlap(overlap)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"inference batch size {batch_size!r} is invalid; use a positive integer such as 4")
    image = np.asarray(image)
    if image.ndim != 2 or image.size == 0:
        raise DataError(f"expected a non-empty 2-D grayscale image for prediction, got shape {image.shape}")

    stride = max(1, round(tile * (1.0 - overlap)))
    padded, (height, width) = pad_to_min(image.astype(np.float32, copy=False), tile, mode="reflect")
    origins = [
        (y, x) for y in tile_origins(padded.shape[0], tile, stride) for x in tile_origins(padded.shape[1], tile, stride)
    ]

    window = blend_window(tile, "cosine")
    accum: np.ndarray | None = None  # (C, H, W) once the first batch says how many channels
    weights = np.zeros(padded.shape, dtype=np.float64)

    device = torch.device(device)
    autocast = (
        torch.autocast(device_type="cuda", dtype=amp_dtype)
        if amp_dtype is not None and device.type == "cuda"
        else contextlib.nullcontext()
    )
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast:
            for start in range(0, len(origins), batch_size):
                chunk = origins[start : start + batch_size]
                batch = np.stack([padded[y : y + tile, x : x + tile] for y, x in chunk])[:, None]
                inputs = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
                inputs = inputs.contiguous(memory_format=memory_format)
                probs = _to_probabilities(model(inputs), len(chunk), tile).cpu().numpy()
                if accum is None:
                    accum = np.zeros((probs.shape[1], *padded.shape), dtype=np.float64)
                for (y, x), prob in zip(chunk, probs):
                    accum[:, y : y + tile, x : x + tile] += prob * window
                    weights[y : y + tile, x : x + tile] += window
    finally:
        model.train(was_training)

    if accum is None:  # cannot happen: the padded image holds at least one window
        raise ValueError(f"no {tile}x{tile} window fits an image of {padded.shape}")
    out = (accum / weights)[:, :height, :width].astype(np.float32)
    return out if all_channels else out[0]
