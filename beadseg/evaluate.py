"""Fair full-image scoring: every run's best model predicts the same full validation images by
stitched sliding-window inference, so models trained on 256 and 512 tiles are scored on equal pixels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from beadseg.config import TrainConfig
from beadseg.inference import predict_full
from beadseg.metrics import bead_metrics, confusion, dice_from_counts, jaccard_from_counts


def predict_images(model: torch.nn.Module, images: Mapping[str, np.ndarray], cfg: TrainConfig,
                   device: torch.device, amp_dtype: torch.dtype | None = None) -> dict[str, np.ndarray]:
    """Probability map per image stem."""
    return {
        stem: predict_full(model, image, tile=cfg.tile_size, overlap=cfg.eval_overlap,
                           batch_size=max(1, cfg.batch_size), device=device, amp_dtype=amp_dtype,
                           channels_last=cfg.channels_last and device.type == "cuda")
        for stem, image in images.items()
    }


def score_predictions(probabilities: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray],
                      threshold: float = 0.5) -> dict[str, Any]:
    """Pixel metrics pooled over all images, and bead-level metrics pooled over all beads."""
    tp = fp = fn = 0
    n_true = n_pred = matched = 0
    diameter_error_sum = 0.0
    for stem, prob in probabilities.items():
        pred = prob > threshold
        true = masks[stem] > 0
        a, b, c = confusion(pred, true)
        tp, fp, fn = tp + a, fp + b, fn + c
        beads = bead_metrics(pred, true)
        n_true += beads["n_true"]
        n_pred += beads["n_pred"]
        m = int(beads["n_matched"])
        matched += m
        if m and not math.isnan(beads["mean_diameter_error_px"]):
            diameter_error_sum += beads["mean_diameter_error_px"] * m
    precision = matched / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = matched / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "full_val_jaccard": jaccard_from_counts(tp, fp, fn),
        "full_val_dice": dice_from_counts(tp, fp, fn),
        "bead_n_true": n_true,
        "bead_n_pred": n_pred,
        "bead_count_error": n_pred - n_true,
        "bead_count_error_rel": (n_pred - n_true) / n_true if n_true else 0.0,
        "bead_precision": precision,
        "bead_recall": recall,
        "bead_f1": f1,
        "bead_mean_diameter_error_px": diameter_error_sum / matched if matched else float("nan"),
        "n_val_images": len(probabilities),
    }
