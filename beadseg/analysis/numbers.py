"""The analysis numbers file, results/report/analysis_numbers.json: ``beadseg measure`` writes it, the figures
and the report only read it (:func:`load_numbers`).

It holds every number of the analysis that is not read straight off runs.csv / histories.csv: the loss
mathematics of fig6 (curves and their scalar facts, with the parameters of the best run) and the pixel /
gradient analysis of fig7 (validation tiles and the best model per tile size). Keys:

* ``fig6``: scalar facts of the curves (:func:`beadseg.analysis.gradients.curve_numbers`);
* ``fig6_curves``: the curves themselves (``p_t`` and one list per curve, aligned with it);
* ``fig6_best_run``: the run whose parameters the curves use (None: no run is a result, train defaults);
* ``fig6_foreground_fraction``: the foreground fraction the dice curves use, with
  ``fig6_foreground_fraction_measured`` (False: a default, not a measurement) and
  ``fig6_foreground_fraction_note`` (why it is not measured);
* ``fig7``: the pixel and gradient analysis (:func:`beadseg.analysis.gradients.pixel_gradient_analysis`);
* ``search``: a halving search's ladder per configuration and the compute it used against the full grid
  (:func:`beadseg.analysis.ladder.ladder_numbers`; null for a plain grid);
* ``effects``: each varied setting's effect on matched configurations, and which settings the design cannot
  separate (:func:`beadseg.analysis.effects.effects`; fig2, the impact section and the recommendations).

Missing numbers are JSON null; :func:`number` reads them back as NaN.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from beadseg import paths
from beadseg.analysis.inputs import read_json_object
from beadseg.errors import DataError

COMMAND = "beadseg measure"
CLASSES: tuple[str, ...] = ("background", "foreground_interior", "boundary")
VARIANTS: tuple[str, ...] = ("no_focal_term", "focal", "dice", "combined")
VARIANT_LABELS = {
    "no_focal_term": "without focal term (gamma = 0)",
    "focal": "focal (with focal term)",
    "dice": "dice",
    "combined": "combined (w*dice + (1-w)*focal)",
}
DEFAULT_FOREGROUND_FRACTION = 0.1  # the dice curves' foreground fraction when the validation masks give none


def numbers_file(root: Path = Path(".")) -> Path:
    return root / paths.analysis_numbers_file()


def load_numbers(root: Path = Path(".")) -> dict[str, Any]:
    """The numbers ``beadseg measure`` wrote; a DataError naming the command when missing or unreadable."""
    path = numbers_file(root)
    if not path.is_file():
        raise DataError(f"'{path}' not found: run `{COMMAND}` first (the loss mathematics and the pixel-gradient "
                        "analysis the figures and the report show)")
    return read_json_object(path, COMMAND)


def effect_numbers(numbers: dict[str, Any]) -> dict[str, Any]:
    """The ``effects`` entry; a DataError naming the command when the file predates it."""
    found = numbers.get("effects")
    if not isinstance(found, dict):
        raise DataError(f"the analysis numbers file has no 'effects': run `{COMMAND}` again (the matched "
                        "hyperparameter effects fig2 and the report show)")
    return found


def number(value: Any) -> float:
    """A number of the file as a float (null, i.e. not measured, as NaN)."""
    return float("nan") if value is None else float(value)


def per_size(numbers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """fig7's analysis per tile size, smallest tile first (JSON sorts the keys as text)."""
    per = numbers.get("fig7", {}).get("per_size", {})
    return {k: per[k] for k in sorted(per, key=int)}


def foreground_fraction_text(numbers: dict[str, Any]) -> str:
    """How the dice curves' foreground fraction came about: measured on the validation masks or a default."""
    fg = numbers.get("fig6_foreground_fraction")
    value = "n/a" if fg is None or not math.isfinite(float(fg)) else f"{100 * float(fg):.1f} %"
    if numbers.get("fig6_foreground_fraction_measured"):
        return f"foreground fraction {value} measured on the validation masks"
    note = numbers.get("fig6_foreground_fraction_note") or "no validation masks"
    return f"foreground fraction {value}: a default, not a measurement ({note})"
