"""Which score ranks runs (``analysis.rank_by``): one rule for the report, halving selection and proposals.

Torch-free and pure. The choices, all on the validation images (the test images never rank anything):

* ``jaccard`` (default): full-image pixel Jaccard of the run's best model (``full_val_jaccard``): every run
  scored on the same pixels, whatever its tile size;
* ``tile_jaccard``: the tile-level pixel Jaccard of the best epoch (``best_val_jaccard``, what picked it);
* ``bead_f1``: bead F1 at the first IoU threshold;
* ``ap``: bead AP at the first IoU threshold (``ap_50`` with the default thresholds).

Pixel scores reward covering bead pixels; a user who counts or measures beads needs them separated, which
only the bead scores see (two touching beads merged into one object cost a pixel score almost nothing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

RANK_BY: tuple[str, ...] = ("jaccard", "tile_jaccard", "bead_f1", "ap")
#: The metrics.json / runs.csv column of each choice (``ap`` is resolved to the first AP column present).
COLUMNS = {"jaccard": "full_val_jaccard", "tile_jaccard": "best_val_jaccard", "bead_f1": "bead_f1"}
LABELS = {"jaccard": "full-image val Jaccard", "tile_jaccard": "tile-level val Jaccard of the best epoch",
          "bead_f1": "val bead F1", "ap": "val bead AP"}
_AP = re.compile(r"^ap_(\d+)$")


def rank_column(rank_by: str, columns: Iterable[str] = ()) -> str:
    """The column that holds the ranking score: for ``ap``, the val AP at the lowest IoU threshold present
    (``ap_50``; ``ap_50`` when none is present yet)."""
    if rank_by not in RANK_BY:
        raise ValueError(f"unknown rank_by {rank_by!r}: use one of {', '.join(RANK_BY)}")
    if rank_by != "ap":
        return COLUMNS[rank_by]
    aps = sorted((int(m.group(1)), c) for c in columns if (m := _AP.match(str(c))))
    return aps[0][1] if aps else "ap_50"


def rank_label(rank_by: str, columns: Iterable[str] = ()) -> str:
    """How the ranking score reads in the report: ``val bead AP@0.5``, ``full-image val Jaccard``."""
    if rank_by == "ap":
        column = rank_column(rank_by, columns)
        return f"{LABELS['ap']}@{int(column[3:]) / 100:g}"
    return LABELS[rank_by]


def rank_value(record: Mapping[str, Any], rank_by: str) -> float | None:
    """A run's ranking score from its merged metrics (None when missing or not a finite number)."""
    value = record.get(rank_column(rank_by, record.keys()))
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
