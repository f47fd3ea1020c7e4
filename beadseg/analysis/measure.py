"""``beadseg measure``: the analysis numbers that need the validation data, the models or the loss functions,
computed once into results/report/analysis_numbers.json (:mod:`beadseg.analysis.numbers` documents the keys).

The figures step only draws them and the report step only writes them. Every number is measured or marked
as not measured: the foreground fraction of the dice curves, when the validation masks give none, is
:data:`~beadseg.analysis.numbers.DEFAULT_FOREGROUND_FRACTION` *and says so*
(``fig6_foreground_fraction_measured: false`` with a note).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from beadseg.analysis import effects, stats
from beadseg.analysis.aggregate import load_runs
from beadseg.analysis.gradients import curve_numbers, loss_curves, pixel_gradient_analysis
from beadseg.analysis.ladder import ladder_numbers
from beadseg.analysis.numbers import DEFAULT_FOREGROUND_FRACTION, numbers_file
from beadseg.config import Config, TrainConfig
from beadseg.fsutil import json_safe, write_json


@dataclass(frozen=True)
class ForegroundFraction:
    """The foreground fraction the dice curves use: measured on the validation masks, or the default."""

    value: float
    measured: bool
    note: str | None = None


def best_run_id(runs: pd.DataFrame) -> str | None:
    """The best result's run id (None when no run is a result)."""
    valid = stats.valid_runs(runs)
    return None if valid.empty else str(valid.iloc[0]["run_id"])


def best_train_config(runs: pd.DataFrame, cfg: Config) -> TrainConfig:
    """The best result's settings, or the train defaults when there is no result."""
    rid = best_run_id(runs)
    return cfg.runs[rid] if rid is not None and rid in cfg.runs else cfg.train_defaults


def foreground_fraction(fig7: dict[str, Any]) -> ForegroundFraction:
    """The validation foreground fraction of fig7's analysis, or the default with the reason it is not measured."""
    fg = fig7.get("val_foreground_fraction")
    if fg is None:
        why = fig7.get("note") or "no validation split"
        return ForegroundFraction(DEFAULT_FOREGROUND_FRACTION, False, f"no validation masks: {why}")
    if not (math.isfinite(fg) and fg > 0):
        return ForegroundFraction(DEFAULT_FOREGROUND_FRACTION, False, "the validation masks hold no bead pixel")
    return ForegroundFraction(float(fg), True)


def rounded(value: Any, digits: int = 6) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits (the curves are drawn, not quoted)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    return value


def loss_mathematics(tc: TrainConfig, fg: ForegroundFraction) -> dict[str, Any]:
    """fig6's curves and their scalar facts for the parameters ``tc`` and the foreground fraction ``fg``
    (the facts are read off the curves before they are rounded for the file)."""
    curves = loss_curves(tc, fg.value)
    return {"fig6": curve_numbers(curves, tc), "fig6_curves": rounded(curves), "fig6_foreground_fraction": fg.value,
            "fig6_foreground_fraction_measured": fg.measured, "fig6_foreground_fraction_note": fg.note}


def _dice_boundary_gradient(p: dict[str, Any]) -> float | None:
    value = p.get("gradients", {}).get("dice", {}).get("mean_abs_grad", {}).get("boundary")
    return float(value) if value is not None and math.isfinite(value) and value != 0 else None


def dice_boundary_gradient_ratio(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean dice |dL/dlogit| per boundary pixel at the smallest tile size / at the largest (ratio None when
    fewer than two sizes or either has no gradient analysis)."""
    sizes = sorted(int(s) for s in per)
    if len(sizes) < 2:
        return {"small": None, "large": None, "ratio": None}
    small, large = sizes[0], sizes[-1]
    gs, gl = _dice_boundary_gradient(per[str(small)]), _dice_boundary_gradient(per[str(large)])
    return {"small": small, "large": large, "ratio": gs / gl if gs is not None and gl is not None else None}


def measure_numbers(cfg: Config, runs: pd.DataFrame, root: Path = Path(".")) -> dict[str, Any]:
    """Every key of the analysis numbers file, for the runs of runs.csv (best first)."""
    fig7 = pixel_gradient_analysis(cfg, runs, root)
    fig7["dice_boundary_gradient_ratio"] = dice_boundary_gradient_ratio(fig7["per_size"])
    fg = foreground_fraction(fig7)
    return {**loss_mathematics(best_train_config(runs, cfg), fg), "fig6_best_run": best_run_id(runs), "fig7": fig7,
            "search": ladder_numbers(cfg, runs), "effects": effects.effects(runs, cfg.analysis.confidence)}


def measure(cfg: Config, root: Path = Path(".")) -> Path:
    """Measure and write results/report/analysis_numbers.json; returns its path."""
    numbers = measure_numbers(cfg, load_runs(root), root)
    target = numbers_file(root)
    write_json(target, json_safe(numbers))
    return target
