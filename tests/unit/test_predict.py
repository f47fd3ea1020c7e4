"""`beadseg predict`: the model file's normalisation and threshold, label / probability TIFFs carrying the
input's pixel size, per-bead and summary tables, refusals before anything is written, pixel-size reading."""

from __future__ import annotations

import csv
import io as _io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from skimage.measure import regionprops

from beadseg.checkpoint import MODEL_FORMAT, Normalization, load_model_file, make_model, save_model_file, save_torch
from beadseg.cli import main
from beadseg.config import TrainConfig, validate
from beadseg.data import io
from beadseg.data.synth import generate_pair
from beadseg.errors import DataError
from beadseg.inference import predict_full
from beadseg.predict import BEAD_COLUMNS, SUMMARY_COLUMNS, _Progress
from tests.helpers.tiny import tiny_params

PIXEL_UM = 0.325
LOW, HIGH = 5.0, 95.0  # the model file's normalisation: deliberately not the old hard-coded 1 / 99.8


def _train_quickly(cfg: TrainConfig, steps: int = 25) -> dict[str, torch.Tensor]:
    """A tiny net trained for a few full-batch steps on synthetic beads normalised at LOW..HIGH."""
    torch.manual_seed(0)
    model = make_model(cfg)
    pairs = [generate_pair(64, seed) for seed in range(6)]
    x = torch.tensor(np.stack([io.normalize(i.astype(np.float32), LOW, HIGH) for i, _ in pairs])[:, None])
    y = torch.tensor(np.stack([m for _, m in pairs])[:, None].astype(np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(model(x), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def env() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEADSEG_DEVICE", "cpu")
        yield mp


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory, env: pytest.MonkeyPatch) -> Path:
    cfg = validate(tiny_params()).run("a")
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_model_file(path, run_id="tiny-run", config=cfg, state_dict=_train_quickly(cfg),
                    normalization=Normalization(LOW, HIGH), epoch=1, best_val_jaccard=None, threshold=0.5)
    return path


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    """a.tif: ImageJ file with a 0.325 µm pixel; b.tif: no calibration at all."""
    folder.mkdir(parents=True, exist_ok=True)
    a_img, _ = generate_pair(128, 13)
    b_img, _ = generate_pair(128, 11)
    a, b = folder / "a.tif", folder / "b.tif"
    tifffile.imwrite(a, a_img, imagej=True, resolution=(1 / PIXEL_UM, 1 / PIXEL_UM), metadata={"unit": "um"})
    tifffile.imwrite(b, b_img)
    return a, b


@pytest.fixture(scope="module")
def predicted(tmp_path_factory: pytest.TempPathFactory, model_path: Path) -> dict:
    root = tmp_path_factory.mktemp("predict")
    a, b = _write_inputs(root / "in")
    out = root / "out"
    rc = main(["-q", "predict", "--model", str(model_path), "--out", str(out), "--threads", "1", str(a), str(b)])
    assert rc == 0
    return {"a": a, "b": b, "out": out, "model": load_model_file(model_path)}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- normalisation and threshold
def test_probabilities_use_the_model_files_normalisation(predicted: dict) -> None:
    mf = predicted["model"]
    assert (mf.normalization.low_pct, mf.normalization.high_pct) == (LOW, HIGH)
    raw = io.read_image(predicted["a"])
    written = tifffile.imread(predicted["out"] / "a_prob.tif")
    assert written.dtype == np.float32 and written.shape == raw.shape

    def prob(image: np.ndarray) -> np.ndarray:
        return predict_full(mf.build(), image, tile=mf.tile_size, overlap=0.25, batch_size=mf.config.batch_size,
                            device="cpu", amp_dtype=None)

    expected = prob(mf.normalization.apply(raw))
    np.testing.assert_allclose(written, expected, atol=1e-5)
    hard_coded = prob(io.normalize(raw, low_pct=1.0, high_pct=99.8))
    assert float(np.abs(written - hard_coded).max()) > 0.05  # the old fixed percentiles give another map


def test_labels_come_from_the_written_probabilities_at_the_model_threshold(predicted: dict) -> None:
    from beadseg.instances import label_objects

    prob = tifffile.imread(predicted["out"] / "a_prob.tif")
    labels = tifffile.imread(predicted["out"] / "a_labels.tif")
    np.testing.assert_array_equal(labels, label_objects(prob, threshold=0.5, method="components", min_area=4))
    summary = _read_csv(predicted["out"] / "summary.csv")
    assert {row["threshold"] for row in summary} == {"0.5"}
    assert {row["objects"] for row in summary} == {"components"}
    assert {row["model_run_id"] for row in summary} == {"tiny-run"}


def test_threshold_and_objects_options_override(model_path: Path, tmp_path: Path) -> None:
    a, _ = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["-q", "predict", "--model", str(model_path), "--out", str(out), "--threshold", "0.8",
                 "--objects", "watershed", "--min-area", "0", "--threads", "1", str(a)]) == 0
    from beadseg.instances import label_objects

    prob = tifffile.imread(out / "a_prob.tif")
    labels = tifffile.imread(out / "a_labels.tif")
    np.testing.assert_array_equal(labels, label_objects(prob, threshold=0.8, method="watershed", min_area=0))
    (row,) = _read_csv(out / "summary.csv")
    assert (row["threshold"], row["objects"], row["min_area"]) == ("0.8", "watershed", "0")


# --------------------------------------------------------------------------- label TIFF and pixel size
def test_label_tiff_is_imagej_uint32_with_the_inputs_pixel_size(predicted: dict) -> None:
    out = predicted["out"]
    with tifffile.TiffFile(out / "a_labels.tif") as tif:
        assert tif.is_imagej
        labels = tif.asarray()
        tags = tif.pages.first.tags
        assert "DateTime" not in tags and "Software" not in tags
    assert labels.dtype == np.uint32 and labels.shape == (128, 128)  # napari: a labels layer
    assert labels.max() >= 2  # the quickly trained net finds beads
    size, unit = io.read_pixel_size(out / "a_labels.tif")
    assert unit == io.MICRON and size == pytest.approx(PIXEL_UM, rel=1e-9)
    size, unit = io.read_pixel_size(out / "a_prob.tif")
    assert unit == io.MICRON and size == pytest.approx(PIXEL_UM, rel=1e-9)
    assert io.read_pixel_size(out / "b_labels.tif") is None
    assert tifffile.imread(out / "b_labels.tif").dtype == np.uint32


def test_write_labels_tiff_is_deterministic_and_atomic(tmp_path: Path) -> None:
    labels = np.arange(64, dtype=np.int32).reshape(8, 8)
    path = tmp_path / "l.tif"
    io.write_labels_tiff(path, labels, (0.5, io.MICRON))
    first = path.read_bytes()
    io.write_labels_tiff(path, labels, (0.5, io.MICRON))
    assert path.read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.tif"]  # no temporary file left behind


def test_more_beads_than_fiji_holds_exactly_is_a_clear_error(tmp_path: Path) -> None:
    labels = np.array([[0, 1], [2, 2**24 + 1]], dtype=np.int64)  # a label past 2**24 (exact in 32-bit float)
    with pytest.raises(DataError, match=str(2**24)):
        io.write_labels_tiff(tmp_path / "many.tif", labels, None)
    assert not any(tmp_path.iterdir())


Capsys = pytest.CaptureFixture[str]


def test_predict_refuses_an_image_with_too_many_beads(model_path: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    import beadseg.instances

    def too_many(prob: np.ndarray, threshold: float = 0.5, method: str = "components", min_area: int = 4,
                 seed_distance: int = 3) -> np.ndarray:
        return np.arange(prob.size, dtype=np.int64).reshape(prob.shape) + 2**24 - 10

    monkeypatch.setattr(beadseg.instances, "label_objects", too_many)
    big = tmp_path / "in" / "big.tif"
    big.parent.mkdir()
    tifffile.imwrite(big, np.random.default_rng(0).integers(0, 1000, (300, 300), dtype=np.uint16))
    out = tmp_path / "out"
    assert main(["-q", "predict", "--model", str(model_path), "--out", str(out), "--threads", "1", str(big)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(2**24) in err and "big.tif" in err and len(err.splitlines()) == 1
    assert not (out / "big_labels.tif").exists() and not (out / "big_beads.csv").exists()


# --------------------------------------------------------------------------- tables
def test_bead_csv_matches_regionprops_of_the_label_image(predicted: dict) -> None:
    out = predicted["out"]
    for stem, pixel in (("a", PIXEL_UM), ("b", None)):
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        raw = io.read_image(predicted[stem])
        regions = regionprops(labels, intensity_image=raw)
        rows = _read_csv(out / f"{stem}_beads.csv")
        assert tuple(rows[0].keys()) == BEAD_COLUMNS
        assert len(rows) == len(regions) == len(np.unique(labels)) - 1 >= 1
        for row, region in zip(rows, regions, strict=True):
            assert int(row["label"]) == region.label
            assert int(row["area_px"]) == region.area
            assert float(row["centroid_y"]) == pytest.approx(region.centroid[0])
            assert float(row["centroid_x"]) == pytest.approx(region.centroid[1])
            assert float(row["equivalent_diameter_px"]) == pytest.approx(math.sqrt(4 * region.area / math.pi))
            assert float(row["mean_intensity"]) == pytest.approx(float(raw[labels == region.label].mean()))
            assert float(row["mean_intensity"]) > 2.0  # the RAW image (uint16 counts), not the 0..1 normalised one
            if pixel is None:
                assert row["equivalent_diameter_um"] == "" and row["area_um2"] == ""
            else:
                assert float(row["equivalent_diameter_um"]) == pytest.approx(
                    float(row["equivalent_diameter_px"]) * pixel)
                assert float(row["area_um2"]) == pytest.approx(region.area * pixel * pixel)


def test_summary_has_one_row_per_image(predicted: dict) -> None:
    out = predicted["out"]
    rows = _read_csv(out / "summary.csv")
    assert tuple(rows[0].keys()) == SUMMARY_COLUMNS
    assert [r["image"] for r in rows] == [str(predicted["a"]), str(predicted["b"])]
    for row, stem in zip(rows, ("a", "b"), strict=True):
        beads = _read_csv(out / f"{stem}_beads.csv")
        labels = tifffile.imread(out / f"{stem}_labels.tif")
        assert int(row["n_beads"]) == len(beads)
        assert float(row["bead_area_fraction"]) == pytest.approx(np.count_nonzero(labels) / labels.size)
        d = [float(b["equivalent_diameter_px"]) for b in beads]
        assert float(row["mean_equivalent_diameter_px"]) == pytest.approx(np.mean(d))
        assert float(row["median_equivalent_diameter_px"]) == pytest.approx(np.median(d))
    a, b = rows
    assert float(a["pixel_size"]) == pytest.approx(PIXEL_UM) and a["unit"] == io.MICRON
    assert float(a["mean_equivalent_diameter_um"]) == pytest.approx(float(a["mean_equivalent_diameter_px"]) * PIXEL_UM)
    assert b["pixel_size"] == b["unit"] == b["mean_equivalent_diameter_um"] == ""
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}_{k}" for s in "ab" for k in ("labels.tif", "prob.tif", "beads.csv")] + ["summary.csv"])


# --------------------------------------------------------------------------- refusals before writing
def _predict(model_path: Path, out: Path, *inputs: Path | str) -> int:
    return main(["-q", "predict", "--model", str(model_path), "--out", str(out), "--threads", "1",
                 *map(str, inputs)])


@pytest.mark.parametrize("names", [("a/x.tif", "b/x.tif"), ("x.tif", "x.tiff")])
def test_colliding_stems_are_refused_and_nothing_is_written(model_path: Path, tmp_path: Path, capsys: Capsys,
                                                            names: tuple[str, str]) -> None:
    img, _ = generate_pair(64, 1)
    paths = []
    for name in names:
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(path, img)
        paths.append(path)
    out = tmp_path / "out"
    assert _predict(model_path, out, *paths) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(paths[0]) in err and str(paths[1]) in err
    assert not out.exists()


def test_bad_inputs_are_refused_before_any_output(model_path: Path, tmp_path: Path, capsys: Capsys) -> None:
    good, _ = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    png = tmp_path / "in" / "c.png"
    png.write_bytes(b"\x89PNG\r\n")
    broken = tmp_path / "in" / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    stack = tmp_path / "in" / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 32, 32), np.uint16), photometric="minisblack")
    cases = {
        "does not exist": [good, tmp_path / "in" / "missing.tif"],
        "is not a TIFF": [good, png],
        "cannot read": [good, broken],
        "single-plane 2-D": [good, stack],
    }
    for message, inputs in cases.items():
        assert _predict(model_path, out, *inputs) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists(), message
    a_file = tmp_path / "taken"
    a_file.write_text("x")
    assert _predict(model_path, a_file, good) == 2
    assert "is an existing file" in capsys.readouterr().err
    assert a_file.read_text() == "x"


