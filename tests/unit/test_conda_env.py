"""The conda environment of the rules (workflow/envs/beadseg.yaml) is pinned and agrees with pyproject.toml."""

from __future__ import annotations

import re

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from tests.helpers import REPO

ENV_FILE = REPO / "workflow" / "envs" / "beadseg.yaml"
# conda-forge's names for the PyPI distributions beadseg depends on
CONDA_NAME = {"torch": "pytorch-cpu", "matplotlib": "matplotlib-base"}


def conda_pins() -> dict[str, str]:
    env = yaml.safe_load(ENV_FILE.read_text())
    pins = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str) and dep != "pip":
            name, _, version = dep.partition("=")
            pins[name] = version
    return pins


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def test_every_runtime_dependency_is_pinned_to_a_version_pyproject_accepts():
    pins = conda_pins()
    for req in runtime_requirements():
        name = CONDA_NAME.get(req.name.lower(), req.name.lower())
        assert name in pins, f"{req.name} ({name}) missing from {ENV_FILE.name}"
        assert re.fullmatch(r"\d+(\.\d+)+", pins[name]), f"{name} is not pinned to an exact version: {pins[name]!r}"
        assert req.specifier.contains(Version(pins[name])), f"{name}={pins[name]} violates pyproject's {req}"


def test_the_env_is_cpu_by_default_without_the_workflow_engines():
    pins = conda_pins()
    assert "pytorch-cpu" in pins and "pytorch" not in pins and "pytorch-gpu" not in pins
    assert not {"snakemake", "dvc"} & set(pins)  # the engines run outside the job environment
    python = Version(pins["python"])
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(f"{python}.0") in Requirement(f"python{requires}").specifier


def test_the_pip_section_installs_this_checkout_from_where_conda_reads_the_file():
    env = yaml.safe_load(ENV_FILE.read_text())
    (pip,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip == ["-e ../.."]
    # Snakemake writes the env file to .snakemake/conda/<hash>.yaml; from there and from workflow/envs/
    # alike, ../.. is the project root.
    assert (ENV_FILE.parent / "../..").resolve() == REPO.resolve()
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert re.search(r'ENV = "\.\./envs/beadseg\.yaml"', common)
    assert (REPO / "workflow" / "rules" / "../envs/beadseg.yaml").resolve() == ENV_FILE.resolve()
