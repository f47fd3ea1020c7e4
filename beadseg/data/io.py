"""Read user data: pair images with masks by file stem, load and normalise them.

Every problem a user can cause (missing folder, unpaired file, unreadable or
multi-channel TIFF, shape mismatch) is raised as a one-line ``DataError`` that
names the file(s) involved and says what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from beadseg.errors import ConfigError, DataError
from beadseg.fsutil import atomic_path

TIFF_SUFFIXES = (".tif", ".tiff")
MASK_SUFFIXES = ("_masks", "_mask")  # longest first so "_masks" is not read as "_mask" + "s"


@dataclass(frozen=True)
class Pair:
    """One training sample: an image file and its mask file, sharing a stem."""

    stem: str
    image: Path
    mask: Path


def _is_tiff(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in TIFF_SUFFIXES


def _check_folder(folder: Path, kind: str, key: str) -> None:
    if not folder.exists():
        raise DataError(
            f"{kind} folder '{folder}' does not exist: set {key} in params.yaml "
            f"to the folder holding your {kind} TIFF files"
        )
    if not folder.is_dir():
        raise DataError(f"{kind} folder '{folder}' is not a folder: set {key} in params.yaml to a folder")


def _strip_mask_suffix(stem: str) -> str:
    lowered = stem.lower()
    for suffix in MASK_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _index(files: list[Path], kind: str, folder: Path, strip_suffix: bool) -> dict[str, Path]:
    """Map pairing key -> file; two files with the same key are an error."""
    index: dict[str, Path] = {}
    for path in sorted(files):
        key = _strip_mask_suffix(path.stem) if strip_suffix else path.stem
        if key in index:
            raise DataError(
                f"{kind} files '{index[key].name}' and '{path.name}' in '{folder}' both match "
                f"stem '{key}': keep only one of them"
            )
        index[key] = path
    return index


def _list_tiffs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if _is_tiff(p)]


def tiffs_in(folder: str | os.PathLike[str]) -> list[Path]:
    """The TIFF files directly in ``folder`` (not in subfolders; hidden files left out), sorted by name."""
    return sorted(_list_tiffs(Path(folder)))


def image_stem(path: str | os.PathLike[str]) -> str:
    """A file's name without its TIFF suffix, and without ``.ome`` for an OME-TIFF (``a.ome.tif`` -> ``a``)."""
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") and len(stem) > 4 else stem


