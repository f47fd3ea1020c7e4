"""Glue used by the Snakefile at parse time: validate the config Snakemake read, with a clear message."""

from __future__ import annotations

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
    if cfg.data.source == "folder":
        for key, folder in (("data.images", cfg.data.images), ("data.masks", cfg.data.masks)):
            if not Path(folder).is_dir():
                raise WorkflowError(f"beadseg: {key} '{folder}' in {source} is not a folder: create it with your "
                                    "TIFFs, or point params.yaml at the folder that holds them")
    if on_disk != cfg:
        raise WorkflowError(
            "beadseg: the config Snakemake sees differs from params.yaml (from --config or --configfile?); "
            "every step reads params.yaml, so edit params.yaml (or copy a preset over it) instead"
        )
    return cfg
