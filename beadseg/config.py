"""Load and validate params.yaml once into frozen, typed config objects.

Library code never opens params.yaml: the CLI calls :func:`load_config` (or Snakemake calls
:func:`validate` on the dict it already read) and passes the typed objects on.

YAML numbers: PyYAML (used by Snakemake) reads ``1e-4`` as a *string* while DVC's parser reads it
as a float. :func:`normalize_numbers` turns every exponent-notation string into a float before
validation, so both engines see the same numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from beadseg.errors import ConfigError

DEMO_IMAGES = "data/raw/demo/images"
DEMO_MASKS = "data/raw/demo/masks"
# \Z, not $: in Python (and so in jsonschema) "$" also matches before a trailing newline, so "a\n" would pass.
RUN_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,79}\Z")
_EXPONENT_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON schema of params.yaml shipped inside the package."""
    text = resources.files("beadseg.schema").joinpath("params.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _defaults(section_schema: Mapping[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v["default"]) for k, v in section_schema["properties"].items() if "default" in v}


# --------------------------------------------------------------------------- typed objects


@dataclass(frozen=True)
class SyntheticConfig:
    n_images: int
    size: int
    seed: int
    difficulty: str = "demo"
    instance_labels: bool = False


@dataclass(frozen=True)
class DataConfig:
    source: str
    images: str
    masks: str
    val_fraction: float
    test_fraction: float
    split_seed: int
    normalize_low_pct: float
    normalize_high_pct: float
    synthetic: SyntheticConfig


@dataclass(frozen=True)
class TilingConfig:
    sizes: tuple[int, ...]
    stride_fraction: float
    small_images: str

    def stride(self, size: int) -> int:
        """Stride in pixels for tiles of ``size``."""
        return max(1, int(round(size * self.stride_fraction)))


#: Training settings added after model files and train.json existed, with their defaults (see
#: :meth:`TrainConfig.to_dict`): continuation of a run from an earlier one (``beadseg search`` rungs).
LATER_SETTINGS: dict[str, Any] = {"epoch_offset": 0, "schedule_epochs": None, "cosine_floor": 0.01,
                                   "plateau_factor": 0.5, "plateau_patience": None, "cuda_graph": False,
                                   "target": "mask", "distance_weight": 1.0}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run (defaults merged with the run's overrides)."""

    model: str
    depth: int
    base_channels: int
    norm: str
    groups: int
    dropout: float
    loss: str
    dice_weight: float
    focal_alpha: float
    focal_gamma: float
    tversky_alpha: float
    tversky_beta: float
    boundary_weight: float
    boundary_width: int
    optimizer: str
    lr: float
    weight_decay: float
    batch_size: int
    accumulation_steps: int
    schedule: str
    warmup_epochs: int
    steps_per_epoch: int
    sampler: str
    foreground_oversample: float
    max_epochs: int
    patience: int
    min_delta: float
    seed: int
    tile_size: int
    extra_tile_sizes: tuple[int, ...]
    init_from: str | None
    augment_flips: bool
    augment_rot90: bool
    augment_intensity: float
    augment_gamma: float
    amp: bool
    channels_last: bool
    epoch_offset: int = 0
    schedule_epochs: int | None = None
    cosine_floor: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int | None = None
    cuda_graph: bool = False
    target: str = "mask"
    distance_weight: float = 1.0

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.accumulation_steps

    @property
    def max_optimizer_steps(self) -> int:
        """The most optimizer steps this run can take (every epoch to max_epochs)."""
        return self.steps_per_epoch * self.max_epochs

    @property
    def min_optimizer_steps(self) -> int:
        """The fewest optimizer steps before early stopping can end the run (patience + 1 epochs)."""
        return self.steps_per_epoch * min(self.max_epochs, self.patience + 1)

    @property
    def tile_sizes(self) -> tuple[int, ...]:
        """All tile sizes this run trains on (its own first)."""
        return (self.tile_size, *[s for s in self.extra_tile_sizes if s != self.tile_size])

    @property
    def schedule_length(self) -> int:
        """Epochs of the learning-rate schedule, counted from the first epoch of the init_from chain."""
        return self.schedule_epochs if self.schedule_epochs is not None else self.epoch_offset + self.max_epochs

    def to_dict(self) -> dict[str, Any]:
        """Every setting as plain data. Settings added after the first release (:data:`LATER_SETTINGS`) are left
        out while they hold their default, so a run's settings (Snakemake's params trigger, the resume
        fingerprint, train.json) are the same as before they existed: upgrading retrains nothing."""
        d = dataclasses.asdict(self)
        d["extra_tile_sizes"] = list(self.extra_tile_sizes)
        for key, default in LATER_SETTINGS.items():
            if d[key] == default:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a (validated) dict; unknown keys are a ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}: valid settings are {sorted(names)}")
        values = {**LATER_SETTINGS, **values}
        missing = sorted(names - set(values))
        if missing:
            raise ConfigError(f"training settings missing: {missing}")
        v = dict(values)
        v["extra_tile_sizes"] = tuple(int(s) for s in v["extra_tile_sizes"])
        for key in ("lr", "weight_decay", "dropout", "dice_weight", "focal_alpha", "focal_gamma",
                    "tversky_alpha", "tversky_beta", "boundary_weight", "min_delta", "augment_intensity",
                    "augment_gamma", "foreground_oversample", "distance_weight"):
            v[key] = float(v[key])
        return cls(**v)


@dataclass(frozen=True)
class EvaluationConfig:
    """How the evaluate step scores a run's best model on full images (never how it is trained)."""

    overlap: float = 0.25
    threshold: float = 0.5
    objects: str = "auto"
    min_bead_area: int = 4
    iou_thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    seed_distance: int = 3
    core: float = 0.5
    #: objects auto: extra thresholds, the watershed seed distances, distance cores and extra minimum areas tried
    auto_thresholds: tuple[float, ...] = ()
    auto_seed_distances: tuple[int, ...] = (2, 3, 5)
    auto_cores: tuple[float, ...] = (0.4, 0.5, 0.6, 0.7)
    auto_min_bead_areas: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("iou_thresholds", "auto_thresholds", "auto_seed_distances", "auto_cores", "auto_min_bead_areas"):
            d[key] = list(getattr(self, key))
        return d


@dataclass(frozen=True)
class AnalysisConfig:
    top_k: int
    overfit_drop_threshold: float
    title: str
    near_cap_fraction: float = 0.8
    resolution_margin: float = 0.02
    replicate_std_threshold: float = 0.02
    confidence: float = 0.95
    bootstrap_samples: int = 2000
    bootstrap_seed: int = 0
    gradient_max_tiles: int = 64
    rank_by: str = "jaccard"


@dataclass(frozen=True)
class SearchConfig:
    """The ``search:`` section: a successive-halving search whose rungs are entries of the run tables.

    ``rungs[k]`` lists the grid ids of the configurations rung k trains; their run ids are
    :meth:`run_id` (``r<k>_<grid id>``). ``budgets[k]`` is the epochs each of them has trained when rung k ends.
    """

    name: str
    file: str
    digest: str
    method: str
    eta: int
    min_epochs: int
    budgets: tuple[int, ...]
    rungs: tuple[tuple[str, ...], ...]

    @staticmethod
    def run_id(rung: int, config_id: str) -> str:
        return f"r{rung}_{config_id}"

    def rung_runs(self, rung: int) -> list[str]:
        return [self.run_id(rung, c) for c in self.rungs[rung]]

    @property
    def run_ids(self) -> list[str]:
        return [r for k in range(len(self.rungs)) for r in self.rung_runs(k)]

    def rung_of(self, run_id: str) -> int | None:
        """The rung a run id belongs to (None for a run outside the search)."""
        for k in range(len(self.rungs)):
            if run_id in self.rung_runs(k):
                return k
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "digest": self.digest, "method": self.method, "eta": self.eta,
                "min_epochs": self.min_epochs, "budgets": list(self.budgets), "rungs": [list(r) for r in self.rungs]}


