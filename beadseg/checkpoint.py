"""Model files and resume checkpoints: the one place that writes and reads what a run saves.

A **model file** (``results/runs/<id>/model.pt``) describes itself, in the spirit of nnU-Net's plans
file: the best weights, every training setting (so the architecture can be rebuilt), the intensity
normalisation the training images went through, the tile size, the decision threshold, the run id, the
epoch, the object method chosen on the training masks (``objects``) and the beadseg version.
Train (``init_from``), evaluate, predict and the analysis all load it
through :func:`load_model_file`, with ``weights_only=True`` (tensors and plain data, no pickled objects).

A **checkpoint** (``results/runs/<id>/resume/last.pt``) is the state of an unfinished run after its last
epoch; :mod:`beadseg.train` fills it and reads it back through :func:`save_torch` / :func:`load_torch`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beadseg import __version__
from beadseg.config import TrainConfig
from beadseg.errors import ConfigError, DataError
from beadseg.fsutil import atomic_path
from beadseg.models import build_model

MODEL_FORMAT = "beadseg-model"
#: Version 2 added normalisation, tile size and threshold; version 1 files lack them.
MODEL_VERSION = 2
CHECKPOINT_FORMAT = "beadseg-checkpoint"
DEFAULT_THRESHOLD = 0.5
DEFAULT_OBJECTS = "components"


@dataclass(frozen=True)
class Normalization:
    """Per-image percentile normalisation: the ``low_pct``..``high_pct`` percentiles map to 0..1."""

    low_pct: float
    high_pct: float
    method: str = "percentile"

    def apply(self, image: np.ndarray) -> np.ndarray:
        from beadseg.data.io import normalize

        return normalize(image, low_pct=self.low_pct, high_pct=self.high_pct)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "low_pct": float(self.low_pct), "high_pct": float(self.high_pct)}

    @classmethod
    def from_dict(cls, values: Any, where: str) -> Normalization:
        try:
            method = values["method"]
            low, high = float(values["low_pct"]), float(values["high_pct"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: normalisation record {values!r} is incomplete "
                            "(expected method, low_pct, high_pct)") from None
        if method != "percentile":
            raise DataError(f"{where}: unknown normalisation method {method!r} (this beadseg knows 'percentile')")
        return cls(low_pct=low, high_pct=high)


def make_model(cfg: TrainConfig) -> torch.nn.Module:
    """An untrained network with the architecture settings of ``cfg``."""
    from beadseg.targets import channels

    return build_model(cfg.model, depth=cfg.depth, base_channels=cfg.base_channels, dropout=cfg.dropout,
                       norm=cfg.norm, groups=cfg.groups, out_channels=channels(cfg.target))


def save_torch(path: Path, payload: dict[str, Any]) -> None:
    """Write a dict of tensors and plain data atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


class HostSnapshot:
    """A copy of a nested state (dicts, lists, tensors, plain data) in host memory, made without waiting for
    the device: CUDA tensors are copied to pinned memory asynchronously, and :meth:`wait` (called by the
    writer thread) waits for those copies only. CPU tensors are cloned at once."""

    def __init__(self, value: Any) -> None:
        self._event: Any = None
        self.value = self._copy(value)
        if self._event is not None:
            self._event.record()

    def _copy(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if value.device.type == "cuda":
                out = torch.empty(value.shape, dtype=value.dtype, device="cpu", pin_memory=True)
                out.copy_(value.detach(), non_blocking=True)
                if self._event is None:
                    self._event = torch.cuda.Event()
                return out
            return value.detach().to("cpu", copy=True)
        if isinstance(value, dict):
            return {k: self._copy(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._copy(v) for v in value)
        return value

    def wait(self) -> Any:
        if self._event is not None:
            self._event.synchronize()
        return self.value


def host_snapshot(value: Any) -> HostSnapshot:
    """See :class:`HostSnapshot`."""
    return HostSnapshot(value)


class BackgroundWriter:
    """Runs write jobs off the calling thread, one at a time and in order: :meth:`submit` first waits for
    the previous job (normally long finished), :meth:`wait` for the last; a job's exception is raised there,
    in the calling thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name="beadseg-checkpoint")
        self._thread.start()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as exc:  # handed to the training thread by wait()
            self._error = exc

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def load_torch(path: Path) -> dict[str, Any]:
    """Load a beadseg checkpoint or model file safely (tensors and plain data only)."""
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: everything needed to predict new images the way the run was trained."""

    path: Path
    run_id: str
    config: TrainConfig
    state_dict: dict[str, torch.Tensor]
    normalization: Normalization
    tile_size: int
    threshold: float
    objects: str
    epoch: int
    best_val_jaccard: float | None
    beadseg_version: str

    def build(self) -> torch.nn.Module:
        """The network with the trained weights, in eval mode, on the CPU."""
        model = make_model(self.config)
        model.load_state_dict(self.state_dict)
        return model.eval()


def save_model_file(path: Path, *, run_id: str, config: TrainConfig, state_dict: dict[str, torch.Tensor],
                    normalization: Normalization, epoch: int, best_val_jaccard: float | None,
                    threshold: float = DEFAULT_THRESHOLD, objects: str = DEFAULT_OBJECTS) -> None:
    """Write a self-describing model file (see the module docstring)."""
    save_torch(path, {
        "format": MODEL_FORMAT, "version": MODEL_VERSION, "beadseg_version": __version__, "run_id": run_id,
        "epoch": int(epoch), "config": config.to_dict(), "state_dict": state_dict,
        "normalization": normalization.to_dict(), "tile_size": int(config.tile_size), "threshold": float(threshold),
        "objects": objects,
        "best_val_jaccard": best_val_jaccard,
    })


def load_model_file(path: Path) -> ModelFile:
    """Read a model file written by :func:`save_model_file`; every problem is one clear DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file '{path}' not found: train the run first (beadseg train --run ID)")
    try:
        raw = load_torch(path)
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise DataError(f"'{path}' is not a readable beadseg model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
        raise DataError(f"'{path}' is not a beadseg model file (expected results/runs/<run id>/model.pt)")
    version = raw.get("version")
    if version != MODEL_VERSION:
        rid = raw.get("run_id", "ID")
        raise DataError(f"'{path}' is a format-{version} model file; this beadseg ({__version__}) reads format "
                        f"{MODEL_VERSION} (it carries the normalisation and tile size): retrain it with "
                        f"`beadseg train --run {rid}` (or `snakemake --forcerun train`)")
    try:
        config = TrainConfig.from_dict(raw["config"])
    except (ConfigError, KeyError) as exc:
        raise DataError(f"'{path}': its training settings do not fit this beadseg ({exc}): retrain the run") from None
    return ModelFile(path=path, run_id=str(raw["run_id"]), config=config, state_dict=raw["state_dict"],
                     normalization=Normalization.from_dict(raw.get("normalization"), str(path)),
                     tile_size=int(raw["tile_size"]), threshold=float(raw["threshold"]),
                     objects=str(raw.get("objects") or DEFAULT_OBJECTS), epoch=int(raw["epoch"]),
                     best_val_jaccard=raw.get("best_val_jaccard"), beadseg_version=str(raw["beadseg_version"]))
