"""Builders of small fake search projects for the analysis tests (no tests here).

A fake project has params.yaml, data/split/val.npz (two small images of discs) and, per run,
results/runs/<id>/{metrics.json, history.csv, model.pt} with made-up but consistent numbers and a
real (untrained, seeded) tiny U-Net, so every analysis step runs on it in well under a second.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from beadseg import paths
from beadseg.config import load_config
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


def history_rows(best: float, final: float, best_epoch: int, epochs_run: int) -> list[dict[str, Any]]:
    rows = []
    for e in range(1, epochs_run + 1):
        if e <= best_epoch:
            j = best * e / best_epoch
        else:
            j = best + (final - best) * (e - best_epoch) / max(1, epochs_run - best_epoch)
        rows.append({"epoch": e, "train_loss": 1.0 / (1 + e), "val_loss": 1.1 / (1 + e) + 0.01 * max(0, e - best_epoch),
                     "val_jaccard": float(j), "val_dice": float(2 * j / (1 + j)), "lr": 1e-3, "seconds": 1.5,
                     "optimizer_steps": 10 * e})
    return rows


def make_project(root: Path, runs: dict[str, dict[str, Any]], sizes: tuple[int, ...] = (32, 64),
                 analysis: dict[str, Any] | None = None, image_size: int = 96) -> Path:
    """``runs``: run id -> {training overrides..., and outcome keys best/final/best_epoch/epochs_run/status/full}."""
    root.mkdir(parents=True, exist_ok=True)
    outcome_keys = {"best", "final", "best_epoch", "epochs_run", "status", "full"}
    table = {rid: {k: v for k, v in spec.items() if k not in outcome_keys} for rid, spec in runs.items()}
    params = {"tiling": {"sizes": list(sizes), "stride_fraction": 1.0}, "train": dict(TRAIN_DEFAULTS),
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
    for rid, spec in runs.items():
        tc = cfg.run(rid)
        best, final = spec.get("best", 0.5), spec.get("final", spec.get("best", 0.5))
        epochs_run = spec.get("epochs_run", tc.max_epochs)
        best_epoch = spec.get("best_epoch", min(epochs_run, 5))
        status = spec.get("status", "completed" if epochs_run >= tc.max_epochs else "early_stopped")
        rows = history_rows(best, final, best_epoch, epochs_run)
        run_dir = root / paths.run_dir(rid)
        run_dir.mkdir(parents=True, exist_ok=True)
        (root / paths.history_file(rid)).write_text(history_csv(rows) if rows else ",".join(HISTORY_FIELDS) + "\n")
        full = spec.get("full", best * 0.95)
        metrics = {"run_id": rid, "status": status, "best_val_jaccard": best, "final_val_jaccard": final,
                   "best_epoch": best_epoch, "epochs_run": epochs_run, "train_seconds": 1.5 * epochs_run,
                   "wall_seconds": 1.6 * epochs_run + 1, "device": "cpu", "device_name": "cpu",
                   "full_val_jaccard": full, "full_val_dice": None if full is None else 2 * full / (1 + full),
                   "bead_f1": 0.8, "effective_batch_size": tc.effective_batch_size,
                   "optimizer_steps": 10 * epochs_run, "params": tc.to_dict()}
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
