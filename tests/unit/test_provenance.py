"""Every step after the split refuses data the current params.yaml does not name (beadseg.data.provenance)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from beadseg import paths
from beadseg.config import validate
from beadseg.data.provenance import check_split
from beadseg.errors import DataError
from tests.helpers.tiny import run_beadseg, tiny_params, tiny_project_with_params


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return tiny_project_with_params(tmp_path)


beadseg = run_beadseg


def test_other_data_settings_are_refused_naming_the_setting_and_the_step_to_rerun(project):
    check_split(validate(tiny_params()).data, project, step="tile")  # the settings it was made with pass
    params = tiny_params()
    params["data"]["val_fraction"] = 0.5
    with pytest.raises(DataError, match=r"data.val_fraction 0.25 -> 0.5.*beadseg split"):
        check_split(validate(params).data, project, step="tile")


def test_changed_image_contents_are_refused_but_the_same_bytes_rewritten_pass(project):
    data = validate(tiny_params()).data
    image = sorted((project / data.images).glob("*.tif"))[0]
    original = image.read_bytes()
    image.write_bytes(original)  # same bytes, new mtime: what dvc checkout / pull do
    os.utime(image, ns=(1, 1))
    check_split(data, project, step="train[a]")
    changed = bytearray(original)
    changed[-1] ^= 0xFF
    image.write_bytes(bytes(changed))
    with pytest.raises(DataError, match="changed since the split"):
        check_split(data, project, step="train[a]")


def test_an_added_image_is_refused(project):
    data = validate(tiny_params()).data
    for folder in (data.images, data.masks):
        first = sorted((project / folder).glob("*.tif"))[0]
        shutil.copy2(first, first.with_name("extra.tif"))
    with pytest.raises(DataError, match="4 pairs|8 files then, 10 now"):
        check_split(data, project, step="tile")


def test_a_split_from_an_older_beadseg_is_refused(project):
    manifest = project / paths.split_manifest()
    record = json.loads(manifest.read_text())
    record.pop("provenance")
    manifest.write_text(json.dumps(record))
    with pytest.raises(DataError, match="older beadseg"):
        check_split(validate(tiny_params()).data, project, step="tile")


def test_synth_never_writes_into_the_users_folder(tmp_path):
    """DVC runs the synth stage whatever the source: with data.source folder it must not touch data.images."""
    params = tiny_params()
    params["data"] = {"source": "folder", "images": "mine/images", "masks": "mine/masks",
                      "synthetic": {"n_images": 2, "size": 64, "seed": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = beadseg(tmp_path, "synth")
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "mine").exists()
    assert len(list((tmp_path / "data/raw/demo/images").glob("*.tif"))) == 2