def test_an_old_model_file_is_one_clear_line(tmp_path: Path, capsys: Capsys) -> None:
    cfg = validate(tiny_params()).run("a")
    old = tmp_path / "old.pt"
    save_torch(old, {"format": MODEL_FORMAT, "version": 1, "run_id": "old-run", "epoch": 3,
                     "config": cfg.to_dict(), "state_dict": make_model(cfg).state_dict()})
    good, _ = _write_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(old), "--out", str(out), str(good)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("beadseg predict: error:") and "format-1" in err and "old-run" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_run_option_finds_the_runs_model_file(model_path: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    from beadseg.paths import model_file

    monkeypatch.chdir(tmp_path)
    model_file("r1").parent.mkdir(parents=True)
    model_file("r1").write_bytes(model_path.read_bytes())
    good, _ = _write_inputs(tmp_path / "in")
    assert main(["predict", "--run", "r1", "--out", "out", "--threads", "1", str(good)]) == 0
    assert (tmp_path / "out" / "a_labels.tif").is_file()
    err = capsys.readouterr().err
    assert "predict: 1/1" in err and "\r" not in err  # not a terminal: plain lines
    assert main(["predict", "--run", "missing", "--out", "out2", str(good)]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # --model and --run together
        main(["predict", "--run", "r1", "--model", str(model_path), "--out", "out", str(good)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):  # neither
        main(["predict", "--out", "out", str(good)])


def test_quiet_prints_nothing(predicted: dict, model_path: Path, tmp_path: Path, capsys: Capsys) -> None:
    assert _predict(model_path, tmp_path / "out", predicted["a"]) == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_on_a_terminal() -> None:
    class Tty(_io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = _Progress(2, True, stream)
    row = {"n_beads": 3, "bead_area_fraction": 0.1}
    bar.update(1, Path("a.tif"), row, Path("out/a_labels.tif"))
    bar.update(2, Path("b.tif"), row, Path("out/b_labels.tif"))
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1 and "2/2" in text
    plain = _io.StringIO()
    _Progress(2, True, plain).update(1, Path("a.tif"), row, Path("out/a_labels.tif"))
    assert "\r" not in plain.getvalue() and plain.getvalue().count("\n") == 1
    silent = Tty()
    _Progress(2, False, silent).update(1, Path("a.tif"), row, Path("out/a_labels.tif"))
    assert silent.getvalue() == ""


# --------------------------------------------------------------------------- read_pixel_size
def test_read_pixel_size_imagej_spacing_and_units(tmp_path: Path) -> None:
    img = np.zeros((8, 8), np.uint16)
    spacing = tmp_path / "spacing.tif"
    tifffile.imwrite(spacing, img, imagej=True, metadata={"spacing": 0.5, "unit": "micron"})
    assert io.read_pixel_size(spacing) == (pytest.approx(0.5), io.MICRON)
    escaped = tmp_path / "escaped.tif"  # how ImageJ itself writes µm
    tifffile.imwrite(escaped, img, imagej=True, resolution=(4.0, 4.0), metadata={"unit": "\\u00B5m"})
    assert io.read_pixel_size(escaped) == (pytest.approx(0.25), io.MICRON)
    nm = tmp_path / "nm.tif"
    tifffile.imwrite(nm, img, imagej=True, resolution=(0.01, 0.01), metadata={"unit": "nm"})
    assert io.read_pixel_size(nm) == (pytest.approx(0.1), io.MICRON)
    uncalibrated = tmp_path / "pixel.tif"
    tifffile.imwrite(uncalibrated, img, imagej=True, metadata={"unit": "pixel"})
    assert io.read_pixel_size(uncalibrated) is None


def test_read_pixel_size_resolution_tags(tmp_path: Path) -> None:
    img = np.zeros((8, 8), np.uint16)
    cm = tmp_path / "cm.tif"
    tifffile.imwrite(cm, img, resolution=(20000.0, 20000.0), resolutionunit="CENTIMETER")  # 20000 px/cm
    assert io.read_pixel_size(cm) == (pytest.approx(0.5), io.MICRON)
    inch = tmp_path / "inch.tif"
    tifffile.imwrite(inch, img, resolution=(25400.0, 25400.0), resolutionunit="INCH")
    assert io.read_pixel_size(inch) == (pytest.approx(1.0), io.MICRON)


def test_read_pixel_size_none_without_calibration(tmp_path: Path) -> None:
    img = np.zeros((8, 8), np.uint16)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, img)  # the default: 1 pixel per (no) unit
    assert io.read_pixel_size(plain) is None
    imagej = tmp_path / "imagej.tif"
    tifffile.imwrite(imagej, img, imagej=True)
    assert io.read_pixel_size(imagej) is None
    with pytest.raises(DataError, match="does not exist"):
        io.read_pixel_size(tmp_path / "missing.tif")
