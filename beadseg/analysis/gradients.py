"""The numbers behind fig6 (loss mathematics) and fig7 (pixel / gradient analysis on real data).

Everything is computed with the project's own loss functions (:mod:`beadseg.losses`) and torch
autograd, never written by hand:

* :func:`loss_curves` - per-pixel loss, focusing term (1 - p_t)^gamma and per-pixel gradient
  magnitude as functions of the probability of the true class ``p_t`` (fig6);
* :func:`pixel_gradient_analysis` - for every tile size of the search, the best model of that
  size predicts the real validation tiles; pixels are split into background / foreground interior
  / boundary (``skimage.segmentation.find_boundaries``) and each class's share of the total
  |dL/dlogit| is measured with the focal term (gamma from the run) and without it (gamma = 0),
  for dice, focal and combined losses (fig7).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from skimage.segmentation import find_boundaries

from beadseg import paths
from beadseg.analysis import stats
from beadseg.checkpoint import load_model_file
from beadseg.config import Config, TrainConfig
from beadseg.data.prepare import load_split
from beadseg.data.tiling import extract_tiles
from beadseg.errors import DataError
from beadseg.losses import combined_loss, focal_loss, focal_modulation, soft_dice_loss

CLASSES = ("background", "foreground_interior", "boundary")
GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def loss_variants(tc: TrainConfig) -> dict[str, Any]:
    """name -> loss(logits, target): the losses compared in fig6 / fig7, with the run's parameters."""
    a, g, w = tc.focal_alpha, tc.focal_gamma, tc.dice_weight
    return {
        "no_focal_term": lambda x, y: focal_loss(x, y, alpha=a, gamma=0.0),
        "focal": lambda x, y: focal_loss(x, y, alpha=a, gamma=g),
        "dice": soft_dice_loss,
        "combined": lambda x, y: combined_loss(x, y, dice_weight=w, alpha=a, gamma=g),
    }


VARIANT_LABELS = {
    "no_focal_term": "without focal term (gamma = 0)",
    "focal": "focal (with focal term)",
    "dice": "dice",
    "combined": "combined (w*dice + (1-w)*focal)",
}


# --------------------------------------------------------------------------- fig6: curves


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def loss_curves(tc: TrainConfig, fg_fraction: float, n_pixels: int = 64 * 64) -> dict[str, Any]:
    """Per-pixel curves as functions of p_t (probability given to the true class).

    The dice curves use a synthetic image of ``n_pixels`` pixels with the measured foreground
    fraction ``fg_fraction`` where every pixel gets the same p_t (dice is an image-level loss);
    gradients are multiplied by ``n_pixels`` so they do not depend on the image size.
    """
    pt = np.linspace(0.01, 0.99, 99)
    a, g = tc.focal_alpha, tc.focal_gamma
    n_fg = max(1, int(round(fg_fraction * n_pixels)))
    y = torch.zeros(n_pixels)
    y[:n_fg] = 1.0
    y = y.view(1, 1, 1, n_pixels)
    sign = 2 * y - 1  # logit of the true class: x for foreground, -x for background
    out: dict[str, Any] = {"p_t": pt, "ce": -np.log(pt), "gammas": GAMMAS,
                           "modulation": {gm: focal_modulation(pt, gm) for gm in GAMMAS},
                           "focal_fg": -a * focal_modulation(pt, g) * np.log(pt),
                           "focal_bg": -(1 - a) * focal_modulation(pt, g) * np.log(pt)}
    dice_loss, grads = [], {name: {"fg": [], "bg": []} for name in loss_variants(tc)}
    for p in pt:
        x = (sign * float(_logit(np.array(p)))).clone().requires_grad_(True)
        for name, fn in loss_variants(tc).items():
            if x.grad is not None:
                x.grad = None
            loss = fn(x, y)
            loss.backward()
            gabs = x.grad.abs().view(-1) * n_pixels
            grads[name]["fg"].append(float(gabs[:n_fg].mean()))
            grads[name]["bg"].append(float(gabs[n_fg:].mean()))
            if name == "dice":
                dice_loss.append(float(loss.detach()))
    out["dice"] = np.array(dice_loss)
    out["grad"] = {k: {c: np.array(v) for c, v in d.items()} for k, d in grads.items()}
    return out


