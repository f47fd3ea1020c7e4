"""Train one run of the search: the loop, early stopping, per-epoch checkpoints, resume, history.

Outputs of run ``ID`` (see :mod:`beadseg.paths`): ``model.pt`` (best weights, a self-describing model
file, :mod:`beadseg.checkpoint`), ``history.csv`` (one row per epoch) and ``train.json`` (how training
went). Scoring the model on full images is the evaluate step's job. A per-epoch checkpoint under
``results/runs/ID/resume/`` lets a killed run continue from its last finished epoch; it is removed
when the run completes.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import dataclasses
import hashlib
import io as _io
import json
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beadseg import __version__, paths
from beadseg.checkpoint import (
    CHECKPOINT_FORMAT,
    DEFAULT_THRESHOLD,
    BackgroundWriter,
    Normalization,
    host_snapshot,
    load_model_file,
    load_torch,
    make_model,
    save_model_file,
    save_torch,
)
from beadseg.config import Config, TrainConfig
from beadseg.cudagraph import GraphedStep, graph_problem
from beadseg.data.prepare import load_split, load_split_objects, load_tiles, manifest_entry, split_normalization
from beadseg.data.provenance import check_split
from beadseg.devices import DeviceLease, amp_dtype, auto_slots, lease_device, set_threads
from beadseg.errors import TrainingError
from beadseg.fsutil import json_safe, write_json, write_text
from beadseg.losses import build_loss, build_target_loss
from beadseg.metrics import dice_from_counts, jaccard_from_counts
from beadseg.profiling import note_host_read
from beadseg.runlock import run_lock
from beadseg.sampling import (
    CropSampler,
    Sampler,
    TileSampler,
    apply_symmetry,
    choose_size,
    symmetry_coefficients,
    symmetry_table,
)

CHECKPOINT_VERSION = 1
# train_jaccard: pixel Jaccard of the training batches as trained (augmented crops, dropout on, threshold 0.5),
# pooled over the epoch; val_* are on the fixed validation tiles with the model in eval mode.
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "train_jaccard", "val_jaccard", "val_dice", "lr", "seconds",
                  "optimizer_steps")


# --------------------------------------------------------------------------- building blocks


def make_loss(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The run's loss on the bead mask (channel 0) only: what validation reports and early stopping watches."""
    return build_loss(cfg.loss, dice_weight=cfg.dice_weight, focal_alpha=cfg.focal_alpha,
                      focal_gamma=cfg.focal_gamma, tversky_alpha=cfg.tversky_alpha, tversky_beta=cfg.tversky_beta,
                      boundary_weight=cfg.boundary_weight, boundary_width=cfg.boundary_width)


