"""What re-runs after an edit, asked of both engines (`dvc repro --dry` and `snakemake -n`).

Both start from the same state: a finished Snakemake run handed to DVC with `beadseg sync to-dvc`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.workflow import copy_project

pytestmark = pytest.mark.integration

ANALYSIS = ["aggregate", "measure", "figures", "report"]


@pytest.fixture(scope="module")
def synced_once(snakemake_project: Path, tmp_path_factory: pytest.TempPathFactory, wf) -> Path:
    """The finished Snakemake project handed to DVC once (mtimes and metadata kept by the copies)."""
    root = copy_project(snakemake_project, tmp_path_factory.mktemp("synced") / "project")
    wf.sync(root, "to-dvc")
    return root


@pytest.fixture
def synced(synced_once: Path, tmp_path: Path) -> Path:
    return copy_project(synced_once, tmp_path / "project")


def both(root: Path, wf) -> tuple[list[str], list[str]]:
    dvc = wf.dvc_would_run(root)
    snake = [j.replace("[run=", "@").rstrip("]") if j.startswith(("train[", "evaluate[")) else j
             for j in wf.snakemake_jobs(root, "--max-checksum-file-size", "0")]
    return dvc, sorted(snake)


def test_one_runs_params_rerun_that_run_and_the_analysis(synced: Path, wf) -> None:
    run_id = next(iter(wf.runs))
    wf.set_param(synced, f"runs.{run_id}.dropout", 0.3)
    dvc, snake = both(synced, wf)
    # the fingerprint lists every run's settings and step budget, so it is redone (seconds) in both engines
    assert snake == sorted([f"train@{run_id}", f"evaluate@{run_id}", "fingerprint", *ANALYSIS])
    assert dvc == sorted([f"train@{run_id}", "fingerprint", "aggregate"])  # stages whose own deps changed


def test_a_training_default_reruns_every_run(synced: Path, wf) -> None:
    wf.set_param(synced, "train.dropout", 0.2)  # no run overrides dropout
    dvc, snake = both(synced, wf)
    assert snake == sorted([*(f"train@{r}" for r in wf.runs), *(f"evaluate@{r}" for r in wf.runs), "fingerprint",
                            *ANALYSIS])
    assert dvc == sorted([*(f"train@{r}" for r in wf.runs), "fingerprint"])  # the analysis follows once they re-ran


def test_evaluation_settings_reevaluate_every_run_and_retrain_none(synced: Path, wf) -> None:
    wf.set_param(synced, "evaluation.overlap", 0.5)
    dvc, snake = both(synced, wf)
    assert not [j for j in dvc + snake if j.startswith("train")]
    # the baseline is scored like the runs, so it follows the evaluation settings too
    assert snake == sorted([*(f"evaluate@{r}" for r in wf.runs), "baseline", *ANALYSIS])
    assert dvc == sorted([*(f"evaluate@{r}" for r in wf.runs), "baseline"])


def test_the_threshold_retrains_every_run_in_both_engines(synced: Path, wf) -> None:
    """evaluation.threshold picks each run's best epoch (the model file records it): a change retrains."""
    wf.set_param(synced, "evaluation.threshold", 0.4)
    dvc, snake = both(synced, wf)
    assert snake == sorted([*(f"train@{r}" for r in wf.runs), *(f"evaluate@{r}" for r in wf.runs), "baseline",
                            *ANALYSIS])
    assert dvc == sorted([*(f"train@{r}" for r in wf.runs), *(f"evaluate@{r}" for r in wf.runs), "baseline"])


def test_analysis_settings_rerun_only_the_analysis(synced: Path, wf) -> None:
    wf.set_param(synced, "analysis.top_k", 1)
    dvc, snake = both(synced, wf)
    # the analysis steps read the analysis section as a whole (rank_by ranks in aggregate, gradient_max_tiles
    # bounds measure), so no params file must carry a particular key of it; nothing is retrained or re-scored
    assert dvc == snake == sorted(ANALYSIS)


def test_editing_an_unrelated_module_retrains_nothing(synced: Path, wf) -> None:
    # The package is no dependency of any rule or stage (neither engine retrains on a code edit; see
    # docs/workflow.md). The project tree holds the package, as the repository does, and the modules the
    # train and evaluate steps run are edited: both engines still have nothing to do.
    import shutil

    shutil.copytree(wf.repo / "beadseg", synced / "beadseg", ignore=shutil.ignore_patterns("__pycache__"))
    assert both(synced, wf) == ([], [])
    for name in ("train.py", "evaluate.py", "analysis/report.py"):
        module = synced / "beadseg" / name
        module.write_text(module.read_text() + "\n# an edit that changes no result\n")
    (synced / "workflow/rules/analysis.smk").touch()  # rule files are re-read, not re-run
    dvc, snake = both(synced, wf)
    assert dvc == snake == []
