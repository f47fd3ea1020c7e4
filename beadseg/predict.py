"""Segment new images with a trained run: ``beadseg predict --run ID --out DIR a.tif b.tif``.

Every image is normalised the way the run's training images were (the percentiles stored in the
model file), predicted by stitched sliding-window inference, thresholded and split into beads exactly as
the evaluate step scored the run (threshold, object method and smallest bead from the run's
``evaluation.json``, see :mod:`beadseg.scoring`; the model file's own before the run is evaluated), each
overridable with ``--threshold``, ``--objects`` and ``--min-area``. Per input ``<stem>.tif`` the output folder receives

* ``<stem>_labels.tif``: uint32 instance labels (0 background, 1..N beads) that napari opens as a labels layer
  and Fiji with the input's pixel size (``<stem>`` drops ``.ome`` of an OME-TIFF);
* ``<stem>_prob.tif``: float32 bead probability, same pixel size;
* ``<stem>_beads.csv``: one row per bead (see :data:`BEAD_COLUMNS`);

and ``summary.csv`` holds one row per image (see :data:`SUMMARY_COLUMNS`). Every file is written
atomically. Nothing is written before every input has been checked (exists, a readable 2-D TIFF, no
two inputs sharing a stem) and the model file has been read.
"""

from __future__ import annotations

import csv
import io as _stringio
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from beadseg.checkpoint import ModelFile, load_model_file
from beadseg.data import io
from beadseg.devices import amp_dtype, lease_device, set_threads
from beadseg.errors import ConfigError, DataError
from beadseg.fsutil import write_text
from beadseg.inference import predict_full
from beadseg.scoring import OBJECT_METHODS, for_prediction, label_prediction
from beadseg.system import available_cores

SUMMARY_NAME = "summary.csv"
BEAD_COLUMNS = ("label", "centroid_y", "centroid_x", "area_px", "equivalent_diameter_px", "equivalent_diameter_um",
                "mean_intensity", "area_um2")
SUMMARY_COLUMNS = ("image", "n_beads", "bead_area_fraction", "mean_equivalent_diameter_px",
                   "median_equivalent_diameter_px", "mean_equivalent_diameter_um", "median_equivalent_diameter_um",
                   "pixel_size", "unit", "threshold", "objects", "min_area", "seed_distance", "core", "model_run_id",
                   "model_file")


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """The files written for an input of stem ``stem``."""
    return {"labels": out_dir / f"{stem}_labels.tif", "prob": out_dir / f"{stem}_prob.tif",
            "beads": out_dir / f"{stem}_beads.csv"}


# --------------------------------------------------------------------------- checks (before any output)
def expand_folders(inputs: Sequence[Path], out_dir: Path) -> list[Path]:
    """Inputs with every folder replaced by the TIFFs directly in it (sorted by name; when the folder is the output
    folder, this command's own ``*_labels.tif`` / ``*_prob.tif`` left out). A folder without TIFFs is an error."""
    out: list[Path] = []
    for path in inputs:
        if not path.is_dir():
            out.append(path)
            continue
        mine = path.resolve() == out_dir.resolve()
        found = [p for p in io.tiffs_in(path)
                 if not (mine and p.name.lower().endswith(("_labels.tif", "_prob.tif")))]
        if not found:
            raise DataError(f"input folder '{path}' holds no .tif/.tiff images: name a folder of TIFFs, or the files")
        out.extend(found)
    return out


def check_inputs(inputs: Sequence[Path], out_dir: Path) -> list[Path]:
    """Refuse, with one DataError, what would fail or overwrite something; return the inputs as Paths.

    Checks names only (existence, TIFF suffix, colliding stems, outputs that would replace an input,
    an output folder that is a file); :func:`predict_files` then reads every image before writing.
    """
    inputs = expand_folders([Path(p) for p in inputs], out_dir)
    if not inputs:
        raise DataError("no input images given: name one or more TIFF files or folders")
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"output folder '{out_dir}' is an existing file: give --out a folder (new or existing)")
    for path in inputs:
        if not path.exists():
            raise DataError(f"input image '{path}' does not exist")
        if not path.is_file():
            raise DataError(f"input '{path}' is not a file: name TIFF images (a folder's images: DIR/*.tif)")
        if path.suffix.lower() not in io.TIFF_SUFFIXES:
            raise DataError(f"input '{path}' is not a TIFF (.tif/.tiff): convert it to a single-plane TIFF first")
    seen: dict[str, Path] = {}
    for path in inputs:
        key = io.image_stem(path).casefold()  # case-folded: X.tif and x.tif would share outputs on macOS / Windows
        if key in seen:
            first = seen[key]
            same = first.resolve() == path.resolve()
            why = "is given twice" if same else f"share the stem '{io.image_stem(path)}'"
            raise DataError(f"inputs '{first}' and '{path}' {why}: their outputs ({io.image_stem(path)}_labels.tif, ...) "
                            f"would overwrite each other in '{out_dir}'; rename one or predict them into "
                            "different --out folders")
        seen[key] = path
    resolved_inputs = {p.resolve(): p for p in inputs}
    for path in inputs:
        for out in output_paths(out_dir, io.image_stem(path)).values():
            clash = resolved_inputs.get(out.resolve())
            if clash is not None:
                raise DataError(f"predicting '{path}' would overwrite input '{clash}' (as '{out}'): "
                                "choose another --out folder")
    return inputs


