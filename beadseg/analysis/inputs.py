"""The two search-level inputs the analysis reads besides the runs: the threshold baseline and the
data-set fingerprint (both written by their own pipeline steps).

A missing or unreadable file is a :class:`~beadseg.errors.DataError` that names the file and the
command that writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from beadseg import paths
from beadseg.errors import DataError


def _load(path: Path, command: str, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `{command}` first ({what})")
    return read_json_object(path, command)


def read_json_object(path: Path, command: str) -> dict[str, Any]:
    """A JSON file holding an object; unreadable or other content is a DataError naming ``command`` to rerun."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is unreadable ({type(exc).__name__}: {exc}): rerun `{command}`") from None
    if not isinstance(data, dict):
        raise DataError(f"'{path}' does not hold a JSON object: rerun `{command}`")
    return data


def load_baseline(root: Path = Path(".")) -> dict[str, Any]:
    """results/summary/baseline.json: the threshold baseline scored on the full validation images."""
    return _load(root / paths.baseline_file(), "beadseg baseline",
                 "the classical threshold baseline every run is compared with")


def load_fingerprint(root: Path = Path(".")) -> dict[str, Any]:
    """results/summary/fingerprint.json: images, beads, tiles and step budgets of the data set."""
    return _load(root / paths.fingerprint_file(), "beadseg fingerprint",
                 "the data-set fingerprint the report describes the data with")


def baseline_jaccard(baseline: dict[str, Any]) -> float | None:
    """The baseline's full-image validation Jaccard (None when missing)."""
    value = baseline.get("full_val_jaccard")
    return None if value is None else float(value)