def find_pairs(images_dir: str | os.PathLike[str], masks_dir: str | os.PathLike[str]) -> list[Pair]:
    """Pair ``.tif``/``.tiff`` images with masks by file stem; sorted by stem.

    A mask may be named like its image (``a.tif``) or carry a ``_mask``/``_masks``
    suffix (``a_mask.tif``). Images and masks may even share one folder, in which
    case only suffixed files are masks.
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    _check_folder(images_dir, "images", "data.images")
    _check_folder(masks_dir, "masks", "data.masks")

    image_files = _list_tiffs(images_dir)
    same_folder = images_dir.resolve() == masks_dir.resolve()
    if same_folder:
        mask_files = [p for p in image_files if _strip_mask_suffix(p.stem) != p.stem]
        image_files = [p for p in image_files if p not in mask_files]
    else:
        mask_files = _list_tiffs(masks_dir)

    if not image_files:
        raise DataError(
            f"no .tif/.tiff images found in images folder '{images_dir}': "
            f"put your images there or set data.images in params.yaml"
        )
    if not mask_files:
        raise DataError(
            f"no .tif/.tiff masks found in masks folder '{masks_dir}': "
            f"put one mask per image there or set data.masks in params.yaml"
        )

    images = _index(image_files, "image", images_dir, strip_suffix=False)
    masks = _index(mask_files, "mask", masks_dir, strip_suffix=True)

    missing = [stem for stem in images if stem not in masks]
    if missing:
        stem = missing[0]
        more = f" (and {len(missing) - 1} more images without masks)" if len(missing) > 1 else ""
        raise DataError(
            f"image '{images[stem]}' has no mask: expected '{masks_dir / (stem + '.tif')}' "
            f"(or {stem}_mask.tif) in masks folder '{masks_dir}'{more}"
        )
    orphans = [stem for stem in masks if stem not in images]
    if orphans:
        stem = orphans[0]
        more = f" (and {len(orphans) - 1} more masks without images)" if len(orphans) > 1 else ""
        raise DataError(
            f"mask '{masks[stem]}' has no image: expected '{images_dir / (stem + '.tif')}' "
            f"in images folder '{images_dir}'; add the image or remove the mask{more}"
        )
    return [Pair(stem=stem, image=images[stem], mask=masks[stem]) for stem in sorted(images)]


def _read_plane(path: str | os.PathLike[str], kind: str) -> np.ndarray:
    """Read one TIFF as a 2-D array, dropping singleton axes; DataError otherwise."""
    path = Path(path)
    try:
        data = np.asarray(tifffile.imread(path))
    except FileNotFoundError:
        raise DataError(f"{kind} file '{path}' does not exist") from None
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise DataError(f"cannot read {kind} '{path}' as TIFF ({type(exc).__name__}: {exc})") from None
    original_shape = data.shape
    while data.ndim > 2 and 1 in data.shape:
        data = data.squeeze(axis=data.shape.index(1))
    if data.ndim != 2:
        raise DataError(
            f"{kind} '{path}' has shape {original_shape}: only single-plane 2-D (grayscale) "
            f"images are supported; save one channel / one plane per file"
        )
    if data.dtype.kind not in "biuf":
        raise DataError(f"{kind} '{path}' has unsupported pixel type {data.dtype}: use integer or float pixels")
    return data


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a single-plane image (8/16/32-bit int or float) as float32 2-D."""
    data = _read_plane(path, "image").astype(np.float32)
    if not np.isfinite(data).all():
        raise DataError(f"image '{path}' contains NaN or infinite pixels: replace them before training")
    return data


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask as uint8 0/1: any value > 0 (label, 255, True) is bead."""
    data = _read_plane(path, "mask")
    return (data > 0).astype(np.uint8)


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask as stored (not binarised): instance label ids stay distinct; any value > 0 is bead."""
    return _read_plane(path, "mask")


def is_instance_labels(mask: np.ndarray) -> bool:
    """True when the mask holds more than one distinct bead value (> 0), i.e. one id per bead."""
    values = np.unique(np.asarray(mask))
    return int(np.count_nonzero(values > 0)) > 1


def normalize(image: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.8) -> np.ndarray:
    """Map the ``low_pct``..``high_pct`` percentiles to 0..1, clipped to [0, 1] (float32).

    Falls back to min..max when the percentiles coincide; a constant image gives zeros.
    """
    if not 0.0 <= low_pct < high_pct <= 100.0:
        raise ConfigError(
            f"normalisation percentiles low={low_pct}, high={high_pct} are invalid: need 0 <= low < high <= 100"
        )
    image = np.asarray(image, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(image, [low_pct, high_pct]))
    if hi <= lo:
        lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        return np.zeros_like(image, dtype=np.float32)
    out = (image - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def load_pair(pair: Pair, low_pct: float = 1.0, high_pct: float = 99.8,
              labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a pair: (normalised float32 image, uint8 0/1 mask) of equal shape; with ``labels`` the mask
    as stored (instance ids kept)."""
    image = read_image(pair.image)
    mask = read_labels(pair.mask) if labels else read_mask(pair.mask)
    if image.shape != mask.shape:
        raise DataError(
            f"mask '{pair.mask}' has shape {mask.shape} but image '{pair.image}' has shape "
            f"{image.shape}: masks must match their image pixel for pixel"
        )
    return normalize(image, low_pct=low_pct, high_pct=high_pct), mask


def write_tiff(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Atomically write a 2-D array as an uncompressed TIFF with no date/software metadata.

    The same array always gives byte-identical files (stable DVC hashes).
    """
    array = np.ascontiguousarray(array)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, array, photometric="minisblack", metadata=None, software=False, datetime=None
        )


# --------------------------------------------------------------------------- pixel size (calibration)

#: The unit :func:`read_pixel_size` reports for every length it can convert (U+00B5 MICRO SIGN + m).
MICRON = "\u00b5m"
#: Micrometres per unit, keyed by the lower-cased unit spelling (ImageJ's ``unit=`` or a TIFF ResolutionUnit).
_UM_PER_UNIT = {
    "\u00b5m": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0, "micrometers": 1.0, "micrometres": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "nanometers": 1e-3, "nanometres": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3, "millimeters": 1e3, "millimetres": 1e3,
    "cm": 1e4, "centimeter": 1e4, "centimetre": 1e4, "centimeters": 1e4, "centimetres": 1e4,
    "m": 1e6, "meter": 1e6, "metre": 1e6, "meters": 1e6, "metres": 1e6,
    "in": 25400.0, "inch": 25400.0, "inches": 25400.0,
    "\u00e5": 1e-4, "angstrom": 1e-4, "pm": 1e-6,  # OME's Å (lower-cased) and picometre
}
#: TIFF ResolutionUnit values -> micrometres per unit (2 inch, 3 centimetre; 4 and 5 are tifffile extensions).
_UM_PER_RESUNIT = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}
_UNCALIBRATED_UNITS = {"", "pixel", "pixels", "px"}


