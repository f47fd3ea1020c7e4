"""The data set fingerprint: what the report and the user read before trusting a search.

Runs after the split. It records, from the RAW files named in ``data/split/split.json``: each
image's size, pixel type and intensity percentiles; the beads in each mask (count, foreground
fraction, equivalent diameters, how many touch another bead); per split the same pooled; how many
tiles every tile size gives per split; every run's step budget; and plain-language warnings for
settings or data that make training meaningless (:func:`fingerprint_warnings`).

Touching beads: with instance labels (each bead its own id) a bead touches another when one of its
pixels is 4-adjacent to a pixel of a different non-zero id; this is exact. A binary mask merges
touching beads into one component, so there the touching fraction is an estimate: the fraction of
components whose solidity (area / convex hull area) is below ``SOLIDITY_THRESHOLD``, i.e. clumps,
not beads. Threshold 0.9, measured on the synthetic demo (12 images of 512 px): no single bead of
921 fell below it, 87 % of the 154 merged clumps did (at 0.85 only 56 %). Components smaller than
``SOLIDITY_MIN_AREA`` px are never counted as clumps: digital disks that small have solidities
down to 0.8 on their own.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.measure import label, regionprops

from beadseg import paths
from beadseg.config import Config, TrainConfig
from beadseg.data import io
from beadseg.data.ingest import untracked_warning
from beadseg.data.io import is_instance_labels
from beadseg.data.prepare import IMAGE_SPLITS, SPLITS
from beadseg.data.tiling import SMALL_IMAGE_POLICIES, tile_origins
from beadseg.errors import ConfigError, DataError
from beadseg.fsutil import write_json
from beadseg.metrics import equivalent_diameter
from beadseg.quality import MIN_STEPS

MIN_TRAIN_IMAGES = 2
FOREGROUND_LOW = 0.001
FOREGROUND_HIGH = 0.9
SOLIDITY_THRESHOLD = 0.9
SOLIDITY_MIN_AREA = 50
PERCENTILES: tuple[float, ...] = (1.0, 50.0, 99.0, 99.8)


def _num(value: float) -> float | None:
    """A plain float, or None where it is NaN / infinite (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _pct_key(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


# --------------------------------------------------------------------------- per image


def image_stats(raw: np.ndarray) -> dict[str, Any]:
    """dtype, shape, min, max and the 1/50/99/99.8 percentiles (``p1``, ``p50``, ``p99``, ``p99_8``) of a RAW image."""
    raw = np.asarray(raw)
    values = raw.astype(np.float64, copy=False)
    out: dict[str, Any] = {"dtype": str(raw.dtype), "shape": [int(s) for s in raw.shape],
                           "min": _num(values.min()), "max": _num(values.max())}
    for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
        out[_pct_key(p)] = _num(v)
    return out


def _instance_objects(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(area, touches another label) per non-zero label id (exact, 4-adjacency)."""
    fg = labels > 0
    ids, inverse = np.unique(labels[fg], return_inverse=True)
    areas = np.bincount(inverse.ravel(), minlength=len(ids)).astype(np.int64)
    touching_ids: list[np.ndarray] = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        contact = (a > 0) & (b > 0) & (a != b)
        touching_ids.extend((a[contact], b[contact]))
    touched = np.unique(np.concatenate(touching_ids)) if touching_ids else np.zeros(0, labels.dtype)
    return areas, np.isin(ids, touched)


def _binary_objects(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(area, probably a clump of touching beads) per 4-connected component of ``mask > 0``."""
    components = label(mask > 0, connectivity=1)
    props = regionprops(components)
    areas = np.array([p.area for p in props], dtype=np.int64)
    clumps = np.array([p.area >= SOLIDITY_MIN_AREA and p.solidity < SOLIDITY_THRESHOLD for p in props], dtype=bool)
    return areas, clumps


def _objects(labels: np.ndarray, instance: bool) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"expected a 2-D mask, got shape {labels.shape}")
    return _instance_objects(labels) if instance else _binary_objects(labels)


def diameter_summary(areas: np.ndarray) -> dict[str, float | None]:
    """min / median / p95 / max equivalent diameter d = sqrt(4A/pi) in px (all None without objects)."""
    if len(areas) == 0:
        return {"min": None, "median": None, "p95": None, "max": None}
    d = equivalent_diameter(areas)
    return {"min": _num(d.min()), "median": _num(np.median(d)), "p95": _num(np.percentile(d, 95)),
            "max": _num(d.max())}


def _summarise(areas: np.ndarray, touching: np.ndarray, n_pixels: int, estimated: bool) -> dict[str, Any]:
    count = int(len(areas))
    return {
        "count": count,
        "foreground_fraction": float(areas.sum()) / n_pixels if n_pixels else 0.0,
        "diameter_px": diameter_summary(areas),
        "touching_fraction": float(touching.sum()) / count if count else None,
        "touching_estimated": estimated,
    }


def object_stats(labels: np.ndarray, instance: bool) -> dict[str, Any]:
    """Beads of one mask: count, foreground fraction, diameters, touching fraction.

    With ``instance`` every non-zero id is one bead and touching is exact; otherwise beads are the
    4-connected components of ``labels > 0`` and touching is estimated from solidity (module docstring).
    """
    areas, touching = _objects(labels, instance)
    return _summarise(areas, touching, int(np.asarray(labels).size), estimated=not instance)


# --------------------------------------------------------------------------- tiles and budgets


def tile_count(shape: Sequence[int], size: int, stride: int, small_images: str) -> int:
    """Tiles :func:`beadseg.data.tiling.extract_tiles` cuts from an image of ``shape``.

    An image smaller than the tile is reflect-padded up to it (``pad``: the origin grid of the
    padded image), or gives none (``skip``; ``error`` stops the tile step, also none).
    """
    if small_images not in SMALL_IMAGE_POLICIES:
        raise ConfigError(f"unknown small-image policy {small_images!r}; use one of: {', '.join(SMALL_IMAGE_POLICIES)}")
    height, width = int(shape[0]), int(shape[1])
    if height < size or width < size:
        if small_images != "pad":
            return 0
        height, width = max(height, size), max(width, size)
    return len(tile_origins(height, size, stride)) * len(tile_origins(width, size, stride))


def run_budget(cfg: TrainConfig) -> dict[str, Any]:
    """How much training one run can do: its tile sizes and optimizer-step bounds."""
    return {
        "tile_size": cfg.tile_size,
        "tile_sizes": list(cfg.tile_sizes),
        "steps_per_epoch": cfg.steps_per_epoch,
        "max_epochs": cfg.max_epochs,
        "patience": cfg.patience,
        "max_optimizer_steps": cfg.max_optimizer_steps,
        "min_optimizer_steps": cfg.min_optimizer_steps,
        "effective_batch_size": cfg.effective_batch_size,
        "tiles_seen_max": cfg.max_optimizer_steps * cfg.effective_batch_size,
        # a continuation (a later rung of a halving search) has trained these steps before it starts
        "steps_before": cfg.epoch_offset * cfg.steps_per_epoch,
    }


def halving_roles(cfg: Config) -> dict[str, dict[str, Any]]:
    """For a halving search: each run's rung and whether it is of the last rung (short rungs are by design)."""
    search = cfg.search
    if search is None:
        return {}
    last = len(search.budgets) - 1
    return {r: {"halving_rung": k, "halving_final": k == last} for k in range(len(search.rungs))
            for r in search.rung_runs(k)}


# --------------------------------------------------------------------------- warnings


def _runs_using(fp: Mapping[str, Any], size: int) -> list[str]:
    return [run_id for run_id, b in fp.get("runs", {}).items() if size in b.get("tile_sizes", [b.get("tile_size")])]


def _named_runs(run_ids: list[str]) -> str:
    return ("run " if len(run_ids) == 1 else "runs ") + ", ".join(run_ids)


def _foreground_warnings(fp: Mapping[str, Any]) -> list[str]:
    splits = fp.get("splits", {})
    out = []
    val = splits.get("val")
    if val is not None and val.get("n_images", 0) > 0 and not val.get("foreground_fraction"):
        out.append("the validation images have no foreground at all: every Jaccard is 0 or 1 whatever the "
                   "model does; put images with beads in the validation split (data.split_seed / data.val_fraction)")
    train = splits.get("train")
    if train is not None:
        n = train.get("n_images", 0)
        if n < MIN_TRAIN_IMAGES:
            out.append(f"only {n} training image(s): the models learn from too little to generalise; "
                       f"add images (at least {MIN_TRAIN_IMAGES} for training) or lower data.val_fraction")
        fraction = train.get("foreground_fraction")
        if n and fraction is not None and fraction < FOREGROUND_LOW:
            out.append(f"training foreground fraction is {100 * fraction:.3g} % (below {100 * FOREGROUND_LOW:g} %): "
                       "a model can score well by predicting background everywhere; check that the masks "
                       "mark the beads (value > 0)")
        elif n and fraction is not None and fraction > FOREGROUND_HIGH:
            out.append(f"training foreground fraction is {100 * fraction:.3g} % (above {100 * FOREGROUND_HIGH:g} %): "
                       "the masks are almost all foreground; check that beads are > 0 and background is 0, "
                       "not the other way round")
    return out


def _size_warnings(fp: Mapping[str, Any]) -> list[str]:
    out = []
    maxima = [s.get("diameter_px", {}).get("max") for s in fp.get("splits", {}).values()]
    maxima = [d for d in maxima if d is not None]
    run_sizes = sorted({s for b in fp.get("runs", {}).values() for s in b.get("tile_sizes", [b.get("tile_size")])})
    if maxima:
        largest = max(maxima)
        for size in run_sizes:
            if largest > size:
                out.append(f"the largest bead is {largest:.0f} px across, more than tile size {size} used by "
                           f"{_named_runs(_runs_using(fp, size))}: tiles that size never show the largest beads whole; "
                           "use larger tiles or check the mask (one huge object is often a mislabelled background)")
    shapes = [img["shape"] for img in fp.get("images", {}).values() if img.get("shape")]
    policy = fp.get("tiling", {}).get("small_images", "pad")
    for size in fp.get("tiling", {}).get("sizes", run_sizes):
        if not shapes or not all(min(int(s) for s in shape[:2]) < size for shape in shapes):
            continue
        longest = max(min(int(s) for s in shape[:2]) for shape in shapes)
        runs = _runs_using(fp, size)
        if policy == "pad":
            what = (f"{_named_runs(runs)} train on tiles mirrored at the border (image and mask alike), "
                    "so mostly on mirrored copies" if runs
                    else "no run uses it")
        elif policy == "skip":
            what = ("the tile step finds no tiles and fails (tiling.small_images: skip)"
                    + (f", so {_named_runs(runs)} get no tiles" if runs else ""))
        else:
            what = (f"the tile step stops with an error (tiling.small_images: {policy})"
                    + (f", so {_named_runs(runs)} cannot train" if runs else ""))
        out.append(f"tile size {size} is larger than every image (shorter sides at most {longest} px): {what}; "
                   f"use tile sizes of at most {longest} px in tiling.sizes and the runs")
    return out


def _step_warnings(fp: Mapping[str, Any]) -> list[str]:
    out = []
    for run_id, b in fp.get("runs", {}).items():
        if b.get("halving_rung") is not None and not b.get("halving_final"):
            continue  # a halving rung is short on purpose; its survivors train on
        steps = b.get("min_optimizer_steps")
        if steps is not None:
            steps += b.get("steps_before", 0)
        if steps is not None and steps < MIN_STEPS:
            out.append(f"run {run_id} can stop after {steps} optimizer steps: raise steps_per_epoch or patience "
                       f"(early stopping should not come before {MIN_STEPS} steps)")
    return out


def _test_warnings(fp: Mapping[str, Any]) -> list[str]:
    test = fp.get("splits", {}).get("test")
    if test is None or test.get("n_images", 0) > 0:
        return []
    why = fp.get("test_note") or "no test images"
    return [f"no held-out test set ({why}): every score comes from the validation images that chose the "
            "best epoch and the best run, so it is optimistic; set data.test_fraction (e.g. 0.2) with enough images"]


def fingerprint_warnings(fp: Mapping[str, Any]) -> list[str]:
    """One plain-language line per problem that makes training meaningless; [] when nothing is wrong.

    Reads a fingerprint as built by :func:`compute_fingerprint` (keys ``splits``, ``images``,
    ``tiling``, ``runs``); missing parts are simply not checked.
    """
    return [*_foreground_warnings(fp), *_size_warnings(fp), *_step_warnings(fp), *_test_warnings(fp)]


# --------------------------------------------------------------------------- the step


def _resolve(path: str, root: Path) -> Path:
    """A path from split.json: absolute, relative to ``root``, or (as run_split writes it) to the cwd."""
    p = Path(path)
    if p.is_absolute():
        return p
    under_root = root / p
    return under_root if under_root.exists() or not p.exists() else p


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / paths.split_manifest()
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg split` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        for split in IMAGE_SPLITS:
            for stem in manifest["splits"].get(split, []):
                missing = {"image", "mask"} - set(manifest["images"][stem])
                if missing:
                    raise KeyError(f"{stem}: {sorted(missing)}")
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"'{path}' is unreadable or incomplete ({type(exc).__name__}: {exc}): "
                        "rerun `beadseg split`") from None
    return manifest


def _read_image_and_mask(entry: Mapping[str, Any], root: Path) -> tuple[np.ndarray, np.ndarray]:
    image_path, mask_path = _resolve(entry["image"], root), _resolve(entry["mask"], root)
    raw = io._read_plane(image_path, "image")  # noqa: SLF001 - the raw plane, before float conversion
    labels = io.read_labels(mask_path)
    if raw.shape != labels.shape:
        raise DataError(f"mask '{mask_path}' has shape {labels.shape} but image '{image_path}' has shape "
                        f"{raw.shape}: masks must match their image pixel for pixel")
    return raw, labels


def _fingerprint_split(manifest: Mapping[str, Any], split: str, root: Path,
                       images: dict[str, Any]) -> dict[str, Any]:
    """Per-image entries of one split (added to ``images``) and the split's pooled object stats."""
    areas, touching, n_pixels, estimated = [], [], 0, False
    for stem in manifest["splits"].get(split, []):
        raw, labels = _read_image_and_mask(manifest["images"][stem], root)
        instance = is_instance_labels(labels)
        a, t = _objects(labels, instance)
        areas.append(a)
        touching.append(t)
        n_pixels += labels.size
        estimated |= not instance
        images[stem] = {"split": split, "shape": [int(s) for s in raw.shape], "intensity": image_stats(raw),
                        "mask_dtype": str(labels.dtype), "instance_labels": instance,
                        "objects": _summarise(a, t, labels.size, estimated=not instance)}
    pooled_areas = np.concatenate(areas) if areas else np.zeros(0, np.int64)
    pooled_touching = np.concatenate(touching) if touching else np.zeros(0, bool)
    return {"n_images": len(manifest["splits"].get(split, [])),
            **_summarise(pooled_areas, pooled_touching, n_pixels, estimated)}


def compute_fingerprint(cfg: Config, root: Path = Path(".")) -> dict[str, Any]:
    """The fingerprint of the split data set under ``root`` (JSON-able; see the module docstring)."""
    manifest = _read_manifest(root)
    images: dict[str, Any] = {}
    splits = {split: _fingerprint_split(manifest, split, root, images) for split in IMAGE_SPLITS}
    tiles = {str(size): {split: sum(tile_count(images[s]["shape"], size, cfg.tiling.stride(size),
                                               cfg.tiling.small_images) for s in manifest["splits"][split])
                         for split in SPLITS}
             for size in cfg.tiling.sizes}
    roles = halving_roles(cfg)
    fp: dict[str, Any] = {
        "images": images,
        "splits": splits,
        "tiling": {"sizes": list(cfg.tiling.sizes), "stride_fraction": cfg.tiling.stride_fraction,
                   "small_images": cfg.tiling.small_images,
                   "strides": {str(size): cfg.tiling.stride(size) for size in cfg.tiling.sizes}},
        "tiles_per_size": tiles,
        "runs": {run_id: {**run_budget(run), **roles.get(run_id, {})} for run_id, run in cfg.runs.items()},
        "test_note": manifest.get("test_note"),
        "min_steps": MIN_STEPS,
        "solidity_threshold": SOLIDITY_THRESHOLD,
    }
    fp["warnings"] = fingerprint_warnings(fp)
    untracked = untracked_warning(cfg.data, root)
    if untracked:
        fp["warnings"].append(untracked)
    return fp


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _summary_line(fp: Mapping[str, Any], target: Path) -> str:
    train, val = fp["splits"]["train"], fp["splits"]["val"]
    n_test = fp["splits"].get("test", {}).get("n_images", 0)
    n_objects = sum(s["count"] for s in fp["splits"].values())
    kind = "clumps estimated" if train["touching_estimated"] or val["touching_estimated"] else "exact"
    median = train["diameter_px"]["median"]
    median_text = f", median diameter {median:.1f} px" if median is not None else ""
    return (f"fingerprint: {train['n_images']} train / {val['n_images']} val / {n_test} test images, {n_objects} objects"
            f"{median_text}, train foreground {100 * train['foreground_fraction']:.1f} %; "
            f"touching {_pct(train['touching_fraction'])} ({kind}); {len(fp['warnings'])} warning(s); "
            f"wrote {target}")


def write_fingerprint(cfg: Config, root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Compute the fingerprint, write ``paths.fingerprint_file()``, print its warnings (always) and a summary."""
    fp = compute_fingerprint(cfg, root)
    target = root / paths.fingerprint_file()
    write_json(target, fp)
    for warning in fp["warnings"]:
        print(f"fingerprint: warning: {warning}", file=sys.stderr)
    if progress:
        print(_summary_line(fp, target), file=sys.stderr)
    return fp