@dataclass(frozen=True)
class Config:
    data: DataConfig
    tiling: TilingConfig
    train_defaults: TrainConfig
    runs: Mapping[str, TrainConfig]
    analysis: AnalysisConfig
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    finetune_ids: tuple[str, ...] = ()
    source: str = "params.yaml"
    search: SearchConfig | None = None

    @property
    def run_ids(self) -> list[str]:
        return list(self.runs)

    @property
    def run_settings(self) -> dict[str, dict[str, Any]]:
        """Every run's settings as plain data (Snakemake params of steps that read the whole run table)."""
        return {run_id: c.to_dict() for run_id, c in self.runs.items()}

    def run(self, run_id: str) -> TrainConfig:
        try:
            return self.runs[run_id]
        except KeyError:
            raise ConfigError(
                f"unknown run id '{run_id}' in {self.source}: valid run ids are {', '.join(self.runs)}"
            ) from None


# --------------------------------------------------------------------------- validation


def normalize_numbers(value: Any) -> Any:
    """Return a copy of ``value`` with exponent-notation strings ('1e-4') turned into floats."""
    if isinstance(value, Mapping):
        return {k: normalize_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(v) for v in value]
    if isinstance(value, str) and _EXPONENT_FLOAT.match(value.strip()):
        return float(value)
    return value


