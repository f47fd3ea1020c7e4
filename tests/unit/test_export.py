"""`beadseg export`: the TorchScript file reproduces `beadseg predict`'s probabilities and carries the model file's
normalisation and threshold; the bioimage.io package declares the same normalisation and validates with
bioimageio.spec; refusals write nothing."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from beadseg.checkpoint import load_model_file
from beadseg.cli import main
from beadseg.data import io
from beadseg.evaluate import evaluate_run
from beadseg.export import (
    TOLERANCE,
    beadseg_probabilities,
    center_crop,
    crop_side,
    load_standalone,
    standalone_module,
    trace_network,
)
from beadseg.scoring import for_prediction
from beadseg.train import train_run
from tests.helpers.tiny import make_tiny_project, tiny_params


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tiny project with one trained and evaluated run 'a' (tile 64, depth 3), exported to export/a."""
    root = tmp_path_factory.mktemp("export")
    params = tiny_params(max_epochs=2)
    cfg = make_tiny_project(root, params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEADSEG_DEVICE", "cpu")
        train_run(cfg, "a", threads=1, root=root, progress=False)
        evaluate_run(cfg, "a", threads=1, root=root, progress=False)  # its scoring record: predict's defaults
        mp.chdir(root)
        assert main(["-q", "export", "--run", "a", "--author", "Test Author"]) == 0
        yield root


def test_torchscript_equals_beadseg_predict_on_the_test_input(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("BEADSEG_DEVICE", "cpu")
    package = project / "export" / "a" / "bioimageio"
    raw = np.load(package / "test_input.npy")
    assert raw.shape == (1, 1, 64, 64)  # one tile of the run (tile_size 64) from a 128x128 validation image
    tifffile.imwrite(project / "crop.tif", raw[0, 0])
    assert main(["-q", "predict", "--run", "a", "--out", "pred", "--threads", "1", "crop.tif"]) == 0
    predicted = tifffile.imread(project / "pred" / "crop_prob.tif")
    module, record = load_standalone(project / "export" / "a" / "a.torchscript.pt")
    with torch.inference_mode():
        scripted = module(torch.from_numpy(raw))[0, 0].numpy()
    assert np.abs(scripted - predicted).max() <= TOLERANCE
    assert np.abs(np.load(package / "test_output.npy")[0, 0] - predicted).max() <= TOLERANCE
    # the package's own weights: the network alone, on the normalised input, then the sigmoid postprocessing
    model = load_model_file(project / "results" / "runs" / "a" / "model.pt")
    weights = torch.jit.load(str(package / "weights.torchscript.pt"))
    with torch.inference_mode():
        logits = weights(torch.from_numpy(model.normalization.apply(raw[0, 0]))[None, None])
    assert np.abs(torch.sigmoid(logits)[0, 0].numpy() - predicted).max() <= TOLERANCE


def test_torchscript_carries_the_model_files_normalisation_and_threshold(project: Path) -> None:
    model = load_model_file(project / "results" / "runs" / "a" / "model.pt")
    module, record = load_standalone(project / "export" / "a" / "a.torchscript.pt")
    assert (module.low_pct, module.high_pct) == (model.normalization.low_pct, model.normalization.high_pct)
    assert (module.tile_size, module.size_multiple, module.run_id) == (64, 4, "a")
    scored = for_prediction(model)  # what `beadseg predict` uses by default
    assert (module.threshold, module.objects, record["min_area"]) == (scored.threshold, scored.objects, scored.min_area)
    assert record["model_file_threshold"] == model.threshold
    assert record["normalization"] == model.normalization.to_dict()
    # any multiple of the pooling step and any batch: the same as beadseg's normalisation + network per image
    images = np.stack([io.read_image(p) for p in sorted((project / "data/raw/demo/images").glob("*.tif"))[:2]])
    crops = np.stack([img[:96, :120] for img in images])
    with torch.inference_mode():
        got = module(torch.from_numpy(crops)[:, None]).numpy()[:, 0]
    for crop, prob in zip(crops, got):
        assert np.abs(prob - beadseg_probabilities(model, crop)).max() <= TOLERANCE


def test_standalone_normalisation_follows_beadseg_on_flat_and_constant_images(project: Path) -> None:
    model = load_model_file(project / "results" / "runs" / "a" / "model.pt")
    module = standalone_module(model, trace_network(model, 8), 0.5, "components")
    flat = np.zeros((32, 32), np.float32)
    flat[:3, :3] = 5.0  # the percentiles meet: min..max scaling, as io.normalize does
    for image in (flat, np.full((32, 32), 7.0, np.float32)):
        with torch.inference_mode():
            got = module(torch.from_numpy(image)[None, None])[0, 0].numpy()
        assert np.abs(got - beadseg_probabilities(model, image)).max() <= TOLERANCE


def test_package_declares_the_same_processing_and_validates(project: Path) -> None:
    model = load_model_file(project / "results" / "runs" / "a" / "model.pt")
    package = project / "export" / "a" / "bioimageio"
    rdf = yaml.safe_load((package / "rdf.yaml").read_text())
    pre = rdf["inputs"][0]["preprocessing"]
    assert [p["id"] for p in pre] == ["scale_range", "clip"]
    assert (pre[0]["kwargs"]["min_percentile"], pre[0]["kwargs"]["max_percentile"]) == (
        model.normalization.low_pct, model.normalization.high_pct)
    assert rdf["outputs"][0]["postprocessing"] == [{"id": "sigmoid"}]
    assert rdf["config"]["beadseg"]["threshold"] == for_prediction(model).threshold
    assert rdf["authors"] == [{"name": "Test Author"}] and rdf["license"] == "CC-BY-4.0" and rdf["cite"]
    with zipfile.ZipFile(project / "export" / "a" / "a.bioimageio.zip") as zf:
        assert sorted(zf.namelist()) == sorted(p.name for p in package.iterdir())
    pytest.importorskip("bioimageio.spec")  # in the test extra (CI); beadseg[export] for users
    from bioimageio.spec import load_description

    for source in (package / "rdf.yaml", project / "export" / "a" / "a.bioimageio.zip"):
        summary = load_description(source, perform_io_checks=True).validation_summary
        assert summary.status in ("passed", "valid-format"), summary.format()


def test_refusals_write_nothing(project: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(project)
    before = sorted(p.name for p in (project / "export").iterdir())
    assert main(["-q", "export", "--run", "a"]) == 2
    assert "'export/a' exists already" in capsys.readouterr().err
    tifffile.imwrite(project / "tiny.tif", np.ones((3, 3), np.float32))
    assert main(["-q", "export", "--run", "a", "--out", "export/b", "--input", "tiny.tif"]) == 2
    assert "smaller than the network's 4-pixel pooling step" in capsys.readouterr().err
    assert sorted(p.name for p in (project / "export").iterdir()) == before


def test_test_crop_is_one_tile_where_the_image_allows() -> None:
    assert crop_side((768, 768), 256, 4) == 256
    assert crop_side((100, 300), 256, 8) == 96
    assert crop_side((3, 3), 64, 4) == 0
    image = np.arange(36).reshape(6, 6)
    assert center_crop(image, 2).tolist() == [[14, 15], [20, 21]]
