"""`beadseg search run` with the real Snakemake and DVC on a tiny project: killed mid-rung (SIGKILL of its
process group) and re-run, it finishes without retraining finished runs; handed over with `beadseg sync
to-dvc`, `dvc status` is clean, and a fresh clone with the pulled cache re-runs nothing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers.workflow import GIT_ENV

pytestmark = pytest.mark.integration

# 3 configurations (one epoch of 15 steps each in rung 0), the best third continues to 3 epochs.
SEARCH = {"grid": {"loss": ["dice", "combined", "focal"]}, "fixed": {"tile_size": 64},
          "halving": {"eta": 3, "min_epochs": 1}}
CONFIGS = ["dice", "combined", "focal"]


def _search_cmd() -> list[str]:
    return [sys.executable, "-m", "beadseg", "search", "run", "tiny.search.yaml", "--cores", "1"]


def _digest(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def _kill_after_first_run(root: Path) -> dict[str, tuple[int, str]]:
    """Start the search, SIGKILL its process group (driver, Snakemake, the job) as soon as one rung-0 run is
    evaluated; return the finished runs' model files (mtime, sha256)."""
    proc = subprocess.Popen(_search_cmd(), cwd=root, env={**os.environ, **GIT_ENV}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = [root / f"results/runs/r0_{c}/metrics.json" for c in CONFIGS]
    deadline = time.time() + 300
    while time.time() < deadline and not any(m.exists() for m in metrics) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {m.parent.name: _digest(m.parent / "model.pt") for m in metrics if m.exists()}
    assert finished, "no rung-0 run finished before the kill"
    assert len(finished) < len(CONFIGS), "the whole rung finished before the kill: not a mid-rung kill"
    return finished


def test_search_killed_mid_rung_resumes_then_hands_over_to_dvc(tmp_path: Path, wf) -> None:
    params = wf.tiny_params()
    params["train"].update({"max_epochs": 3, "patience": 3, "steps_per_epoch": 15, "lr": 1.0e-2})  # learns in 1 epoch
    root = wf.make_project(tmp_path / "proj", params)
    (root / "tiny.search.yaml").write_text(yaml.safe_dump(SEARCH, sort_keys=False))
    wf.run(["git", "add", "tiny.search.yaml"], root)
    wf.run(["git", "commit", "-q", "-m", "search file"], root)

    finished = _kill_after_first_run(root)
    assert (root / ".snakemake" / "locks").is_dir() and any((root / ".snakemake" / "locks").iterdir())

    out = wf.run(_search_cmd(), root, timeout=900)
    log = out.stdout + out.stderr
    assert "removing the lock left by the killed Snakemake" in log
    for run_id, before in finished.items():  # finished runs were not retrained
        assert _digest(root / f"results/runs/{run_id}/model.pt") == before, run_id
        assert f"beadseg train --run {run_id} " not in log and f"train[{run_id}]" not in log

    cfg_text = (root / "params.yaml").read_text()
    search = yaml.safe_load(cfg_text)["search"]
    assert search["budgets"] == [1, 3] and search["rungs"][0] == CONFIGS and len(search["rungs"][1]) == 1
    status = wf.run([sys.executable, "-m", "beadseg", "search", "status"], root).stdout
    assert "rung 0 (1 epochs): 3/3 runs evaluated, 45 optimizer steps" in status
    assert "rung 1 (3 epochs): 1/1 runs evaluated, 30 optimizer steps" in status
    assert "optimizer steps used: 75 of the full grid's 135 (56%)" in status and "done: winner r1_" in status
    assert (root / "results/report/REPORT.md").is_file()

    # Re-running the finished search is free: nothing retrains, params.yaml stays as it is.
    models = {p: _digest(p) for p in (root / "results/runs").glob("*/model.pt")}
    wf.run(_search_cmd(), root, timeout=300)
    assert {p: _digest(p) for p in models} == models and (root / "params.yaml").read_text() == cfg_text

    # Hand over to DVC: clean status, then a fresh clone with the pulled cache re-runs nothing.
    wf.sync(root, "to-dvc")
    assert wf.dvc_status(root) == {}
    lock = (root / "dvc.lock").read_text()
    assert "train@r0_dice" in lock and any(f"finetune@r1_{c}" in lock for c in CONFIGS)
    wf.run(["git", "add", "-A"], root)
    wf.run(["git", "commit", "-q", "-m", "halving search"], root)
    wf.run(["dvc", "push", "--quiet"], root)
    clone = tmp_path / "clone"
    wf.run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    wf.run(["dvc", "pull", "--quiet"], clone)
    assert wf.dvc_status(clone) == {}
    assert wf.dvc_would_run(clone) == []
