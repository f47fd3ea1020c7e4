"""Glue used by the Snakefile at parse time: validate the config Snakemake read, with a clear message."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from beadseg.config import Config, load_config, validate
from beadseg.errors import BeadsegError


def validate_for_snakemake(config: Mapping[str, Any], configfiles: Sequence[str]) -> Config:
    """Validate Snakemake's ``config``; the `beadseg` CLI reads params.yaml itself, so the two must agree.

    ``--config key=value`` overrides (or several ``--configfile`` merged together) would make the
    Snakefile and the CLI see different settings; that is refused with a message saying what to do.
    """
    from snakemake.exceptions import WorkflowError

    source = str(configfiles[-1]) if configfiles else "params.yaml"
    try:
        cfg = validate(dict(config), source=source)
        on_disk = load_config("params.yaml")
    except BeadsegError as exc:
        raise WorkflowError(f"beadseg: {exc}") from None
    from beadseg.data.ingest import missing_data_line

    missing = missing_data_line(cfg.data, source)
    if missing is not None:
        raise WorkflowError(f"beadseg: {missing}")
    if on_disk != cfg:
        raise WorkflowError(
            "beadseg: the config Snakemake sees differs from params.yaml (from --config or --configfile?); "
            "every step reads params.yaml, so edit params.yaml (or copy a preset over it) instead"
        )
    return cfg


PIPELINE_FILES = ("Snakefile", "dvc.yaml", ".gitignore", ".dvcignore")


def source_checkout() -> Path:
    """The beadseg source checkout this package runs from (the folder holding Snakefile and workflow/)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "Snakefile").is_file() or not (root / "workflow").is_dir():
        raise BeadsegError(f"{root} is not a beadseg source checkout (no Snakefile / workflow/ there): "
                           "install beadseg with `pip install -e .` from a clone to copy its pipeline")
    return root


def copy_pipeline(dest: Path) -> Path:
    """Copy the pipeline (Snakefile, workflow/, dvc.yaml, ignore files) of this checkout into ``dest``.

    For tests and benchmarks that need a throw-away project; params.yaml is left to the caller."""
    src = source_checkout()
    dest.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    shutil.copytree(src / "workflow", dest / "workflow", ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    return dest
