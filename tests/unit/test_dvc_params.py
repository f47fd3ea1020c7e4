"""What we ship works under DVC: every params key dvc.yaml declares is in params.yaml and in every preset, and a
params file that lacks one is refused at the first stage (not hours later), by validate and by sync."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from beadseg import cli
from beadseg.config import validate
from beadseg.dvc_params import check_params_for_dvc, declared_params, missing_params, to_add
from beadseg.errors import ConfigError
from tests.helpers import REPO

SHIPPED = sorted([REPO / "params.yaml", *(REPO / "presets").glob("*.params.yaml")])
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())


@pytest.mark.parametrize("params_file", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_key_dvc_yaml_declares_is_in_each_shipped_params_file(params_file: Path) -> None:
    params = yaml.safe_load(params_file.read_text())
    validate(params, source=str(params_file))  # a valid file: the check below is the DVC-only part
    declared = declared_params(DVC, params)
    assert any(k.startswith("train@") for k in declared)  # the foreach stages were expanded
    assert missing_params(DVC, params) == [], params_file.name
    check_params_for_dvc(params, params_file, REPO / "dvc.yaml")


def test_foreach_stages_expand_over_dicts_and_lists() -> None:
    dvc = {"stages": {
        "tile": {"foreach": "${tiling.sizes}", "do": {"cmd": "x", "params": ["tiling"]}},
        "train": {"foreach": "${runs}", "do": {"cmd": "x", "params": ["train", "runs.${key}", "evaluation.threshold"]}},
        "ft": {"foreach": "${finetune}", "do": {"cmd": "x", "params": ["finetune.${key}"]}},
        "measure": {"cmd": "x", "params": ["analysis", {"params.yaml": ["data.seed"]}, {"other.yaml": ["z"]}]},
        "plain": {"cmd": "x"},
    }}
    params = {"tiling": {"sizes": [64, 128]}, "runs": {"a": {}, "b": {"lr": 1}}, "finetune": {}, "train": {},
              "evaluation": {"threshold": 0.5}, "data": {}}
    assert declared_params(dvc, params) == {
        "tile@64": ["tiling"], "tile@128": ["tiling"],
        "train@a": ["train", "runs.a", "evaluation.threshold"], "train@b": ["train", "runs.b", "evaluation.threshold"],
        "measure": ["analysis", "data.seed"], "plain": [],
    }
    assert missing_params(dvc, params) == ["analysis", "data.seed"]


def test_a_missing_foreach_collection_is_named() -> None:
    dvc = {"stages": {"ft": {"foreach": "${finetune}", "do": {"cmd": "x"}}}}
    with pytest.raises(ConfigError, match=r"iterates over finetune.*add finetune"):
        declared_params(dvc, {"runs": {}})


def test_what_to_add_nests_keys_under_their_section_with_schema_defaults() -> None:
    assert to_add(["evaluation", "evaluation.threshold", "analysis"]) == "evaluation: {threshold: 0.5}; analysis: {}"
    assert to_add(["analysis.gradient_max_tiles"]) == "analysis: {gradient_max_tiles: 64}"


def _project(tmp_path: Path, drop: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    section, _, key = drop.partition(".")
    if key:
        del params[section][key]
    else:
        del params[section]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    return tmp_path


def test_a_dvc_stage_refuses_at_once_when_a_later_stage_would_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`dvc repro` runs synth first: under DVC ($DVC_STAGE) it stops there, naming the key, before any training."""
    monkeypatch.chdir(_project(tmp_path, "evaluation.threshold"))
    monkeypatch.setenv("DVC_STAGE", "synth")
    assert cli.main(["synth"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "params.yaml lacks evaluation.threshold" in err and "add evaluation: {threshold: 0.5}" in err
    assert not (tmp_path / "data").exists()  # nothing was written


def test_snakemake_steps_fill_defaults_and_validate_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(_project(tmp_path, "analysis"))
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert cli.main(["validate"]) == 0
    out = capsys.readouterr()
    assert "valid" in out.out and "`dvc repro` would stop" in out.err and "add analysis: {}" in out.err
