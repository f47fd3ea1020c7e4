"""Model-based proposals: from the runs done so far, the next N configurations to train (Optuna's TPE).

``beadseg search propose SPACE.yaml --n 4`` reads results/summary/runs.csv, turns every comparable run into
a finished trial (its settings on the space's axes, its full-image validation Jaccard), asks Optuna's TPE
sampler for N new points (seeded; ``constant_liar`` keeps a batch of pending points apart), and prints them
as a run table; ``--write`` adds them to params.yaml's ``runs:``. Every trial comes from runs.csv and goes
back as an ordinary run, so both engines train it and the next proposal sees its result.

A space file::

    space:
      lr: {log_uniform: [1.0e-4, 1.0e-2]}
      dropout: {uniform: [0.0, 0.3]}
      base_channels: {int: [8, 32]}
      loss: {choice: [dice, focal, combined]}
    fixed: {tile_size: 256}      # optional: the same settings for every proposal

Comparable runs are the runs of runs.csv with the space file's fixed settings, trained for the largest
budget in it (``epoch_offset`` + ``max_epochs``), so the rungs of a halving search below the last, which
trained less, are not taken for the same thing; runs outside the space are skipped with the reason. A
diverged run counts as a failed trial.
Optuna is an optional dependency (``pip install 'beadseg[search]'``); with fewer finished trials than the
start-up count TPE samples at random, which the command says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from beadseg.config import normalize_numbers, schema
from beadseg.errors import BeadsegError, ConfigError
from beadseg.plan import run_id_for
from beadseg.ranking import rank_value

KINDS = ("log_uniform", "uniform", "int", "choice")
PREFIX = "tpe"


@dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.choices
        try:
            number = float(value)
        except (TypeError, ValueError):
            return False
        return self.low <= number <= self.high and (self.kind != "int" or number.is_integer())


def _dimension(name: str, spec: Any, source: str) -> Dimension:
    if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(f"{source}: space.{name} must be one of {{{', '.join(f'{k}: ...' for k in KINDS)}}}")
    kind, values = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: space.{name}.choice must be a non-empty list")
        return Dimension(name, kind, choices=tuple(values))
    if not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, (int, float)) for v in values)):
        raise ConfigError(f"{source}: space.{name}.{kind} must be [low, high] numbers")
    low, high = float(values[0]), float(values[1])
    if not low < high or (kind == "log_uniform" and low <= 0):
        raise ConfigError(f"{source}: space.{name}.{kind}: need low < high" + (" and low > 0" if kind == "log_uniform"
                                                                               else "") + f", got {values}")
    return Dimension(name, kind, low, high)


def parse_space(spec: Any, source: str = "space file") -> tuple[dict[str, Dimension], dict[str, Any]]:
    """The space's dimensions and the fixed settings, checked against the training settings' names."""
    spec = normalize_numbers(spec) if isinstance(spec, Mapping) else spec
    if not isinstance(spec, Mapping) or not isinstance(spec.get("space"), Mapping) or not spec["space"]:
        raise ConfigError(f"{source}: needs a non-empty space: mapping (setting -> {{log_uniform|uniform|int|choice}})")
    unknown = sorted(set(spec) - {"space", "fixed"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}: use space and fixed")
    valid = set(schema()["$defs"]["train"]["properties"])
    fixed = dict(spec.get("fixed") or {})
    for key in [*spec["space"], *fixed]:
        if key not in valid:
            raise ConfigError(f"{source}: '{key}' is not a training setting; valid settings are {', '.join(sorted(valid))}")
    return {name: _dimension(name, s, source) for name, s in spec["space"].items()}, fixed


def load_space(path: str | Path) -> tuple[dict[str, Dimension], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"space file '{path}' not found")
    return parse_space(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


@dataclass(frozen=True)
class Observation:
    run_id: str
    params: dict[str, Any]
    value: float | None  # None: a failed trial (diverged, or no score)


def _plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value.item() if hasattr(value, "item") else value


def observations(runs: pd.DataFrame, space: Mapping[str, Dimension],
                 fixed: Mapping[str, Any] | None = None, rank_by: str = "jaccard") -> tuple[list[Observation], list[str]]:
    """The finished trials runs.csv holds, and one line per run left out (and why): an early rung, a run
    outside the space, or one whose ``fixed`` settings differ from the proposals'."""
    fixed = fixed or {}
    budget = runs["max_epochs"].astype(float) + (runs["epoch_offset"].fillna(0).astype(float)
                                                 if "epoch_offset" in runs else 0.0)
    full = float(budget.max()) if len(runs) else 0.0
    found, skipped = [], []
    for (_, row), total in zip(runs.iterrows(), budget):
        rid = str(row["run_id"])
        if total < full:
            skipped.append(f"{rid}: trained {total:g} of {full:g} epochs (an early rung), not comparable")
            continue
        other = [f"{k}={_plain(row[k])}, not the fixed {v}" for k, v in fixed.items() if k in row and _plain(row[k]) != v]
        if other:
            skipped.append(f"{rid}: " + "; ".join(other))
            continue
        missing = [d for d in space if d not in row or pd.isna(row[d])]
        outside = [d for d in space if d not in missing and not space[d].contains(_plain(row[d]))]
        if missing or outside:
            skipped.append(f"{rid}: " + "; ".join([*(f"no {d}" for d in missing),
                                                   *(f"{d}={_plain(row[d])} outside the space" for d in outside)]))
            continue
        score = rank_value(row.to_dict(), rank_by)  # the score analysis.rank_by names (beadseg.ranking)
        ok = str(row.get("status")) != "diverged" and score is not None
        found.append(Observation(rid, {d: _plain(row[d]) for d in space}, score if ok else None))
    return found, skipped


