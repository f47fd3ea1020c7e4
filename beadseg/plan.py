"""Expand a compact grid into the run table of params.yaml, with readable, stable run ids.

A grid file looks like::

    grid:                 # every combination of these values becomes one run
      tile_size: [256, 512]
      loss: [dice, focal, combined]
      lr: [1e-3, 3e-4]
    fixed:                # optional: the same overrides for every run of this grid
      max_epochs: 40
    seeds: [0, 1, 2]      # optional: replicates; adds a seed axis
    include:              # optional: extra hand-written runs, merged as they are
      my-special-run: {lr: 1e-5}
    finetune:             # optional: the finetune table (runs starting from another run's best weights)
      t512_from_t256_combined_lr1e-3: {init_from: t256_combined_lr1e-3, tile_size: 512}

Run ids name every grid axis, in the order the grid lists them, e.g. ``t256_combined_lr1e-3``.
Because the id depends only on a run's own values, adding a value to an axis never renames an
existing run (adding a new axis does: that is a different search).
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from beadseg.config import RUN_ID_PATTERN, Config, normalize_numbers, schema, validate
from beadseg.errors import ConfigError
from beadseg.fsutil import write_text

# Short, readable prefixes for axes (the value follows the prefix directly).
AXIS_PREFIX: dict[str, str] = {
    "tile_size": "t",
    "lr": "lr",
    "batch_size": "bs",
    "dropout": "do",
    "accumulation_steps": "acc",
    "weight_decay": "wd",
    "depth": "d",
    "base_channels": "c",
    "focal_gamma": "g",
    "focal_alpha": "fa",
    "dice_weight": "dw",
    "tversky_alpha": "ta",
    "tversky_beta": "tb",
    "patience": "p",
    "max_epochs": "ep",
    "seed": "s",
    "groups": "gr",
    "warmup_epochs": "wu",
}
# Axes whose (string) value is self-explanatory: the id carries the value alone.
BARE_VALUE_AXES = {"loss", "model", "norm", "schedule", "optimizer"}


def format_value(value: Any) -> str:
    """Path-safe, compact spelling of one axis value: 0.001 -> 1e-3, 0.3 -> 0p3, 256 -> 256."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        exponent = math.floor(math.log10(abs(value)))
        if exponent <= -3:
            mantissa = f"{value / 10 ** exponent:.6g}".replace(".", "p")
            return f"{mantissa}e{exponent}"
        return f"{value:.6g}".replace(".", "p")
    if value is None:
        return "none"
    text = re.sub(r"[^a-z0-9-]+", "-", str(value).lower()).strip("-")
    if not text:
        raise ConfigError(f"grid value {value!r} has no path-safe spelling: use letters or digits")
    return text


def run_id_for(values: Mapping[str, Any], axes: Sequence[str]) -> str:
    """The run id of one grid point: one part per axis, in axis order, joined by '_'."""
    parts = []
    for axis in axes:
        text = format_value(values[axis])
        if axis in BARE_VALUE_AXES:
            parts.append(text)
        else:
            prefix = AXIS_PREFIX.get(axis, re.sub(r"[^a-z0-9]+", "", axis.lower()))
            parts.append(f"{prefix}{text}")
    run_id = "_".join(parts)
    if not RUN_ID_PATTERN.match(run_id):
        raise ConfigError(f"run id '{run_id}' built from {dict(values)} is not path-safe or is longer than "
                          "80 characters: use fewer axes or hand-write the run table")
    return run_id


