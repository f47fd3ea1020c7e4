"""Grid expansion and run ids: readable, path-safe, stable."""

from __future__ import annotations

import pytest
import yaml

from beadseg.config import RUN_ID_PATTERN, validate
from beadseg.errors import ConfigError
from beadseg.plan import expand_grid, format_value, render_runs_block, replace_runs_block, run_id_for


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.001, "1e-3"), (0.0002, "2e-4"), (3e-4, "3e-4"), (0.3, "0p3"), (256, "256"), (0.0, "0"), (1.0, "1"),
     (True, "on"), ("Combined", "combined"), (2.5e-5, "2p5e-5")],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_grid_expands_to_every_combination_with_readable_ids():
    table = expand_grid({"grid": {"tile_size": [256, 512], "loss": ["dice", "focal"], "lr": ["1e-3", 3e-4]}})
    assert len(table) == 8
    assert "t256_dice_lr1e-3" in table and "t512_focal_lr3e-4" in table
    assert table["t512_focal_lr3e-4"] == {"tile_size": 512, "loss": "focal", "lr": 3e-4}
    assert all(RUN_ID_PATTERN.match(r) for r in table)


def test_adding_a_value_to_an_axis_never_renames_existing_runs():
    before = expand_grid({"grid": {"lr": [1e-3], "loss": ["dice", "focal"]}})
    after = expand_grid({"grid": {"lr": [1e-3, 1e-4], "loss": ["dice", "focal", "combined"]}})
    assert set(before) <= set(after)
    for run_id, over in before.items():
        assert after[run_id] == over


def test_seeds_fixed_and_include():
    table = expand_grid({"grid": {"loss": ["dice"]}, "seeds": [0, 1], "fixed": {"max_epochs": 5},
                         "include": {"extra": {"lr": 1e-5}}})
    assert table == {"dice_s0": {"max_epochs": 5, "loss": "dice", "seed": 0},
                     "dice_s1": {"max_epochs": 5, "loss": "dice", "seed": 1},
                     "extra": {"lr": 1e-5}}


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ({"grid": {"lrr": [1]}}, "unknown training setting 'lrr'"),
        ({"grid": {}}, "at least one"),
        ({"grid": {"lr": [1e-3, 1e-3]}}, "twice"),
        ({"grid": {"lr": [1e-3]}, "bogus": 1}, "unknown section"),
        ({"grid": {"lr": [1.00000001e-3, 1.00000002e-3]}}, "share the run id"),
    ],
)
def test_bad_grids_raise(spec, needle):
    with pytest.raises(ConfigError, match=needle):
        expand_grid(spec)


def test_run_id_for_respects_axis_order():
    assert run_id_for({"lr": 1e-3, "tile_size": 256}, ["tile_size", "lr"]) == "t256_lr1e-3"


def test_replace_runs_block_keeps_comments_and_other_sections():
    text = ("# top comment\ndata:\n  source: synthetic  # keep me\nruns:\n  old: {lr: 1.0}\n  old2: {}\n\n"
            "finetune: {}\n\n# analysis\nanalysis:\n  top_k: 3\n")
    table = expand_grid({"grid": {"loss": ["dice", "focal"]}})
    new = replace_runs_block(text, table)
    assert "# top comment" in new and "# keep me" in new and "# analysis\nanalysis:" in new
    parsed = yaml.safe_load(new)
    assert list(parsed["runs"]) == ["dice", "focal"]
    assert parsed["analysis"] == {"top_k": 3}
    validate(parsed)


def test_rendered_block_round_trips_through_yaml():
    table = expand_grid({"grid": {"lr": [1e-3, 2e-4], "dropout": [0.1, 0.3]}})
    assert yaml.safe_load(render_runs_block(table))["runs"] == table


def test_finetune_section_is_written_as_the_finetune_table():
    from beadseg.plan import finetune_table

    spec = {"grid": {"tile_size": [256]}, "finetune": {"ft": {"init_from": "t256", "tile_size": 512, "lr": "1e-5"}}}
    text = "data: {}\nruns:\n  old: {}\nfinetune: {}\n"
    text = replace_runs_block(replace_runs_block(text, expand_grid(spec)), finetune_table(spec), "finetune")
    parsed = yaml.safe_load(text)
    assert parsed["runs"] == {"t256": {"tile_size": 256}}
    assert parsed["finetune"] == {"ft": {"init_from": "t256", "tile_size": 512, "lr": 1e-5}}
    cfg = validate(parsed)
    assert cfg.run("ft").init_from == "t256" and cfg.finetune_ids == ("ft",)


def test_finetune_entries_need_init_from():
    from beadseg.plan import finetune_table

    with pytest.raises(ConfigError, match="needs init_from"):
        finetune_table({"grid": {"lr": [1e-3]}, "finetune": {"ft": {"tile_size": 512}}})
