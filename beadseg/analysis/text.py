"""Spelling of numbers, tables and figure links in the Markdown documents (shared by the report modules)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd


def missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def fmt(v: Any, digits: int = 4) -> str:
    """Table / text spelling of a value: 4 decimals, n/a for missing."""
    if missing(v):
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v != 0 and abs(v) < 1e-3:
            return f"{v:.2g}"
        return f"{v:.{digits}f}"
    return str(v)


def score(v: Any, digits: int = 4) -> str:
    """A score always spelled as a float (runs.csv reads a column of whole numbers back as integers)."""
    return "n/a" if missing(v) else fmt(float(v), digits)


def pct(v: Any) -> str:
    return "n/a" if missing(v) else f"{100 * float(v):.1f} %"


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, Callable[[Any], str]] | None = None) -> str:
    formats = formats or {}
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = []
    for row in frame.itertuples(index=False):
        cells = [formats.get(c, fmt)(v) for c, v in zip(frame.columns, row)]
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *body])


NEXT_SEARCH = "next_search.yaml"  # the report folder's documents, as REPORT.md links them (beadseg.paths)
MATH_SUMMARY = "MATHEMATICAL_ANALYSIS_SUMMARY.md"
COMPLETE = "ANALYSIS_COMPLETE.md"


def figure(name: str, caption: str) -> str:
    """A figure of results/report/figures/ with its caption, as REPORT.md shows it."""
    return f"![{name}](figures/{name})\n\n*{caption}*\n"
