"""beadseg search propose: the space file, trials from runs.csv, TPE proposals (seeded, model-based), the table."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from beadseg.errors import ConfigError
from beadseg.propose import Observation, observations, parse_space, proposal_table, propose

SPACE = {"space": {"lr": {"log_uniform": [1.0e-4, 1.0e-1]}, "loss": {"choice": ["dice", "focal", "combined"]},
                   "dropout": {"uniform": [0.0, 0.3]}}, "fixed": {"tile_size": 256}}


@pytest.mark.parametrize(("spec", "message"), [
    ({"space": {"lr": {"normal": [0, 1]}}}, r"space.lr must be one of"),
    ({"space": {"lr": {"log_uniform": [0.0, 1.0]}}}, r"space.lr.log_uniform: need low < high and low > 0"),
    ({"space": {"dropout": {"uniform": [0.3, 0.1]}}}, r"need low < high"),
    ({"space": {"loss": {"choice": []}}}, r"space.loss.choice must be a non-empty list"),
    ({"space": {"lrr": {"uniform": [0, 1]}}}, r"'lrr' is not a training setting"),
    ({"space": {}}, r"needs a non-empty space"),
    ({"space": {"lr": {"uniform": [0, 1]}}, "grid": {}}, r"unknown top-level key"),
])
def test_space_errors_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_space(spec, "s.yaml")


def test_yaml_spelled_numbers_are_numbers():
    space, _ = parse_space({"space": {"lr": {"log_uniform": ["1e-4", "1e-2"]}}})  # PyYAML reads 1e-4 as text
    assert space["lr"].low == pytest.approx(1e-4) and space["lr"].contains(3e-3) and not space["lr"].contains(0.5)


def runs_csv(rows):
    base = {"status": "completed", "max_epochs": 16, "tile_size": 256, "dropout": 0.1, "loss": "dice", "lr": 1e-3}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_trials_come_from_comparable_results_and_say_what_was_left_out():
    space, _ = parse_space(SPACE)
    runs = runs_csv([
        {"run_id": "a", "full_val_jaccard": 0.7},
        {"run_id": "b", "full_val_jaccard": None, "status": "diverged", "lr": 0.05},
        {"run_id": "r0_c", "full_val_jaccard": 0.4, "max_epochs": 2},            # an early halving rung
        {"run_id": "d", "full_val_jaccard": 0.6, "lr": 0.5},                     # outside the space
        {"run_id": "r2_e", "full_val_jaccard": 0.75, "max_epochs": 10, "epoch_offset": 6},  # last rung: 16 in all
        {"run_id": "t512", "full_val_jaccard": 0.8, "tile_size": 512},          # not the fixed tile size
    ])
    found, skipped = observations(runs, space, {"tile_size": 256})
    assert [(o.run_id, o.value) for o in found] == [("a", 0.7), ("b", None), ("r2_e", 0.75)]
    assert found[0].params == {"lr": 1e-3, "loss": "dice", "dropout": 0.1}
    assert any(s.startswith("r0_c: trained 2 of 16 epochs") for s in skipped)
    assert any(s.startswith("d: lr=0.5 outside the space") for s in skipped)
    assert "t512: tile_size=512, not the fixed 256" in skipped


def _observed(n: int, seed: int = 1) -> list[Observation]:
    """Finished trials of a score that peaks at lr = 1e-2 (log scale) and prefers combined."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lr = 10 ** rng.uniform(-4, -1)
        loss = rng.choice(["dice", "focal", "combined"])
        score = 0.9 - 0.15 * (math.log10(lr) + 2) ** 2 - (0.0 if loss == "combined" else 0.1)
        out.append(Observation(f"r{i}", {"lr": lr, "loss": loss, "dropout": rng.uniform(0, 0.3)}, score))
    return out


def test_proposals_are_seeded_inside_the_space_and_rounded():
    space, fixed = parse_space(SPACE)
    first = propose(space, _observed(20), n=4, seed=3, startup=5)
    assert first == propose(space, _observed(20), n=4, seed=3, startup=5)  # reproducible
    assert first != propose(space, _observed(20), n=4, seed=4, startup=5)
    for point in first:
        assert all(space[k].contains(v) for k, v in point.items()), point
        assert point["lr"] == float(f"{point['lr']:.3g}")
    table = proposal_table(first, space, fixed, taken=set())
    assert len(table) == 4 and all(rid.startswith("tpe_lr") and v["tile_size"] == 256 for rid, v in table.items())


def test_tpe_concentrates_where_the_results_were_good():
    """Model-based, not random: proposals sit closer to the best region than uniform draws of the space do."""
    space, _ = parse_space(SPACE)
    points = propose(space, _observed(30), n=12, seed=0, startup=5)
    distance = sorted(abs(math.log10(p["lr"]) + 2) for p in points)
    rng = random.Random(0)
    uniform = sorted(abs(rng.uniform(-4, -1) + 2) for _ in range(2000))
    assert distance[len(distance) // 2] < 0.6 * uniform[len(uniform) // 2], distance
    assert sum(p["loss"] == "combined" for p in points) > len(points) / 3


def test_ids_never_clash_with_existing_runs():
    space, fixed = parse_space(SPACE)
    point = {"lr": 1e-3, "loss": "dice", "dropout": 0.1}
    table = proposal_table([point, point], space, fixed, taken={"tpe_lr1e-3_dice_do0p1"})
    assert list(table) == ["tpe_lr1e-3_dice_do0p1_2", "tpe_lr1e-3_dice_do0p1_3"]


def test_cli_prints_and_writes_the_proposals_into_the_run_table(tmp_path):
    import yaml

    from beadseg.config import load_config
    from tests.helpers.tiny import run_beadseg, tiny_params

    params = tiny_params()
    (tmp_path / "params.yaml").write_text("# my search\n" + yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    out = run_beadseg(tmp_path, "search", "propose", "space.yaml", "--n", "2")
    assert out.returncode == 2 and "results/summary/runs.csv' not found" in out.stderr
    summary = tmp_path / "results" / "summary"
    summary.mkdir(parents=True)
    runs_csv([{"run_id": "a", "full_val_jaccard": 0.7, "tile_size": 64}]).to_csv(summary / "runs.csv", index=False)
    before = (tmp_path / "params.yaml").read_text()
    out = run_beadseg(tmp_path, "search", "propose", "space.yaml", "--n", "2", "--write")
    assert out.returncode == 2 and "tile size 256 is not in tiling.sizes" in out.stderr  # checked before writing
    assert (tmp_path / "params.yaml").read_text() == before
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({**SPACE, "fixed": {"tile_size": 64}}))
    out = run_beadseg(tmp_path, "search", "propose", "space.yaml", "--n", "2", "--write")
    assert out.returncode == 0, out.stderr
    assert "1 finished trial(s)" in out.stderr and "TPE samples at random" in out.stderr
    printed = yaml.safe_load(out.stdout)["runs"]
    cfg = load_config(tmp_path / "params.yaml")
    assert len(printed) == 2 and set(printed) <= set(cfg.run_ids) and "a" in cfg.run_ids
    assert (tmp_path / "params.yaml").read_text().startswith("# my search")
    assert all(cfg.run(r).tile_size == 64 for r in printed)
