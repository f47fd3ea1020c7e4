"""`beadseg import`: a user's folder brought in as DVC-tracked data; the fingerprint warns about loose data."""

from __future__ import annotations

import pytest
import yaml

from beadseg.config import validate
from beadseg.data.ingest import add_folder
from beadseg.data.lookalikes import write_folder
from beadseg.errors import DataError
from tests.helpers.tiny import tiny_params


def folder_data(images: str, masks: str):
    params = tiny_params()
    params["data"] = {"source": "folder", "images": images, "masks": masks}
    return validate(params).data


def test_a_bad_pair_copies_nothing(tmp_path):
    write_folder(tmp_path / "mine/images", tmp_path / "mine/masks", "blobs", n_images=2, size=64, seed=0)
    (tmp_path / "mine/masks/img_001.tif").unlink()
    with pytest.raises(DataError, match="has no mask"):
        add_folder(tmp_path / "mine/images", tmp_path / "mine/masks", "mine", root=tmp_path, dvc=False)
    assert not (tmp_path / "data/raw").exists() or not any((tmp_path / "data/raw").iterdir())


def test_names_that_are_not_folder_names_and_existing_targets_are_refused(tmp_path):
    with pytest.raises(DataError, match="not a plain folder name"):
        add_folder(tmp_path, tmp_path, "../escape", root=tmp_path, dvc=False)
    (tmp_path / "data/raw/taken").mkdir(parents=True)
    with pytest.raises(DataError, match="exists already"):
        add_folder(tmp_path, tmp_path, "taken", root=tmp_path, dvc=False)


# --------------------------------------------------------------------------- presets and params meet the import
def test_import_name_and_the_missing_data_line(tmp_path):
    from beadseg.data.ingest import import_name, missing_data_line

    assert import_name("data/raw/scope1/images") == "scope1" and import_name("data/raw/scope1/masks") == "scope1"
    assert import_name("data/raw/images") is None and import_name("/elsewhere/images") is None
    line = missing_data_line(folder_data("data/raw/mydata/images", "data/raw/mydata/masks"), "params.yaml", tmp_path)
    assert line == ("data.images 'data/raw/mydata/images' in params.yaml does not exist: bring your TIFFs in with "
                    "`beadseg import IMAGES_DIR --masks MASKS_DIR --name mydata` (it makes data/raw/mydata/images and "
                    "masks), or point data.images at the folder that holds them")
    (tmp_path / "data/raw/mydata/images").mkdir(parents=True)
    assert missing_data_line(folder_data("data/raw/mydata/images", "data/raw/mydata/masks"), "p", tmp_path) \
        .startswith("data.masks 'data/raw/mydata/masks' in p does not exist")
    (tmp_path / "data/raw/mydata/masks").mkdir()
    assert missing_data_line(folder_data("data/raw/mydata/images", "data/raw/mydata/masks"), "p", tmp_path) is None
    elsewhere = missing_data_line(folder_data("/no/such/images", "/no/such/masks"), "p", tmp_path)
    assert "--set-params" in elsewhere and "/no/such/images" in elsewhere
    assert missing_data_line(validate(tiny_params()).data, "p", tmp_path) is None  # synthetic: written by synth


def test_set_data_lines_keeps_everything_else():
    from beadseg.data.ingest import set_data_lines
    from tests.helpers import REPO

    text = (REPO / "params.yaml").read_text()
    new = set_data_lines(text, "data/raw/scope1/images", "data/raw/scope1/masks")
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert len(new.splitlines()) == len(text.splitlines()) and len(changed) == 3
    assert [b.split("#")[0].strip() for _, b in changed] == ["source: folder", "images: data/raw/scope1/images",
                                                            "masks: data/raw/scope1/masks"]
    assert all("#" not in a or a.split("#", 1)[1] == b.split("#", 1)[1] for a, b in changed)  # comments kept
    data = yaml.safe_load(new)["data"]
    assert {k: data[k] for k in ("source", "images", "masks")} == {
        "source": "folder", "images": "data/raw/scope1/images", "masks": "data/raw/scope1/masks"}
    assert yaml.safe_load(set_data_lines("data:\n  val_fraction: 0.2\nruns: {}\n", "i", "m"))["data"] == {
        "source": "folder", "images": "i", "masks": "m", "val_fraction": 0.2}
    assert yaml.safe_load(set_data_lines("runs: {}\n", "i", "m"))["data"]["images"] == "i"
    with pytest.raises(DataError, match="inline"):
        set_data_lines("data: {source: synthetic}\n", "i", "m")


def test_import_set_params_writes_the_data_lines_after_validation(tmp_path, monkeypatch, capsys):
    from beadseg.cli import main

    write_folder(tmp_path / "mine/images", tmp_path / "mine/masks", "blobs", n_images=2, size=64, seed=0)
    monkeypatch.chdir(tmp_path)
    params = tiny_params()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    args = ["import", "mine/images", "--masks", "mine/masks", "--no-dvc", "--set-params"]
    assert main([*args, "--name", "scope1"]) == 0
    assert "params.yaml now reads it" in capsys.readouterr().err
    data = yaml.safe_load((tmp_path / "params.yaml").read_text())["data"]
    assert (data["source"], data["images"], data["masks"]) == ("folder", "data/raw/scope1/images",
                                                               "data/raw/scope1/masks")
    assert main(["validate"]) == 0 and "warning" not in capsys.readouterr().err
    # a params file that would not validate copies nothing and is left as it was
    (tmp_path / "params.yaml").write_text("data:\n  source: synthetic\nrunz: {}\n")
    assert main([*args, "--name", "scope2"]) == 2
    assert "runz" in capsys.readouterr().err
    assert not (tmp_path / "data/raw/scope2").exists()
    assert (tmp_path / "params.yaml").read_text() == "data:\n  source: synthetic\nrunz: {}\n"
