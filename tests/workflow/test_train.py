"""Training as a process: kill -9 mid-run, then the same command resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from beadseg import paths
from beadseg.train import load_checkpoint
from tests.helpers.tiny import make_tiny_project, tiny_params

torch.set_num_threads(1)


def test_kill_9_mid_run_then_rerun_resumes(tmp_path: Path) -> None:
    project = tmp_path
    make_tiny_project(project)
    params = tiny_params(max_epochs=40, patience=40)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    ckpt = project / paths.checkpoint_file("a")
    if ckpt.exists():
        ckpt.unlink()
    env = {**os.environ, "BEADSEG_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "beadseg", "train", "--run", "a", "--threads", "1"]
    proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the kill"
    done = load_checkpoint(ckpt)["epoch"]
    assert 1 <= done < 40
    params["train"]["max_epochs"] = 40
    out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"resuming after epoch {done}" in out.stderr or f"resuming after epoch {done + 1}" in out.stderr
    assert list(pd.read_csv(project / paths.history_file("a"))["epoch"]) == list(range(1, 41))

