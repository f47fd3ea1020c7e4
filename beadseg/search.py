"""Successive halving as rounds of the run table: planning and selection (pure functions, no processes).

A search file is a grid file (:mod:`beadseg.plan`: ``grid``, ``fixed``, ``seeds``, ``include``) plus::

    halving:
      eta: 3            # keep the best 1/eta configurations per rung, give them eta x the epochs
      min_epochs: 2     # epochs of rung 0; the full budget is the train max_epochs

Rungs are ordinary entries of params.yaml, so Snakemake and DVC both run them and dvc.lock records them:

* **budgets** (:func:`rung_budgets`): epochs each configuration has trained when rung k ends,
  ``min_epochs * eta**k`` capped at the full budget, e.g. 2, 6, 16 for eta 3, min_epochs 2, max_epochs 16.
* **rung 0**: one ``runs:`` entry ``r0_<grid id>`` per grid configuration, ``max_epochs`` = budgets[0].
* **rung k > 0**: one ``finetune:`` entry ``r<k>_<grid id>`` per survivor, ``init_from: r<k-1>_<grid id>``
  (the previous rung's best weights), ``max_epochs`` = budgets[k] - budgets[k-1] (the extra epochs) and
  ``epoch_offset`` = budgets[k-1]: the continuation draws new batches and sits at the right place of the
  learning-rate schedule (warm-up not repeated; ``schedule_epochs`` = the full budget in every rung, so cosine
  runs once over the whole budget). The optimizer's moments and a plateau scheduler start afresh in each
  rung (only the weights travel, through model.pt).
* **early stopping** is off inside every rung but the last (patience = the rung's epochs), so configurations
  are compared at equal budgets; the last rung keeps the configured patience, as the full grid would.
* **selection** (:func:`select`) after rung k: the score is the validation score ``analysis.rank_by`` names
  (:mod:`beadseg.ranking`; by default the full-image val Jaccard of the run's best model, what the report ranks
  by); a run whose
  evaluation.json status is degenerate or diverged is dropped; replicates (configurations differing only in
  their seed) form one group, scored by their mean, kept or dropped together (one bad seed drops the group);
  the best ``max(1, n // eta)`` groups of the rung's n survive (:func:`keep_count`). Equal scores are broken
  by the order of the search file: the configuration listed first wins (deterministic, and independent of
  file system or dictionary order).

The search is recorded in params.yaml's ``search:`` section (:class:`beadseg.config.SearchConfig`): name,
file, a digest of the search file, eta, min_epochs, budgets and the grid ids of every planned rung.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from beadseg import paths
from beadseg.config import RUN_ID_PATTERN, Config, SearchConfig, normalize_numbers, schema
from beadseg.errors import ConfigError
from beadseg.plan import expand_grid, render_runs_block, replace_block, replace_runs_block
from beadseg.ranking import rank_value

#: Settings the search writes itself: a search file may not set them (axis, fixed or include).
SEARCH_KEYS = ("init_from", "epoch_offset", "schedule_epochs")
#: Statuses of evaluation.json that never survive a rung (the runs the report never ranks).
INVALID_STATUSES = ("degenerate", "diverged")
SUFFIX = ".search.yaml"


# --------------------------------------------------------------------------- the search file


@dataclass(frozen=True)
class SearchSpec:
    """A search file: its grid (expanded into configurations) and halving settings."""

    name: str
    file: str
    grid: Mapping[str, Any]
    eta: int
    min_epochs: int
    configs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        """Short hash of what the search is made of (grid and halving settings; not the file's name)."""
        body = {"grid": self.grid, "eta": self.eta, "min_epochs": self.min_epochs}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]


