"""A tiny, real data set and config for fast training tests (seconds on a CPU)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

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


def tiny_project_with_params(root: Path) -> Path:
    """make_tiny_project plus the params.yaml it was made from, so `beadseg` commands run in ``root``."""
    make_tiny_project(root)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return root


def run_beadseg(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`beadseg -q ARGS` as a process in ``root`` (not checked: tests look at the exit code and stderr)."""
    return subprocess.run([sys.executable, "-m", "beadseg", "-q", *args], cwd=root, capture_output=True, text=True,
                          timeout=300, check=False)
