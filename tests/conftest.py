"""Shared fixtures. Tests live in two folders:

- ``tests/unit``: pure functions and in-process steps on tiny data (``make test-fast``, under a minute);
- ``tests/workflow``: the real snakemake / dvc, processes killed and restarted, the whole analysis on fake
  searches (marked ``integration`` automatically).

Builders shared by both are in ``tests/helpers`` (tiny data sets, fake analysed searches, tiny projects).
The ``slurm`` marker is opt-in (BEADSEG_SLURM_TEST=1, needs scripts/slurm-up.sh).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.workflow import Workflow, copy_project, make_project, run

WORKFLOW_DIR = Path(__file__).parent / "workflow"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/workflow is an integration test (``-m "not integration"`` skips them)."""
    for item in items:
        if WORKFLOW_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def wf() -> type[Workflow]:
    return Workflow


@pytest.fixture(scope="session")
def snakemake_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny project after a full `snakemake --cores 2` (shared: copy it before changing anything)."""
    root = make_project(tmp_path_factory.mktemp("snakemake") / "project")
    run(["snakemake", "--cores", "2"], root, timeout=600)
    return root


@pytest.fixture
def project_copy(snakemake_project: Path, tmp_path: Path) -> Path:
    """A private copy of the finished Snakemake project."""
    return copy_project(snakemake_project, tmp_path / "project")

