"""`beadseg import`: a user's folder brought in as DVC-tracked data; the fingerprint warns about loose data."""

from __future__ import annotations

import pytest

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
