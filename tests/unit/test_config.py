"""params.yaml validation: defaults, number spellings, clear errors."""

from __future__ import annotations

import copy

import pytest
import yaml

from beadseg.config import load_config, normalize_numbers, validate
from beadseg.errors import ConfigError
from tests.helpers import REPO as ROOT


def minimal() -> dict:
    return {"data": {"source": "synthetic"}, "runs": {"a": {"lr": "1e-4"}, "b": {"lr": 1.0e-4, "loss": "dice"}},
            "finetune": {}}


def test_project_params_file_is_valid():
    cfg = load_config(ROOT / "params.yaml")
    assert cfg.run_ids and set(cfg.tiling.sizes) >= {256, 512}
    assert {cfg.run(r).tile_size for r in cfg.run_ids} == {256, 512}
    assert len({cfg.run(r).loss for r in cfg.run_ids}) >= 2
    assert len({cfg.run(r).lr for r in cfg.run_ids}) >= 2


def test_defaults_fill_in_and_overrides_apply():
    cfg = validate(minimal())
    assert cfg.run("a").loss == "combined" and cfg.run("b").loss == "dice"
    assert cfg.run("a").dice_weight == pytest.approx(0.7)
    assert cfg.tiling.sizes == (256, 512)


def test_exponent_strings_and_floats_are_the_same_number():
    # PyYAML (Snakemake) reads 1e-4 as a string, DVC as a float: both must give 1e-4.
    cfg = validate(minimal())
    assert cfg.run("a").lr == cfg.run("b").lr == pytest.approx(1e-4)
    assert isinstance(cfg.run("a").lr, float)
    assert yaml.safe_load("x: 1e-4")["x"] == "1e-4"  # the PyYAML behaviour this guards against


def test_normalize_numbers_leaves_other_strings_alone():
    assert normalize_numbers({"a": "1e-3", "b": "e5", "c": ["2E+2", "run1e3"]}) == {
        "a": 1e-3, "b": "e5", "c": [200.0, "run1e3"]}


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda p: p["runs"]["a"].update(lrr=1), "lrr"),
        (lambda p: p["runs"]["a"].update(loss="dicee"), "runs.a.loss: unknown value 'dicee' (did you mean 'dice'?)"),
        (lambda p: p["runs"]["a"].update(model="unett"), "runs.a.model: unknown value 'unett' (did you mean 'unet'?)"),
        (lambda p: p["runs"]["a"].update(lr="fast"), "runs.a.lr"),
        (lambda p: p["runs"]["a"].update(tile_size=384), "not in tiling.sizes"),
        (lambda p: p["finetune"].update(c={"init_from": "zzz"}), "init_from"),
        (lambda p: p["runs"]["a"].update(init_from="b"), "move it to the finetune table"),
        (lambda p: p["finetune"].update(c={"lr": 1e-3}), "init_from"),
        (lambda p: p["finetune"].update(a={"init_from": "b"}), "unique"),
        (lambda p: p.pop("finetune"), "finetune"),
        (lambda p: p["runs"].update({"Bad.Id": {}}), "path-safe"),
        (lambda p: p["data"].update(val_fraction=1.5), "data.val_fraction"),
        (lambda p: p["data"].update(images="elsewhere"), "data.source: folder"),
        (lambda p: p["runs"]["a"].update(norm="group", base_channels=6, groups=4), "groups"),
        (lambda p: p["data"].update(val_fraction=0.5, test_fraction=0.5), "must be below 1"),
        (lambda p: p.update(train={"eval_overlap": 0.5}), "train.eval_overlap moved to evaluation.overlap"),
        (lambda p: p["runs"]["a"].update(eval_overlap=0.5), "runs.a.eval_overlap moved to evaluation.overlap"),
        (lambda p: p.update(evaluation={"objects": "blobs"}), "evaluation.objects"),
        (lambda p: p.update(evaluation={"iou_thresholds": [0.5, 1.5]}), "evaluation.iou_thresholds"),
    ],
)
def test_invalid_values_raise_clear_errors(mutate, needle):
    params = copy.deepcopy(minimal())
    mutate(params)
    with pytest.raises(ConfigError) as err:
        validate(params)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_finetune_runs_join_the_run_table():
    params = minimal()
    params["finetune"]["c"] = {"init_from": "a", "tile_size": 512}
    cfg = validate(params)
    assert cfg.run_ids == ["a", "b", "c"] and cfg.finetune_ids == ("c",)
    assert cfg.run("c").init_from == "a" and cfg.run("c").tile_size == 512


def test_init_from_cycle_is_rejected():
    params = minimal()
    params["finetune"]["c"] = {"init_from": "d"}
    params["finetune"]["d"] = {"init_from": "c"}
    with pytest.raises(ConfigError, match="cycle"):
        validate(params)


def test_unknown_run_id_lists_valid_ids():
    cfg = validate(minimal())
    with pytest.raises(ConfigError, match="valid run ids are a, b"):
        cfg.run("c")


def test_missing_params_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("runs: {a: [1, 2}\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_presets_are_valid():
    presets = sorted((ROOT / "presets").glob("*.params.yaml"))
    assert presets, "expected params presets under presets/"
    for preset in presets:
        load_config(preset)


def test_original_search_preset_matches_the_reference_search():
    cfg = load_config(ROOT / "presets" / "original-512.params.yaml")
    runs = [cfg.run(r) for r in cfg.run_ids]
    assert len(runs) == 15
    assert {r.tile_size for r in runs} == {512}
    losses = [r.loss for r in runs]
    assert (losses.count("combined"), losses.count("focal"), losses.count("dice")) == (6, 8, 1)
    assert all(r.patience == 20 for r in runs)


def test_evaluation_settings_are_their_own_section_and_not_training_settings():
    cfg = validate({**minimal(), "evaluation": {"overlap": 0.5, "iou_thresholds": [0.9, 0.5]}})
    assert cfg.evaluation.overlap == 0.5 and cfg.evaluation.threshold == 0.5
    assert cfg.evaluation.iou_thresholds == (0.5, 0.9)  # sorted: F1 is reported at the lowest
    assert "eval_overlap" not in cfg.run("a").to_dict() and "overlap" not in cfg.run("a").to_dict()
    assert validate(minimal()).run("a") == cfg.run("a")  # scoring settings never touch a run's settings


def test_three_mistakes_give_three_lines_each_naming_the_key_and_the_fix(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "params.yaml"
    bad.write_text("data: {source: synthetic}\ntrain: {lrr: 0.001}\nruns:\n  a: {loss: dicee, lr: fast}\nfinetune: {}\n")
    out = subprocess.run([sys.executable, "-m", "beadseg", "--params", str(bad), "validate"], capture_output=True,
                         text=True, check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 3, out.stderr
    joined = "\n".join(lines)
    for needle in ("runs.a.loss: unknown value 'dicee' (did you mean 'dice'?)", "runs.a.lr: 'fast' is not of type",
                   "train.lrr: unknown setting (did you mean 'lr'?)"):
        assert needle in joined, joined


def test_validating_params_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom beadseg.cli import main\nrc = main(['--params', sys.argv[1], 'validate'])\n"
            "assert 'torch' not in sys.modules, 'validate imported torch'\nsys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "params.yaml")], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr


def test_schema_enums_name_exactly_the_registered_losses_and_models():
    from beadseg.config import schema
    from beadseg.losses import LOSSES
    from beadseg.models import MODELS

    train = schema()["$defs"]["train"]["properties"]
    assert sorted(train["loss"]["enum"]) == sorted(LOSSES)
    assert sorted(train["model"]["enum"]) == sorted(MODELS)