def expand_grid(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Expand a grid spec (see module docstring) into ``{run_id: overrides}``."""
    spec = normalize_numbers(dict(spec))
    unknown = sorted(set(spec) - {"grid", "fixed", "seeds", "include", "finetune"})
    if unknown:
        raise ConfigError(f"grid file: unknown section(s) {unknown}; valid sections are finetune, fixed, grid, "
                          "include, seeds")
    grid = spec.get("grid") or {}
    if not isinstance(grid, Mapping) or not grid:
        raise ConfigError("grid file: 'grid' must map at least one training setting to a list of values")
    valid = set(schema()["$defs"]["train"]["properties"])
    fixed = dict(spec.get("fixed") or {})
    for key in [*grid, *fixed]:
        if key not in valid:
            raise ConfigError(f"grid file: unknown training setting '{key}'; valid settings are {', '.join(sorted(valid))}")
    axes = list(grid)
    values_per_axis = []
    for axis in axes:
        vals = grid[axis]
        vals = list(vals) if isinstance(vals, list) else [vals]
        if not vals:
            raise ConfigError(f"grid file: axis '{axis}' has no values")
        if len(set(map(repr, vals))) != len(vals):
            raise ConfigError(f"grid file: axis '{axis}' lists a value twice: {vals}")
        values_per_axis.append(vals)
    seeds = spec.get("seeds")
    if seeds is not None:
        if "seed" in grid:
            raise ConfigError("grid file: give replicates either as 'seeds' or as a 'seed' axis, not both")
        axes.append("seed")
        values_per_axis.append(list(seeds))

    table: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*values_per_axis):
        point = dict(zip(axes, combo))
        run_id = run_id_for(point, axes)
        if run_id in table:
            raise ConfigError(f"grid file: two grid points share the run id '{run_id}'; values differ too little "
                              "to be told apart in an id")
        table[run_id] = {**fixed, **point}
    for run_id, over in (spec.get("include") or {}).items():
        if run_id in table:
            raise ConfigError(f"grid file: included run '{run_id}' clashes with a grid run id")
        table[run_id] = dict(over or {})
    return table


def finetune_table(spec: Mapping[str, Any]) -> dict[str, dict[str, Any]] | None:
    """The grid file's ``finetune`` section (None when absent); every entry must name its init_from."""
    section = spec.get("finetune")
    if section is None:
        return None
    table = {run_id: dict(normalize_numbers(over or {})) for run_id, over in dict(section).items()}
    for run_id, over in table.items():
        if not over.get("init_from"):
            raise ConfigError(f"grid file: finetune.{run_id} needs init_from (the run whose best weights it starts from)")
    return table


def render_runs_block(table: Mapping[str, Mapping[str, Any]], key: str = "runs") -> str:
    """A run-table block of params.yaml (``runs:`` or ``finetune:``), one flow mapping per run (diff-friendly)."""
    if not table:
        return f"{key}: {{}}\n"
    lines = [f"{key}:"]
    for run_id, over in table.items():
        body = yaml.safe_dump(dict(over), default_flow_style=True, sort_keys=False, width=10_000).strip()
        lines.append(f"  {run_id}: {body}")
    return "\n".join(lines) + "\n"


def block_span(lines: Sequence[str], key: str) -> tuple[int, int] | None:
    """(first, end) line indices of the top-level ``key:`` block of a params file's lines (None when absent):
    the key's line and every indented, blank or comment line after it, less the blank lines and comments that
    introduce the next top-level section."""
    start = next((i for i, line in enumerate(lines) if re.match(rf"^{key}\s*:", line)), None)
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and (lines[end].startswith((" ", "\t", "#")) or not lines[end].strip()):
        end += 1
    # Keep blank lines / comments that introduce the next top-level section.
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return start, end


def replace_block(params_text: str, key: str, block: str, after: str | None = None) -> str:
    """Replace the top-level ``key:`` block of a params file's text by ``block`` (its own text, ending in a
    newline), keeping everything else (comments too). A missing block goes after the ``after`` block when
    there is one (with a blank line before it), else at the end."""
    lines = params_text.splitlines(keepends=True)
    span = block_span(lines, key)
    if span is not None:
        start, end = span
        return "".join(lines[:start]) + block + "".join(lines[end:])
    anchor = block_span(lines, after) if after else None
    if anchor is not None:
        end = anchor[1]
        return "".join(lines[:end]) + "\n" + block + "".join(lines[end:])
    sep = "" if not params_text or params_text.endswith("\n") else "\n"
    return params_text + sep + block


def replace_runs_block(params_text: str, table: Mapping[str, Mapping[str, Any]], key: str = "runs") -> str:
    """Replace the top-level ``runs:`` (or ``finetune:``) block of a params file's text, keeping everything
    else (comments too)."""
    return replace_block(params_text, key, render_runs_block(table, key))


def write_params_text(path: str | os.PathLike[str], text: str, what: str) -> Config:
    """Validate an edited params file's text and only then write it atomically; returns its config.

    ``what`` names the edit in the error (e.g. "with the planned runs"), so a refused file says why."""
    cfg = validate(yaml.safe_load(text), source=f"{path} ({what})")  # never write a bad file
    write_text(path, text)
    return cfg
