"""What the split was made from, and the check every later step makes against the current params.yaml.

``beadseg split`` records in ``data/split/split.json`` (key ``provenance``): the data source, the image
and mask folders, every data setting, and two fingerprints of the input files:

* ``signature``: a hash of each file's name, size and modification time (cheap: no file is read);
* ``content_digest``: a SHA-256 of every file's bytes (read once, by the split).

Tile, train, evaluate and the baseline call :func:`check_split` first. It refuses, naming the step to
re-run, when the split was made with other data settings than params.yaml has now (another folder, other
fractions, seed or normalisation), and, where the input folders are readable, when their files changed
since the split. The content digest is only recomputed when the cheap signature differs, so files
rewritten with the same bytes (``dvc checkout``, ``dvc pull``, a copy) pass without a false alarm.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from beadseg import paths
from beadseg.config import DataConfig
from beadseg.errors import DataError

RERUN_SPLIT = "re-run the split (`beadseg split`; Snakemake: `snakemake --forcerun split`; DVC: `dvc repro split`)"


def data_settings(data: DataConfig) -> dict[str, Any]:
    """Every data setting as plain JSON data (what the split is made from)."""
    return json.loads(json.dumps(dataclasses.asdict(data)))


def _files(paths_: Iterable[Path]) -> list[Path]:
    return sorted({Path(p) for p in paths_}, key=lambda p: (p.name, str(p)))


def signature(files: Iterable[Path]) -> str:
    """Hash of (name, size, mtime in ns) of every file: changes when a file is replaced, touched or renamed."""
    h = hashlib.sha256()
    for p in _files(files):
        st = p.stat()
        h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def content_digest(files: Iterable[Path], chunk: int = 1 << 20) -> str:
    """SHA-256 over the names and bytes of every file (sorted by name)."""
    h = hashlib.sha256()
    for p in _files(files):
        h.update(f"{p.name}\0".encode())
        with open(p, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def split_record(data: DataConfig, files: Iterable[Path]) -> dict[str, Any]:
    """The provenance record of a split made from ``files`` with ``data``."""
    files = _files(files)
    return {"source": data.source, "images": data.images, "masks": data.masks, "settings": data_settings(data),
            "n_files": len(files), "signature": signature(files), "content_digest": content_digest(files)}


def _input_files(data: DataConfig, root: Path) -> list[Path] | None:
    """The image and mask files the split would read now (None when a folder is missing)."""
    from beadseg.data.io import find_pairs

    try:
        pairs = find_pairs(root / data.images, root / data.masks)
    except DataError:
        return None
    return [f for p in pairs for f in (p.image, p.mask)]


def _differences(recorded: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "data") -> list[str]:
    out = []
    for key in sorted(set(recorded) | set(current)):
        a, b = recorded.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}.{key}")
        elif a != b:
            out.append(f"{prefix}.{key} {a!r} -> {b!r}")
    return out


def check_split(data: DataConfig, root: Path = Path("."), step: str = "this step", verify_files: bool = True) -> None:
    """Refuse (DataError) a split made from other data than ``data`` names; see the module docstring."""
    path = root / paths.split_manifest()
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `beadseg split` first")
    try:
        record = json.loads(path.read_text(encoding="utf-8")).get("provenance")
    except ValueError:
        raise DataError(f"'{path}' is unreadable: {RERUN_SPLIT}") from None
    if not isinstance(record, Mapping):
        raise DataError(f"'{path}' does not say what it was made from (written by an older beadseg): {RERUN_SPLIT}")
    changed = _differences(record.get("settings", {}), data_settings(data))
    if changed:
        raise DataError(f"{step}: the split in {path.parent} was made with other data settings than params.yaml has "
                        f"now ({'; '.join(changed[:4])}{'; ...' if len(changed) > 4 else ''}): {RERUN_SPLIT}")
    if not verify_files:
        return
    files = _input_files(data, root)
    if files is None:
        print(f"{step}: warning: cannot read {data.images} / {data.masks} to check they are what the split was "
              "made from; going on with the split as it is", file=sys.stderr)
        return
    if len(files) == record.get("n_files") and signature(files) == record.get("signature"):
        return
    if len(files) != record.get("n_files") or content_digest(files) != record.get("content_digest"):
        raise DataError(f"{step}: the files in {data.images} / {data.masks} changed since the split was made "
                        f"({record.get('n_files')} files then, {len(files)} now, or other contents): {RERUN_SPLIT}")