def _check_options(threshold: float, objects: str, min_area: int, overlap: float) -> None:
    if not (isinstance(threshold, (int, float)) and 0.0 < float(threshold) < 1.0):
        raise ConfigError(f"threshold {threshold!r} is invalid: use a probability between 0 and 1 (exclusive)")
    if objects not in OBJECT_METHODS:
        raise ConfigError(f"objects method {objects!r} is unknown: use one of {', '.join(OBJECT_METHODS)}")
    if isinstance(min_area, bool) or not isinstance(min_area, (int, np.integer)) or min_area < 0:
        raise ConfigError(f"min area {min_area!r} is invalid: use a whole number of pixels >= 0")
    if not (isinstance(overlap, (int, float)) and 0.0 <= float(overlap) <= 0.9):
        raise ConfigError(f"overlap {overlap!r} is invalid: use a fraction between 0 and 0.9")


# --------------------------------------------------------------------------- per-image results
def _cell(value: Any) -> Any:
    """A CSV cell: None / NaN become empty, numpy scalars plain Python numbers."""
    if value is None:
        return ""
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return "" if not math.isfinite(value) else value
    if isinstance(value, np.integer):
        return int(value)
    return value


def _csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = _stringio.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def _micron_size(pixel_size: tuple[float, str] | None) -> float | None:
    """The pixel size in micrometres, or None when unknown or in a unit that is not a length."""
    if pixel_size is None or pixel_size[1] != io.MICRON:
        return None
    return float(pixel_size[0])


def bead_table(labels: np.ndarray, raw: np.ndarray, pixel_size: tuple[float, str] | None) -> list[dict[str, Any]]:
    """One row per bead of ``labels`` (regionprops of the label image; intensity of the raw image)."""
    from skimage.measure import regionprops_table

    props = regionprops_table(labels, intensity_image=raw,
                              properties=("label", "centroid", "area", "equivalent_diameter_area", "intensity_mean"))
    um = _micron_size(pixel_size)
    rows = []
    for i in range(len(props["label"])):
        d_px = float(props["equivalent_diameter_area"][i])
        area = round(float(props["area"][i]))
        rows.append({
            "label": int(props["label"][i]), "centroid_y": float(props["centroid-0"][i]),
            "centroid_x": float(props["centroid-1"][i]), "area_px": area, "equivalent_diameter_px": d_px,
            "equivalent_diameter_um": d_px * um if um is not None else None,
            "mean_intensity": float(props["intensity_mean"][i]),
            "area_um2": area * um * um if um is not None else None,
        })
    return rows


def summary_row(path: Path, labels: np.ndarray, beads: list[dict[str, Any]], pixel_size: tuple[float, str] | None,
                threshold: float, objects: str, min_area: int, model: ModelFile) -> dict[str, Any]:
    """The summary.csv row of one image."""
    d_px = np.array([b["equivalent_diameter_px"] for b in beads], dtype=np.float64)
    um = _micron_size(pixel_size)
    mean_px = float(d_px.mean()) if d_px.size else None
    median_px = float(np.median(d_px)) if d_px.size else None
    return {
        "image": str(path), "n_beads": len(beads),
        "bead_area_fraction": float(np.count_nonzero(labels)) / labels.size if labels.size else 0.0,
        "mean_equivalent_diameter_px": mean_px, "median_equivalent_diameter_px": median_px,
        "mean_equivalent_diameter_um": mean_px * um if um is not None and mean_px is not None else None,
        "median_equivalent_diameter_um": median_px * um if um is not None and median_px is not None else None,
        "pixel_size": pixel_size[0] if pixel_size else None, "unit": pixel_size[1] if pixel_size else None,
        "threshold": float(threshold), "objects": objects, "min_area": int(min_area),
        "model_run_id": model.run_id, "model_file": str(model.path),
    }