def _distributions(space: Mapping[str, Dimension]) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, d in space.items():
        if d.kind == "choice":
            out[name] = CategoricalDistribution(list(d.choices))
        elif d.kind == "int":
            out[name] = IntDistribution(int(d.low), int(d.high))
        else:
            out[name] = FloatDistribution(d.low, d.high, log=d.kind == "log_uniform")
    return out


def _rounded(value: Any, kind: str) -> Any:
    """Three significant digits for continuous proposals: run ids stay readable, nothing meaningful is lost."""
    if kind in ("uniform", "log_uniform") and isinstance(value, float) and value != 0:
        return float(f"{value:.3g}")
    return value


def propose(space: Mapping[str, Dimension], observed: Sequence[Observation], n: int, seed: int = 0,
            startup: int = 10) -> list[dict[str, Any]]:
    """N new points of the space from TPE fitted to the observed trials (seeded, reproducible)."""
    try:
        import optuna
    except ImportError:
        raise BeadsegError("beadseg search propose needs Optuna: pip install 'beadseg[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(space)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for ob in observed:
        state = optuna.trial.TrialState.COMPLETE if ob.value is not None else optuna.trial.TrialState.FAIL
        study.add_trial(optuna.trial.create_trial(params=ob.params, distributions=dists, value=ob.value, state=state))
    points = []
    for _ in range(n):
        trial = study.ask(dists)  # left pending: constant_liar spreads the batch
        points.append({k: _rounded(v, space[k].kind) for k, v in trial.params.items()})
    return points


def proposal_table(points: Sequence[Mapping[str, Any]], space: Mapping[str, Dimension], fixed: Mapping[str, Any],
                   taken: set[str]) -> dict[str, dict[str, Any]]:
    """Run-table entries ``tpe_<values>`` (a number appended on a clash with an existing or earlier id)."""
    table: dict[str, dict[str, Any]] = {}
    axes = list(space)
    for point in points:
        base = f"{PREFIX}_{run_id_for(point, axes)}"
        rid, k = base, 2
        while rid in taken or rid in table:
            rid, k = f"{base}_{k}", k + 1
        table[rid] = {**fixed, **point}
    return table


def describe(observed: Sequence[Observation], skipped: Sequence[str], startup: int) -> list[str]:
    done = sum(o.value is not None for o in observed)
    lines = [f"propose: {done} finished trial(s) from runs.csv ({len(observed) - done} failed)"
             + (f", {len(skipped)} run(s) left out" if skipped else "")]
    lines += [f"propose:   left out {s}" for s in skipped]
    if done < startup:
        lines.append(f"propose: fewer than {startup} finished trials: TPE samples at random until then (Optuna's "
                     "start-up phase); train these and propose again")
    return lines
