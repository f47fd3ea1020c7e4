"""Successive halving as rounds of the run table: budgets, ids, selection, the params round trip and the
driver's loop (with a stand-in engine that writes the runs' result files)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from beadseg import paths, search_driver
from beadseg.config import SearchConfig, TrainConfig, validate
from beadseg.errors import BeadsegError, ConfigError
from beadseg.search import (
    Outcome,
    check_matches,
    keep_count,
    load_search,
    parse_search,
    read_outcome,
    replicate_groups,
    rung_budgets,
    rung_entries,
    select,
    settings,
    train_defaults_raw,
    write_rungs,
)
from tests.helpers import REPO

HARD_SEARCH = REPO / "presets" / "hard.search.yaml"
HARD_PARAMS = REPO / "presets" / "hard.params.yaml"


@pytest.mark.parametrize(("min_epochs", "eta", "full", "budgets"), [
    (2, 3, 16, [2, 6, 16]), (1, 2, 8, [1, 2, 4, 8]), (1, 3, 27, [1, 3, 9, 27]), (16, 3, 16, [16]),
    (20, 3, 16, [16]), (5, 4, 6, [5, 6]),
])
def test_rung_budgets(min_epochs, eta, full, budgets):
    assert rung_budgets(min_epochs, eta, full) == budgets


@pytest.mark.parametrize(("n", "eta", "kept"), [(7, 3, 2), (2, 3, 1), (9, 3, 3), (1, 2, 1), (8, 2, 4), (0, 3, 1)])
def test_keep_count(n, eta, kept):
    assert keep_count(n, eta) == kept


def test_run_ids_name_the_rung():
    assert SearchConfig.run_id(0, "t256_dice") == "r0_t256_dice"
    assert SearchConfig.run_id(12, "a") == "r12_a"


def _hard():
    spec = load_search(HARD_SEARCH)
    defaults = train_defaults_raw(yaml.safe_load(HARD_PARAMS.read_text()))
    return spec, defaults


def test_hard_search_file_is_the_hard_grid_with_halving():
    spec, defaults = _hard()
    grid = yaml.safe_load((REPO / "presets" / "hard.grid.yaml").read_text())
    from beadseg.plan import expand_grid

    assert dict(spec.configs) == expand_grid(grid)  # the same 8 configurations as the full grid
    assert (spec.eta, spec.min_epochs, spec.name) == (3, 2, "hard")
    assert replicate_groups(settings(spec, defaults)) == [
        ["t256_combined_lr3e-3", "t256_combined_lr3e-3_s1"], ["t256_dice_lr3e-3"], ["t256_focal_lr3e-3"],
        ["t256_tversky_lr3e-3"], ["t256_combined_lr1e-3"], ["t256_combined_lr3e-3_c16"], ["t512_combined_lr3e-3_bs1"]]


def test_rung_entries_continue_from_the_previous_rung():
    spec, _ = _hard()
    budgets = [2, 6, 16]
    r0 = rung_entries(spec, 0, ["t256_dice_lr3e-3"], budgets)
    assert r0 == {"r0_t256_dice_lr3e-3": {"tile_size": 256, "loss": "dice", "lr": 0.003, "max_epochs": 2,
                                          "schedule_epochs": 16, "patience": 2}}
    r1 = rung_entries(spec, 1, ["t256_combined_lr3e-3_c16"], budgets)["r1_t256_combined_lr3e-3_c16"]
    assert r1["init_from"] == "r0_t256_combined_lr3e-3_c16" and r1["epoch_offset"] == 2
    assert (r1["max_epochs"], r1["patience"], r1["schedule_epochs"], r1["base_channels"]) == (4, 4, 16, 16)
    r2 = rung_entries(spec, 2, ["t256_combined_lr3e-3_c16"], budgets)["r2_t256_combined_lr3e-3_c16"]
    assert (r2["init_from"], r2["epoch_offset"], r2["max_epochs"]) == ("r1_t256_combined_lr3e-3_c16", 6, 10)
    assert "patience" not in r2  # the last rung keeps the configured early stopping, as the full grid
    # a search whose first rung is already the full budget is the plain grid
    assert rung_entries(spec, 0, ["t256_dice_lr3e-3"], [16]) == {"r0_t256_dice_lr3e-3": dict(spec.configs["t256_dice_lr3e-3"])}


@pytest.mark.parametrize(("content", "message"), [
    ({"grid": {"lr": [1e-3]}}, "needs a 'halving' section"),
    ({"grid": {"lr": [1e-3]}, "halving": {"eta": 1, "min_epochs": 2}}, "halving.eta must be an integer >= 2"),
    ({"grid": {"lr": [1e-3]}, "halving": {"eta": 3}}, "halving.min_epochs must be"),
    ({"grid": {"lr": [1e-3]}, "halving": {"eta": 3, "min_epochs": 1, "rate": 2}}, "halving.rate: unknown setting"),
    ({"grid": {"lr": [1e-3]}, "halving": {"min_epochs": 1}, "finetune": {"a": {"init_from": "b"}}}, "finetune"),
    ({"grid": {"lr": [1e-3]}, "fixed": {"epoch_offset": 2}, "halving": {"min_epochs": 1}}, "sets epoch_offset"),
    ({"grid": {"lrr": [1e-3]}, "halving": {"min_epochs": 1}}, "unknown training setting 'lrr'"),
])
def test_search_file_errors_name_the_key(content, message):
    with pytest.raises(ConfigError, match=message):
        parse_search(content, "s.search.yaml")


def test_full_budget_must_agree():
    from beadseg.search import full_budget

    spec = parse_search({"grid": {"max_epochs": [4, 8]}, "halving": {"min_epochs": 1}}, "x.search.yaml")
    with pytest.raises(ConfigError, match="differ in max_epochs"):
        full_budget(spec, {"max_epochs": 8})


# --------------------------------------------------------------------------- selection

ORDER = ["a", "b", "c", "d", "e", "f", "g"]


def ok(score: float) -> Outcome:
    return Outcome("completed", score, 10)


def test_select_keeps_the_best_third():
    outcomes = {c: ok(s) for c, s in zip(ORDER, [0.5, 0.9, 0.6, 0.7, 0.1, 0.8, 0.2])}
    sel = select(outcomes, [[c] for c in ORDER], 3, ORDER)
    assert sel.kept == ["b", "f"]  # 7 // 3 = 2, in the search file's order
    assert [g for g, _, _ in sel.ranked][:3] == [("b",), ("f",), ("d",)]


def test_select_averages_replicates_and_keeps_them_together():
    outcomes = {"a": ok(0.9), "a_s1": ok(0.5), "b": ok(0.8), "c": ok(0.3)}
    sel = select(outcomes, [["a", "a_s1"], ["b"], ["c"]], 3, ["a", "b", "c", "a_s1"])
    assert sel.kept == ["b"]  # a's mean 0.7 < 0.8
    outcomes["a_s1"] = ok(0.85)
    sel = select(outcomes, [["a", "a_s1"], ["b"], ["c"]], 3, ["a", "b", "c", "a_s1"])
    assert sel.kept == ["a", "a_s1"]  # both seeds of the winning configuration continue


def test_select_drops_degenerate_and_diverged_runs_and_their_replicates():
    outcomes = {"a": ok(0.9), "a_s1": Outcome("diverged", None), "b": Outcome("degenerate", 0.95), "c": ok(0.3),
                "d": ok(0.2), "e": ok(0.1)}
    sel = select(outcomes, [["a", "a_s1"], ["b"], ["c"], ["d"], ["e"]], 2, ["a", "a_s1", "b", "c", "d", "e"])
    assert sel.kept == ["c", "d"]  # 5 groups // 2 = 2; a (one seed diverged) and b (degenerate) never survive
    verdicts = {g: v for g, _, v in sel.ranked}
    assert verdicts[("a", "a_s1")] == "dropped (a_s1 diverged)" and verdicts[("b",)] == "dropped (b degenerate)"
    everything_bad = select({"a": Outcome("diverged", None)}, [["a"]], 3, ["a"])
    assert everything_bad.kept == []


def test_select_breaks_ties_by_the_search_file_order():
    outcomes = {c: ok(0.5) for c in ORDER[:3]}
    assert select(outcomes, [["c"], ["b"], ["a"]], 3, ORDER).kept == ["a"]
    assert select(outcomes, [["a"], ["b"], ["c"]], 3, ["c", "b", "a"]).kept == ["c"]


def test_read_outcome(tmp_path: Path):
    assert read_outcome("r0_a", tmp_path) is None
    _write_results(tmp_path, "r0_a", 0.61, "degenerate", steps=50)
    assert read_outcome("r0_a", tmp_path) == Outcome("degenerate", 0.61, 50)


# --------------------------------------------------------------------------- params round trip


def _params_text(tmp_path: Path) -> Path:
    target = tmp_path / "params.yaml"
    target.write_text(HARD_PARAMS.read_text())
    return target


def test_write_rungs_round_trip_keeps_comments(tmp_path: Path):
    spec, defaults = _hard()
    target = _params_text(tmp_path)
    text = write_rungs(target.read_text(), spec, defaults, [list(spec.configs)])
    cfg = validate(yaml.safe_load(text))
    assert cfg.search is not None and cfg.search.budgets == (2, 6, 16) and cfg.search.rungs == (tuple(spec.configs),)
    assert cfg.run_ids == [f"r0_{c}" for c in spec.configs] and cfg.finetune_ids == ()
    assert cfg.run("r0_t256_combined_lr3e-3_c16").base_channels == 16
    assert cfg.run("r0_t256_combined_lr3e-3_c16").max_epochs == 2
    assert "# Preset: the hard synthetic benchmark" in text and text.count("Written by `beadseg search run`") == 1
    survivors = ["t256_combined_lr3e-3_c16"]
    text2 = write_rungs(text, spec, defaults, [list(spec.configs), survivors, survivors])
    cfg2 = validate(yaml.safe_load(text2))
    assert cfg2.finetune_ids == ("r1_t256_combined_lr3e-3_c16", "r2_t256_combined_lr3e-3_c16")
    assert cfg2.search.rung_runs(2) == ["r2_t256_combined_lr3e-3_c16"]
    assert cfg2.search.rung_of("r1_t256_combined_lr3e-3_c16") == 1 and cfg2.search.rung_of("x") is None
    last = cfg2.run("r2_t256_combined_lr3e-3_c16")
    assert (last.init_from, last.epoch_offset, last.max_epochs, last.schedule_length) == (
        "r1_t256_combined_lr3e-3_c16", 6, 10, 16)
    assert text2.count("Written by `beadseg search run`") == 1
    assert text2.index("finetune:") < text2.index("search:") < text2.index("analysis:")
    assert write_rungs(text2, spec, defaults, [list(spec.configs), survivors, survivors]) == text2  # idempotent


def test_search_section_must_match_the_run_tables(tmp_path: Path):
    spec, defaults = _hard()
    params = yaml.safe_load(write_rungs(HARD_PARAMS.read_text(), spec, defaults, [list(spec.configs), ["t256_dice_lr3e-3"]]))
    del params["finetune"]["r1_t256_dice_lr3e-3"]
    with pytest.raises(ConfigError, match=r"search.rungs\[1\]: run\(s\) \['r1_t256_dice_lr3e-3'\] are not in finetune"):
        validate(params)


def test_check_matches_refuses_another_search_file(tmp_path: Path):
    spec, defaults = _hard()
    cfg = validate(yaml.safe_load(write_rungs(HARD_PARAMS.read_text(), spec, defaults, [list(spec.configs)])))
    check_matches(cfg.search, spec, defaults, "params.yaml")
    raw = yaml.safe_load(HARD_SEARCH.read_text())
    other = parse_search({**raw, "halving": {"eta": 2, "min_epochs": 2}}, "presets/hard.search.yaml")
    with pytest.raises(ConfigError, match=r"search.eta is 3, planned from .*hard.search.yaml, but eta is 2 there"):
        check_matches(cfg.search, other, defaults, "params.yaml")
    wider = parse_search({**raw, "grid": {**raw["grid"], "lr": [3e-3, 1e-2]}}, "presets/hard.search.yaml")
    with pytest.raises(ConfigError, match="search.digest .* its grid differs"):
        check_matches(cfg.search, wider, defaults, "params.yaml")


def test_later_settings_stay_out_of_a_runs_settings_until_used():
    """Upgrading retrains nothing: epoch_offset / schedule_epochs at their defaults are not part of to_dict
    (Snakemake's params trigger, the resume fingerprint, train.json) and old dicts still load."""
    cfg = validate(yaml.safe_load(HARD_PARAMS.read_text()))
    plain = cfg.run("t256_dice_lr3e-3").to_dict()
    assert "epoch_offset" not in plain and "schedule_epochs" not in plain
    assert TrainConfig.from_dict(plain) == cfg.run("t256_dice_lr3e-3")


def test_continuation_follows_the_full_schedule():
    import dataclasses

    from beadseg.train import lr_factor

    full = dataclasses.replace(validate(yaml.safe_load(HARD_PARAMS.read_text())).train_defaults, schedule="cosine",
                               warmup_epochs=2, max_epochs=16)
    rung0 = dataclasses.replace(full, max_epochs=2, schedule_epochs=16)
    rung1 = dataclasses.replace(full, max_epochs=4, epoch_offset=2, schedule_epochs=16)
    rung2 = dataclasses.replace(full, max_epochs=10, epoch_offset=6, schedule_epochs=16)
    stitched = ([lr_factor(e, rung0) for e in range(2)] + [lr_factor(e, rung1) for e in range(4)]
                + [lr_factor(e, rung2) for e in range(10)])
    assert stitched == [lr_factor(e, full) for e in range(16)]  # no second warm-up, one cosine over 16 epochs


def test_validate_with_a_search_section_does_not_import_torch(tmp_path: Path):
    spec, defaults = _hard()
    (tmp_path / "params.yaml").write_text(write_rungs(HARD_PARAMS.read_text(), spec, defaults, [list(spec.configs)]))
    code = ("import sys; from beadseg.cli import main; rc = main(['validate']); "
            "from beadseg.cli import main as m; m(['search', 'status']); "
            "sys.exit(rc or int('torch' in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "rung 0 (2 epochs): 0/8 runs evaluated" in proc.stdout


# --------------------------------------------------------------------------- the driver's loop


def _write_results(root: Path, run_id: str, score: float, status: str = "completed", steps: int = 50) -> None:
    for path, body in ((paths.metrics_file(run_id), {"full_val_jaccard": score}),
                       (paths.evaluation_info_file(run_id), {"status": status}),
                       (paths.train_info_file(run_id), {"optimizer_steps": steps})):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(json.dumps(body))


SCORES = {"t256_combined_lr3e-3": 0.60, "t256_dice_lr3e-3": 0.61, "t256_focal_lr3e-3": 0.50,
          "t256_tversky_lr3e-3": 0.55, "t256_combined_lr1e-3": 0.40, "t256_combined_lr3e-3_c16": 0.70,
          "t256_combined_lr3e-3_s1": 0.58, "t512_combined_lr3e-3_bs1": 0.59}


class FakeEngine:
    """Stands in for Snakemake: 'trains' the targets of each call (score grows with the rung)."""

    def __init__(self, root: Path, fail_at: int | None = None) -> None:
        self.root, self.calls, self.fail_at = root, [], fail_at

    def __call__(self, cmd: list[str], root: Path, what: str) -> None:
        self.calls.append(what)
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise BeadsegError("engine killed")
        cfg = validate(yaml.safe_load((root / "params.yaml").read_text()))
        for target in cmd:
            if target.endswith("metrics.json"):
                run_id = Path(target).parent.name
                if (root / target).exists():
                    continue
                rung = cfg.search.rung_of(run_id)
                cid = run_id.split("_", 1)[1]
                _write_results(root, run_id, SCORES[cid] + 0.05 * rung, steps=cfg.run(run_id).max_optimizer_steps)


def test_driver_runs_every_rung_then_the_pipeline_and_resumes(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "hard.search.yaml").write_text(HARD_SEARCH.read_text())
    (tmp_path / "params.yaml").write_text(HARD_PARAMS.read_text())
    engine = FakeEngine(tmp_path, fail_at=2)
    monkeypatch.setattr(search_driver, "run_engine", engine)
    with pytest.raises(BeadsegError, match="engine killed"):  # stopped inside rung 1
        search_driver.run_search("presets/hard.search.yaml", search_driver.Engine(cores="2"), tmp_path)
    cfg = validate(yaml.safe_load((tmp_path / "params.yaml").read_text()))
    assert len(cfg.search.rungs) == 2  # rung 1 was planned before the engine stopped
    assert cfg.search.rungs[1] == ("t256_dice_lr3e-3", "t256_combined_lr3e-3_c16")
    engine.fail_at = None
    cfg = search_driver.run_search("presets/hard.search.yaml", search_driver.Engine(cores="2"), tmp_path)
    assert engine.calls == ["rung 0 of 2 (8 runs to 2 epochs)", "rung 1 of 2 (2 runs to 6 epochs)",
                            "rung 1 of 2 (2 runs to 6 epochs)", "rung 2 of 2 (1 runs to 16 epochs)",
                            "the whole pipeline (analysis and report)"]
    assert cfg.search.rungs[2] == ("t256_combined_lr3e-3_c16",)
    lines = search_driver.status_lines(cfg, tmp_path)
    assert "optimizer steps used: 850 of the full grid's 3200 (27%)" in lines  # 8*50 + 2*100 + 250
    assert lines[-1] == "done: winner r2_t256_combined_lr3e-3_c16 (full-image val Jaccard 0.8000)"
    text = (tmp_path / "params.yaml").read_text()
    search_driver.run_search("presets/hard.search.yaml", search_driver.Engine(cores="2"), tmp_path)  # done: nothing new
    assert (tmp_path / "params.yaml").read_text() == text


def test_engine_commands_pass_options_through():
    cfg = validate(yaml.safe_load(HARD_PARAMS.read_text()))
    cmd = search_driver.Engine(cores="8", resources=("gpu=2",)).command(cfg, ["t256_dice_lr3e-3"])
    assert cmd[1:] == ["-m", "snakemake", "--rerun-incomplete", "--cores", "8", "--resources", "gpu=2",
                       "results/runs/t256_dice_lr3e-3/metrics.json"]
    cmd = search_driver.Engine(profile="workflow/profiles/slurm").command(cfg, None)
    assert cmd[1:] == ["-m", "snakemake", "--rerun-incomplete", "--profile", "workflow/profiles/slurm"]
    assert search_driver.Engine(name="dvc").command(cfg, ["t256_dice_lr3e-3"]) == ["dvc", "repro", "evaluate@t256_dice_lr3e-3"]


def test_dry_run_plans_under_40_percent_of_the_grid(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(HARD_PARAMS.read_text())
    lines = search_driver.plan_lines(str(HARD_SEARCH))
    assert lines[-1] == "at most 1200 optimizer steps in all, 38% of the full grid's 3200"


def test_a_continuation_trains_from_the_previous_rung(tmp_path: Path):
    """A rung-1 entry as the search writes it trains from rung 0's best weights and records its offset."""
    import torch

    from beadseg.checkpoint import load_model_file
    from beadseg.train import train_run
    from tests.helpers.tiny import make_tiny_project, tiny_params

    torch.set_num_threads(1)
    params = tiny_params(max_epochs=3, patience=3)
    params["runs"] = {"r0_a": {"max_epochs": 1, "patience": 1, "schedule_epochs": 3}}
    params["finetune"] = {"r1_a": {"init_from": "r0_a", "epoch_offset": 1, "max_epochs": 2, "patience": 2,
                                   "schedule_epochs": 3}}
    cfg = make_tiny_project(tmp_path, params)
    first = train_run(cfg, "r0_a", root=tmp_path, progress=False)
    info = train_run(cfg, "r1_a", root=tmp_path, progress=False)
    assert (first["optimizer_steps"], info["optimizer_steps"], info["epochs_run"]) == (3, 6, 2)
    assert info["params"]["epoch_offset"] == 1 and info["params"]["schedule_epochs"] == 3
    assert "epoch_offset" not in first["params"]  # at its default: left out (nothing to retrain on upgrade)
    assert load_model_file(tmp_path / paths.model_file("r1_a")).config.epoch_offset == 1
