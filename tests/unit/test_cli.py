"""The `beadseg` command line: clear one-line errors, bring-your-own data, plan, predict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from skimage.measure import label

from beadseg.data.synth import generate_pair
from tests.helpers import REPO
from tests.helpers.tiny import tiny_params


def beadseg(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beadseg", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_bad_params_is_one_clear_line_and_exit_2(tmp_path):
    params = tiny_params()
    params["runs"]["a"] = {"loss": "dicee"}
    write_params(tmp_path, params)
    out = beadseg(tmp_path, "validate")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "runs.a.loss: unknown value 'dicee' (did you mean 'dice'?); valid values are" in out.stderr


def test_missing_params_file(tmp_path):
    out = beadseg(tmp_path, "runs")
    assert out.returncode == 2 and "params file 'params.yaml' not found" in out.stderr


def test_own_16bit_tiffs_with_instance_labels_work_without_code_changes(tmp_path):
    images, masks = tmp_path / "my" / "images", tmp_path / "my" / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for i in range(4):
        image, mask = generate_pair(160, seed=i)
        tifffile.imwrite(images / f"cell_{i}.tif", image.astype(np.uint16))
        tifffile.imwrite(masks / f"cell_{i}_mask.tif", label(mask).astype(np.uint16))  # instance labels
    params = tiny_params()
    params["data"] = {"source": "folder", "images": "my/images", "masks": "my/masks", "val_fraction": 0.25}
    write_params(tmp_path, params)
    for step in (["split"], ["tile", "--size", "64"], ["tile", "--size", "128"]):
        out = beadseg(tmp_path, *step)
        assert out.returncode == 0, out.stderr
    tiles = np.load(tmp_path / "data/tiles/t64/train.npz")
    assert set(np.unique(tiles["masks"])) == {0, 1}
    assert tiles["images"].dtype == np.float16 and 0.0 <= float(tiles["images"].min())
    # 160 px images at tile 128 with stride 128: origins 0 and 32 -> 4 tiles per image
    assert len(np.load(tmp_path / "data/tiles/t128/val.npz")["images"]) == 4


def test_image_without_mask_names_the_file(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    image, mask = generate_pair(64, seed=0)
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / "im" / f"{name}.tif", image)
    tifffile.imwrite(tmp_path / "ma" / "a.tif", mask)
    params = tiny_params()
    params["data"] = {"source": "folder", "images": "im", "masks": "ma"}
    write_params(tmp_path, params)
    out = beadseg(tmp_path, "split")
    assert out.returncode == 2 and "b.tif" in out.stderr


def test_plan_writes_the_run_table_in_place(tmp_path):
    write_params(tmp_path, tiny_params())
    (tmp_path / "grid.yaml").write_text("grid:\n  loss: [dice, focal]\n  lr: [1e-3, 1e-4]\n")
    dry = beadseg(tmp_path, "plan", "grid.yaml")
    assert dry.returncode == 0 and "dice_lr1e-3" in dry.stdout
    assert "dice_lr1e-3" not in (tmp_path / "params.yaml").read_text()
    out = beadseg(tmp_path, "plan", "grid.yaml", "--write")
    assert out.returncode == 0, out.stderr
    runs = beadseg(tmp_path, "runs").stdout.split()
    assert runs == ["dice_lr1e-3", "dice_lr1e-4", "focal_lr1e-3", "focal_lr1e-4"]


def test_plan_refuses_to_write_an_invalid_table(tmp_path):
    write_params(tmp_path, tiny_params())
    before = (tmp_path / "params.yaml").read_text()
    (tmp_path / "grid.yaml").write_text("grid:\n  tile_size: [96]\n")
    out = beadseg(tmp_path, "plan", "grid.yaml", "--write")
    assert out.returncode == 2 and "tiling.sizes" in out.stderr
    assert (tmp_path / "params.yaml").read_text() == before


@pytest.mark.parametrize("preset", ["original-512.grid.yaml", "next-search.grid.yaml"])
def test_grid_presets_expand(preset):
    from beadseg.plan import expand_grid

    table = expand_grid(yaml.safe_load((REPO / "presets" / preset).read_text()))
    assert len(table) >= 10


def test_global_options_work_after_the_subcommand_too(tmp_path):
    from beadseg.cli import build_parser

    parser = build_parser()
    after = parser.parse_args(["train", "--run", "a", "--params", "p.yaml", "-q"])
    before = parser.parse_args(["--params", "p.yaml", "-q", "train", "--run", "a"])
    neither = parser.parse_args(["train", "--run", "a"])
    assert (after.params, after.quiet) == (before.params, before.quiet) == ("p.yaml", True)
    assert (neither.params, neither.quiet) == ("params.yaml", False)


def test_help_lists_commands_for_people_apart_from_pipeline_steps_and_the_environment():
    import argparse
    import re

    from beadseg.cli import ENVIRONMENT, PIPELINE_STEPS, build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    text = parser.format_help()
    user_part, rest = text.split("commands for you:")[1].split("pipeline steps")
    steps_part, env_part = rest.split("environment:")
    listed_user = re.findall(r"^  ([a-z]+) ", user_part, re.M)
    listed_steps = re.findall(r"^  ([a-z]+) ", steps_part, re.M)
    assert sorted(listed_user + listed_steps) == sorted(sub.choices)  # every command once
    # the steps are exactly what the Snakemake rules and DVC stages call
    called = set()
    for path in [*(REPO / "workflow" / "rules").glob("*.smk"), REPO / "dvc.yaml"]:
        called |= set(re.findall(r"beadseg ([a-z]+)", "\n".join(
            line for line in path.read_text().splitlines() if "cmd:" in line or line.strip().startswith('"beadseg'))))
    assert set(listed_steps) == called - {"sync"} and set(listed_steps) == set(PIPELINE_STEPS)
    # every BEADSEG_* variable the package reads is documented (test-only stand-ins aside)
    read = set(re.findall(r"BEADSEG_[A-Z_]+", "\n".join(p.read_text() for p in (REPO / "beadseg").rglob("*.py"))))
    assert read - {"BEADSEG_FAKE_GPUS"} == set(ENVIRONMENT)
    assert all(name in env_part for name in ENVIRONMENT)
