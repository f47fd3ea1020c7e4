"""Take a trained run out of beadseg: ``beadseg export --run ID [--out DIR]``.

Two things are written, through a temporary folder renamed at the end (an interrupted export leaves nothing):

* ``<run id>.torchscript.pt`` — one self-contained TorchScript file: a raw 2-D image ``(B, 1, H, W)`` in, bead
  probabilities ``(B, 1, H, W)`` out. It carries the model file's normalisation (the same per-image percentiles,
  clipped to 0..1) and sigmoid, and the threshold and object method ``beadseg predict`` uses (the run's scoring
  record from the evaluate step, else the model file's), the tile size and run id as attributes
  (``threshold``, ``low_pct``, ``high_pct``, ``objects``, ``tile_size``, ``size_multiple``, ``run_id``) and as
  ``beadseg.json`` among its extra files. H and W must be multiples of ``size_multiple``; larger images are cut
  into tiles by the caller (``beadseg predict`` does so).
* ``bioimageio/`` and ``<run id>.bioimageio.zip`` — a bioimage.io model package (format 0.5) for deepImageJ
  (Fiji), napari, ilastik and QuPath: ``rdf.yaml``; TorchScript weights of the network alone (normalised image
  in, logits out), with the normalisation declared as preprocessing (``scale_range`` per sample at the same
  percentiles, then ``clip`` 0..1) and the sigmoid as postprocessing; a test input (a raw crop of one tile) and
  its test output (probabilities); a cover, a README, citation and licence fields; and beadseg's threshold and
  object method under ``config.beadseg``.

The test output is beadseg's own prediction of the test input; before anything is written the export checks that
both TorchScript files reproduce it within :data:`TOLERANCE`. With ``bioimageio.spec`` installed (the
``beadseg[export]`` extra) the package is validated too, offline; without it the export says how to validate.
"""

from __future__ import annotations

import getpass
import hashlib
import io as _bytesio
import json
import math
import os
import shutil
import subprocess
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from beadseg import __version__, paths
from beadseg.checkpoint import ModelFile, load_model_file
from beadseg.data import io
from beadseg.errors import DataError
from beadseg.fsutil import write_text

#: Largest difference allowed between an exported file's probabilities and beadseg's own.
TOLERANCE = 1e-4
#: The bioimage.io model format version written (a 0.5 release that bioimageio.spec 0.5.12 and later read).
FORMAT_VERSION = "0.5.4"
DEFAULT_LICENSE = "CC-BY-4.0"
INPUT_ID, OUTPUT_ID = "raw", "probability"
WEIGHTS_NAME = "weights.torchscript.pt"
UNET_CITATION = {"text": "Ronneberger, Fischer and Brox: U-Net: Convolutional Networks for Biomedical Image "
                         "Segmentation. MICCAI 2015", "doi": "10.1007/978-3-319-24574-4_28"}


# --------------------------------------------------------------------------- TorchScript
class _Standalone(nn.Module):
    """Raw image -> per-image percentile normalisation (clipped to 0..1) -> network -> sigmoid.

    (No class-level annotations: under ``from __future__ import annotations`` TorchScript cannot read them; it
    infers the attributes' types from their values.)"""

    def __init__(self, net: nn.Module, model: ModelFile, threshold: float, objects: str, size_multiple: int) -> None:
        super().__init__()
        self.net = net
        self.threshold = float(threshold)
        self.low_pct = float(model.normalization.low_pct)
        self.high_pct = float(model.normalization.high_pct)
        self.tile_size = int(model.tile_size)
        self.size_multiple = int(size_multiple)
        self.objects = str(objects)
        self.run_id = str(model.run_id)

    def _percentile(self, ordered: Tensor, q: float) -> Tensor:
        """numpy's default (linear) percentile of each row of an ascending ``(B, N)`` tensor."""
        n = ordered.shape[1]
        pos = q / 100.0 * (n - 1)
        i = int(math.floor(pos))
        j = min(i + 1, n - 1)
        return ordered[:, i] + (ordered[:, j] - ordered[:, i]) * (pos - i)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        x = x.float()
        ordered, _ = torch.sort(x.reshape(b, -1), dim=1)
        lo = self._percentile(ordered, self.low_pct)
        hi = self._percentile(ordered, self.high_pct)
        spread = hi > lo  # as beadseg.data.io.normalize: min..max where the percentiles meet, zeros if constant
        lo = torch.where(spread, lo, ordered[:, 0])
        hi = torch.where(spread, hi, ordered[:, -1])
        scale = torch.where(hi > lo, 1.0 / (hi - lo), torch.zeros_like(hi))
        normalized = ((x - lo.view(b, 1, 1, 1)) * scale.view(b, 1, 1, 1)).clamp(0.0, 1.0)
        return torch.sigmoid(self.net(normalized))


