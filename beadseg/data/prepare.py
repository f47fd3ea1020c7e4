"""Split by source image, then tile each split: the two data steps between raw TIFFs and training.

Storage: each split (train, val, test) is one ``.npz`` of normalised float16 images and uint8 masks
keyed by stem, plus int32 instance labels where the user's masks had them (full images, for fair
full-image evaluation); each tile size is one ``.npz`` per split holding
``images`` (N, S, S) float16 and ``masks`` (N, S, S) uint8, plus a ``manifest.csv`` with one row per
tile (split, source image, offset, size, foreground fraction, padded). A few large arrays load in
milliseconds, where thousands of tiny files would not.
"""

from __future__ import annotations

import csv
import io as _io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from beadseg import paths
from beadseg.config import DataConfig, TilingConfig
from beadseg.data import io
from beadseg.data.provenance import split_record
from beadseg.data.tiling import TileRecord, extract_tiles
from beadseg.errors import ConfigError, DataError
from beadseg.fsutil import atomic_path, write_json, write_text
from beadseg.instances import choose_object_method

SPLITS = ("train", "val")  # the splits cut into tiles (training and its validation)
IMAGE_SPLITS = ("train", "val", "test")  # the splits of full images (test: scored, never used to choose)


def split_stems(stems: Sequence[str], val_fraction: float, seed: int,
                test_fraction: float = 0.0) -> dict[str, list[str]]:
    """Assign whole source images to train / val / test (seeded).

    Train and val get at least one image each first; test gets ``round(n * test_fraction)`` images
    from what is left while one stays for training, so with 2 images there is no test set (the split
    manifest and REPORT.md say so). The val set is the same for every test fraction.
    """
    stems = sorted(stems)
    if len(stems) < 2:
        raise DataError(f"need at least 2 source images to split into train and val, found {len(stems)}: "
                        "add images or use the synthetic demo")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
    if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(f"data.test_fraction must be in [0, 1) with val_fraction + test_fraction < 1, got "
                          f"test_fraction {test_fraction} and val_fraction {val_fraction}")
    n_val = min(len(stems) - 1, max(1, int(round(len(stems) * val_fraction))))
    n_test = min(len(stems) - n_val - 1, int(round(len(stems) * test_fraction)))
    order = np.random.default_rng(seed).permutation(len(stems))
    val = sorted(stems[i] for i in order[:n_val])
    test = sorted(stems[i] for i in order[n_val:n_val + n_test])
    train = sorted(stems[i] for i in order[n_val + n_test:])
    return {"train": train, "val": val, "test": test}


