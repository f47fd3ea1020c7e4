"""beadseg import under real DVC: the folder is copied, dvc add-ed, and the untracked-data warning goes away."""

from __future__ import annotations

import subprocess
import sys

import pytest

from beadseg.config import validate
from beadseg.data.ingest import is_tracked, untracked_warning
from beadseg.data.lookalikes import write_folder
from tests.helpers.tiny import tiny_params


def folder_data(images: str, masks: str):
    params = tiny_params()
    params["data"] = {"source": "folder", "images": images, "masks": masks}
    return validate(params).data



@pytest.mark.integration
def test_import_copies_and_dvc_adds_and_the_warning_goes_away(tmp_path, wf):
    root = wf.make_project(tmp_path / "p")
    outside = tmp_path / "microscope"
    write_folder(outside / "images", outside / "masks", "disks", n_images=3, size=64, seed=1)
    loose = folder_data(str(outside / "images"), str(outside / "masks"))
    warning = untracked_warning(loose, root)
    assert warning and "not stored by DVC" in warning and "beadseg import" in warning
    out = subprocess.run([sys.executable, "-m", "beadseg", "import", str(outside / "images"), "--masks",
                          str(outside / "masks"), "--name", "scope1"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (root / "data/raw/scope1.dvc").is_file()
    assert sorted(p.name for p in (root / "data/raw/scope1/images").iterdir()) == \
        sorted(p.name for p in (outside / "images").iterdir())
    assert is_tracked(root / "data/raw/scope1/images", root)
    assert untracked_warning(folder_data("data/raw/scope1/images", "data/raw/scope1/masks"), root) is None
    assert "data/raw/scope1/images" in out.stderr  # the params.yaml lines to set
    status = wf.run(["dvc", "status", "data/raw/scope1.dvc"], root).stdout
    assert "up to date" in status

