"""Builders of small fake search projects for the analysis tests (no tests here).

A fake project has params.yaml, data/split/val.npz (two small images of discs), per run
results/runs/<id>/{metrics.json, history.csv, model.pt} with made-up but consistent numbers and a
real (untrained, seeded) tiny U-Net, and results/summary/{baseline.json, fingerprint.json}, so every
analysis step runs on it in well under a second.

A run spec with ``"degenerate": True`` gets status ``degenerate`` and the reasons and likely causes
that :mod:`beadseg.quality` gives for its made-up numbers (full-image Jaccard, prob_std, history,
optimizer steps), exactly as ``train_run`` would write them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from beadseg import paths
from beadseg.config import Config, TrainConfig, load_config
from beadseg.data.fingerprint import fingerprint_warnings, image_stats, object_stats, run_budget, tile_count
from beadseg.quality import degenerate_reasons, likely_causes, trivial_scores
from beadseg.train import HISTORY_FIELDS, history_csv, make_model

TRAIN_DEFAULTS = {"depth": 3, "base_channels": 4, "lr": 1e-3, "batch_size": 4, "max_epochs": 10, "patience": 4,
                  "loss": "combined", "tile_size": 32, "dropout": 0.1}


def disc_image(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for _ in range(6):
        cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(3, 7)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = 0.2 + 0.6 * mask + rng.normal(0, 0.05, mask.shape)
    return image.astype(np.float16), mask.astype(np.uint8)


def history_rows(best: float, final: float, best_epoch: int, epochs_run: int, flat: bool = False,
                 steps_per_epoch: int = 50) -> list[dict[str, Any]]:
    """Made-up epochs: val Jaccard rises to ``best`` at ``best_epoch`` then moves to ``final``; the
    training loss falls as 1 / (1 + epoch), or stays at 0.7 with ``flat``."""
    rows = []
    for e in range(1, epochs_run + 1):
        if e <= best_epoch:
            j = best * e / best_epoch
        else:
            j = best + (final - best) * (e - best_epoch) / max(1, epochs_run - best_epoch)
        rows.append({"epoch": e, "train_loss": 0.7 if flat else 1.0 / (1 + e),
                     "val_loss": 1.1 / (1 + e) + 0.01 * max(0, e - best_epoch),
                     "val_jaccard": float(j), "val_dice": float(2 * j / (1 + j)), "lr": 1e-3, "seconds": 1.5,
                     "optimizer_steps": steps_per_epoch * e})
    return rows


OUTCOME_KEYS = {"best", "final", "best_epoch", "epochs_run", "status", "full", "degenerate", "prob_std", "flat_loss"}


def val_masks(root: Path) -> list[np.ndarray]:
    with np.load(root / paths.split_file("val")) as z:
        return [z[k] for k in z.files if k.startswith("mask__")]


def quality_verdict(spec: dict[str, Any], tc: TrainConfig, full: float | None, rows: list[dict[str, Any]],
                    steps: int, stop: str, masks: list[np.ndarray]) -> tuple[str, list[str], list[str]]:
    """(status, degenerate_reasons, likely_causes) the real quality checks give for a fake run."""
    if stop == "diverged" or not spec.get("degenerate"):
        return stop, [], []
    scores = {"full_val_jaccard": full, "bead_f1": 0.0, "bead_n_true": 6}
    reasons = degenerate_reasons(scores, trivial_scores(masks), float(spec.get("prob_std", 0.001)))
    causes = likely_causes(rows, steps, tc.lr, tc.steps_per_epoch, stop)
    return "degenerate", reasons, causes


def write_baseline(root: Path, jaccard: float, method: str = "otsu") -> dict[str, Any]:
    """results/summary/baseline.json with the trivial scores of the fake validation masks."""
    trivial = trivial_scores(val_masks(root))
    baseline = {"method": method, "chosen_on": "train", "n_train_images": 2, "full_val_jaccard": jaccard,
                "full_val_dice": 2 * jaccard / (1 + jaccard), "bead_f1": 0.7, "bead_precision": 0.7,
                "bead_recall": 0.7, "train_jaccard_by_method": {method: jaccard + 0.01},
                "val_jaccard_by_method": {method: jaccard}, **trivial}
    target = root / paths.baseline_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(baseline))
    return baseline


def _split_stats(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    pooled = object_stats(np.hstack([m for _, m in pairs]), instance=False)
    return {"n_images": len(pairs), **pooled}


def write_fingerprint(root: Path, cfg: Config, image_size: int) -> dict[str, Any]:
    """results/summary/fingerprint.json built with the real fingerprint helpers from fake train/val images."""
    splits = {"train": [disc_image(image_size, 10 + i) for i in range(2)],
              "val": [disc_image(image_size, i) for i in range(2)]}
    images = {f"{split[0]}{i}": {"split": split, "shape": list(img.shape), "intensity": image_stats(img),
                                 "mask_dtype": str(mask.dtype), "instance_labels": False,
                                 "objects": object_stats(mask, instance=False)}
              for split, pairs in splits.items() for i, (img, mask) in enumerate(pairs)}
    tiles = {str(size): {split: sum(tile_count(img.shape, size, cfg.tiling.stride(size), cfg.tiling.small_images)
                                    for img, _ in pairs) for split, pairs in splits.items()}
             for size in cfg.tiling.sizes}
    fp: dict[str, Any] = {
        "images": images, "splits": {split: _split_stats(pairs) for split, pairs in splits.items()},
        "tiling": {"sizes": list(cfg.tiling.sizes), "stride_fraction": cfg.tiling.stride_fraction,
                   "small_images": cfg.tiling.small_images},
        "tiles_per_size": tiles, "runs": {rid: run_budget(tc) for rid, tc in cfg.runs.items()}, "min_steps": 200}
    fp["warnings"] = fingerprint_warnings(fp)
    target = root / paths.fingerprint_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(fp))
    return fp


def make_project(root: Path, runs: dict[str, dict[str, Any]], sizes: tuple[int, ...] = (32, 64),
                 analysis: dict[str, Any] | None = None, image_size: int = 96, baseline: float = 0.30,
                 train: dict[str, Any] | None = None) -> Path:
    """``runs``: run id -> {training overrides..., and outcome keys best/final/best_epoch/epochs_run/status/full,
    degenerate (bool), prob_std, flat_loss (bool: the training loss does not fall)}; ``baseline``: the
    threshold baseline's full-image Jaccard; ``train``: overrides of the fake train defaults."""
    root.mkdir(parents=True, exist_ok=True)
    outcome_keys = OUTCOME_KEYS
    table = {rid: {k: v for k, v in spec.items() if k not in outcome_keys} for rid, spec in runs.items()}
    params = {"tiling": {"sizes": list(sizes), "stride_fraction": 1.0}, "train": {**TRAIN_DEFAULTS, **(train or {})},
              "runs": table, "finetune": {}, "analysis": {"top_k": 5, **(analysis or {})}, "data": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    split = root / paths.split_file("val")
    split.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i in range(2):
        img, mask = disc_image(image_size, i)
        arrays[f"img__v{i}"], arrays[f"mask__v{i}"] = img, mask
    np.savez(split, **arrays)
    cfg = load_config(root / "params.yaml")
    write_baseline(root, baseline)
    write_fingerprint(root, cfg, image_size)
    masks = val_masks(root)
    for rid, spec in runs.items():
        tc = cfg.run(rid)
        best, final = spec.get("best", 0.5), spec.get("final", spec.get("best", 0.5))
        epochs_run = spec.get("epochs_run", tc.max_epochs)
        best_epoch = spec.get("best_epoch", min(epochs_run, 5))
        stop = spec.get("status", "completed" if epochs_run >= tc.max_epochs else "early_stopped")
        rows = history_rows(best, final, best_epoch, epochs_run, flat=bool(spec.get("flat_loss")),
                            steps_per_epoch=tc.steps_per_epoch)
        run_dir = root / paths.run_dir(rid)
        run_dir.mkdir(parents=True, exist_ok=True)
        (root / paths.history_file(rid)).write_text(history_csv(rows) if rows else ",".join(HISTORY_FIELDS) + "\n")
        full = spec.get("full", best * 0.95)
        steps = tc.steps_per_epoch * epochs_run
        status, reasons, causes = quality_verdict(spec, tc, full, rows, steps, stop, masks)
        metrics = {"run_id": rid, "status": status, "stop_reason": stop, "degenerate_reasons": reasons,
                   "likely_causes": causes, "prob_std": float(spec.get("prob_std", 0.2)), "sampler": tc.sampler,
                   "steps_per_epoch": tc.steps_per_epoch, "train_images": 2,
                   "best_val_jaccard": best, "final_val_jaccard": final,
                   "best_epoch": best_epoch, "epochs_run": epochs_run, "train_seconds": 1.5 * epochs_run,
                   "wall_seconds": 1.6 * epochs_run + 1, "device": "cpu", "device_name": "cpu",
                   "full_val_jaccard": full, "full_val_dice": None if full is None else 2 * full / (1 + full),
                   "bead_f1": 0.0 if status == "degenerate" else 0.8, "effective_batch_size": tc.effective_batch_size,
                   "optimizer_steps": steps, "params": tc.to_dict()}
        (root / paths.metrics_file(rid)).write_text(json.dumps(metrics))
        torch.manual_seed(len(rid))
        model = make_model(tc)
        torch.save({"format": "beadseg-model", "version": 1, "run_id": rid, "epoch": best_epoch,
                    "config": tc.to_dict(), "state_dict": model.state_dict(), "best_val_jaccard": best},
                   root / paths.model_file(rid))
    return root


def run_analysis(root: Path) -> Path:
    """aggregate -> figures -> report on a project folder; returns the report folder."""
    from beadseg.analysis.aggregate import aggregate
    from beadseg.analysis.figures import make_figures
    from beadseg.analysis.report import write_report

    cfg = load_config(root / "params.yaml")
    aggregate(cfg, root)
    make_figures(cfg, root)
    write_report(cfg, root)
    return root / paths.REPORT_DIR


DEMO_RUNS = {
    "t32_combined_lr1e-3": {"tile_size": 32, "loss": "combined", "lr": 1e-3, "best": 0.62, "final": 0.50,
                            "best_epoch": 9, "epochs_run": 10},
    "t32_dice_lr1e-3": {"tile_size": 32, "loss": "dice", "lr": 1e-3, "best": 0.55, "final": 0.54,
                        "best_epoch": 4, "epochs_run": 8},
    "t32_focal_lr1e-3": {"tile_size": 32, "loss": "focal", "lr": 1e-3, "best": 0.48, "final": 0.47,
                         "best_epoch": 5, "epochs_run": 9},
    "t32_combined_lr1e-4": {"tile_size": 32, "loss": "combined", "lr": 1e-4, "best": 0.40, "final": 0.40,
                            "best_epoch": 10, "epochs_run": 10},
    "t64_combined_lr1e-3": {"tile_size": 64, "loss": "combined", "lr": 1e-3, "best": 0.45, "final": 0.44,
                            "best_epoch": 6, "epochs_run": 10, "full": 0.41},
    "t64_dice_lr1e-3": {"tile_size": 64, "loss": "dice", "lr": 1e-3, "best": 0.35, "final": 0.30,
                        "best_epoch": 3, "epochs_run": 7, "full": 0.33},
}
