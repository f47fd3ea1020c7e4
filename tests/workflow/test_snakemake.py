"""Real `snakemake` on the tiny project: end to end, the job list, parse-time validation, profiles."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_snakemake_end_to_end_then_nothing_to_do(snakemake_project: Path, wf) -> None:
    root = snakemake_project
    for rel in ("results/report/REPORT.md", "results/summary/runs.csv", "results/summary/summary.json"):
        assert (root / rel).stat().st_size > 0, rel
    for run_id in wf.runs:
        assert (root / f"results/runs/{run_id}/model.pt").stat().st_size > 0
        assert (root / f"logs/train/{run_id}.log").is_file()
        assert (root / f"benchmarks/train/{run_id}.tsv").is_file()
    assert wf.snakemake_jobs(root) == []


def test_gpu_dry_run_dvc_stage_list_and_beadseg_runs_agree(tmp_path: Path, wf) -> None:
    root = wf.make_project(tmp_path / "p")
    jobs = wf.snakemake_jobs(root, "--cores", "8", "--resources", "gpu=2")
    snakemake_ids = sorted(j.removeprefix("train[run=").removesuffix("]") for j in jobs if j.startswith("train["))
    stages = wf.run(["dvc", "stage", "list", "--name-only"], root).stdout.split()
    dvc_ids = sorted(s.split("@", 1)[1] for s in stages if s.startswith(("train@", "finetune@")))
    beadseg_ids = sorted(wf.run([sys.executable, "-m", "beadseg", "runs"], root).stdout.split())
    assert snakemake_ids == dvc_ids == beadseg_ids == sorted(wf.runs)


def test_bad_params_fail_at_parse_time_naming_the_key(tmp_path: Path, wf) -> None:
    root = wf.make_project(tmp_path / "p", git=False)
    wf.set_param(root, "runs.t64_dice.lr", "fast")
    proc = wf.run(["snakemake", "-n", "--cores", "1"], root, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if "runs.t64_dice.lr" in line]
    assert len(lines) == 1 and lines[0].startswith("beadseg: "), out
    assert "Traceback" not in out


def test_lint_and_snakefmt_clean(tmp_path: Path, wf) -> None:
    root = wf.make_project(tmp_path / "p", git=False)
    lint = wf.run(["snakemake", "--lint"], root, check=False)
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr
    if shutil.which("snakefmt"):
        wf.run(["snakefmt", "--check", "Snakefile", "workflow/"], root)


def test_profiles_dry_run(tmp_path: Path, wf) -> None:
    pytest.importorskip("snakemake_executor_plugin_slurm")
    root = wf.make_project(tmp_path / "p", git=False)
    train = sorted(f"train[run={r}]" for r in wf.runs)
    local = wf.snakemake_jobs(root, "--profile", "workflow/profiles/default")
    assert [j for j in local if j.startswith("train[")] == train
    slurm = wf.run(["snakemake", "-n", "--profile", "workflow/profiles/slurm"], root).stdout
    for run_id in wf.runs:
        assert f"wildcards: run={run_id}" in slurm
    assert "gpu=1" in slurm and "slurm_partition=" in slurm


@pytest.mark.slurm
@pytest.mark.skipif(os.environ.get("BEADSEG_SLURM_TEST") != "1", reason="opt-in: BEADSEG_SLURM_TEST=1 after "
                    "scripts/slurm-up.sh (single-node Slurm with stand-in GPUs)")
def test_slurm_profile_end_to_end(tmp_path: Path, wf) -> None:
    if not shutil.which("sbatch") or wf.run(["sinfo", "-h"], tmp_path, check=False).returncode != 0:
        pytest.fail("no running Slurm: run scripts/slurm-up.sh first")
    root = wf.make_project(tmp_path / "p", git=False)
    partition = os.environ.get("BEADSEG_SLURM_PARTITION", "debug")
    proc = wf.run(["snakemake", "--profile", "workflow/profiles/slurm", "--verbose",
                   "--default-resources", f"slurm_partition={partition}", "runtime=30", "mem_mb=1000",
                   "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                   "--seconds-between-status-checks", "2", "--set-threads", "train=1"], root, timeout=600)
    out = proc.stdout + proc.stderr
    assert (root / "results/report/REPORT.md").is_file()
    for run_id in wf.runs:
        assert (root / f"results/runs/{run_id}/model.pt").is_file()
    assert "--gpus=1" in out  # training jobs were submitted asking for one GPU
    assert wf.snakemake_jobs(root) == []


def test_a_diverged_run_passes_through_a_real_search_to_the_report(tmp_path: Path, wf) -> None:
    import json

    import pandas as pd

    root = wf.make_project(tmp_path / "p", git=False)
    bad, good = list(wf.runs)
    wf.set_param(root, f"runs.{bad}.lr", 1.0e30)
    for key, value in (("steps_per_epoch", 15), ("max_epochs", 4), ("patience", 4), ("base_channels", 8)):
        wf.set_param(root, f"runs.{good}.{key}", value)  # enough steps to learn, so one run is a result
    wf.run(["snakemake", "--cores", "2"], root, timeout=600)  # the search completes
    info = json.loads((root / f"results/runs/{bad}/evaluation.json").read_text())
    metrics = json.loads((root / f"results/runs/{bad}/metrics.json").read_text())
    assert info["status"] == "diverged" and metrics.get("full_val_jaccard") is None
    runs = pd.read_csv(root / "results/summary/runs.csv").set_index("run_id")
    assert runs.loc[bad, "status"] == "diverged"
    summary = json.loads((root / "results/summary/summary.json").read_text())
    assert summary["best_run_id"] == good and summary["n_diverged"] == 1
    report = (root / "results/report/REPORT.md").read_text()
    assert bad in report and "diverged" in report
    assert f"Best run: **{good}**" in report