def make_training_loss(cfg: TrainConfig) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """What the optimizer minimises: :func:`make_loss` on the mask plus, for ``target`` mask_distance,
    ``distance_weight`` times the distance term on the second output (:func:`beadseg.losses.build_target_loss`)."""
    return build_target_loss(cfg.target, make_loss(cfg), cfg.distance_weight)


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device | None = None,
                   capturable: bool = False) -> torch.optim.Optimizer:
    """Adam / AdamW, fused (one kernel for every parameter) on CUDA and the CPU; ``capturable``: its step and
    learning rate live on the device, so a CUDA graph can replay it (the caller sets the rate in place)."""
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    extra: dict[str, Any] = {}
    if device is not None and device.type in ("cuda", "cpu"):
        extra["fused"] = True
    if capturable and device is not None:
        extra.update(capturable=True, lr=torch.tensor(cfg.lr, dtype=torch.float32, device=device))
    return kind(model.parameters(), **{"lr": cfg.lr, "weight_decay": cfg.weight_decay, **extra})


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at the start of ``epoch`` (0-based, this run's own epochs): linear
    warm-up, then constant or cosine (to ``cosine_floor`` of the base rate, 1 % by default, at the end of the
    schedule). Plateau reductions
    apply on top.

    A continuation (``epoch_offset`` > 0: a later rung of ``beadseg search``) sits at epoch
    ``epoch_offset + epoch`` of a schedule of ``schedule_length`` epochs: warm-up is not repeated and cosine
    carries on where the earlier run left it, instead of starting over."""
    epoch = epoch + cfg.epoch_offset
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    if cfg.schedule == "cosine":
        span = max(1, cfg.schedule_length - cfg.warmup_epochs)
        progress = min(1.0, (epoch - cfg.warmup_epochs) / span)
        return cfg.cosine_floor + (1 - cfg.cosine_floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def jitter(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Per-sample intensity (scale and offset) and gamma jitter of images (n, 1, S, S), seeded: static shapes,
    random numbers from ``generator`` on ``x``'s device (nothing moved from the CPU per batch)."""
    g, i = cfg.augment_gamma, cfg.augment_intensity
    if g <= 0 and i <= 0:
        return x
    u_gamma, u_scale, u_offset = torch.rand(3, x.shape[0], 1, 1, 1, generator=generator, device=x.device).unbind(0)
    if g > 0:  # gamma in [1 - g, 1 + g)
        x = x.clamp_min(0) ** u_gamma.mul(2 * g).add_(1 - g)
    if i > 0:  # scale in [1 - i, 1 + i), offset in [-i/2, i/2)
        x = torch.addcmul(u_offset.mul(i).sub_(i / 2), x, u_scale.mul(2 * i).add_(1 - i))
    return x


def augment(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample flips / 90-degree rotations (image and mask together) and intensity / gamma jitter (seeded),
    for crops already drawn. Training folds the flips and rotations into its crop gather instead
    (:func:`beadseg.sampling.window_index`: the same symmetries, drawn the same way) and only jitters here."""
    table = symmetry_table(cfg.augment_flips, cfg.augment_rot90, x.device)
    if table is not None:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"augment: crops must be square to rotate them, not {tuple(x.shape[-2:])}")
        u = torch.rand(x.shape[0], generator=generator, device=x.device)
        symmetry = table[(u * len(table)).long().clamp_max(len(table) - 1)]
        x, y = apply_symmetry(x, symmetry), apply_symmetry(y, symmetry)
    return jitter(x, cfg, generator), y


def logit_threshold(threshold: float) -> float:
    """The logit above which the probability exceeds ``threshold`` (0.5 -> 0): ``log(t / (1 - t))``."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"a probability threshold must lie strictly between 0 and 1, not {threshold}")
    return math.log(threshold / (1.0 - threshold))


VAL_BATCH_PIXELS = 32 * 256 * 256  # pixels per validation batch: 32 tiles of 256, 8 of 512


def val_batches(n_tiles: int, tile: int, train_batch: int, budget: int = VAL_BATCH_PIXELS) -> list[tuple[int, int]]:
    """(start, stop) of each validation batch: as few batches as a budget of ``budget`` pixels allows (never
    fewer tiles than the training batch), of near-equal size. On a GPU (the default budget) validation runs a
    handful of large fixed-shape batches instead of many training-sized ones; the CPU passes 0 (batches of
    the training size: measured faster there, large batches leave the caches)."""
    cap = max(train_batch, budget // (tile * tile), 1)
    count = max(1, math.ceil(n_tiles / cap))
    size = math.ceil(n_tiles / count) if n_tiles else 0
    return [(start, min(n_tiles, start + size)) for start in range(0, n_tiles, max(1, size))]


def host_values(values: torch.Tensor) -> list[float]:
    """Read a small device tensor to the host: the one place the training loop waits for the device."""
    note_host_read()
    return [float(v) for v in values.detach().to("cpu", torch.float64).tolist()]


def identity(cfg: TrainConfig, data: dict[str, Any]) -> dict[str, str]:
    """What a checkpoint was trained with, part by part (short hashes); a resume only happens when every
    part matches, and a mismatch names the parts that differ."""
    def short(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]

    inputs = data.get("inputs", {})
    parts = {"settings": short(cfg.to_dict()), "version": str(CHECKPOINT_VERSION),
             "data layout": short({k: v for k, v in data.items() if k != "inputs"})}
    parts.update({name: short(digest) for name, digest in inputs.items()})
    return parts


def fingerprint(cfg: TrainConfig, data: dict[str, Any]) -> str:
    """One hash of :func:`identity`."""
    return hashlib.sha256(json.dumps(identity(cfg, data), sort_keys=True).encode()).hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def input_digests(cfg: TrainConfig, root: Path) -> dict[str, str | None]:
    """Content identity of what a run reads, cheaply: the split's record of its raw inputs (a digest of
    every image and mask byte, made by the split), the tile manifests of the run's sizes (every tile's
    source and offset) and the bytes of the init_from model. A resume only happens when all match."""
    manifest = json.loads((root / paths.split_manifest()).read_text())
    record = manifest.get("provenance") or {}
    out: dict[str, str | None] = {"split": hashlib.sha256(json.dumps(
        [record.get("content_digest"), record.get("settings"), manifest.get("splits")], sort_keys=True).encode()
    ).hexdigest()}
    for size in cfg.tile_sizes:
        tiles = root / paths.tiles_manifest(size)
        out[f"tiles_t{size}"] = _file_sha256(tiles) if tiles.is_file() else None
    if cfg.init_from:
        out["init_from"] = _file_sha256(root / paths.model_file(cfg.init_from))
    return out


def history_csv(rows: list[dict[str, Any]]) -> str:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # .get: rows of a checkpoint written before a column existed resume with that cell empty
        writer.writerow({k: (f"{v:.6g}" if isinstance(v := row.get(k), float) else v) for k in HISTORY_FIELDS})
    return buf.getvalue()


load_checkpoint = load_torch  # tests and older callers


def peak_reserved_mb(device: torch.device) -> float | None:
    """What PyTorch's allocator held at most on a CUDA device (what other jobs could not use), else None."""
    return torch.cuda.max_memory_reserved(device) / 2**20 if device.type == "cuda" else None


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource  # not on Windows
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS: bytes; Linux: KiB


# --------------------------------------------------------------------------- GPU memory of a job

#: Card memory a CUDA process holds beyond what PyTorch's allocator reserves (context, cudnn, cuBLAS).
CUDA_CONTEXT_MB = 600.0


def memory_signature(cfg: TrainConfig) -> str:
    """What a run's GPU memory depends on; runs with the same signature have the same peak."""
    keys = ("model", "depth", "base_channels", "norm", "groups", "batch_size", "tile_size", "extra_tile_sizes",
            "amp", "channels_last", "cuda_graph")
    values = {k: cfg.to_dict().get(k, getattr(cfg, k)) for k in keys}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=list).encode()).hexdigest()[:12]


def estimated_peak_mb(cfg: TrainConfig) -> float:
    """A first guess at a run's peak GPU memory, from the tensors its forward pass saves for backward (counted
    on the meta device: no memory, no compute) at the largest tile size, plus weights, gradients and Adam's two
    moments, times 1.5 for workspaces and the allocator, plus :data:`CUDA_CONTEXT_MB`. fp32 sizes: an upper
    bound under bf16 autocast."""
    model = make_model(cfg).to("meta")
    saved = 0

    def count(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    size = max(cfg.tile_sizes)
    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t):
        model(torch.empty(cfg.batch_size, 1, size, size, device="meta"))
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 1.5 * (saved + 4 * weights) / 2**20 + CUDA_CONTEXT_MB


def measured_peak_mb(cfg: TrainConfig, root: Path) -> float | None:
    """The largest peak a finished CUDA run with the same :func:`memory_signature` recorded (train.json's
    peak_reserved_mb, plus :data:`CUDA_CONTEXT_MB`), or None."""
    signature, peaks = memory_signature(cfg), []
    for info_path in (root / paths.RUNS_DIR).glob("*/" + paths.train_info_file("x").name):
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            continue
        if info.get("memory_signature") == signature and info.get("device") == "cuda" and info.get("peak_reserved_mb"):
            peaks.append(float(info["peak_reserved_mb"]))
    return max(peaks) + CUDA_CONTEXT_MB if peaks else None


def job_memory_mb(cfg: TrainConfig, root: Path) -> tuple[float, str]:
    """The GPU memory a run needs, for packing jobs on a card: measured by an earlier run of its shape, else
    estimated (:func:`estimated_peak_mb`); and which of the two."""
    measured = measured_peak_mb(cfg, root)
    if measured is not None:
        return measured, "measured"
    return estimated_peak_mb(cfg), "estimated"


# --------------------------------------------------------------------------- the run


def _fits_on(device: torch.device, nbytes: int) -> bool:
    """Keep training data on the GPU when it takes under a quarter of the free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < 0.25 * free


@dataclass
class TileSet:
    images: torch.Tensor  # (N, 1, S, S) float16
    masks: torch.Tensor  # (N, 1, S, S) uint8

    @classmethod
    def load(cls, size: int, split: str, root: Path, device: torch.device) -> TileSet:
        images, masks = load_tiles(size, split, root)
        t_images = torch.from_numpy(np.ascontiguousarray(images))[:, None]
        t_masks = torch.from_numpy(np.ascontiguousarray(masks))[:, None]
        if _fits_on(device, t_images.nbytes + t_masks.nbytes):
            t_images, t_masks = t_images.to(device), t_masks.to(device)
        return cls(t_images, t_masks)

    def __len__(self) -> int:
        return self.images.shape[0]


def distance_targets(cfg: TrainConfig, root: Path, progress: bool = True) -> list[np.ndarray]:
    """Each training image's normalised per-bead distance map (``target`` mask_distance), in the order of
    :func:`load_split`, made from the beads the scores count: the instance labels where the masks carry them,
    else the connected components of the 0/1 mask (then touching beads stay one object, exactly as every bead
    score counts them; one line says so)."""
    from beadseg.data.io import is_instance_labels
    from beadseg.instances import true_objects
    from beadseg.targets import instance_distance

    labels = load_split_objects("train", root)
    if progress and not any(is_instance_labels(lab) for lab in labels.values()):
        print(f"train: target {cfg.target} on 0/1 masks: each connected component is one bead (touching beads stay "
              "one object, as the bead scores count them); masks with one id per bead would teach where they part",
              file=sys.stderr)
    return [instance_distance(true_objects(labels[stem])) for stem in sorted(labels)]


def build_samplers(cfg: TrainConfig, root: Path, device: torch.device,
                   progress: bool = True) -> tuple[dict[int, Sampler], dict[str, Any]]:
    """The run's training samplers (one per tile size) and a description of the data they draw from."""
    if cfg.sampler == "tiles":
        sets = {s: TileSet.load(s, "train", root, device) for s in cfg.tile_sizes}
        return ({s: TileSampler(t.images, t.masks) for s, t in sets.items()},
                {"sampler": "tiles", "train_tiles": {str(s): len(t) for s, t in sets.items()}})
    train = load_split("train", root)
    images = [image for image, _ in train.values()]
    masks = [mask for _, mask in train.values()]
    extra = distance_targets(cfg, root, progress) if cfg.target == "mask_distance" else None
    nbytes = sum(im.size * (5 if extra is None else 7) for im in images)  # float16 image, uint8 mask, float16 extra
    data_device = device if _fits_on(device, nbytes) else torch.device("cpu")
    samplers: dict[int, Sampler] = {
        s: CropSampler(images, masks, s, cfg.foreground_oversample, data_device, seed=cfg.seed, extra=extra)
        for s in cfg.tile_sizes}
    return samplers, {"sampler": "random_crop", "train_images": len(images),
                      "train_pixels": int(sum(im.size for im in images)),
                      "train_foreground_pixels": int(sum(int((m > 0).sum()) for m in masks))}


class Trainer:
    """State of one run between epochs (everything a checkpoint holds).

    The step is sync-free: batches are drawn and augmented on the device, the loss and pixel counts are
    summed there, and the host reads them once per epoch (:func:`host_values`) after training and once after
    validation. ``threshold`` is the probability at which validation counts a pixel as bead (the evaluation
    threshold); the model file records it."""

    def __init__(self, run_id: str, cfg: TrainConfig, lease: DeviceLease, root: Path, progress: bool,
                 threshold: float = DEFAULT_THRESHOLD) -> None:
        self.run_id, self.cfg, self.lease, self.root, self.progress = run_id, cfg, lease, root, progress
        self.device = lease.device
        self.threshold = float(threshold)
        self.val_logit = logit_threshold(self.threshold)
        self.channels_last = cfg.channels_last
        self.amp = amp_dtype(self.device) if cfg.amp else None
        self.train_jaccard = float("nan")  # of the last epoch trained (train_epoch sets it)
        self.samplers, self.data = build_samplers(cfg, root, self.device, progress)
        self.val_set = TileSet.load(cfg.tile_size, "val", root, self.device)
        self._prepare_validation()
        torch.manual_seed(cfg.seed)
        self.model = make_model(cfg)
        if cfg.init_from:
            self._init_from(cfg.init_from)
        self.model.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
        self.loss_fn = make_loss(cfg)  # on the mask channel: validation and the reported losses
        self.train_loss_fn = make_training_loss(cfg)
        self.graph_problem = (graph_problem(self.device, self.amp, cfg.tile_sizes) if cfg.cuda_graph
                              else "cuda_graph is off")
        self.optimizer = make_optimizer(self.model, cfg, self.device, capturable=self.graph_problem is None)
        plateau_patience = cfg.plateau_patience or max(1, cfg.patience // 3)
        self.plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, mode="max",
                                                                   factor=cfg.plateau_factor, patience=plateau_patience)
                        if cfg.schedule == "plateau" else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.history: list[dict[str, Any]] = []
        self.best_jaccard = -1.0
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0
        self.optimizer_steps = 0
        self.status = "running"
        self.first_step_at: float | None = None  # perf_counter when the host had issued the first step
        # the epoch's sums, on the device, added to in place by every step (a CUDA graph replays into them)
        self._loss_sum = torch.zeros((), device=self.device)
        self._counts = torch.zeros(3, dtype=torch.int64, device=self.device)  # tp, predicted, true
        self._graphed: GraphedStep | None = None
        self._symmetries: dict[tuple[torch.device, int], torch.Tensor | None] = {}
        self.writer = BackgroundWriter()
        self.objects = str(manifest_entry("objects", root))  # chosen once by the split, on the training masks
        self.normalization = Normalization.from_dict(split_normalization(root), str(root / paths.split_manifest()))
        data = {**self.data, "val_tiles": len(self.val_set), "normalization": self.normalization.to_dict(),
                "inputs": input_digests(cfg, root)}
        if self.threshold != DEFAULT_THRESHOLD:  # part of what a checkpoint means (it picked the best epoch)
            data["val_threshold"] = self.threshold
        self.identity = identity(cfg, data)
        self.fingerprint = fingerprint(cfg, data)

    def _prepare_validation(self) -> None:
        """Validation tiles cast once (float, channels_last, on the device when they fit) and cut into a few
        large batches (:func:`val_batches`)."""
        images, masks = self.val_set.images, self.val_set.masks
        if images.device == self.device:
            images, masks = images.float(), masks.float()
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
        self.val_batches = [(images[a:b], masks[a:b])
                            for a, b in val_batches(len(self.val_set), self.cfg.tile_size, self.cfg.batch_size,
                                                    VAL_BATCH_PIXELS if self.device.type == "cuda" else 0)]

    def _init_from(self, other: str) -> None:
        path = self.root / paths.model_file(other)
        if not path.is_file():
            raise TrainingError(f"run '{self.run_id}' starts from run '{other}', but '{path}' does not exist: "
                                f"train '{other}' first")
        state = load_model_file(path).state_dict
        try:
            self.model.load_state_dict(state)
        except RuntimeError:
            raise TrainingError(f"run '{self.run_id}': init_from '{other}' has a different architecture "
                                "(model, depth, base_channels, norm must match)") from None

    # -- checkpointing
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "beadseg_version": __version__,
            "run_id": self.run_id, "epoch": len(self.history), "fingerprint": self.fingerprint,
            "identity": self.identity,
            "cuda_rng_state": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "config": self.cfg.to_dict(), "model_state": self.model.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "plateau_state": self.plateau.state_dict() if self.plateau else {},
            "scaler_state": self.scaler.state_dict(), "history": list(self.history), "best_jaccard": self.best_jaccard,
            "best_epoch": self.best_epoch, "best_state": self.best_state or {}, "bad_epochs": self.bad_epochs,
            "optimizer_steps": self.optimizer_steps, "rng_state": torch.get_rng_state(),
        }

    def save_checkpoint(self) -> None:
        """Checkpoint and history.csv of the epochs so far, written off the training thread: the state is
        copied here (to pinned host memory without waiting, on CUDA), the files are written by
        :class:`BackgroundWriter` while the next epoch trains. Each file is replaced atomically, so a kill
        at any moment leaves the previous checkpoint or this one, and a re-run resumes from it."""
        snapshot = host_snapshot(self.state())
        history_text = history_csv(self.history)
        ckpt, history = self.root / paths.checkpoint_file(self.run_id), self.root / paths.history_file(self.run_id)

        def write() -> None:
            save_torch(ckpt, snapshot.wait())
            write_text(history, history_text)

        self.writer.submit(write)

    def try_resume(self) -> bool:
        path = self.root / paths.checkpoint_file(self.run_id)
        if not path.is_file():
            return False
        try:
            ckpt = load_torch(path)
        except Exception as exc:  # a damaged checkpoint must not block the run: start over
            print(f"train[{self.run_id}]: ignoring unreadable checkpoint {path}: {exc}", file=sys.stderr)
            return False
        if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != self.fingerprint:
            old = ckpt.get("identity") if isinstance(ckpt, dict) else None
            changed = (sorted(k for k in set(old) | set(self.identity) if old.get(k) != self.identity.get(k))
                       if isinstance(old, dict) else ["its format"])
            print(f"train[{self.run_id}]: {', '.join(changed)} changed since {path} was written; starting over",
                  file=sys.stderr)
            return False
        fresh = copy.deepcopy(self.state())
        try:
            self._restore(ckpt)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # damaged content: start over, cleanly
            self._restore(fresh)
            print(f"train[{self.run_id}]: ignoring damaged checkpoint {path} ({type(exc).__name__}: {exc}); "
                  "starting over", file=sys.stderr)
            return False
        print(f"train[{self.run_id}]: resuming after epoch {len(self.history)} from {path}", file=sys.stderr)
        return True

    def _restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        for group in self.optimizer.param_groups:  # a graphed step reads its rate from a tensor on the device
            if self.graph_problem is None:
                group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=self.device)
        if self.plateau:
            self.plateau.load_state_dict(ckpt["plateau_state"])
        if self.scaler.is_enabled() and ckpt.get("scaler_state"):  # a state written without fp16 has none
            self.scaler.load_state_dict(ckpt["scaler_state"])
        self.history = list(ckpt["history"])
        self.best_jaccard, self.best_epoch = float(ckpt["best_jaccard"]), int(ckpt["best_epoch"])
        self.best_state = ckpt["best_state"] or None
        self.bad_epochs, self.optimizer_steps = int(ckpt["bad_epochs"]), int(ckpt["optimizer_steps"])
        torch.set_rng_state(ckpt["rng_state"])
        if self.device.type == "cuda" and ckpt.get("cuda_rng_state") is not None:
            torch.cuda.set_rng_state(ckpt["cuda_rng_state"], self.device)

    # -- one epoch
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp is None:
            return contextlib.nullcontext()
        # no weight cache under a CUDA graph: cached casts would be stale on replay
        return torch.autocast(device_type="cuda", dtype=self.amp, cache_enabled=self.graph_problem is not None)

    def _batch(self, size: int, generators: dict[torch.device, torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """One augmented micro-batch on the training device (float images, channels_last; float 0/1 masks)."""
        sampler = self.samplers[size]
        key = (sampler.device, size)
        if key not in self._symmetries:  # the flips / rotations the run draws from, as gather coefficients
            table = symmetry_table(self.cfg.augment_flips, self.cfg.augment_rot90, sampler.device)
            self._symmetries[key] = symmetry_coefficients(table, size)
        x, y = sampler.draw(self.cfg.batch_size, generators[sampler.device], self._symmetries[key])
        x = jitter(x.to(self.device, non_blocking=True).float(), self.cfg, generators[self.device])
        y = y.to(self.device, non_blocking=True).float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def step_fn(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        """One optimizer step over the micro-batches ``xs``/``ys``, adding the loss and pixel counts into the
        epoch's sums in place. No host reads and no data-dependent shapes: a CUDA graph can capture it."""
        accumulation = len(xs)
        self.optimizer.zero_grad(set_to_none=True)
        for x, y in zip(xs, ys):
            with self._autocast():
                logits = self.model(x)
            loss = self.train_loss_fn(logits.float(), y)
            self.scaler.scale(loss / accumulation if accumulation > 1 else loss).backward()
            with torch.no_grad():
                self._loss_sum.add_(loss)
                pred, true = logits[:, :1] > 0, y[:, :1] > 0.5  # channel 0: the bead mask
                # sums of tp, predicted and true: fp and fn once per epoch
                self._counts.add_(torch.stack(((pred & true).sum(), pred.sum(), true.sum())))
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _step(self, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> None:
        if self.graph_problem is not None:
            self.step_fn(xs, ys)
            return
        if self._graphed is None:
            self._graphed = GraphedStep(
                self.step_fn, xs[0].shape, ys[0].shape, len(xs), self.device,
                before_capture=lambda: self.optimizer.zero_grad(set_to_none=True),
                memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        self._graphed(xs, ys)

    def graph_status(self) -> str:
        """How the steps ran: 'captured' (one CUDA graph), or why they ran eagerly."""
        if self.graph_problem is not None:
            return f"eager: {self.graph_problem}"
        if self._graphed is None or not (self._graphed.captured or self._graphed.failed):
            return "eager: too few steps to capture"
        return "captured" if self._graphed.captured else f"eager: capture failed ({self._graphed.failed})"

    def _generators(self, epoch: int) -> dict[torch.device, torch.Generator]:
        """This epoch's seeded generators, one per device that draws (data and augmentation)."""
        seed = self.cfg.seed * 1_000_003 + self.cfg.epoch_offset + epoch
        devices = {self.device} | {sampler.device for sampler in self.samplers.values()}
        return {d: torch.Generator(device=d).manual_seed(seed) for d in devices}

    def train_epoch(self, epoch: int) -> float:
        """``steps_per_epoch`` optimizer steps of ``accumulation_steps`` micro-batches each; mean loss
        (NaN when the loss stopped being finite: the run diverged). Sets ``train_jaccard``: the pooled pixel
        Jaccard of the batches it trained on. The host reads the sums once, at the end."""
        cfg = self.cfg
        self.model.train()
        # epoch_offset: a continuation draws the batches of its own epochs, not those of the first run's again
        generators = self._generators(epoch)
        host_rng = random.Random(cfg.seed * 1_000_003 + cfg.epoch_offset + epoch)  # tile size of multi-scale runs
        self._loss_sum.zero_()
        self._counts.zero_()
        for _ in range(cfg.steps_per_epoch):
            batches = [self._batch(choose_size(cfg.tile_sizes, host_rng), generators)
                       for _ in range(cfg.accumulation_steps)]
            self._step([x for x, _ in batches], [y for _, y in batches])
            self.optimizer_steps += 1
            if self.first_step_at is None:
                self.first_step_at = time.perf_counter()
        total, tp, predicted, true = host_values(torch.cat((self._loss_sum.reshape(1), self._counts.to(torch.float64))))
        if not math.isfinite(total):
            return float("nan")
        self.train_jaccard = jaccard_from_counts(int(tp), int(predicted - tp), int(true - tp))
        return total / max(1, cfg.steps_per_epoch * cfg.accumulation_steps)

    @torch.inference_mode()
    def validate(self) -> tuple[float, float, float]:
        """Loss, pixel Jaccard and Dice on the validation tiles at the run's threshold: a few large batches,
        summed on the device, read by the host once."""
        self.model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        counts = torch.zeros(3, dtype=torch.int64, device=self.device)
        n = 0
        for x, y in self.val_batches:
            if x.device != self.device:  # tiles too large to keep on the card: moved per batch
                x, y = x.to(self.device).float(), y.to(self.device).float()
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits = self.model(x)
            logits = logits.float()
            logits = logits[:, :1]  # the bead mask (a mask_distance network's distance is not validated)
            total += self.loss_fn(logits, y) * len(x)
            pred, true = logits > self.val_logit, y > 0.5
            tp = (pred & true).sum()
            counts += torch.stack((tp, pred.sum() - tp, true.sum() - tp))
            n += len(x)
        loss, tp_, fp_, fn_ = host_values(torch.cat((total.reshape(1), counts.to(torch.float64))))
        tp, fp, fn = int(tp_), int(fp_), int(fn_)
        return loss / max(1, n), jaccard_from_counts(tp, fp, fn), dice_from_counts(tp, fp, fn)

    def set_lr(self, epoch: int) -> float:
        base = self.cfg.lr * lr_factor(epoch, self.cfg)
        plateau_scale = 1.0
        if self.plateau is not None:  # ReduceLROnPlateau lowers group lr; keep its cumulative factor
            plateau_scale = self.optimizer.param_groups[0].get("plateau_scale", 1.0)
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):  # capturable (CUDA graph): changed in place
                group["lr"].fill_(base * plateau_scale)
            else:
                group["lr"] = base * plateau_scale
        return base * plateau_scale

    def _keep_best(self) -> None:
        """Copy the current weights into the device copy of the best ones (one foreach copy when it exists)."""
        current = self.model.state_dict()
        best = self.best_state
        if best is not None and best.keys() == current.keys() and all(
                b.device == c.device and b.dtype == c.dtype and b.shape == c.shape
                for b, c in zip(best.values(), current.values())):
            torch._foreach_copy_(list(best.values()), list(current.values()))
        else:
            self.best_state = {k: v.detach().clone() for k, v in current.items()}

    def fit(self) -> None:
        cfg = self.cfg
        start = len(self.history)
        try:
            self._fit_epochs(start, cfg)
        finally:
            self.writer.wait()  # the last checkpoint is on disk before anything else happens
        if self.status == "running":
            self.status = "completed"

    def _fit_epochs(self, start: int, cfg: TrainConfig) -> None:
        for epoch in range(start, cfg.max_epochs):
            t0 = time.perf_counter()
            lr = self.set_lr(epoch)
            train_loss = self.train_epoch(epoch)
            if not math.isfinite(train_loss):
                self.status = "diverged"
                print(f"train[{self.run_id}]: loss became NaN/inf in epoch {epoch + 1}: run diverged "
                      f"(lr {cfg.lr:g}); stopping it", file=sys.stderr)
                return
            val_loss, val_j, val_d = self.validate()
            if not math.isfinite(val_loss):
                self.status = "diverged"
                return
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                   "train_jaccard": self.train_jaccard, "val_jaccard": val_j,
                   "val_dice": val_d, "lr": lr, "seconds": time.perf_counter() - t0,
                   "optimizer_steps": self.optimizer_steps}
            self.history.append(row)
            if val_j > self.best_jaccard + cfg.min_delta or self.best_state is None:
                self.best_jaccard, self.best_epoch, self.bad_epochs = val_j, epoch + 1, 0
                self._keep_best()
            else:
                self.bad_epochs += 1
            if self.plateau is not None:
                before = float(self.optimizer.param_groups[0]["lr"])
                self.plateau.step(val_j)
                after = float(self.optimizer.param_groups[0]["lr"])
                if after < before:
                    for group in self.optimizer.param_groups:
                        group["plateau_scale"] = group.get("plateau_scale", 1.0) * after / before
            if self.progress:
                print(f"train[{self.run_id}]: epoch {epoch + 1}/{cfg.max_epochs} loss {train_loss:.4f} "
                      f"val_loss {val_loss:.4f} val_jaccard {val_j:.4f} (best {self.best_jaccard:.4f} @ "
                      f"{self.best_epoch}) {row['seconds']:.1f}s", file=sys.stderr, flush=True)
            self.save_checkpoint()
            if self.bad_epochs >= cfg.patience:
                self.status = "early_stopped"
                return
        self.status = "completed"


def _describe_data(data: dict[str, Any]) -> str:
    if data["sampler"] == "tiles":
        return f"tiles drawn with replacement {data['train_tiles']}"
    return f"random crops of {data['train_images']} train image(s)"


def _write_outputs(trainer: Trainer, info: dict[str, Any]) -> None:
    root, run_id = trainer.root, trainer.run_id
    state = {k: v.detach().cpu() for k, v in (trainer.best_state or trainer.model.state_dict()).items()}
    save_model_file(root / paths.model_file(run_id), run_id=run_id, config=trainer.cfg, state_dict=state,
                    normalization=trainer.normalization, epoch=trainer.best_epoch,
                    best_val_jaccard=info["best_val_jaccard"], threshold=trainer.threshold,
                    objects=trainer.objects)
    write_text(root / paths.history_file(run_id), history_csv(trainer.history))
    write_json(root / paths.train_info_file(run_id), info)


def smaller_micro_batch(cfg: TrainConfig) -> TrainConfig | None:
    """The same effective batch in smaller pieces: the largest divisor of batch_size up to half of it, with
    accumulation_steps raised to match (4 x 1 -> 2 x 2, 6 x 1 -> 3 x 2, 3 x 1 -> 1 x 3); None at batch 1."""
    if cfg.batch_size < 2:
        return None
    smaller = max(d for d in range(1, cfg.batch_size // 2 + 1) if cfg.batch_size % d == 0)
    return dataclasses.replace(cfg, batch_size=smaller,
                               accumulation_steps=cfg.accumulation_steps * cfg.batch_size // smaller)


def _fit(run_id: str, cfg: TrainConfig, lease: DeviceLease, root: Path, progress: bool,
         threads: int, threshold: float = DEFAULT_THRESHOLD) -> tuple[Trainer, bool, TrainConfig, list[dict[str, int]]]:
    """Build, resume and fit the run; on CUDA out-of-memory start over with half the micro-batch and twice
    the accumulation (same effective batch) until batch 1, recording each retry."""
    retries: list[dict[str, int]] = []
    while True:
        try:
            trainer = Trainer(run_id, cfg, lease, root, progress, threshold=threshold)
            resumed = trainer.try_resume()
            if progress:
                print(f"train[{run_id}]: {lease.name}, {_describe_data(trainer.data)} (val {len(trainer.val_set)} "
                      f"tiles), {cfg.steps_per_epoch} steps/epoch x up to {cfg.max_epochs} epochs, {threads} "
                      f"thread(s), effective batch {cfg.effective_batch_size} ({cfg.batch_size} x "
                      f"{cfg.accumulation_steps})", file=sys.stderr)
            trainer.fit()
            return trainer, resumed, cfg, retries
        except torch.cuda.OutOfMemoryError:
            smaller = smaller_micro_batch(cfg)
            if smaller is None:
                raise TrainingError(
                    f"run '{run_id}': CUDA out of memory on {lease.name} even with batch_size 1 at tile size "
                    f"{cfg.tile_size}: use a smaller tile size, fewer base_channels or a smaller depth") from None
            retries.append({"batch_size": cfg.batch_size, "accumulation_steps": cfg.accumulation_steps})
            print(f"train[{run_id}]: warning: CUDA out of memory with micro-batch {cfg.batch_size}; starting over "
                  f"with {smaller.batch_size} x {smaller.accumulation_steps} accumulation steps (same effective "
                  f"batch {cfg.effective_batch_size})", file=sys.stderr)
            trainer = None  # free its tensors before the next try
            if lease.is_cuda:
                torch.cuda.empty_cache()
            cfg = smaller


def train_run(config: Config, run_id: str, threads: int = 1, root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one run and write its model, history and train.json. Returns train.json's content.

    Refuses while another process trains or evaluates the same run (:mod:`beadseg.runlock`)."""
    config.run(run_id)
    check_split(config.data, root, step=f"train[{run_id}]")
    with run_lock(run_id, f"beadseg train --run {run_id}", root):
        return _train_run(config, run_id, threads, root, progress)


def _train_run(config: Config, run_id: str, threads: int, root: Path, progress: bool) -> dict[str, Any]:
    cfg = config.run(run_id)
    set_threads(threads)
    wall0 = time.perf_counter()
    job_mb, job_mb_source = job_memory_mb(cfg, root) if auto_slots() else (None, None)
    with lease_device(job_mb=job_mb) as lease:
        if progress and lease.slots > 1:
            print(f"train[{run_id}]: {lease.slots} of {lease.slots_per_card} slots of the card for about "
                  f"{job_mb:.0f} MB ({job_mb_source})", file=sys.stderr)
        if lease.is_cuda:
            torch.backends.cudnn.benchmark = True
            torch.cuda.reset_peak_memory_stats(lease.device)
        trainer, resumed, cfg, oom_retries = _fit(run_id, cfg, lease, root, progress, threads,
                                                  config.evaluation.threshold)
        history = trainer.history
        info: dict[str, Any] = {
            "run_id": run_id,
            "stop_reason": trainer.status,
            "best_val_jaccard": trainer.best_jaccard if trainer.best_state is not None else 0.0,
            "final_val_jaccard": history[-1]["val_jaccard"] if history else 0.0,
            "best_val_dice": max((h["val_dice"] for h in history), default=0.0),
            "best_epoch": trainer.best_epoch,
            "epochs_run": len(history),
            "optimizer_steps": trainer.optimizer_steps,
            "effective_batch_size": cfg.effective_batch_size,
            "micro_batch_size": cfg.batch_size,
            "accumulation_steps": cfg.accumulation_steps,
            "oom_retries": oom_retries,
            "resumed": resumed,
            "device": lease.device.type if not lease.fake else "cpu (fake gpu)",
            "device_name": lease.name,
            "gpu_id": lease.gpu_id,
            "threads": threads,
            "sampler": cfg.sampler,
            "steps_per_epoch": cfg.steps_per_epoch,
            "train_images": trainer.data.get("train_images"),
            "train_tiles": sum(trainer.data.get("train_tiles", {}).values()) or None,
            "val_tiles": len(trainer.val_set),
            "train_seconds": sum(h["seconds"] for h in history),
            "first_step_seconds": trainer.first_step_at - wall0 if trainer.first_step_at is not None else None,
            "val_threshold": trainer.threshold,
            "cuda_graph": trainer.graph_status(),
            "wall_seconds": time.perf_counter() - wall0,
            "peak_memory_mb": peak_memory_mb(lease.device),
            "peak_reserved_mb": peak_reserved_mb(lease.device),
            "memory_signature": memory_signature(cfg),
            "job_memory_mb": job_mb,
            "gpu_slots": lease.slots or None,
            "normalization": trainer.normalization.to_dict(),
            "objects": trainer.objects,
            "beadseg_version": __version__,
            "params": config.run(run_id).to_dict(),
        }
        info = json_safe(info)
        _write_outputs(trainer, info)
    ckpt = root / paths.checkpoint_file(run_id)
    if ckpt.exists():
        ckpt.unlink()
        with contextlib.suppress(OSError):
            ckpt.parent.rmdir()
    if progress:
        print(f"train[{run_id}]: {info['stop_reason']} after {info['epochs_run']} epochs; best val tile Jaccard "
              f"{info['best_val_jaccard']:.4f} (epoch {info['best_epoch']}); score it on full images with "
              f"`beadseg evaluate --run {run_id}`", file=sys.stderr)
    return info