def _size_multiple(model: ModelFile) -> int:
    return 2 ** (int(model.config.depth) - 1)


class _MaskChannel(nn.Module):
    """The bead-mask logits (channel 0) of a network with more outputs (``train.target`` mask_distance): the
    exported model gives bead probabilities; cutting touching beads at the predicted distance stays with
    ``beadseg predict``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, :1]


def trace_network(model: ModelFile, side: int) -> torch.jit.ScriptModule:
    """The network (normalised image in, bead logits out) as TorchScript, traced on the CPU in eval mode.

    The U-Net has no size-dependent branches, so the trace serves every multiple of its pooling factor."""
    net: nn.Module = model.build()
    if model.config.target != "mask":
        net = _MaskChannel(net).eval()
    example = torch.zeros(1, 1, side, side)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice and the shape check's tracer warnings
        return torch.jit.trace(net, example, check_trace=False)


def standalone_module(model: ModelFile, traced: torch.jit.ScriptModule, threshold: float,
                      objects: str) -> torch.jit.ScriptModule:
    """The self-contained TorchScript module (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.script(_Standalone(traced, model, threshold, objects, _size_multiple(model)))


def _save_script(module: torch.jit.ScriptModule, path: Path, extra: dict[str, str] | None = None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(module, str(path), _extra_files=extra or {})


def load_standalone(path: Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """An exported ``<run id>.torchscript.pt`` and its ``beadseg.json`` record."""
    extra = {"beadseg.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra["beadseg.json"] or "{}")


# --------------------------------------------------------------------------- test input
def center_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The centred ``side x side`` crop of a 2-D image."""
    h, w = image.shape
    y, x = (h - side) // 2, (w - side) // 2
    return np.ascontiguousarray(image[y:y + side, x:x + side])


def crop_side(shape: tuple[int, ...], tile: int, multiple: int) -> int:
    """The test crop's side: the tile size where the image allows, else the largest multiple of the network's
    pooling factor that fits (0 when none does)."""
    side = min(tile, *shape)
    return side - side % multiple


def default_test_image(root: Path = Path(".")) -> Path:
    """The first validation image's source TIFF, as the split recorded it."""
    manifest = root / paths.split_manifest()
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise DataError(f"'{manifest}' not found or unreadable: run the split step first, or give the test "
                        "image with --input IMAGE.tif") from None
    stems = (record.get("splits") or {}).get("val") or []
    images = record.get("images") or {}
    if not stems or stems[0] not in images:
        raise DataError(f"'{manifest}' names no validation image: give the test image with --input IMAGE.tif")
    path = Path(images[stems[0]]["image"])
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise DataError(f"the first validation image '{path}' is not here (dvc pull?): give the test image with "
                        "--input IMAGE.tif")
    return path


def test_input(model: ModelFile, image: Path) -> np.ndarray:
    """A raw float32 crop of ``image``: one tile where the image is large enough."""
    raw = io.read_image(image)
    side = crop_side(raw.shape, model.tile_size, _size_multiple(model))
    if side == 0:
        raise DataError(f"test image '{image}' ({raw.shape[0]}x{raw.shape[1]}) is smaller than the network's "
                        f"{_size_multiple(model)}-pixel pooling step: give a larger one with --input")
    return center_crop(raw, side)


def beadseg_probabilities(model: ModelFile, raw: np.ndarray) -> np.ndarray:
    """beadseg's own prediction (normalisation, network, sigmoid) of a raw crop, float32 ``(H, W)``."""
    net = model.build()
    x = torch.from_numpy(model.normalization.apply(raw))[None, None]
    with torch.inference_mode():
        return torch.sigmoid(net(x).float())[0, 0].numpy().astype(np.float32)


# --------------------------------------------------------------------------- bioimage.io
def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rdf(model: ModelFile, files: dict[str, str], *, author: str, license_id: str, threshold: float, objects: str,
        min_area: int, side: int) -> dict[str, Any]:
    """The rdf.yaml of the package (bioimage.io model format 0.5), as a plain dict.

    ``files`` maps each of ``weights``, ``test_input``, ``test_output``, ``sample_input``, ``sample_output``,
    ``cover`` and ``documentation`` to its file name in the package; ``side`` is the test crop's side. Pure:
    :func:`export_run` adds the files' sha256."""
    cfg = model.config
    multiple = 2 ** (int(cfg.depth) - 1)
    space_in = [{"type": "space", "id": axis, "size": {"min": multiple, "step": multiple},
                 "description": f"{axis}: any multiple of {multiple} pixels"} for axis in ("y", "x")]
    space_out = [{"type": "space", "id": axis, "size": {"tensor_id": INPUT_ID, "axis_id": axis}} for axis in ("y", "x")]
    norm = model.normalization
    return {
        "type": "model",
        "format_version": FORMAT_VERSION,
        "name": f"beadseg {model.run_id}",
        "description": (f"U-Net ({cfg.model}, depth {cfg.depth}, {cfg.base_channels} base channels, {cfg.norm} norm) "
                        f"for microbead segmentation in 2-D fluorescence images, trained by beadseg as run "
                        f"{model.run_id} (loss {cfg.loss}, tile {model.tile_size}): bead probability per pixel."),
        "authors": [{"name": author}],
        "cite": [UNET_CITATION],
        "license": license_id,
        "documentation": files["documentation"],
        "covers": [files["cover"]],
        "tags": ["unet", "semantic-segmentation", "instance-segmentation", "beads", "fluorescence-light-microscopy",
                 "2d", "pytorch", "torchscript", "beadseg"],
        "version": "1",
        "inputs": [{
            "id": INPUT_ID,
            "description": "raw 2-D grayscale image (any intensity range: it is normalised per image)",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["raw"]}, *space_in],
            "test_tensor": {"source": files["test_input"]},
            "sample_tensor": {"source": files["sample_input"]},
            "data": {"type": "float32"},
            "preprocessing": [
                {"id": "scale_range", "kwargs": {"axes": ["y", "x"],  # per image: the batch axis is not reduced
                                                 "min_percentile": float(norm.low_pct),
                                                 "max_percentile": float(norm.high_pct)}},
                {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}},
            ],
        }],
        "outputs": [{
            "id": OUTPUT_ID,
            "description": f"bead probability; beads are pixels above {threshold:g}, separated by {objects}",
            "axes": [{"type": "batch"}, {"type": "channel", "channel_names": ["bead"]}, *space_out],
            "test_tensor": {"source": files["test_output"]},
            "sample_tensor": {"source": files["sample_output"]},
            "data": {"type": "float32", "range": [0.0, 1.0]},
            "postprocessing": [{"id": "sigmoid"}],
        }],
        "weights": {"torchscript": {"source": files["weights"], "pytorch_version": torch.__version__.split("+")[0]}},
        "config": {"beadseg": {
            "run_id": model.run_id, "threshold": float(threshold), "objects": objects, "min_area": int(min_area),
            "tile_size": int(model.tile_size), "normalization": norm.to_dict(), "epoch": int(model.epoch),
            "best_val_jaccard": model.best_val_jaccard, "beadseg_version": __version__,
            "test_input_side": int(side),
        }},
    }


def _readme(model: ModelFile, threshold: float, objects: str) -> str:
    norm = model.normalization
    return "\n".join([
        f"# beadseg {model.run_id}", "",
        "A U-Net trained by beadseg to find microbeads in 2-D fluorescence images.", "",
        "* input `raw`: one grayscale image; preprocessing scales the "
        f"{norm.low_pct:g}th..{norm.high_pct:g}th percentile of each image to 0..1 and clips.",
        "* output `probability`: per-pixel bead probability (sigmoid of the network's logits).",
        f"* beads: pixels above {threshold:g}, split into objects by `{objects}` (as beadseg scored the run); "
        "beadseg predict does this for you and writes label images.",
        f"* trained with beadseg {__version__}; best epoch {model.epoch}.", "",
        "## Validation", "",
        "beadseg scores every run on full validation images (which chose it) and test images (which chose "
        "nothing): the search's REPORT.md and this run's metrics.json hold the scores. The test output in this "
        f"package is beadseg's own prediction of the test input; the export checked that these weights reproduce "
        f"it within {TOLERANCE:g}.", ""])


def _cover(raw: np.ndarray, prob: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=100)
    for ax, image, title in zip(axes, (raw, prob), ("input", "bead probability")):
        ax.imshow(image, cmap="gray" if title == "input" else "magma")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _dump_yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _zip_folder(folder: Path, target: Path) -> None:
    """A deterministic zip of ``folder``'s files (flat, sorted, fixed timestamps)."""
    buffer = _bytesio.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            info = zipfile.ZipInfo(file.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, file.read_bytes())
    target.write_bytes(buffer.getvalue())


def validate_package(rdf_path: Path) -> tuple[bool, str]:
    """Validate a package folder's rdf.yaml with bioimageio.spec, offline (the files' presence and sha256 are
    checked; nothing is downloaded). Returns (passed, the summary as text)."""
    from bioimageio.spec import load_description

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        descr = load_description(rdf_path, perform_io_checks=True)
    summary = descr.validation_summary
    return summary.status in ("passed", "valid-format"), summary.format()


# --------------------------------------------------------------------------- the command
@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    torchscript: Path
    package_dir: Path
    package_zip: Path
    max_difference: float
    validated: bool | None  # None: bioimageio.spec is not installed
    validation: str


def _author() -> str:
    try:
        name = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, check=False).stdout
    except OSError:
        name = ""
    return name.strip() or getpass.getuser()