def _imagej_unit(value: object) -> str | None:
    """ImageJ's ``unit=`` value, with its ``\\u00B5`` escapes decoded; None when absent."""
    import re

    if value is None:
        return None
    text = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(value)).strip()
    return text or None


def _to_micron(size: float, unit: str) -> tuple[float, str] | None:
    """``(size, unit)`` in micrometres where the unit is a known length, as given otherwise; None for pixels."""
    key = unit.strip().lower()
    if key in _UNCALIBRATED_UNITS:
        return None
    if key in _UM_PER_UNIT:
        return size * _UM_PER_UNIT[key], MICRON
    return size, unit.strip()


def ome_pixel_size(ome_xml: str | None) -> tuple[float, str] | None:
    """``PhysicalSizeX`` of the first image of an OME-XML document (OME-TIFF), in micrometres where its unit is a
    length (OME's default unit is µm); None when absent, not a positive number, or in pixels."""
    import xml.etree.ElementTree as ET

    if not ome_xml:
        return None
    try:
        root = ET.fromstring(ome_xml)
    except ET.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] != "Pixels":
            continue
        try:
            size = float(element.get("PhysicalSizeX", ""))
        except ValueError:
            return None
        if not (size > 0 and np.isfinite(size)):
            return None
        return _to_micron(size, element.get("PhysicalSizeXUnit") or MICRON)
    return None


