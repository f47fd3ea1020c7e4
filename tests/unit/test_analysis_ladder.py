"""The halving ladder: per-configuration scores by rung, who stopped where, and the compute saved (known answers)."""

from __future__ import annotations

import pandas as pd
import yaml

from beadseg.analysis.ladder import ladder_numbers
from beadseg.analysis.report_search import section_search
from beadseg.config import validate
from beadseg.search import load_search, train_defaults_raw, write_rungs
from tests.helpers import REPO

HARD_SEARCH = REPO / "presets" / "hard.search.yaml"
HARD_PARAMS = REPO / "presets" / "hard.params.yaml"
C16, DICE = "t256_combined_lr3e-3_c16", "t256_dice_lr3e-3"


def search_config(rungs: list[list[str]]):
    params = yaml.safe_load(HARD_PARAMS.read_text())
    spec = load_search(HARD_SEARCH)
    text = write_rungs(HARD_PARAMS.read_text(), spec, train_defaults_raw(params), rungs)
    return validate(yaml.safe_load(text)), list(spec.configs)


def runs_table(scores: dict[str, tuple[float, int, float]], status: dict[str, str] | None = None) -> pd.DataFrame:
    """runs.csv rows: run id -> (full-image val Jaccard, optimizer steps, wall seconds)."""
    status = status or {}
    return pd.DataFrame([{"run_id": r, "full_val_jaccard": s, "optimizer_steps": n, "wall_seconds": w,
                          "status": status.get(r, "completed")} for r, (s, n, w) in scores.items()])


CONFIGS = list(load_search(HARD_SEARCH).configs)


def test_ladder_of_a_finished_search_names_the_winner_the_stops_and_the_steps():
    cfg, configs = search_config([CONFIGS, [C16, DICE], [C16]])
    scores = {f"r0_{c}": (0.5 + 0.01 * i, 50, 10.0) for i, c in enumerate(configs)}
    scores |= {f"r1_{C16}": (0.73, 100, 20.0), f"r1_{DICE}": (0.72, 100, 20.0), f"r2_{C16}": (0.77, 250, 50.0)}
    ladder = ladder_numbers(cfg, runs_table(scores, {f"r0_{configs[0]}": "degenerate"}))
    assert ladder is not None and ladder["finished"] and ladder["budgets"] == [2, 6, 16]
    assert ladder["winner"] == f"r2_{C16}" and ladder["winner_score"] == 0.77
    assert ladder["reached"][C16] == 2 and ladder["reached"][DICE] == 1
    assert all(ladder["reached"][c] == 0 for c in configs if c not in (C16, DICE))
    assert [p["epochs"] for p in ladder["ladders"][C16]] == [2, 6, 16]
    assert "not a result" in ladder["ladders"][configs[0]][0]["status"]
    # 8 x 50 + 2 x 100 + 250 steps against 8 configurations x 16 epochs x 25 steps
    assert ladder["steps_used"] == 850 and ladder["steps_full_grid"] == 3200
    assert abs(ladder["steps_fraction"] - 850 / 3200) < 1e-12
    assert abs(ladder["wall_used_s"] - (8 * 10 + 40 + 50)) < 1e-9
    assert abs(ladder["wall_full_grid_est_s"] - 170 / 850 * 3200) < 1e-9
    text = "\n".join(section_search({"search": ladder}))
    assert "**winner**" in text and f"`{C16}`" in text and "stopped after rung 1" in text
    assert "850 optimizer steps, 26.6 % of the 3200" in text and "not finished" not in text


def test_an_unfinished_search_names_no_winner_and_says_so():
    cfg, configs = search_config([CONFIGS, [C16, DICE]])
    scores = {f"r0_{c}": (0.5, 50, 10.0) for c in configs} | {f"r1_{C16}": (0.73, 100, 20.0)}
    ladder = ladder_numbers(cfg, runs_table(scores))
    assert ladder is not None and not ladder["finished"] and ladder["winner"] is None
    assert ladder["ladders"][DICE][-1]["status"] == "pending"
    text = "\n".join(section_search({"search": ladder}))
    assert "not finished" in text and "**winner**" not in text


def test_a_plain_grid_has_no_ladder():
    cfg = validate(yaml.safe_load(HARD_PARAMS.read_text()))
    assert ladder_numbers(cfg, runs_table({r: (0.5, 400, 60.0) for r in cfg.run_ids})) is None
    assert section_search({"search": None})[0] == "## Budget"


def test_short_halving_rungs_raise_no_step_warning_but_a_short_final_rung_does():
    from beadseg.data.fingerprint import _step_warnings, halving_roles, run_budget

    cfg, _ = search_config([CONFIGS, [C16, DICE], [C16]])
    fp = {"runs": {r: {**run_budget(cfg.run(r)), **halving_roles(cfg).get(r, {})} for r in cfg.run_ids}}
    assert _step_warnings(fp) == []  # rungs 0 and 1 are short by design; the last rung counts its 6 earlier epochs
    fp["runs"][f"r2_{C16}"].update(min_optimizer_steps=25, steps_before=0)
    (warning,) = _step_warnings(fp)
    assert f"r2_{C16} can stop after 25 optimizer steps" in warning
    grid = validate(yaml.safe_load(HARD_PARAMS.read_text()))
    short = {r: {**run_budget(grid.run(r)), "min_optimizer_steps": 50} for r in grid.run_ids}
    assert len(_step_warnings({"runs": short})) == len(grid.run_ids)  # a plain grid is still warned
