"""A user's small annotated folder, end to end through the real `beadseg` steps (no mocks):
fingerprint with per-run steps, threshold baseline, a run that learns and a run forced to learn nothing,
each scored by the evaluate step.

The images come from scikit-image's ``binary_blobs`` under our own imaging model, not from the demo
generator, so this also checks that nothing in the path depends on the demo's look.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from beadseg.data.lookalikes import write_folder
from tests.helpers.tiny import tiny_params

GOOD, BROKEN = "learns", "forced_degenerate"


def beadseg(cwd: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "beadseg", "-q", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"beadseg {' '.join(args)} failed:\n{out.stderr[-3000:]}"


@pytest.fixture(scope="module")
def folder_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("small_folder")
    write_folder(root / "mine/images", root / "mine/masks", "blobs", n_images=4, size=128, seed=2)
    params = tiny_params(base_channels=8, steps_per_epoch=15, max_epochs=4, patience=4)
    params["data"] = {"source": "folder", "images": "mine/images", "masks": "mine/masks", "val_fraction": 0.25}
    params["runs"] = {GOOD: {}, BROKEN: {"lr": 1.0e-9, "max_epochs": 1, "steps_per_epoch": 1}}
    params["analysis"] = {"bootstrap_samples": 100, "gradient_max_tiles": 2, "title": "small folder"}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for step in (["split"], ["tile", "--size", "64"], ["tile", "--size", "128"], ["fingerprint"], ["baseline"],
                 ["train", "--run", GOOD, "--threads", "1"], ["train", "--run", BROKEN, "--threads", "1"],
                 ["evaluate", "--run", GOOD, "--threads", "1"], ["evaluate", "--run", BROKEN, "--threads", "1"],
                 ["aggregate"], ["measure"], ["figures"], ["report"]):
        beadseg(root, *step)
    return root


def _json(root: Path, rel: str) -> dict:
    return json.loads((root / rel).read_text())


def test_fingerprint_lists_the_steps_every_run_will_get(folder_search):
    fp = _json(folder_search, "results/summary/fingerprint.json")
    assert fp["runs"][GOOD]["max_optimizer_steps"] == 15 * 4
    assert fp["runs"][BROKEN]["max_optimizer_steps"] == 1
    assert [fp["splits"][s]["n_images"] for s in ("train", "val", "test")] == [2, 1, 1]
    assert any(w.startswith(f"run {BROKEN} can stop after 1 optimizer steps") for w in fp["warnings"])


def test_the_forced_run_is_degenerate_and_never_best(folder_search):
    runs = pd.read_csv(folder_search / "results/summary/runs.csv").set_index("run_id")
    assert runs.loc[BROKEN, "status"] == "degenerate"
    assert "optimizer steps" in runs.loc[BROKEN, "likely_causes"]
    assert runs.loc[GOOD, "status"] in {"completed", "early_stopped"}
    summary = _json(folder_search, "results/summary/summary.json")
    assert summary["best_run_id"] == GOOD and summary["n_degenerate"] == 1 and summary["search_failed"] is False


def test_the_report_says_why_the_run_is_degenerate_and_compares_with_the_baseline(folder_search):
    report = (folder_search / "results/report/REPORT.md").read_text()
    summary_part = report.split("## Data")[0]
    assert BROKEN in summary_part and "degenerate" in summary_part
    metrics = _json(folder_search, f"results/runs/{BROKEN}/evaluation.json")
    assert metrics["degenerate_reasons"][0] in summary_part
    baseline = _json(folder_search, "results/summary/baseline.json")
    assert f"{baseline['full_val_jaccard']:.4f}" in summary_part and baseline["method"] in summary_part


def test_the_run_that_learned_beats_every_trivial_prediction(folder_search):
    good = _json(folder_search, f"results/runs/{GOOD}/metrics.json")
    baseline = _json(folder_search, "results/summary/baseline.json")
    assert good["full_val_jaccard"] > baseline["all_foreground_jaccard"] + 0.2
    assert good["bead_f1"] > 0
