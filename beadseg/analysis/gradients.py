"""The numbers behind fig6 (loss mathematics) and fig7 (pixel / gradient analysis on real data).

Everything is computed with the project's own loss functions (:mod:`beadseg.losses`) and torch
autograd, never written by hand:

* :func:`loss_curves` - per-pixel loss, focusing term (1 - p_t)^gamma and per-pixel gradient
  magnitude as functions of the probability of the true class ``p_t`` (fig6);
* :func:`pixel_gradient_analysis` - for every tile size of the search, the best model of that
  size predicts the validation tiles ``beadseg tile`` wrote (data/tiles/t<size>/val.npz); pixels are
  split into background / foreground interior / boundary (``skimage.segmentation.find_boundaries``)
  and each class's share of the total |dL/dlogit| is measured with the focal term (gamma from the
  run) and without it (gamma = 0), for dice, focal and combined losses (fig7).

Only :func:`beadseg.analysis.measure.measure` calls these (``beadseg measure``); what is missing (no
validation split, no tiles of a size, no model of a run that is a result) is written down as a note,
never replaced by a made-up number.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from skimage.segmentation import find_boundaries

from beadseg import paths
from beadseg.analysis import stats
from beadseg.analysis.numbers import CLASSES
from beadseg.checkpoint import load_model_file
from beadseg.config import Config, TrainConfig
from beadseg.data.prepare import load_split, load_tiles
from beadseg.errors import DataError
from beadseg.losses import combined_loss, focal_loss, focal_modulation, soft_dice_loss

GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_variants(tc: TrainConfig) -> dict[str, LossFn]:
    """name -> loss(logits, target): the losses compared in fig6 / fig7, with the run's parameters."""
    a, g, w = tc.focal_alpha, tc.focal_gamma, tc.dice_weight
    return {
        "no_focal_term": lambda x, y: focal_loss(x, y, alpha=a, gamma=0.0),
        "focal": lambda x, y: focal_loss(x, y, alpha=a, gamma=g),
        "dice": soft_dice_loss,
        "combined": lambda x, y: combined_loss(x, y, dice_weight=w, alpha=a, gamma=g),
    }


# --------------------------------------------------------------------------- fig6: curves


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def _gradient_curves(tc: TrainConfig, pt: np.ndarray, fg_fraction: float,
                     n_pixels: int) -> tuple[list[float], dict[str, dict[str, list[float]]]]:
    """Dice loss and N x mean |dL/dlogit| of bead / background pixels of every loss variant, per p_t."""
    n_fg = max(1, int(round(fg_fraction * n_pixels)))
    y = torch.zeros(n_pixels)
    y[:n_fg] = 1.0
    y = y.view(1, 1, 1, n_pixels)
    sign = 2 * y - 1  # logit of the true class: x for foreground, -x for background
    variants = loss_variants(tc)
    dice_loss: list[float] = []
    grads: dict[str, dict[str, list[float]]] = {name: {"fg": [], "bg": []} for name in variants}
    for p in pt:
        for name, fn in variants.items():
            x = (sign * _logit(float(p))).clone().requires_grad_(True)
            loss = fn(x, y)
            (grad,) = torch.autograd.grad(loss, x)
            gabs = grad.abs().view(-1) * n_pixels
            grads[name]["fg"].append(float(gabs[:n_fg].mean()))
            grads[name]["bg"].append(float(gabs[n_fg:].mean()))
            if name == "dice":
                dice_loss.append(float(loss.detach()))
    return dice_loss, grads


def loss_curves(tc: TrainConfig, fg_fraction: float, n_pixels: int = 64 * 64) -> dict[str, Any]:
    """Per-pixel curves as functions of p_t (probability given to the true class), as plain lists.

    ``modulation`` maps each gamma of :data:`GAMMAS` and the run's own (spelled ``f"{gamma:g}"``) to the
    focusing term. The dice curves use a synthetic image of ``n_pixels`` pixels with the foreground
    fraction ``fg_fraction`` where every pixel gets the same p_t (dice is an image-level loss);
    gradients are multiplied by ``n_pixels`` so they do not depend on the image size.
    """
    pt = np.linspace(0.01, 0.99, 99)
    a, g = tc.focal_alpha, tc.focal_gamma
    gammas = sorted({*GAMMAS, float(g)})
    dice_loss, grads = _gradient_curves(tc, pt, fg_fraction, n_pixels)
    focal = focal_modulation(pt, g) * -np.log(pt)
    return {"p_t": pt.tolist(), "ce": (-np.log(pt)).tolist(), "gammas": gammas,
            "modulation": {f"{gm:g}": focal_modulation(pt, gm).tolist() for gm in gammas},
            "focal_fg": (a * focal).tolist(), "focal_bg": ((1 - a) * focal).tolist(),
            "dice": dice_loss, "grad": grads}


def _ratio_at(curve: list[float], pt: list[float], hard: float, easy: float) -> float:
    return float(np.interp(hard, pt, curve)) / max(float(np.interp(easy, pt, curve)), 1e-30)


