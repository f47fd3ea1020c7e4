"""A tiny, real data set and config for fast training tests (seconds on a CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from beadseg.config import Config, validate
from beadseg.data.build import build_dataset


def tiny_params(**train: Any) -> dict[str, Any]:
    return {
        "data": {"source": "synthetic", "synthetic": {"n_images": 4, "size": 128, "seed": 3}, "val_fraction": 0.25},
        "tiling": {"sizes": [64, 128], "stride_fraction": 1.0},
        "train": {"depth": 3, "base_channels": 4, "batch_size": 4, "max_epochs": 3, "patience": 3, "steps_per_epoch": 3,
                  "tile_size": 64, "lr": 3e-3, **train},
        "runs": {"a": {}},
        "finetune": {},
    }


def make_tiny_project(root: Path, params: dict[str, Any] | None = None) -> Config:
    """Write the synthetic images, split and tiles under ``root``; return the validated config."""
    return build_dataset(validate(params or tiny_params()), root)