def search_name(path: Path) -> str:
    name = path.name
    for suffix in (SUFFIX, ".yaml", ".yml"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def parse_search(spec: Mapping[str, Any], file: str, name: str | None = None) -> SearchSpec:
    """Validate a search file's content into a :class:`SearchSpec` (ConfigError naming the key otherwise)."""
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{file}: expected a mapping with grid and halving sections")
    spec = normalize_numbers(dict(spec))
    halving = spec.get("halving")
    if not isinstance(halving, Mapping):
        raise ConfigError(f"{file}: needs a 'halving' section, e.g. halving: {{eta: 3, min_epochs: 2}}")
    unknown = sorted(set(halving) - {"eta", "min_epochs"})
    if unknown:
        raise ConfigError(f"{file}: halving.{unknown[0]}: unknown setting; valid settings are eta, min_epochs")
    eta, min_epochs = halving.get("eta", 3), halving.get("min_epochs")
    if not isinstance(eta, int) or isinstance(eta, bool) or eta < 2:
        raise ConfigError(f"{file}: halving.eta must be an integer >= 2 (keep 1/eta per rung), got {eta!r}")
    if not isinstance(min_epochs, int) or isinstance(min_epochs, bool) or min_epochs < 1:
        raise ConfigError(f"{file}: halving.min_epochs must be an integer >= 1 (epochs of rung 0), got {min_epochs!r}")
    grid = {k: v for k, v in spec.items() if k != "halving"}
    if "finetune" in grid:
        raise ConfigError(f"{file}: finetune: a search writes the finetune table itself (its later rungs); "
                          "remove the section")
    try:
        configs = expand_grid(grid)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    for cid, over in configs.items():
        bad = sorted(set(over) & set(SEARCH_KEYS))
        if bad:
            raise ConfigError(f"{file}: configuration '{cid}' sets {bad[0]}, which the search writes itself; "
                              "remove it")
        longest = SearchConfig.run_id(99, cid)  # room for any rung number a search can reach
        if not RUN_ID_PATTERN.match(longest):
            raise ConfigError(f"{file}: configuration id '{cid}' is too long for the search's run ids "
                              f"('{longest}' must be at most 80 characters): use fewer axes")
    return SearchSpec(name=name or search_name(Path(file)), file=file, grid=grid, eta=eta, min_epochs=min_epochs,
                      configs=configs)


def load_search(path: str | Path) -> SearchSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search file '{path}' not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse_search(raw, str(path))


# --------------------------------------------------------------------------- budgets and rungs


def rung_budgets(min_epochs: int, eta: int, full: int) -> list[int]:
    """Epochs each configuration has trained when each rung ends: min_epochs * eta**k, capped at ``full``."""
    if full < 1 or min_epochs < 1 or eta < 2:
        raise ValueError(f"rung_budgets({min_epochs}, {eta}, {full})")
    budgets = [min(min_epochs, full)]
    while budgets[-1] < full:
        budgets.append(min(budgets[-1] * eta, full))
    return budgets


def keep_count(n_groups: int, eta: int) -> int:
    """How many of a rung's ``n_groups`` configurations (replicate groups) survive: the best n // eta, at least 1."""
    return max(1, n_groups // eta)


def full_budget(spec: SearchSpec, train_defaults: Mapping[str, Any]) -> int:
    """The full budget in epochs: every configuration's max_epochs (the train default unless the grid sets it),
    which must agree."""
    budgets = {cid: int(over.get("max_epochs", train_defaults["max_epochs"])) for cid, over in spec.configs.items()}
    if len(set(budgets.values())) != 1:
        raise ConfigError(f"{spec.file}: configurations differ in max_epochs ({budgets}); successive halving needs "
                          "one full budget: set max_epochs once (train or fixed)")
    return next(iter(budgets.values()))


def settings(spec: SearchSpec, train_defaults: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every configuration's full settings (train defaults merged with its overrides)."""
    return {cid: {**train_defaults, **over} for cid, over in spec.configs.items()}


def replicate_groups(config_settings: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Configurations that differ only in their seed, grouped, in the order of their first member."""
    groups: dict[str, list[str]] = {}
    for cid, values in config_settings.items():
        key = json.dumps({k: v for k, v in values.items() if k != "seed"}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(cid)
    return list(groups.values())


def rung_entries(spec: SearchSpec, rung: int, config_ids: Sequence[str], budgets: Sequence[int]) -> dict[str, dict[str, Any]]:
    """The run-table entries of one rung: ``runs:`` entries for rung 0, ``finetune:`` entries after it."""
    last = rung == len(budgets) - 1
    single = len(budgets) == 1
    epochs = budgets[rung] - (budgets[rung - 1] if rung else 0)
    table = {}
    for cid in config_ids:
        entry = dict(spec.configs[cid])
        if single:  # one rung: the plain grid
            table[SearchConfig.run_id(rung, cid)] = entry
            continue
        if rung:
            entry["init_from"] = SearchConfig.run_id(rung - 1, cid)
            entry["epoch_offset"] = budgets[rung - 1]
        entry["max_epochs"] = epochs
        entry["schedule_epochs"] = budgets[-1]
        if not last:
            entry["patience"] = epochs  # no early stopping inside a rung: equal budgets are compared
        table[SearchConfig.run_id(rung, cid)] = entry
    return table


def search_section(spec: SearchSpec, budgets: Sequence[int], rungs: Sequence[Sequence[str]]) -> SearchConfig:
    return SearchConfig(name=spec.name, file=spec.file, digest=spec.digest, method="halving", eta=spec.eta,
                        min_epochs=spec.min_epochs, budgets=tuple(budgets), rungs=tuple(tuple(r) for r in rungs))


def render_search_block(search: SearchConfig) -> str:
    d = search.to_dict()
    lines = ["search:"]
    for key in ("name", "file", "digest", "method", "eta", "min_epochs"):
        value = yaml.safe_dump(d[key], default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        lines.append(f"  {key}: {value}")
    lines.append(f"  budgets: {d['budgets']}   # epochs each configuration has trained when rung k ends")
    lines.append("  rungs:                  # grid ids trained by each rung (run ids r<k>_<grid id>)")
    for rung in d["rungs"]:  # YAML's flow style quotes an id that would read as a bool or number
        lines.append(f"    - {yaml.safe_dump(rung, default_flow_style=True, width=10_000).strip()}")
    return "\n".join(lines) + "\n"


SEARCH_COMMENT = ("# Written by `beadseg search run`: the successive-halving search whose rungs are the runs (rung 0) and\n"
                  "# finetune (later rungs) tables above. Do not edit; `beadseg search status` summarises it.\n")


def write_rungs(params_text: str, spec: SearchSpec, train_defaults: Mapping[str, Any],
                rungs: Sequence[Sequence[str]]) -> str:
    """params.yaml's text with the runs, finetune and search blocks of a search whose planned rungs are
    ``rungs`` (grid ids per rung); everything else, comments included, is kept."""
    budgets = rung_budgets(spec.min_epochs, spec.eta, full_budget(spec, train_defaults))
    runs = rung_entries(spec, 0, rungs[0], budgets)
    finetune: dict[str, dict[str, Any]] = {}
    for k in range(1, len(rungs)):
        finetune.update(rung_entries(spec, k, rungs[k], budgets))
    text = replace_runs_block(params_text, runs)
    text = replace_block(text, "finetune", render_runs_block(finetune, "finetune"))
    block = render_search_block(search_section(spec, budgets, rungs))
    lines = text.splitlines(keepends=True)
    if not any(line.startswith("search:") for line in lines):
        block = SEARCH_COMMENT + block
    return replace_block(text, "search", block, after="finetune")


def check_matches(search: SearchConfig, spec: SearchSpec, train_defaults: Mapping[str, Any], source: str) -> None:
    """Refuse (one line naming the value) when params.yaml's search was planned from another search file."""
    budgets = rung_budgets(spec.min_epochs, spec.eta, full_budget(spec, train_defaults))
    for key, mine, theirs in (("name", search.name, spec.name), ("eta", search.eta, spec.eta),
                              ("min_epochs", search.min_epochs, spec.min_epochs),
                              ("budgets", list(search.budgets), budgets), ("digest", search.digest, spec.digest)):
        if mine != theirs:
            what = "its grid differs" if key == "digest" else f"{key} is {theirs!r} there"
            raise ConfigError(f"{source}: search.{key} is {mine!r}, planned from {search.file}, but {what} in "
                              f"{spec.file}: re-run with {search.file}, or start a new search by removing the search "
                              f"section (and its runs) from {source}")
    unknown = [c for rung in search.rungs for c in rung if c not in spec.configs]
    if unknown:
        raise ConfigError(f"{source}: search.rungs names configuration '{unknown[0]}', which {spec.file} does not "
                          "have: re-run with the search file it was planned from")


# --------------------------------------------------------------------------- outcomes and selection


@dataclass(frozen=True)
class Outcome:
    """What selection needs of one run: evaluation.json's status and the metrics.json score that ranks runs."""

    status: str
    score: float | None
    steps: int | None = None

    @property
    def valid(self) -> bool:
        return self.status not in INVALID_STATUSES and self.score is not None and math.isfinite(self.score)


def read_outcome(run_id: str, root: Path = Path("."), rank_by: str = "jaccard") -> Outcome | None:
    """A run's outcome from its files (None while it has no metrics.json / evaluation.json); its score is the one
    ``analysis.rank_by`` names (:mod:`beadseg.ranking`)."""
    metrics_path, info_path = root / paths.metrics_file(run_id), root / paths.evaluation_info_file(run_id)
    if not metrics_path.is_file() or not info_path.is_file():
        return None
    metrics, info = json.loads(metrics_path.read_text()), json.loads(info_path.read_text())
    train_path = root / paths.train_info_file(run_id)
    steps = json.loads(train_path.read_text()).get("optimizer_steps") if train_path.is_file() else None
    return Outcome(status=str(info.get("status") or "completed"), score=rank_value(metrics, rank_by),
                   steps=None if steps is None else int(steps))


@dataclass(frozen=True)
class Selection:
    """The verdict on one rung: every group ranked (best first; dropped groups last, with the reason)."""

    ranked: list[tuple[tuple[str, ...], float | None, str]]  # (group, mean score or None, "kept"/"dropped: ...")
    kept: list[str]  # grid ids of the survivors, in the search file's order

    def lines(self) -> list[str]:
        out = []
        for group, score, verdict in self.ranked:
            shown = "-" if score is None else f"{score:.4f}"
            out.append(f"{' + '.join(group)}: {shown} {verdict}")
        return out


def select(outcomes: Mapping[str, Outcome], groups: Sequence[Sequence[str]], eta: int,
           order: Sequence[str]) -> Selection:
    """Survivors of a rung. ``outcomes``: grid id -> its run's outcome in this rung (every configuration of the
    rung); ``groups``: replicate groups (only members present in ``outcomes`` count); ``order``: the search
    file's order of grid ids (ties). Keeps the best ``keep_count(n_groups, eta)`` valid groups."""
    position = {cid: i for i, cid in enumerate(order)}
    present = [tuple(sorted((c for c in g if c in outcomes), key=position.__getitem__)) for g in groups]
    present = [g for g in present if g]
    missing = sorted(set(outcomes) - {c for g in present for c in g})
    present += [(c,) for c in missing]  # a configuration no group names is its own group
    keep = keep_count(len(present), eta)
    valid, dropped = [], []
    for group in present:
        bad = [c for c in group if not outcomes[c].valid]
        if bad:
            reason = ", ".join(f"{c} {outcomes[c].status}" for c in bad)
            dropped.append((group, None, f"dropped ({reason})"))
        else:
            valid.append((group, sum(outcomes[c].score for c in group) / len(group)))  # type: ignore[misc]
    valid.sort(key=lambda gs: (-round(gs[1], 12), min(position.get(c, len(position)) for c in gs[0])))
    ranked: list[tuple[tuple[str, ...], float | None, str]] = []
    for i, (group, score) in enumerate(valid):
        ranked.append((group, score, "kept" if i < keep else "dropped (score)"))
    ranked += dropped
    kept = sorted((c for g, _, v in ranked if v == "kept" for c in g), key=position.__getitem__)
    return Selection(ranked=ranked, kept=kept)


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class RungState:
    rung: int
    epochs: int
    runs: list[str]
    outcomes: dict[str, Outcome | None]

    @property
    def complete(self) -> bool:
        return all(o is not None for o in self.outcomes.values())

    @property
    def steps(self) -> int:
        return sum(o.steps or 0 for o in self.outcomes.values() if o is not None)


def rung_states(cfg: Config, root: Path = Path(".")) -> list[RungState]:
    search = cfg.search
    if search is None:
        return []
    return [RungState(rung=k, epochs=search.budgets[k], runs=search.rung_runs(k),
                      outcomes={r: read_outcome(r, root, cfg.analysis.rank_by) for r in search.rung_runs(k)})
            for k in range(len(search.rungs))]


def full_grid_steps(cfg: Config) -> int:
    """Optimizer steps of the full grid: every configuration of rung 0 trained to the full budget."""
    search = cfg.search
    if search is None:
        raise ValueError("full_grid_steps needs a params file with a search: section")
    return sum(cfg.run(r).steps_per_epoch * search.budgets[-1] for r in search.rung_runs(0))


def train_defaults_raw(params: Mapping[str, Any]) -> dict[str, Any]:
    """The train section of a params dict merged over the schema's defaults (plain data)."""
    train_schema = schema()["$defs"]["train"]["properties"]
    defaults = {k: v["default"] for k, v in train_schema.items() if "default" in v}
    return {**defaults, **normalize_numbers(dict(params.get("train") or {}))}