def curve_numbers(curves: dict[str, Any], tc: TrainConfig) -> dict[str, Any]:
    """Scalar facts of the fig6 curves for the report (all read off the computed curves)."""
    pt, gr = curves["p_t"], curves["grad"]
    g = tc.focal_gamma
    mod = focal_modulation(np.array([0.5, 0.9, 0.99]), g)
    dice_fg_bg = float(np.interp(0.5, pt, gr["dice"]["fg"])) / max(float(np.interp(0.5, pt, gr["dice"]["bg"])), 1e-30)
    return {
        "focal_alpha": tc.focal_alpha, "focal_gamma": g, "dice_weight": tc.dice_weight,
        "modulation_pt_0.5": float(mod[0]), "modulation_pt_0.9": float(mod[1]), "modulation_pt_0.99": float(mod[2]),
        "downweight_pct_pt_0.9": float(100 * (1 - mod[1])),
        "hard_to_easy_weight_ratio": float(mod[0] / mod[1]) if mod[1] > 0 else None,
        "focal_grad_ratio_hard_easy_fg": _ratio_at(gr["focal"]["fg"], pt, 0.5, 0.9),
        "no_focal_grad_ratio_hard_easy_fg": _ratio_at(gr["no_focal_term"]["fg"], pt, 0.5, 0.9),
        "dice_grad_fg_to_bg_pt_0.5": dice_fg_bg,
        "dice_grad_ratio_hard_easy_fg": _ratio_at(gr["dice"]["fg"], pt, 0.5, 0.9),
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


def pick_model(runs: pd.DataFrame, size: int, root: Path) -> pd.Series | None:
    """The best result of this tile size with a model.pt, else the best result of any size; never a
    degenerate or diverged run (its predictions carry no information about the losses)."""
    ok = stats.valid_runs(runs)
    for frame in (ok[ok["tile_size"] == size], ok):
        for _, row in frame.iterrows():  # runs.csv is sorted best first
            if (root / paths.model_file(str(row["run_id"]))).is_file():
                return row
    return None


def val_tiles(size: int, root: Path, max_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_tiles`` validation tiles of one size (evenly spaced, deterministic) as float32, with their
    masks, from data/tiles/t<size>/val.npz (a DataError naming `beadseg tile --size` when it is missing)."""
    tiles, masks = load_tiles(size, "val", root)
    if len(tiles) > max_tiles:
        keep = np.linspace(0, len(tiles) - 1, max_tiles).round().astype(int)
        tiles, masks = tiles[keep], masks[keep]
    return tiles.astype(np.float32), masks


@torch.no_grad()
def _predict_logits(model: torch.nn.Module, tiles: np.ndarray, batch: int) -> torch.Tensor:
    model.eval()
    outs = [model(torch.from_numpy(tiles[i:i + batch])[:, None])[:, :1].float()  # the bead mask's logits
            for i in range(0, len(tiles), batch)]
    logits = torch.cat(outs) if outs else torch.zeros((0, 1, *tiles.shape[1:]))
    return torch.nan_to_num(logits, nan=0.0, posinf=30.0, neginf=-30.0)


def _class_sums(fn: LossFn, logits: torch.Tensor, y_all: torch.Tensor, cls: torch.Tensor, batch: int) -> torch.Tensor:
    """sum |dL/dlogit| per pixel class, the loss evaluated ``batch`` tiles at a time."""
    sums = torch.zeros(len(CLASSES), dtype=torch.float64)
    for i in range(0, len(logits), batch):
        x = logits[i:i + batch].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(x, y_all[i:i + batch]), x)
        g, c = grad.abs().double(), cls[i:i + batch]
        for k in range(len(CLASSES)):
            sums[k] += g[c == k].sum()
    return sums


def gradient_shares(logits: torch.Tensor, masks: np.ndarray, classes: np.ndarray, tc: TrainConfig,
                    batch: int) -> dict[str, Any]:
    """Per loss variant: each pixel class's share of sum |dL/dlogit| and mean |dL/dlogit| per pixel.

    The loss is evaluated batch by batch (``batch`` tiles, as in training), so batch-level losses such
    as dice see the same normalisation as during training.
    """
    y_all = torch.from_numpy(masks.astype(np.float32))[:, None]
    cls = torch.from_numpy(classes)[:, None]
    counts = [int((cls == k).sum().item()) for k in range(len(CLASSES))]
    out: dict[str, Any] = {}
    for name, fn in loss_variants(tc).items():
        sums = _class_sums(fn, logits, y_all, cls, batch)
        total = float(sums.sum())
        out[name] = {
            "share": {c: (float(sums[k]) / total if total > 0 else float("nan")) for k, c in enumerate(CLASSES)},
            "mean_abs_grad": {c: (float(sums[k]) / counts[k] if counts[k] > 0 else float("nan"))
                              for k, c in enumerate(CLASSES)},
        }
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b and b > 0 and math.isfinite(a) and math.isfinite(b) else None


def pixel_composition(masks: np.ndarray) -> dict[str, Any]:
    """Pixel shares by class of a stack of tile masks (NaN shares when there is no tile)."""
    classes = np.stack([pixel_classes(m) for m in masks]) if len(masks) else np.zeros((0, 1, 1), np.uint8)
    n = int(classes.size)
    counts = {c: int((classes == k).sum()) for k, c in enumerate(CLASSES)}
    fg = int((masks > 0).sum())
    return {"n_tiles": int(len(masks)), "pixels": n,
            "pixel_share": {c: counts[c] / n if n else float("nan") for c in CLASSES},
            "boundary_pixels_per_tile": counts["boundary"] / len(masks) if len(masks) else float("nan"),
            "foreground_fraction": fg / n if n else float("nan"),
            "background_to_foreground_pixels": _ratio(n - fg, fg),
            "background_to_boundary_pixels": _ratio(counts["background"], counts["boundary"])}


def model_gradients(row: pd.Series, tiles: np.ndarray, masks: np.ndarray, root: Path) -> dict[str, Any]:
    """What the model of run ``row`` predicts on the tiles: mean p_t per class and the gradient shares."""
    model_file = load_model_file(root / paths.model_file(str(row["run_id"])))
    tc = model_file.config
    logits = _predict_logits(model_file.build(), tiles, max(1, tc.batch_size))
    p = torch.sigmoid(logits).numpy()[:, 0]
    p_t = np.where(masks > 0, p, 1 - p)
    classes = np.stack([pixel_classes(m) for m in masks])
    grads = gradient_shares(logits, masks, classes, tc, max(1, tc.batch_size))
    with_f, without_f = grads["focal"]["share"], grads["no_focal_term"]["share"]
    return {
        "model_run": str(row["run_id"]), "model_tile_size": int(tc.tile_size),
        "model_best_val_jaccard": float(row["best_val_jaccard"]),
        "focal_gamma": tc.focal_gamma, "focal_alpha": tc.focal_alpha, "dice_weight": tc.dice_weight,
        "mean_p_t": {c: float(p_t[classes == k].mean()) if (classes == k).any() else float("nan")
                     for k, c in enumerate(CLASSES)},
        "gradients": grads,
        "boundary_amplification": _ratio(with_f["boundary"], without_f["boundary"]),
        "imbalance_background_to_boundary_without_focal": _ratio(without_f["background"], without_f["boundary"]),
        "imbalance_background_to_boundary_with_focal": _ratio(with_f["background"], with_f["boundary"]),
    }


def analyse_size(cfg: Config, runs: pd.DataFrame, size: int, root: Path) -> dict[str, Any]:
    """fig7's numbers of one tile size: pixel composition of its validation tiles and, when a run that is a
    result left a model, that model's gradient shares; ``note`` says what is missing otherwise."""
    try:
        tiles, masks = val_tiles(size, root, cfg.analysis.gradient_max_tiles)
    except DataError as exc:  # the tile step of this size has not run: say so, measure nothing
        print(f"measure: no validation tiles of {size} px: {exc}", file=sys.stderr)
        empty = np.zeros((0, size, size), np.uint8)
        return {"tile_size": int(size), **pixel_composition(empty), "model_run": None, "note": str(exc)}
    res: dict[str, Any] = {"tile_size": int(size), **pixel_composition(masks)}
    row = pick_model(runs, size, root)
    if row is None or not len(tiles):
        res["model_run"] = None
        res["note"] = "no model.pt of a run that is a result" if row is None else "no validation tiles"
        return res
    return {**res, **model_gradients(row, tiles, masks, root)}


def full_image_composition(val: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """Foreground fraction and pixel shares by class over the full validation images."""
    masks = [m for _, m in val.values()]
    fg = sum(int((m > 0).sum()) for m in masks)
    total = sum(int(m.size) for m in masks)
    classes = [pixel_classes(m) for m in masks]
    share = {c: (sum(int((k == i).sum()) for k in classes) / total if total else float("nan"))
             for i, c in enumerate(CLASSES)}
    return {"val_images": len(val), "val_foreground_fraction": fg / total if total else float("nan"),
            "full_image_pixel_share": share}


def pixel_gradient_analysis(cfg: Config, runs: pd.DataFrame, root: Path) -> dict[str, Any]:
    """fig7's numbers for every tile size used by the runs (sorted); ``note`` when there is no validation split."""
    sizes = sorted(int(s) for s in runs["tile_size"].dropna().unique())
    out: dict[str, Any] = {"sizes": sizes, "per_size": {}}
    try:
        val = load_split("val", root)
    except DataError as exc:  # no validation split: nothing is measured, and the report says why
        print(f"measure: fig7 has no validation data: {exc}", file=sys.stderr)
        out["note"] = str(exc)
        return out
    out.update(full_image_composition(val))
    for size in sizes:
        out["per_size"][str(size)] = analyse_size(cfg, runs, size, root)
    return out
