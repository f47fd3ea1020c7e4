"""Real `dvc repro` in a temporary git repository: end to end, one run's lr, metrics diff, experiments."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

ANALYSIS = ["aggregate", "measure", "figures", "report"]


def experiment_rows(shown: Any) -> list[dict[str, Any]]:
    """Every row of `dvc exp show --json` (workspace, commits, experiments) that carries params and metrics."""
    found: list[dict[str, Any]] = []
    if isinstance(shown, dict):
        if isinstance(shown.get("params"), dict) and isinstance(shown.get("metrics"), dict):
            found.append(shown)
        for value in shown.values():
            found += experiment_rows(value)
    elif isinstance(shown, list):
        for value in shown:
            found += experiment_rows(value)
    return found


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

    for name in FIGURES:  # the eight figures are image plots, so `dvc plots diff` can compare them
        (entry,) = plots[f"results/report/figures/{name}"]
        assert entry["type"] == "image" and Path(entry["url"]).is_file(), entry
    for run_id in wf.runs:  # each run's learning curves: loss and pixel Jaccard, train and val
        (entry,) = plots[f"results/runs/{run_id}/history.csv"]
        spec = entry["content"]
        assert entry["type"] == "vega" and spec["title"]["text"] == run_id
        assert [p["transform"][0]["fold"] for p in spec["hconcat"]] == [["train_loss", "val_loss"],
                                                                        ["train_jaccard", "val_jaccard"]]
        epochs = list(pd.read_csv(root / f"results/runs/{run_id}/history.csv")["epoch"])
        assert sorted(int(v["epoch"]) for v in spec["data"]["values"]) == epochs
        for value in spec["data"]["values"]:
            assert all(0 <= float(value[k]) <= 1 for k in ("train_jaccard", "val_jaccard")), value
            assert all(float(value[k]) >= 0 for k in ("train_loss", "val_loss")), value
    (summary,) = plots["results/summary/histories.csv"]  # one series per run
    assert summary["content"]["encoding"]["color"]["field"] == "run_id"
    assert {v["run_id"] for v in summary["content"]["data"]["values"]} == set(wf.runs)
    wf.run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], root)  # what a user opens
    html = (tmp_path / "plots" / "index.html").read_text()
    assert all(f'"text": "{run_id}"' in html for run_id in wf.runs) and '"field": "run_id"' in html
    assert all(name in html for name in FIGURES) and html.count("<img") >= len(FIGURES)
    wf.run(["git", "add", "-A"], root)
    wf.run(["git", "commit", "-q", "-m", "lr 0.02"], root)

    # Experiments: -S on one run's lr re-runs that run and the analysis only.
    proc = wf.run(["dvc", "exp", "run", "-S", f"runs.{untouched}.lr=0.005"], root, timeout=600)
    assert ran_stages(proc.stdout) == sorted([f"train@{untouched}", f"evaluate@{untouched}", "fingerprint",
                                              *ANALYSIS]), proc.stdout
    shown = json.loads(wf.run(["dvc", "exp", "show", "--json"], root).stdout)
    with_lr = [e for e in experiment_rows(shown) if e["params"]["params.yaml"]["data"]["runs"][untouched]["lr"] == 0.005]
    (exp,) = [e for e in with_lr if e.get("rev") != "workspace"]  # the experiment (the workspace holds it too)
    scores = exp["metrics"][f"results/runs/{untouched}/metrics.json"]["data"]
    assert 0 <= scores["full_val_jaccard"] <= 1 and "status" not in scores  # the experiment's own scores
    summary = exp["metrics"]["results/summary/summary.json"]
    # the experiment's summary (tiny runs may not be results, so their best scores can be null, which DVC drops)
    assert summary["data"]["n_runs"] == len(wf.runs) and 0 <= summary["data"]["baseline_full_val_jaccard"] <= 1
    baseline = [e for e in experiment_rows(shown) if e["params"]["params.yaml"]["data"]["runs"][untouched].get("lr")
                != 0.005]
    assert baseline, "dvc exp show lists the commit the experiment started from"