# --------------------------------------------------------------------------- progress
class _Progress:
    """A ``\\r``-updated bar on a terminal, one plain line per image otherwise, nothing when quiet."""

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.bar = bool(enabled and isatty is not None and isatty())
        self.width = 0

    def update(self, done: int, path: Path, row: dict[str, Any], labels_path: Path) -> None:
        if not self.enabled:
            return
        if self.bar:
            filled = round(24 * done / self.total)
            line = (f"predict [{'#' * filled}{'.' * (24 - filled)}] {done}/{self.total} {path.name}: "
                    f"{row['n_beads']} beads")
            self.stream.write("\r" + line.ljust(self.width))
            self.width = max(self.width, len(line))
            if done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(f"predict: {done}/{self.total} {path} -> {labels_path} ({row['n_beads']} beads, "
                              f"{row['bead_area_fraction'] * 100:.1f} % bead)\n")
        self.stream.flush()

    def abort(self) -> None:
        """End a half-drawn bar so an error message starts on its own line."""
        if self.bar and self.width:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- the command
def predict_files(model_path: Path, inputs: Sequence[Path], out_dir: Path, *, threshold: float | None = None,
                  objects: str | None = None, min_area: int | None = None, overlap: float = 0.25, threads: int = 0,
                  progress: bool = True) -> list[dict[str, Any]]:
    """Segment ``inputs`` with the model file ``model_path`` into ``out_dir``; return the summary rows.

    ``threshold``, ``objects`` and ``min_area`` None use what the run was scored with
    (:func:`beadseg.scoring.for_prediction`); ``threads`` 0 uses every available core.
    Raises DataError / ConfigError, before writing anything, for bad inputs, options or model files.
    """
    out_dir = Path(out_dir)
    inputs = check_inputs(inputs, out_dir)
    model_file = load_model_file(Path(model_path))
    scored = for_prediction(model_file)
    threshold = scored.threshold if threshold is None else threshold
    objects = scored.objects if objects is None else objects
    min_area = scored.min_area if min_area is None else min_area
    _check_options(threshold, objects, min_area, overlap)
    pixel_sizes = {}
    for path in inputs:  # every image must be readable before the first output is written
        io.read_image(path)
        pixel_sizes[path] = io.read_pixel_size(path)


    set_threads(threads if threads and threads > 0 else available_cores())
    cfg = model_file.config
    model = model_file.build()
    rows: list[dict[str, Any]] = []
    bar = _Progress(len(inputs), progress)
    try:
        with lease_device() as lease:
            cuda = lease.device.type == "cuda"
            channels_last = bool(cfg.channels_last and cuda)
            model.to(lease.device)
            if channels_last:
                model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # missing from torch's stubs
            for i, path in enumerate(inputs, 1):
                raw = io.read_image(path)
                maps = predict_full(model, model_file.normalization.apply(raw), tile=model_file.tile_size,
                                    overlap=overlap, batch_size=max(1, cfg.batch_size), device=lease.device,
                                    amp_dtype=amp_dtype(lease.device) if cfg.amp else None,
                                    channels_last=channels_last, all_channels=True)
                prob = maps[0]  # the bead probability; a mask_distance network's distance is maps[1]
                labels = label_prediction(maps if maps.shape[0] > 1 else prob, threshold, objects, int(min_area),
                                          scored.seed_distance, scored.core)
                n = int(labels.max(initial=0))
                if n > io.MAX_LABEL:
                    raise DataError(f"'{path}' gives {n} beads, more than a label image holds exactly in Fiji "
                                    f"({io.MAX_LABEL}); its outputs were not written (earlier images' were): "
                                    "raise --min-area or --threshold, or split the image into smaller images")
                pixel_size = pixel_sizes[path]
                beads = bead_table(labels, raw, pixel_size)
                row = summary_row(path, labels, beads, pixel_size, threshold, objects, int(min_area), model_file)
                row["seed_distance"] = scored.seed_distance if objects == "watershed" else None
                row["core"] = scored.core if objects == "distance" else None
                outs = output_paths(out_dir, io.image_stem(path))
                io.write_labels_tiff(outs["labels"], labels, pixel_size)
                io.write_calibrated_tiff(outs["prob"], prob.astype(np.float32, copy=False), pixel_size)
                write_text(outs["beads"], _csv_text(BEAD_COLUMNS, beads))
                rows.append(row)
                write_text(out_dir / SUMMARY_NAME, _csv_text(SUMMARY_COLUMNS, rows))  # kept current per image
                bar.update(i, path, row, outs["labels"])
    except BaseException:
        bar.abort()
        raise
    if progress:
        total = sum(r["n_beads"] for r in rows)
        print(f"predict: {len(rows)} image(s), {total} beads (model {model_file.run_id}, threshold {threshold:g}, "
              f"{objects}, min area {min_area} px; defaults from {scored.source}) -> {out_dir / SUMMARY_NAME}",
              file=sys.stderr)
    return rows