def read_pixel_size(path: str | os.PathLike[str]) -> tuple[float, str] | None:
    """The pixel size (width of one pixel) of a TIFF as ``(size, unit)``; None when the file carries none.

    An OME-TIFF's ``PhysicalSizeX`` (and ``PhysicalSizeXUnit``, µm by default) comes first. Otherwise it is read
    from the TIFF XResolution / ResolutionUnit tags (pixels per inch or centimetre, converted to
    micrometres) or, for ImageJ files (ResolutionUnit NONE), from XResolution together with ImageJ's
    ``unit=`` (``micron``, ``\\u00B5m``, ``um``, ``nm``, ...). ImageJ's ``spacing=`` is used when
    XResolution is left at its default of 1. Lengths come back in micrometres (unit ``"µm"``); an
    unknown unit is returned as written. None when there is no calibration: the default of 1 pixel per
    unit with no unit, a resolution without any unit, or ImageJ's ``pixel`` unit.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            tag = page.tags.get("XResolution")
            num, den = tag.value if tag is not None else (1, 1)  # a rational: pixels per unit = num / den
            res_unit = int(page.resolutionunit)
            imagej = tif.imagej_metadata or {}
            ome = ome_pixel_size(tif.ome_metadata) if tif.is_ome else None
    except FileNotFoundError:
        raise DataError(f"image file '{path}' does not exist") from None
    except Exception as exc:  # tifffile raises many types for corrupt files
        raise DataError(f"cannot read '{path}' as TIFF ({type(exc).__name__}: {exc})") from None
    if ome is not None:
        return ome
    valid_res = num > 0 and den > 0
    size = den / num if valid_res else None  # units per pixel, computed from the rational without rounding twice
    if res_unit in _UM_PER_RESUNIT:  # an absolute TIFF unit wins: pixels per inch / centimetre / ...
        return (size * _UM_PER_RESUNIT[res_unit], MICRON) if size is not None else None
    unit = _imagej_unit(imagej.get("unit"))
    if unit is None:
        return None  # no unit: pixels per "something" is not a physical size (1 per unit: the plain default)
    if size is not None and num != den:
        return _to_micron(size, unit)
    spacing = imagej.get("spacing")
    try:
        spacing = float(spacing) if spacing is not None else None
    except (TypeError, ValueError):
        spacing = None
    if spacing is not None and spacing > 0 and np.isfinite(spacing):
        return _to_micron(spacing, unit)
    return _to_micron(1.0, unit)


def _imagej_unit_text(unit: str) -> str:
    """A unit as ImageJ writes it in its ASCII description (``micron`` for µm, ``\\uXXXX`` escapes)."""
    if unit == MICRON:
        return "micron"
    return "".join(ch if ord(ch) < 128 else f"\\u{ord(ch):04X}" for ch in unit)


def _checked_pixel_size(path: str | os.PathLike[str], pixel_size: tuple[float, str]) -> tuple[float, str]:
    size, unit = float(pixel_size[0]), str(pixel_size[1])
    if not (size > 0 and np.isfinite(size)):
        raise DataError(f"'{path}': pixel size {size!r} is invalid; it must be a positive number")
    return size, unit


def write_calibrated_tiff(path: str | os.PathLike[str], array: np.ndarray,
                          pixel_size: tuple[float, str] | None) -> None:
    """Atomically write a 2-D array as an ImageJ-compatible TIFF carrying ``pixel_size`` (if known).

    No date or software tags, so the same array and pixel size always give byte-identical files.
    """
    array = np.ascontiguousarray(array)
    if array.ndim != 2:
        raise DataError(f"'{path}': expected a 2-D image to write, got shape {array.shape}")
    kwargs: dict[str, Any] = {"metadata": {}}
    if pixel_size is not None:
        size, unit = _checked_pixel_size(path, pixel_size)
        kwargs = {"resolution": (1.0 / size, 1.0 / size), "metadata": {"unit": _imagej_unit_text(unit)}}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, imagej=True, photometric="minisblack", software=False, datetime=None,
                         **kwargs)


#: The most beads a label image may number: the largest integer that ImageJ's 32-bit float pixels (how Fiji opens
#: a 32-bit integer TIFF) hold exactly, 2**24.
MAX_LABEL = 2**24


def write_labels_tiff(path: str | os.PathLike[str], labels: np.ndarray, pixel_size: tuple[float, str] | None) -> None:
    """Atomically write an instance label image (0 background, 1..N beads) as a uint32 TIFF that napari opens as
    a labels layer and Fiji with its calibration.

    napari's reader makes a labels layer of 32- and 64-bit integer images (16-bit ones open as images); Fiji
    reads the ImageJ description (``unit=``, display range ``min``/``max``) and the pixel size from the
    XResolution / YResolution tags (ResolutionUnit NONE), as it does for the files ImageJ itself writes. No date
    or software tags, so the same labels and pixel size always give byte-identical files. Raises DataError
    (writing nothing) for non-integer or negative labels, or more than :data:`MAX_LABEL` beads.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise DataError(f"'{path}': expected a 2-D label image to write, got shape {labels.shape}")
    if labels.dtype.kind not in "biu":
        raise DataError(f"'{path}': label images must hold integers, got {labels.dtype}")
    top = int(labels.max()) if labels.size else 0
    if top > MAX_LABEL:
        raise DataError(f"'{path}': {top} bead labels are more than a label image holds exactly in Fiji (at most "
                        f"{MAX_LABEL}): raise --min-area or --threshold, or split the image into smaller images")
    if labels.size and int(labels.min()) < 0:
        raise DataError(f"'{path}': label images cannot hold negative labels")
    description = f"ImageJ=1.11a\nimages=1\nmin=0\nmax={top}\n"
    resolution: dict[str, Any] = {}
    if pixel_size is not None:
        size, unit = _checked_pixel_size(path, pixel_size)
        description += f"unit={_imagej_unit_text(unit)}\n"
        resolution = {"resolution": (1.0 / size, 1.0 / size), "resolutionunit": 1}  # 1: NONE, as ImageJ writes
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(labels, dtype=np.uint32), photometric="minisblack",
                         description=description, metadata=None, software=False, datetime=None, **resolution)
