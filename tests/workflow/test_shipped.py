"""The three commands the product is known by, on what we ship: the shipped params.yaml and dvc.yaml with only
budget values made small (images, epochs, steps), under `snakemake --cores 2 --resources gpu=2`, under
`dvc repro` to REPORT.md, and the hand-over between them ending in `dvc metrics diff` after one lr edit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

pytestmark = pytest.mark.integration

#: Budget values only: fewer and no larger images, one short epoch. Every other setting is the shipped one.
BUDGET = {("data", "synthetic", "n_images"): 4, ("train", "max_epochs"): 1, ("train", "steps_per_epoch"): 2,
          ("train", "patience"): 1}


def shipped_params_on_a_budget() -> dict[str, Any]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for path, value in BUDGET.items():
        node = params
        for key in path[:-1]:
            node = node[key]
        assert path[-1] in node, f"params.yaml no longer has {'.'.join(path)}: update BUDGET"
        node[path[-1]] = value
    return params


def test_snakemake_then_dvc_repro_then_handover_lr_edit_and_metrics_diff(tmp_path: Path, wf) -> None:
    params = shipped_params_on_a_budget()
    runs = list(params["runs"])

    # 1. snakemake, as the README says (GPU resources declared; none here, so jobs train on the CPU)
    sm = wf.make_project(tmp_path / "snakemake", params=params)
    wf.run(["snakemake", "--cores", "2", "--resources", "gpu=2"], sm, timeout=900)
    assert (sm / "results/report/REPORT.md").is_file()
    assert wf.snakemake_jobs(sm) == []

    # 2. dvc repro on a fresh copy, to REPORT.md; then Snakemake takes it over with nothing to do
    dv = wf.make_project(tmp_path / "dvc", params=params)
    wf.run(["dvc", "repro"], dv, timeout=900)
    assert (dv / "results/report/REPORT.md").is_file() and wf.dvc_status(dv) == {}
    wf.sync(dv, "from-dvc")
    assert wf.snakemake_jobs(dv, "--max-checksum-file-size", "0") == []

    # 3. the Snakemake search handed to DVC, committed; one run's lr edited; dvc repro; dvc metrics diff
    wf.sync(sm, "to-dvc")
    assert wf.dvc_status(sm) == {} and wf.snakemake_jobs(sm, "--max-checksum-file-size", "0") == []
    wf.run(["git", "add", "-A"], sm)
    wf.run(["git", "commit", "-q", "-m", "search"], sm)
    changed = runs[0]
    wf.set_param(sm, f"runs.{changed}.lr", 1.0e-3)
    wf.run(["dvc", "repro"], sm, timeout=900)
    diff = json.loads(wf.run(["dvc", "metrics", "diff", "--json"], sm).stdout)
    run_files = {k for k in diff if k.startswith("results/runs/")}
    assert run_files == {f"results/runs/{changed}/metrics.json"}, diff
    assert diff[f"results/runs/{changed}/metrics.json"], diff
