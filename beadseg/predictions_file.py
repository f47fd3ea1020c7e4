"""results/runs/<id>/predictions.npz: the predicted beads of one run's best model, per split and image.

The evaluate step writes it beside per_image.csv from the same labelling its scores use
(:func:`beadseg.evaluate.predicted_labels`), so the analysis can draw what a model did to an image without
running the model again. Format (``np.savez_compressed``, written atomically):

* ``labels__<split>__<stem>``: the instance label image (0 = background, beads 1..n) as uint16, or uint32
  when an image holds more than 65,535 beads;
* ``iou_thresholds``: the IoU thresholds the run was scored at (the figure matches at the first, as the
  per-image bead scores do).

A run that was not scored (diverged, never saved a model) gets a file with no images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from beadseg.errors import DataError
from beadseg.fsutil import atomic_path

_PREFIX = "labels__"


def compact(labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint16 (uint32 above 65,535 beads); negative ids are refused."""
    a = np.asarray(labels)
    if a.size and int(a.min()) < 0:
        raise ValueError("instance labels must be >= 0")
    top = int(a.max(initial=0))
    return a.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)


def write_predictions(target: Path, labels: Mapping[str, Mapping[str, np.ndarray]],
                      iou_thresholds: Sequence[float]) -> None:
    """Write ``{split: {stem: labels}}`` and the IoU thresholds to ``target`` (compressed, atomically)."""
    arrays: dict[str, Any] = {f"{_PREFIX}{split}__{stem}": compact(lab) for split, images in labels.items()
                              for stem, lab in images.items()}
    arrays["iou_thresholds"] = np.asarray(iou_thresholds, dtype=np.float64)
    with atomic_path(target) as tmp:
        np.savez_compressed(tmp, **arrays)


@dataclass(frozen=True)
class SavedPredictions:
    """What :func:`read_predictions` returns: ``labels[split][stem]`` and the run's IoU thresholds."""

    labels: dict[str, dict[str, np.ndarray]]
    iou_thresholds: tuple[float, ...]


def read_predictions(path: Path, run_id: str) -> SavedPredictions:
    """Read a predictions file; a missing or unreadable one is a DataError naming the command that writes it."""
    rerun = f"rerun `beadseg evaluate --run {run_id}`"
    if not path.is_file():
        raise DataError(f"'{path}' not found: {rerun} (it writes the predicted beads the figures draw)")
    labels: dict[str, dict[str, np.ndarray]] = {}
    try:
        with np.load(path) as npz:
            thresholds = tuple(float(t) for t in np.atleast_1d(npz["iou_thresholds"]))
            for key in npz.files:
                if key.startswith(_PREFIX):
                    split, stem = key[len(_PREFIX):].split("__", 1)
                    labels.setdefault(split, {})[stem] = npz[key]
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"'{path}' is unreadable ({type(exc).__name__}: {exc}): {rerun}") from None
    return SavedPredictions(labels, thresholds)