def curve_numbers(curves: dict[str, Any], tc: TrainConfig) -> dict[str, Any]:
    """Scalar facts of the fig6 curves for the report (all read off the computed arrays)."""
    pt = curves["p_t"]

    def at(arr: np.ndarray, p: float) -> float:
        return float(np.interp(p, pt, arr))

    g = tc.focal_gamma
    mod = focal_modulation(np.array([0.5, 0.9, 0.99]), g)
    fg = curves["grad"]
    return {
        "focal_alpha": tc.focal_alpha, "focal_gamma": g, "dice_weight": tc.dice_weight,
        "modulation_pt_0.5": float(mod[0]), "modulation_pt_0.9": float(mod[1]), "modulation_pt_0.99": float(mod[2]),
        "downweight_pct_pt_0.9": float(100 * (1 - mod[1])),
        "hard_to_easy_weight_ratio": float(mod[0] / mod[1]) if mod[1] > 0 else None,
        "focal_grad_ratio_hard_easy_fg": at(fg["focal"]["fg"], 0.5) / max(at(fg["focal"]["fg"], 0.9), 1e-30),
        "no_focal_grad_ratio_hard_easy_fg": at(fg["no_focal_term"]["fg"], 0.5) / max(at(fg["no_focal_term"]["fg"], 0.9), 1e-30),
        "dice_grad_fg_to_bg_pt_0.5": at(fg["dice"]["fg"], 0.5) / max(at(fg["dice"]["bg"], 0.5), 1e-30),
        "dice_grad_ratio_hard_easy_fg": at(fg["dice"]["fg"], 0.5) / max(at(fg["dice"]["fg"], 0.9), 1e-30),
    }


# --------------------------------------------------------------------------- fig7: real data


def pixel_classes(mask: np.ndarray) -> np.ndarray:
    """0 background, 1 foreground interior, 2 boundary (thick boundaries from scikit-image)."""
    fg = mask > 0
    boundary = find_boundaries(fg, mode="thick")
    cls = np.zeros(mask.shape, np.uint8)
    cls[fg & ~boundary] = 1
    cls[boundary] = 2
    return cls


def _pick_model(runs: pd.DataFrame, size: int, root: Path) -> pd.Series | None:
    """The best result of this tile size with a model.pt, else the best result of any size; never a
    degenerate or diverged run (its predictions carry no information about the losses)."""
    ok = stats.valid_runs(runs)
    for frame in (ok[ok["tile_size"] == size], ok):
        for _, row in frame.iterrows():  # runs.csv is sorted best first
            if (root / paths.model_file(str(row["run_id"]))).is_file():
                return row
    return None