def save_arrays(target: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Atomically write an uncompressed ``.npz``."""
    with atomic_path(target) as tmp:
        np.savez(tmp, **dict[str, Any](arrays))


def load_split(split: str, root: Path = Path(".")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{stem: (image float32, mask uint8 0/1)}`` of one split, as written by :func:`run_split`."""
    with _open_split(split, root) as npz:
        stems = sorted(k[len("img__"):] for k in npz.files if k.startswith("img__"))
        return {s: (npz[f"img__{s}"].astype(np.float32), npz[f"mask__{s}"]) for s in stems}


def load_split_objects(split: str, root: Path = Path(".")) -> dict[str, np.ndarray]:
    """``{stem: ground truth}`` for object metrics: the user's instance labels where the masks had them
    (``labels__`` arrays), else the 0/1 mask (beads are then its connected components)."""
    with _open_split(split, root) as npz:
        stems = sorted(k[len("img__"):] for k in npz.files if k.startswith("img__"))
        return {s: npz[f"labels__{s}"] if f"labels__{s}" in npz.files else npz[f"mask__{s}"] for s in stems}


def _open_split(split: str, root: Path) -> Any:
    path = root / paths.split_file(split)
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg split` first")
    return np.load(path)


def manifest_entry(key: str, root: Path = Path(".")) -> Any:
    """One entry of the split manifest (e.g. ``normalization``, ``objects``); a clear error when it is missing."""
    path = root / paths.split_manifest()
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg split` first")
    record = json.loads(path.read_text()).get(key)
    if record is None:
        raise DataError(f"'{path}' has no '{key}' record (written by an older beadseg): re-run `beadseg split`")
    return record


def split_normalization(root: Path = Path(".")) -> dict[str, Any]:
    """The intensity normalisation the split applied (as recorded in the split manifest)."""
    return manifest_entry("normalization", root)


def run_split(data: DataConfig, root: Path = Path("."), progress: bool = True) -> dict[str, list[str]]:
    """Read every image/mask pair, normalise, split by source image, write one .npz per split.

    Every pair is read and checked before the first file is written, so a bad file leaves the
    previous split untouched. Instance-label masks are kept (``labels__<stem>``) for object metrics;
    training reads the 0/1 mask (``mask__<stem>``).
    """
    pairs = io.find_pairs(root / data.images, root / data.masks)
    assignment = split_stems([p.stem for p in pairs], data.val_fraction, data.split_seed, data.test_fraction)
    by_stem = {p.stem: p for p in pairs}
    info: dict[str, dict[str, object]] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {split: {} for split in IMAGE_SPLITS}
    for split in IMAGE_SPLITS:
        for i, stem in enumerate(assignment[split], 1):
            pair = by_stem[stem]
            image, labels = io.load_pair(pair, low_pct=data.normalize_low_pct, high_pct=data.normalize_high_pct,
                                         labels=True)
            instance = io.is_instance_labels(labels)
            arrays[split][f"img__{stem}"] = image.astype(np.float16)
            arrays[split][f"mask__{stem}"] = (labels > 0).astype(np.uint8)
            if instance:
                arrays[split][f"labels__{stem}"] = labels.astype(np.int32)
            info[stem] = {"split": split, "shape": list(image.shape),
                          "foreground_fraction": round(float((labels > 0).mean()), 6),
                          "mask_kind": "instance" if instance else "binary",
                          "image": str(pair.image), "mask": str(pair.mask)}
            if progress:
                print(f"split: {split} {i}/{len(assignment[split])} {stem} {image.shape[0]}x{image.shape[1]}",
                      file=sys.stderr)
    for split in IMAGE_SPLITS:
        save_arrays(root / paths.split_file(split), arrays[split])
    train_truth = [arrays["train"].get(f"labels__{s}", arrays["train"][f"mask__{s}"]) for s in assignment["train"]]
    objects, objects_scores = choose_object_method(train_truth)
    kinds = {str(v["mask_kind"]) for v in info.values()}
    test_note = None
    if not assignment["test"]:
        test_note = ("data.test_fraction is 0" if data.test_fraction == 0 else
                     f"{len(pairs)} source images are too few for a test set (train and val need one each)")
    files = [f for p in pairs for f in (p.image, p.mask)]
    write_json(root / paths.split_manifest(), {
        "provenance": split_record(data, files),
        "splits": assignment, "images": info, "val_fraction": data.val_fraction,
        "test_fraction": data.test_fraction, "seed": data.split_seed, "test_note": test_note,
        "mask_kind": kinds.pop() if len(kinds) == 1 else "mixed",
        "objects": objects, "objects_ap50_on_train_masks": objects_scores,
        "normalization": {"method": "percentile", "low_pct": data.normalize_low_pct,
                          "high_pct": data.normalize_high_pct}})
    if test_note and progress:
        print(f"split: warning: no test set ({test_note}); every score will come from images used to choose",
              file=sys.stderr)
    return assignment


MANIFEST_FIELDS = ("split", "source", "y", "x", "size", "foreground_fraction", "padded")


def manifest_csv(records: Sequence[TileRecord]) -> str:
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_FIELDS)
    for r in records:
        writer.writerow([r.split, r.source, r.y, r.x, r.size, f"{r.foreground_fraction:.6f}", int(r.padded)])
    return buf.getvalue()


def run_tile(tiling: TilingConfig, size: int, root: Path = Path("."), progress: bool = True) -> dict[str, int]:
    """Cut every split image into ``size`` x ``size`` tiles; write tiles + manifest. Returns counts per split.

    Both splits are cut before anything is written, so a failure (e.g. no val tiles with
    ``small_images: skip``) leaves the previous tiles untouched."""
    if size not in tiling.sizes:
        raise ConfigError(f"tile size {size} is not in tiling.sizes {list(tiling.sizes)}")
    stride = tiling.stride(size)
    all_records: list[TileRecord] = []
    counts: dict[str, int] = {}
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split in SPLITS:
        images, masks = [], []
        for stem, (image, mask) in load_split(split, root).items():
            tiles, tile_masks, records = extract_tiles(image, mask, size, stride, source=stem, split=split,
                                                       policy=tiling.small_images)
            if not records:
                print(f"tile: warning: {stem} ({image.shape[0]}x{image.shape[1]}) is smaller than {size}px "
                      "and was skipped (tiling.small_images: skip)", file=sys.stderr)
            images.append(tiles)
            masks.append(tile_masks)
            all_records.extend(records)
        stacked = np.concatenate(images) if images else np.zeros((0, size, size), np.float16)
        stacked_masks = np.concatenate(masks) if masks else np.zeros((0, size, size), np.uint8)
        if len(stacked) == 0:
            raise DataError(f"no {split} tiles of size {size}: every {split} image is smaller than the tile; "
                            "use a smaller tile size or tiling.small_images: pad")
        counts[split] = len(stacked)
        outputs[split] = (stacked, stacked_masks)
    for split, (stacked, stacked_masks) in outputs.items():  # every split was cut before the first file is written
        save_arrays(root / paths.tiles_file(size, split), {"images": stacked, "masks": stacked_masks})
        if progress:
            print(f"tile: t{size} {split}: {len(stacked)} tiles (stride {stride})", file=sys.stderr)
    write_text(root / paths.tiles_manifest(size), manifest_csv(all_records))
    return counts


def load_tiles(size: int, split: str, root: Path = Path(".")) -> tuple[np.ndarray, np.ndarray]:
    """(images float16 (N,S,S), masks uint8 (N,S,S)) of one tile size and split."""
    path = root / paths.tiles_file(size, split)
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg tile --size {size}` first")
    with np.load(path) as npz:
        return npz["images"], npz["masks"]