def _format_path(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _flat_errors(errors: Any) -> list[Any]:
    """Schema errors sorted by key, a run entry's ``oneOf`` (settings or null) replaced by every reason
    the settings branch gives, so each mistake in one run is reported, not "is not valid under any"."""
    out = []
    for err in errors:
        if err.validator == "oneOf" and err.context:
            branch = [e for e in err.context if e.relative_schema_path and e.relative_schema_path[0] == 0]
            out += branch or [min(err.context, key=lambda e: -len(e.absolute_path))]
        else:
            out.append(err)
    return sorted(out, key=lambda e: list(map(str, e.absolute_path)))


def _did_you_mean(word: Any, choices: Any) -> str:
    """`` (did you mean 'lr'?)`` for a near miss among ``choices``, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _schema_errors(params: Mapping[str, Any]) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    messages = []
    bad_ids: set[Any] = set()

    def bad_run_id(run_id: Any) -> str:
        bad_ids.add(run_id)
        return (f"run id {run_id!r} is not path-safe: use lower case letters, digits, "
                "'-' or '_', starting with a letter, at most 80 characters (no dots)")

    for err in _flat_errors(validator.iter_errors(params)):
        where = _format_path(err.absolute_path)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, Mapping) else []
            for key in extra:  # one line per unknown key, the near miss first
                prefix = f"{where}.{key}" if where != "(top level)" else str(key)
                messages.append(f"{prefix}: unknown setting{_did_you_mean(key, allowed)}; valid settings in "
                                f"{where} are {', '.join(allowed)}")
        elif err.validator == "enum":
            choices = err.validator_value
            messages.append(f"{where}: unknown value {err.instance!r}{_did_you_mean(err.instance, choices)}; "
                            f"valid values are {', '.join(map(str, choices))}")
        elif err.validator == "pattern" and list(err.absolute_path) in (["runs"], ["finetune"]):
            messages.append(bad_run_id(err.instance))  # a run id (a key of the run or finetune table)
        elif err.validator == "propertyNames":
            messages.append(bad_run_id(err.instance))
        else:
            messages.append(f"{where}: {err.message}")
    # Run ids reach file paths and (through dvc.yaml's stage names) DVC's commands: match the whole id, which
    # the schema's pattern alone does not do for a trailing newline.
    for table in ("runs", "finetune"):
        entries = params.get(table)
        if isinstance(entries, Mapping):
            messages += [bad_run_id(k) for k in entries
                         if k not in bad_ids and not (isinstance(k, str) and RUN_ID_PATTERN.match(k))]
    return messages


#: Settings that moved to another section: (section, old key) -> new place.
MOVED_SETTINGS = {"eval_overlap": "evaluation.overlap"}


def _refuse_moved_settings(params: Mapping[str, Any], source: str) -> None:
    """A params file from an older beadseg gets one line saying where its setting went."""
    places = [("train", params.get("train"))]
    for table in ("runs", "finetune"):
        entries = params.get(table)
        if isinstance(entries, Mapping):
            places += [(f"{table}.{k}", v) for k, v in entries.items()]
    for where, section in places:
        if isinstance(section, Mapping):
            for old, new in MOVED_SETTINGS.items():
                if old in section:
                    raise ConfigError(f"{source}: {where}.{old} moved to {new} (scoring is its own step now, so "
                                      f"changing it re-evaluates runs without retraining them): move the value there")


def default_title(data: DataConfig) -> str:
    """REPORT.md's title when ``analysis.title`` is not set: named after the data the search ran on."""
    if data.source == "synthetic":
        difficulty = data.synthetic.difficulty
        return "beadseg demo search" if difficulty == "demo" else f"beadseg search on {difficulty} synthetic beads"
    images = Path(str(data.images))
    name = images.parent.name if images.name == "images" and images.parent.name else images.name
    return f"beadseg search on {name or images}"


def validate(params: Mapping[str, Any], source: str = "params.yaml") -> Config:
    """Validate a params dict (as read by PyYAML, DVC or Snakemake) into a :class:`Config`.

    Raises :class:`ConfigError` with every problem found, each naming its key.
    """
    if not isinstance(params, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(params).__name__}")
    params = normalize_numbers(params)
    _refuse_moved_settings(params, source)
    errors = _schema_errors(params)
    if errors:  # every problem of the file at once, one per line, each naming its key
        raise ConfigError("\n".join(f"{source}: {e}" for e in errors))

    props = schema()["properties"]
    data_raw = {**_defaults(props["data"]), **params.get("data", {})}
    synth_raw = {**_defaults(props["data"]["properties"]["synthetic"]), **data_raw.get("synthetic", {})}
    data_raw["synthetic"] = SyntheticConfig(**synth_raw)
    data = DataConfig(**data_raw)
    demo = (DEMO_IMAGES, DEMO_MASKS)
    if data.source == "synthetic" and (data.images, data.masks) != demo:
        raise ConfigError(f"{source}: with data.source synthetic the demo is written to {demo[0]} and {demo[1]}; "
                          "set data.images/data.masks to those, or set data.source: folder to use your own TIFFs")
    if data.val_fraction + data.test_fraction >= 1:
        raise ConfigError(f"{source}: data.val_fraction ({data.val_fraction}) + data.test_fraction "
                          f"({data.test_fraction}) must be below 1 so that images are left to train on")
    if data.normalize_low_pct >= data.normalize_high_pct:
        raise ConfigError(f"{source}: data.normalize_low_pct ({data.normalize_low_pct}) must be below "
                          f"data.normalize_high_pct ({data.normalize_high_pct})")

    tiling_raw = {**_defaults(props["tiling"]), **params.get("tiling", {})}
    tiling = TilingConfig(sizes=tuple(int(s) for s in tiling_raw["sizes"]),
                          stride_fraction=float(tiling_raw["stride_fraction"]),
                          small_images=tiling_raw["small_images"])

    train_defaults_raw = {**_defaults(schema()["$defs"]["train"]), **params.get("train", {})}
    defaults = TrainConfig.from_dict(train_defaults_raw)
    clash = sorted(set(params["runs"]) & set(params["finetune"]))
    if clash:
        raise ConfigError(f"{source}: run id(s) {clash} appear in both runs and finetune; run ids must be unique")
    for run_id, over in params["runs"].items():
        if (over or {}).get("init_from"):
            raise ConfigError(f"{source}: runs.{run_id} sets init_from: move it to the finetune table "
                              "(runs that start from another run's checkpoint live there, so DVC knows the dependency)")
    overrides = {run_id: dict(over or {}) for run_id, over in [*params["runs"].items(), *params["finetune"].items()]}
    runs = {run_id: TrainConfig.from_dict({**train_defaults_raw, **over}) for run_id, over in overrides.items()}
    _check_runs(runs, tiling, source)

    analysis = AnalysisConfig(**{**_defaults(props["analysis"]), "title": default_title(data),
                                 **params.get("analysis", {})})
    eval_raw = {**_defaults(props["evaluation"]), **params.get("evaluation", {})}
    auto_raw = {**_defaults(props["evaluation"]["properties"]["auto"]), **eval_raw.get("auto", {})}
    evaluation = EvaluationConfig(overlap=float(eval_raw["overlap"]), threshold=float(eval_raw["threshold"]),
                                  objects=eval_raw["objects"], min_bead_area=int(eval_raw["min_bead_area"]),
                                  iou_thresholds=tuple(sorted(float(t) for t in eval_raw["iou_thresholds"])),
                                  seed_distance=int(eval_raw["seed_distance"]), core=float(eval_raw["core"]),
                                  auto_cores=tuple(float(c) for c in auto_raw["cores"]),
                                  auto_thresholds=tuple(float(t) for t in auto_raw["thresholds"]),
                                  auto_seed_distances=tuple(int(d) for d in auto_raw["seed_distances"]),
                                  auto_min_bead_areas=tuple(int(a) for a in auto_raw["min_bead_areas"]))
    search = _search_config(params.get("search"), params, source)
    return Config(data=data, tiling=tiling, train_defaults=defaults, runs=runs, analysis=analysis, evaluation=evaluation,
                  overrides=overrides, finetune_ids=tuple(params["finetune"]), source=source, search=search)


def _search_config(raw: Mapping[str, Any] | None, params: Mapping[str, Any], source: str) -> SearchConfig | None:
    """The typed ``search:`` section; every run of every planned rung must be in its table (rung 0 in runs, later
    rungs in finetune)."""
    if raw is None:
        return None
    search = SearchConfig(name=str(raw["name"]), file=str(raw["file"]), digest=str(raw["digest"]),
                          method=str(raw["method"]), eta=int(raw["eta"]), min_epochs=int(raw["min_epochs"]),
                          budgets=tuple(int(b) for b in raw["budgets"]),
                          rungs=tuple(tuple(str(c) for c in rung) for rung in raw["rungs"]))
    problems = []
    if len(search.rungs) > len(search.budgets):
        problems.append(f"search.rungs: {len(search.rungs)} rungs planned but search.budgets has {len(search.budgets)}")
    if list(search.budgets) != sorted(set(search.budgets)):
        problems.append(f"search.budgets: {list(search.budgets)} must increase from rung to rung")
    for k in range(len(search.rungs)):
        table = "runs" if k == 0 else "finetune"
        missing = [r for r in search.rung_runs(k) if r not in (params.get(table) or {})]
        if missing:
            problems.append(f"search.rungs[{k}]: run(s) {missing} are not in {table}: params.yaml was edited after "
                            "`beadseg search run` wrote it; restore it (git checkout params.yaml) or remove the "
                            "search section to start over")
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
    return search


def _check_runs(runs: Mapping[str, TrainConfig], tiling: TilingConfig, source: str) -> None:
    """What the schema cannot say: settings that must agree with each other (model and loss names are schema
    enums, so validating never imports torch)."""
    problems = []
    for run_id, cfg in runs.items():
        for size in cfg.tile_sizes:
            if size not in tiling.sizes:
                problems.append(f"runs.{run_id}: tile size {size} is not in tiling.sizes {list(tiling.sizes)}; "
                                "add it there or change the run")
            elif size % (2 ** (cfg.depth - 1)):
                problems.append(f"runs.{run_id}: tile size {size} is not divisible by 2**(depth-1) = "
                                f"{2 ** (cfg.depth - 1)}")
        if cfg.norm == "group" and cfg.base_channels % cfg.groups:
            problems.append(f"runs.{run_id}: base_channels {cfg.base_channels} is not divisible by "
                            f"groups {cfg.groups} (GroupNorm)")
        if cfg.target != "mask" and cfg.sampler != "random_crop":
            problems.append(f"runs.{run_id}: target {cfg.target} needs sampler random_crop (the stored tiles keep "
                            "0/1 masks, not the instance labels its second output is made from)")
        if cfg.init_from is not None and cfg.init_from not in runs:
            problems.append(f"runs.{run_id}.init_from: '{cfg.init_from}' is not a run id in the run table")
    if not problems:
        for run_id in runs:  # cycles in init_from chains
            seen = [run_id]
            nxt = runs[run_id].init_from
            while nxt is not None:
                if nxt in seen:
                    problems.append(f"runs.{run_id}.init_from: cycle {' -> '.join([*seen, nxt])}")
                    break
                seen.append(nxt)
                nxt = runs[nxt].init_from
    if problems:
        raise ConfigError("\n".join(f"{source}: {p}" for p in problems))


def read_params(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file (no validation)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file '{path}' not found: run from the project root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]} "
                          f"(line {getattr(getattr(exc, 'problem_mark', None), 'line', -1) + 1})") from None
    return raw if raw is not None else {}


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate a params file."""
    return validate(read_params(path), source=str(path))