def _val_tiles(cfg: Config, size: int, root: Path, max_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    images, masks = [], []
    for stem, (image, mask) in load_split("val", root).items():
        t, m, _ = extract_tiles(image, mask, size, cfg.tiling.stride(size), source=stem, split="val",
                                policy=cfg.tiling.small_images if cfg.tiling.small_images != "error" else "pad")
        images.append(t)
        masks.append(m)
    tiles = np.concatenate(images) if images else np.zeros((0, size, size), np.float16)
    tile_masks = np.concatenate(masks) if masks else np.zeros((0, size, size), np.uint8)
    if len(tiles) > max_tiles:  # evenly spaced subset, deterministic
        keep = np.linspace(0, len(tiles) - 1, max_tiles).round().astype(int)
        tiles, tile_masks = tiles[keep], tile_masks[keep]
    return tiles.astype(np.float32), tile_masks


@torch.no_grad()
def _predict_logits(model: torch.nn.Module, tiles: np.ndarray, batch: int) -> torch.Tensor:
    model.eval()
    outs = [model(torch.from_numpy(tiles[i:i + batch])[:, None]).float() for i in range(0, len(tiles), batch)]
    logits = torch.cat(outs) if outs else torch.zeros((0, 1) + tiles.shape[1:])
    return torch.nan_to_num(logits, nan=0.0, posinf=30.0, neginf=-30.0)


def gradient_shares(logits: torch.Tensor, masks: np.ndarray, classes: np.ndarray, tc: TrainConfig,
                    batch: int) -> dict[str, Any]:
    """Per loss variant: each pixel class's share of sum |dL/dlogit| and mean |dL/dlogit| per pixel.

    The loss is evaluated batch by batch (``batch`` tiles, as in training), so batch-level losses such
    as dice see the same normalisation as during training.
    """
    y_all = torch.from_numpy(masks.astype(np.float32))[:, None]
    cls = torch.from_numpy(classes)[:, None]
    out: dict[str, Any] = {}
    for name, fn in loss_variants(tc).items():
        sums = torch.zeros(3, dtype=torch.float64)
        for i in range(0, len(logits), batch):
            x = logits[i:i + batch].clone().requires_grad_(True)
            fn(x, y_all[i:i + batch]).backward()
            g = x.grad.abs().double()
            c = cls[i:i + batch]
            for k in range(3):
                sums[k] += g[c == k].sum()
        counts = torch.tensor([(cls == k).sum().item() for k in range(3)], dtype=torch.float64)
        total = float(sums.sum())
        out[name] = {
            "share": {c: (float(sums[k]) / total if total > 0 else float("nan")) for k, c in enumerate(CLASSES)},
            "mean_abs_grad": {c: (float(sums[k] / counts[k]) if counts[k] > 0 else float("nan"))
                              for k, c in enumerate(CLASSES)},
        }
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b and b > 0 and math.isfinite(a) and math.isfinite(b) else None


def analyse_size(cfg: Config, runs: pd.DataFrame, size: int, root: Path) -> dict[str, Any]:
    tiles, masks = _val_tiles(cfg, size, root, cfg.analysis.gradient_max_tiles)
    classes = np.stack([pixel_classes(m) for m in masks]) if len(masks) else np.zeros((0, size, size), np.uint8)
    n = classes.size
    counts = {c: int((classes == k).sum()) for k, c in enumerate(CLASSES)}
    res: dict[str, Any] = {
        "tile_size": int(size), "n_tiles": int(len(tiles)), "pixels": int(n),
        "pixel_share": {c: counts[c] / n if n else float("nan") for c in CLASSES},
        "boundary_pixels_per_tile": counts["boundary"] / len(tiles) if len(tiles) else float("nan"),
    }
    fg = int((masks > 0).sum())
    res["foreground_fraction"] = fg / n if n else float("nan")
    res["background_to_foreground_pixels"] = _ratio(n - fg, fg)
    res["background_to_boundary_pixels"] = _ratio(counts["background"], counts["boundary"])
    row = _pick_model(runs, size, root)
    if row is None or not len(tiles):
        res["model_run"] = None
        res["note"] = "no model.pt of a run that is a result" if row is None else "no validation tiles"
        return res
    model_file = load_model_file(root / paths.model_file(str(row["run_id"])))
    tc = model_file.config
    model = model_file.build()
    logits = _predict_logits(model, tiles, max(1, tc.batch_size))
    p = torch.sigmoid(logits).numpy()[:, 0]
    p_t = np.where(masks > 0, p, 1 - p)
    res["model_run"] = str(row["run_id"])
    res["model_tile_size"] = int(tc.tile_size)
    res["model_best_val_jaccard"] = float(row["best_val_jaccard"])
    res["focal_gamma"], res["focal_alpha"], res["dice_weight"] = tc.focal_gamma, tc.focal_alpha, tc.dice_weight
    res["mean_p_t"] = {c: float(p_t[classes == k].mean()) if counts[c] else float("nan") for k, c in enumerate(CLASSES)}
    grads = gradient_shares(logits, masks, classes, tc, max(1, tc.batch_size))
    res["gradients"] = grads
    with_f, without_f = grads["focal"]["share"], grads["no_focal_term"]["share"]
    res["boundary_amplification"] = _ratio(with_f["boundary"], without_f["boundary"])
    res["imbalance_background_to_boundary_without_focal"] = _ratio(without_f["background"], without_f["boundary"])
    res["imbalance_background_to_boundary_with_focal"] = _ratio(with_f["background"], with_f["boundary"])
    return res


def pixel_gradient_analysis(cfg: Config, runs: pd.DataFrame, root: Path) -> dict[str, Any]:
    """fig7's numbers for every tile size used by the runs (sorted)."""
    sizes = sorted(int(s) for s in runs["tile_size"].dropna().unique())
    out: dict[str, Any] = {"sizes": sizes, "per_size": {}}
    try:
        val = load_split("val", root)
    except DataError as exc:  # no validation data: the report says so
        print(f"figures: fig7 has no validation data: {exc}", file=sys.stderr)
        out["note"] = str(exc)
        return out
    fg = sum(int((m > 0).sum()) for _, m in val.values())
    total = sum(int(m.size) for _, m in val.values())
    out["val_images"] = len(val)
    out["val_foreground_fraction"] = fg / total if total else float("nan")
    full_classes = [pixel_classes(m) for _, m in val.values()]
    out["full_image_pixel_share"] = {c: float(sum(int((k == i).sum()) for k in full_classes) / total)
                                     for i, c in enumerate(CLASSES)}
    for size in sizes:
        out["per_size"][str(size)] = analyse_size(cfg, runs, size, root)
    return out
