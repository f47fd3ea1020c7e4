"""The data steps in one call (synth, split, tile), in process: for tests, benchmarks and notebooks."""

from __future__ import annotations

from pathlib import Path

from beadseg.config import Config
from beadseg.data.prepare import run_split, run_tile
from beadseg.data.synth import write_dataset
from beadseg.errors import ConfigError


def build_dataset(cfg: Config, root: Path, progress: bool = False) -> Config:
    """Write the synthetic images (``data.source: synthetic``), the split and every tile size under ``root``.

    The same files `beadseg synth`, `beadseg split` and `beadseg tile --size N` write, without a workflow
    engine; returns ``cfg`` for chaining."""
    if cfg.data.source == "synthetic":
        syn = cfg.data.synthetic
        write_dataset(root / cfg.data.images, root / cfg.data.masks, n_images=syn.n_images, size=syn.size,
                      seed=syn.seed, progress=progress, instance_labels=syn.instance_labels)
    elif not (root / cfg.data.images).is_dir():
        raise ConfigError(f"data.images '{cfg.data.images}' is not a folder under {root}")
    run_split(cfg.data, root=root, progress=progress)
    for size in cfg.tiling.sizes:
        run_tile(cfg.tiling, size, root=root, progress=progress)
    return cfg
