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



def test_imported_data_travels_push_fresh_clone_pull_and_nothing_reruns(tmp_path, wf):
    """A colleague's `git clone` + `dvc pull` gets the images a model was trained on, and `dvc repro` re-runs
    nothing: the imported folder is DVC data, and the demo's synth stage stays untouched by folder data."""
    params = wf.tiny_params()
    params["runs"] = {"t64_dice": {"tile_size": 64, "loss": "dice"}}
    root = wf.make_project(tmp_path / "lab" / "p", params=params)
    outside = tmp_path / "microscope"
    write_folder(outside / "images", outside / "masks", "disks", n_images=4, size=128, seed=2)
    wf.run([sys.executable, "-m", "beadseg", "import", str(outside / "images"), "--masks", str(outside / "masks"),
            "--name", "scope1"], root)
    wf.set_param(root, "data.source", "folder")
    wf.set_param(root, "data.images", "data/raw/scope1/images")
    wf.set_param(root, "data.masks", "data/raw/scope1/masks")
    proc = wf.run(["dvc", "repro"], root, timeout=600)
    assert "untracked" not in proc.stdout + proc.stderr and "not stored by DVC" not in proc.stdout + proc.stderr
    assert wf.dvc_status(root) == {}
    wf.run(["git", "add", "-A"], root)
    wf.run(["git", "commit", "-q", "-m", "scope1 search"], root)
    wf.run(["dvc", "push"], root)  # the default remote: a folder next to the project (.dvc/config)

    clone = tmp_path / "colleague" / "p"
    clone.parent.mkdir()
    wf.run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    wf.run(["dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "lab" / "beadseg-dvc-remote")], clone)
    assert not (clone / "data/raw/scope1/images").exists()  # git alone does not carry the images
    wf.run(["dvc", "pull"], clone)
    assert wf.sha256_tree(clone, ["data/raw/scope1"]) == wf.sha256_tree(root, ["data/raw/scope1"])
    assert wf.dvc_status(clone) == {}  # synth included: the demo stage is not shown as changed
    assert wf.dvc_would_run(clone) == []  # dvc repro re-runs nothing
    assert (clone / "results/runs/t64_dice/model.pt").read_bytes() == (root / "results/runs/t64_dice/model.pt").read_bytes()
