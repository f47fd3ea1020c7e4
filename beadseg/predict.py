"""Segment new images with a trained run: ``beadseg predict --model results/runs/ID/model.pt --out DIR a.tif``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from beadseg.config import TrainConfig
from beadseg.data import io
from beadseg.devices import amp_dtype, lease_device, set_threads
from beadseg.errors import DataError
from beadseg.inference import predict_full
from beadseg.train import load_checkpoint, make_model


def load_model(path: Path) -> tuple[torch.nn.Module, TrainConfig]:
    """Rebuild a model from a self-describing beadseg model file (weights only, no pickled objects)."""
    if not path.is_file():
        raise DataError(f"model file '{path}' not found: train the run first (beadseg train --run ID)")
    try:
        ckpt = load_checkpoint(path)
    except Exception as exc:
        raise DataError(f"'{path}' is not a readable beadseg model file: {exc}") from None
    if ckpt.get("format") != "beadseg-model":
        raise DataError(f"'{path}' is not a beadseg model file (expected results/runs/<run id>/model.pt)")
    cfg = TrainConfig.from_dict(ckpt["config"])
    model = make_model(cfg)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), cfg


def predict_files(model_path: Path, inputs: list[Path], out_dir: Path, threshold: float = 0.5,
                  overlap: float = 0.25, threads: int = 1, low_pct: float = 1.0, high_pct: float = 99.8) -> list[Path]:
    """Write ``<stem>_mask.tif`` (uint8 0/1) and ``<stem>_prob.tif`` (float32) per input image."""
    set_threads(threads)
    model, cfg = load_model(model_path)
    written = []
    with lease_device() as lease:
        model.to(lease.device)
        for i, path in enumerate(inputs, 1):
            image = io.normalize(io.read_image(path), low_pct=low_pct, high_pct=high_pct)
            prob = predict_full(model, image, tile=cfg.tile_size, overlap=overlap, batch_size=cfg.batch_size,
                                device=lease.device, amp_dtype=amp_dtype(lease.device) if cfg.amp else None)
            stem = path.stem
            io.write_tiff(out_dir / f"{stem}_mask.tif", (prob > threshold).astype(np.uint8))
            io.write_tiff(out_dir / f"{stem}_prob.tif", prob.astype(np.float32))
            written.append(out_dir / f"{stem}_mask.tif")
            print(f"predict: {i}/{len(inputs)} {path} -> {out_dir / (stem + '_mask.tif')} "
                  f"({float((prob > threshold).mean()) * 100:.1f} % bead)", file=sys.stderr)
    return written
