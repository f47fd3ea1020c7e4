"""`beadseg predict` on folders and OME-TIFFs, and label TIFFs read back the way napari and Fiji read them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from beadseg.checkpoint import Normalization, save_model_file
from beadseg.cli import main
from beadseg.config import validate
from beadseg.data import io
from beadseg.data.synth import generate_pair
from tests.helpers.tiny import tiny_params
from tests.unit.test_predict import HIGH, LOW, _train_quickly

OME_UM = 0.2


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = validate(tiny_params()).run("a")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model_file(path, run_id="tiny-run", config=cfg, state_dict=_train_quickly(cfg),
                    normalization=Normalization(LOW, HIGH), epoch=1, best_val_jaccard=None, threshold=0.5)
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_folder_is_every_tiff_in_it_and_ome_physical_size_gives_microns(model_path: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEADSEG_DEVICE", "cpu")
    folder = tmp_path / "new"
    folder.mkdir()
    image, _ = generate_pair(128, 13)
    tifffile.imwrite(folder / "plain.tif", image)
    # an OME-TIFF written by tifffile: 200 nm pixels (PhysicalSizeX in another unit than OME's default µm)
    tifffile.imwrite(folder / "scope.ome.tif", image, metadata={"axes": "YX", "PhysicalSizeX": OME_UM * 1000,
                                                                "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 200.0})
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    tifffile.imwrite(folder / "sub" / "deeper.tif", image)  # not in the folder itself: left alone
    out = tmp_path / "out"
    assert main(["-q", "predict", "--model", str(model_path), "--out", str(out), "--threads", "1", str(folder)]) == 0
    summary = _rows(out / "summary.csv")
    assert [Path(r["image"]).name for r in summary] == ["plain.tif", "scope.ome.tif"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["summary.csv", "plain_labels.tif", "plain_prob.tif", "plain_beads.csv", "scope_labels.tif",
         "scope_prob.tif", "scope_beads.csv"])
    plain, scope = summary
    assert plain["unit"] == "" and plain["mean_equivalent_diameter_um"] == ""
    assert scope["unit"] == io.MICRON and float(scope["pixel_size"]) == pytest.approx(OME_UM)
    assert int(scope["n_beads"]) >= 2
    beads = _rows(out / "scope_beads.csv")
    for bead in beads:
        assert float(bead["equivalent_diameter_um"]) == pytest.approx(float(bead["equivalent_diameter_px"]) * OME_UM)
    assert float(scope["mean_equivalent_diameter_um"]) == pytest.approx(
        float(scope["mean_equivalent_diameter_px"]) * OME_UM)
    # the label image carries the OME pixel size on to Fiji
    assert io.read_pixel_size(out / "scope_labels.tif") == pytest.approx((OME_UM, io.MICRON))
    # predicting the folder into itself leaves this command's own outputs out
    assert main(["-q", "predict", "--model", str(model_path), "--out", str(out), "--threads", "1", str(out)]) == 2


def test_an_empty_folder_is_one_clear_line(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    rc = main(["-q", "predict", "--model", str(model_path), "--out", str(tmp_path / "o"), str(tmp_path / "empty")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert "holds no .tif/.tiff images" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_ome_pixel_size_known_answers(tmp_path: Path) -> None:
    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
           '<Pixels ID="Pixels:0" PhysicalSizeX="{x}"{unit} SizeX="2" SizeY="2"/></Image></OME>')
    assert io.ome_pixel_size(xml.format(x="0.65", unit="")) == (0.65, io.MICRON)  # OME's default unit is µm
    assert io.ome_pixel_size(xml.format(x="650", unit=' PhysicalSizeXUnit="nm"')) == pytest.approx((0.65, io.MICRON))
    assert io.ome_pixel_size(xml.format(x="1", unit=' PhysicalSizeXUnit="mm"')) == (1000.0, io.MICRON)
    assert io.ome_pixel_size(xml.format(x="0", unit="")) is None
    assert io.ome_pixel_size('<OME><Image><Pixels SizeX="2"/></Image></OME>') is None
    assert io.ome_pixel_size("not xml <") is None
    assert io.image_stem(Path("a.ome.tif")) == "a" and io.image_stem(Path("b.tiff")) == "b"
    assert io.image_stem(Path(".ome.tif")) == ".ome"


def test_label_tiff_opens_as_labels_in_napari_and_calibrated_in_fiji(tmp_path: Path) -> None:
    labels = np.zeros((6, 8), np.int64)
    labels[1:3, 1:3], labels[4:6, 5:8] = 1, 70000  # a label past 16 bits survives
    path = tmp_path / "x_labels.tif"
    io.write_labels_tiff(path, labels, (0.325, io.MICRON))
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        page = tif.pages.first
        # napari's builtin reader makes a labels layer of int32 / uint32 / int64 / uint64 data
        # (napari.layers.image._image_utils.guess_labels); uint16 opens as an image layer
        assert data.dtype == np.uint32 and np.array_equal(data, labels)
        # Fiji: the ImageJ description gives the unit and display range, XResolution the pixels per unit
        assert tif.is_imagej and tif.imagej_metadata == {"ImageJ": "1.11a", "images": 1, "min": 0, "max": 70000,
                                                         "unit": "micron"}
        assert int(page.resolutionunit) == 1  # NONE: the unit is ImageJ's, as ImageJ itself writes it
        num, den = page.tags["XResolution"].value
        assert den / num == pytest.approx(0.325) and page.tags["YResolution"].value == (num, den)
        assert "DateTime" not in page.tags and "Software" not in page.tags
    assert io.read_pixel_size(path) == pytest.approx((0.325, io.MICRON))
    io.write_labels_tiff(tmp_path / "nocal.tif", labels[:2, :2], None)
    with tifffile.TiffFile(tmp_path / "nocal.tif") as tif:
        assert tif.imagej_metadata is not None and "unit" not in tif.imagej_metadata
    assert io.read_pixel_size(tmp_path / "nocal.tif") is None
