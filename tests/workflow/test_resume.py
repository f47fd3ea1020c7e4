"""kill -9 in the middle of a training job, then re-run with the real engine: the run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers.workflow import GIT_ENV, make_project, run, set_param

pytestmark = pytest.mark.integration

RUN = "t64_dice"
EPOCHS = 25


def _kill_after_first_checkpoint(cmd: list[str], root: Path) -> None:
    ckpt = root / "results" / "runs" / RUN / "resume" / "last.pt"
    proc = subprocess.Popen(cmd, cwd=root, env={**os.environ, **GIT_ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)  # the engine and its training job, without any clean-up
    proc.wait()
    assert ckpt.exists(), "the training job never wrote a checkpoint before it was killed"


def _prepare(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj")
    set_param(root, f"runs.{RUN}.max_epochs", EPOCHS)
    set_param(root, f"runs.{RUN}.patience", EPOCHS)
    return root


def _assert_resumed(root: Path, log_text: str) -> None:
    assert "resuming after epoch" in log_text
    history = pd.read_csv(root / "results" / "runs" / RUN / "history.csv")
    assert list(history["epoch"]) == list(range(1, EPOCHS + 1))


def test_snakemake_rerun_incomplete_resumes_a_killed_run(tmp_path):
    root = _prepare(tmp_path)
    target = f"results/runs/{RUN}/train.json"
    _kill_after_first_checkpoint(["snakemake", "--cores", "1", target], root)
    run(["snakemake", "--unlock"], root)  # a killed Snakemake leaves its directory lock behind
    out = run(["snakemake", "--cores", "1", "--rerun-incomplete", target], root, timeout=600)
    _assert_resumed(root, out.stdout + out.stderr + (root / "logs" / "train" / f"{RUN}.log").read_text())


def test_dvc_repro_resumes_a_killed_run(tmp_path):
    root = _prepare(tmp_path)
    _kill_after_first_checkpoint(["dvc", "repro", f"train@{RUN}"], root)
    out = run(["dvc", "repro", f"train@{RUN}"], root, timeout=600)
    _assert_resumed(root, out.stdout + out.stderr)
