"""Real `dvc repro` in a temporary git repository: end to end, one run's lr, metrics diff, experiments."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ANALYSIS = ["aggregate", "figures", "report"]


def ran_stages(output: str) -> list[str]:
    return sorted(set(re.findall(r"Running stage '([^']+)'", output)))


def test_dvc_repro_then_one_runs_lr_then_metrics_diff_then_exp_run(tmp_path: Path, wf) -> None:
    root = wf.make_project(tmp_path / "p")
    changed, untouched = list(wf.runs)
    wf.run(["dvc", "repro", "--quiet"], root, timeout=600)
    assert (root / "results/report/REPORT.md").is_file() and wf.dvc_status(root) == {}
    wf.run(["git", "add", "-A"], root)
    wf.run(["git", "commit", "-q", "-m", "repro"], root)

    wf.set_param(root, f"runs.{changed}.lr", 0.02)
    status = wf.dvc_status(root)
    assert sorted(status) == sorted([f"train@{changed}", "fingerprint", "aggregate"]), status  # directly affected
    model_other = (root / f"results/runs/{untouched}/model.pt").read_bytes()
    proc = wf.run(["dvc", "repro"], root, timeout=600)
    assert ran_stages(proc.stdout) == sorted([f"train@{changed}", f"evaluate@{changed}", "fingerprint", *ANALYSIS]), proc.stdout
    assert (root / f"results/runs/{untouched}/model.pt").read_bytes() == model_other
    diff = json.loads(wf.run(["dvc", "metrics", "diff", "--json"], root).stdout)
    assert f"results/runs/{changed}/metrics.json" in diff, diff
    assert f"results/runs/{untouched}/metrics.json" not in diff, diff
    rows = diff[f"results/runs/{changed}/metrics.json"]  # scores only: no settings, timings, devices or status
    assert rows and not {k for k in rows if k.startswith("params") or k in {
        "status", "threads", "wall_seconds", "train_seconds", "peak_memory_mb", "device", "eval_seconds"}}, rows
    md = wf.run(["dvc", "metrics", "diff", "--md"], root).stdout
    assert changed in md and "|" in md
    plots = json.loads(wf.run(["dvc", "plots", "show", "--json"], root).stdout)["data"]
    from beadseg.analysis import FIGURES

    for name in FIGURES:  # the seven figures are image plots, so `dvc plots diff` can compare them
        (entry,) = plots[f"results/report/figures/{name}"]
        assert entry["type"] == "image" and Path(entry["url"]).is_file(), entry
    for run_id in wf.runs:  # each run's learning curve, and the summary of every run
        assert plots[f"results/runs/{run_id}/history.csv"][0]["type"] == "vega"
    assert plots["results/summary/histories.csv"][0]["type"] == "vega"
    wf.run(["git", "add", "-A"], root)
    wf.run(["git", "commit", "-q", "-m", "lr 0.02"], root)

    # Experiments: -S on one run's lr re-runs that run and the analysis only.
    proc = wf.run(["dvc", "exp", "run", "-S", f"runs.{untouched}.lr=0.005"], root, timeout=600)
    assert ran_stages(proc.stdout) == sorted([f"train@{untouched}", f"evaluate@{untouched}", "fingerprint",
                                              *ANALYSIS]), proc.stdout
    shown = wf.run(["dvc", "exp", "show", "--json"], root).stdout
    assert "0.005" in shown and "best_val_jaccard" in shown