def export_run(model_path: Path, out_dir: Path, *, image: Path | None = None, author: str | None = None,
               license_id: str = DEFAULT_LICENSE, validate: bool = True, root: Path = Path(".")) -> ExportResult:
    """Write the TorchScript file and the bioimage.io package of a model file into ``out_dir`` (see the module
    docstring). Raises DataError, writing nothing, when ``out_dir`` exists, the test image is missing or too
    small, or an exported file does not reproduce beadseg's probabilities."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DataError(f"'{out_dir}' exists already: remove it or choose another --out (nothing was written)")
    model = load_model_file(Path(model_path))
    from beadseg.scoring import for_prediction

    scored = for_prediction(model)  # what `beadseg predict` uses: the run's scoring record, else the model file's
    threshold, objects, min_area = scored.threshold, scored.objects, scored.min_area
    image = Path(image) if image is not None else default_test_image(root)
    raw = test_input(model, image)
    side = raw.shape[0] if raw.shape[0] == raw.shape[1] else min(raw.shape)
    expected = beadseg_probabilities(model, raw)
    traced = trace_network(model, _size_multiple(model) * 2)
    standalone = standalone_module(model, traced, threshold, objects)
    record = {"run_id": model.run_id, "threshold": threshold, "objects": objects, "min_area": min_area,
              "tile_size": model.tile_size, "size_multiple": _size_multiple(model),
              "seed_distance": scored.seed_distance, "postprocessing_from": scored.source,
              "model_file_threshold": model.threshold,
              "normalization": model.normalization.to_dict(), "beadseg_version": __version__,
              "output": "bead probability (sigmoid), shape (B, 1, H, W)"}

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        script_path = tmp / f"{model.run_id}.torchscript.pt"
        _save_script(standalone, script_path, {"beadseg.json": json.dumps(record, indent=2, sort_keys=True)})
        package = tmp / "bioimageio"
        package.mkdir()
        names = {"weights": WEIGHTS_NAME, "test_input": "test_input.npy", "test_output": "test_output.npy",
                 "sample_input": "sample_input.tif", "sample_output": "sample_output.tif", "cover": "cover.png",
                 "documentation": "README.md"}
        _save_script(traced, package / names["weights"])
        np.save(package / names["test_input"], raw[None, None].astype(np.float32))
        np.save(package / names["test_output"], expected[None, None].astype(np.float32))
        io.write_tiff(package / names["sample_input"], raw)
        io.write_tiff(package / names["sample_output"], expected)
        _cover(raw, expected, package / names["cover"])
        write_text(package / names["documentation"], _readme(model, threshold, objects))
        # both exported files must give beadseg's probabilities before anything is handed out
        loaded, _ = load_standalone(script_path)
        x = torch.from_numpy(raw)[None, None]
        with torch.inference_mode():
            got = loaded(x)[0, 0].numpy()
            norm = torch.from_numpy(model.normalization.apply(raw))[None, None]
            got_package = torch.sigmoid(torch.jit.load(str(package / names["weights"]))(norm))[0, 0].numpy()
        diff = float(max(np.abs(got - expected).max(), np.abs(got_package - expected).max()))
        if not diff <= TOLERANCE:
            raise DataError(f"exporting run '{model.run_id}': the TorchScript files differ from beadseg's "
                            f"probabilities by {diff:.2g} (> {TOLERANCE:g}); nothing was written")
        descr = rdf(model, names, author=author or _author(), license_id=license_id, threshold=threshold,
                    objects=objects, min_area=min_area, side=side)
        descr["inputs"][0]["test_tensor"]["sha256"] = sha256(package / names["test_input"])
        descr["outputs"][0]["test_tensor"]["sha256"] = sha256(package / names["test_output"])
        descr["inputs"][0]["sample_tensor"]["sha256"] = sha256(package / names["sample_input"])
        descr["outputs"][0]["sample_tensor"]["sha256"] = sha256(package / names["sample_output"])
        descr["weights"]["torchscript"]["sha256"] = sha256(package / names["weights"])
        write_text(package / "rdf.yaml", _dump_yaml(descr))
        validated: bool | None = None
        text = "not validated: bioimageio.spec is not installed (pip install 'beadseg[export]')"
        if validate:
            try:
                import bioimageio.spec  # noqa: F401
            except ImportError:
                pass
            else:
                validated, text = validate_package(package / "rdf.yaml")
                text = text.replace(str(tmp), str(out_dir))  # name the folder the user will find
                if not validated:
                    raise DataError(f"exporting run '{model.run_id}': bioimageio.spec rejects the package "
                                    f"(nothing was written):\n{text}")
        _zip_folder(package, tmp / f"{model.run_id}.bioimageio.zip")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; give the folder normal permissions
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return ExportResult(out_dir=out_dir, torchscript=out_dir / f"{model.run_id}.torchscript.pt",
                        package_dir=out_dir / "bioimageio", package_zip=out_dir / f"{model.run_id}.bioimageio.zip",
                        max_difference=diff, validated=validated, validation=text)
