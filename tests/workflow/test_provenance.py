"""Provenance across steps run as processes: a missing folder stops every later step (beadseg CLI and real Snakemake)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from beadseg import paths
from beadseg.config import validate
from tests.helpers.tiny import run_beadseg, tiny_params, tiny_project_with_params


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_project_with_params(tmp_path)


beadseg = run_beadseg



def test_a_preset_whose_folder_does_not_exist_stops_every_later_step(project):
    """The scenario of the issue: the demo has run, then params.yaml names a folder nobody created."""
    from beadseg.train import train_run

    train_run(validate(tiny_params(max_epochs=1)), "a", root=project, progress=False)
    model = (project / paths.model_file("a")).read_bytes()
    params = tiny_params()
    params["data"] = {"source": "folder", "images": "data/raw/images", "masks": "data/raw/masks"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for step in (["tile", "--size", "64"], ["train", "--run", "a", "--threads", "1"], ["evaluate", "--run", "a"],
                 ["baseline"]):
        out = beadseg(project, *step)
        assert out.returncode == 2, out.stderr
        (line,) = out.stderr.strip().splitlines()
        assert "data.source 'synthetic' -> 'folder'" in line and "beadseg split" in line, line
    assert (project / paths.model_file("a")).read_bytes() == model  # nothing was overwritten


@pytest.mark.integration
def test_snakemake_stops_at_parse_time_when_the_folder_does_not_exist(tmp_path, wf):
    root = wf.make_project(tmp_path / "p", git=False)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"] = {**params["data"], "source": "folder", "images": "data/raw/images", "masks": "data/raw/masks"}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = wf.run(["snakemake", "-n", "--cores", "1"], root, check=False)
    assert out.returncode != 0
    assert "data.images 'data/raw/images' in params.yaml does not exist: point it at" in out.stdout + out.stderr

