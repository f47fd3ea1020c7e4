"""Words that stay true: README's command list and the CLI's, the figure count, the GPU wording, help texts
without raw reStructuredText, the report's title from the data source."""

from __future__ import annotations

import argparse
import re

import pytest
import yaml

from beadseg.analysis import FIGURES
from beadseg.cli import PIPELINE_STEPS, build_parser, grouped_help, main
from beadseg.config import validate
from tests.helpers import REPO
from tests.helpers.tiny import tiny_params

README = (REPO / "README.md").read_text(encoding="utf-8")
NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
           "ten": 10, "eleven": 11, "twelve": 12}


def _subcommands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def _readme_tables() -> tuple[list[str], list[str]]:
    """The command names of README's two Commands tables (for you, pipeline steps), in their order."""
    section = README.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    tables = re.split(r"\n\s*\n", section)
    names: list[list[str]] = []
    for table in tables:
        rows = re.findall(r"^\| `beadseg ([a-z-]+)", table, re.M)
        if rows:
            names.append(rows)
    assert len(names) == 2, "README's Commands section should hold two tables: commands for you, pipeline steps"
    return names[0], names[1]


def test_readme_command_list_and_cli_are_in_step() -> None:
    for_you, steps = _readme_tables()
    commands = _subcommands()
    assert for_you == [c for c in commands if c not in PIPELINE_STEPS]
    assert steps == [c for c in PIPELINE_STEPS if c in commands] == list(PIPELINE_STEPS)
    help_text = build_parser().format_help()
    for name in commands:  # and `beadseg --help` lists every one of them
        assert re.search(rf"^  {name} ", help_text, re.M), name


def test_search_help_names_every_search_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    search = sub.choices["search"]
    inner = next(a for a in search._actions if isinstance(a, argparse._SubParsersAction))
    line = re.search(r"^  search +(.*(?:\n {4,}.*)*)", grouped_help({"search": search.description or ""}), re.M)
    assert line is not None
    for name in inner.choices:
        assert name in line.group(1), f"`beadseg --help` search line does not name `{name}`"


def test_sync_help_has_no_raw_restructuredtext(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["sync", "--help"])
    out = capsys.readouterr().out
    assert "``" not in out and "`dvc commit`" in out


def test_figure_counts_in_prose_match_the_figures_drawn() -> None:
    for path in (REPO / "README.md", REPO / "docs" / "structure.md"):
        for word in re.findall(r"\bthe (\w+) (?:analysis )?figures\b", path.read_text(encoding="utf-8")):
            if word in NUMBERS:
                assert NUMBERS[word] == len(FIGURES), f"{path.name} says '{word}' figures; there are {len(FIGURES)}"


def test_readme_gpu_wording_names_every_rule_that_takes_a_gpu() -> None:
    rules = (REPO / "workflow" / "rules" / "train.smk").read_text()
    gpu_rules = sorted(re.findall(r"^rule (\w+):(?:(?!^rule ).)*?gpu=1", rules, re.M | re.S))
    assert gpu_rules == ["evaluate", "train"]
    assert "training and evaluate jobs take `gpu=1` each" in README


def test_readme_shows_a_readable_dvc_dag() -> None:
    assert "dvc dag --md" in README


def test_report_title_comes_from_the_data_unless_set() -> None:
    params = tiny_params()
    assert validate(params).analysis.title == "beadseg demo search"
    params["data"] = {**params["data"], "synthetic": {"difficulty": "hard"}}
    assert validate(params).analysis.title == "beadseg search on hard synthetic beads"
    params["data"] = {"source": "folder", "images": "data/raw/scope1/images", "masks": "data/raw/scope1/masks"}
    assert validate(params).analysis.title == "beadseg search on scope1"
    params["data"] = {"source": "folder", "images": "/lab/2026-03 beads", "masks": "/lab/masks"}
    assert validate(params).analysis.title == "beadseg search on 2026-03 beads"
    params["analysis"] = {"title": "My search"}
    assert validate(params).analysis.title == "My search"
    shipped = validate(yaml.safe_load((REPO / "params.yaml").read_text()))
    assert shipped.analysis.title == "beadseg demo search"  # the demo's params set none: the data names it
