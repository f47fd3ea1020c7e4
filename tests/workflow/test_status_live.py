"""`beadseg status` sampled while a real `snakemake --cores 2` runs a tiny search: a run shows as training with its
epoch and ETA while the leaderboard already holds a finished one, and a running run's history.csv has its finished
epochs. Afterwards `beadseg export` of the best run writes a package that bioimageio.spec validates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from beadseg import paths
from beadseg.status import parse_history

SLOW = {"max_epochs": 16, "patience": 16, "steps_per_epoch": 20}
EPOCHS = SLOW["max_epochs"]


def _status(root: Path) -> str:
    return subprocess.run([sys.executable, "-m", "beadseg", "status"], cwd=root, capture_output=True, text=True,
                          timeout=120, check=True).stdout


def _rows(text: str) -> dict[str, list[str]]:
    """The run table's rows by run id (run, state, epoch, best val, device, elapsed, eta, note...)."""
    table = text.split("\n\n")[1].splitlines()
    return {line.split()[0]: line.split() for line in table[1:]}


def test_status_mid_run_and_export_after(tmp_path: Path, wf) -> None:
    params = wf.tiny_params()
    params["runs"] = {"quick": {"tile_size": 64, "max_epochs": 2, "patience": 2},
                      "slow_a": {"tile_size": 64, **SLOW}, "slow_b": {"tile_size": 64, "lr": 1e-3, **SLOW}}
    root = wf.make_project(tmp_path / "project", params)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "BEADSEG_DEVICE": "cpu"}
    # up to aggregate (summary.json names the best run): the report steps add nothing to what is tested here
    proc = subprocess.Popen(["snakemake", "--cores", "2", str(paths.summary_json())], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    frames, histories = [], []
    deadline = time.monotonic() + 500
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            text = _status(root)
            frames.append(text)
            for run in ("slow_a", "slow_b"):
                history = root / paths.history_file(run)
                if history.is_file() and not (root / paths.train_info_file(run)).is_file():
                    histories.append((run, len(parse_history(history.read_text()))))
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        err = proc.communicate()[1]
    assert proc.returncode == 0, err[-3000:]

    def live(text: str) -> bool:
        rows = _rows(text)
        training = [r for r in rows.values() if r[1] == "training" and r[2] != f"0/{EPOCHS}" and r[6].startswith("<=")]
        return bool(training) and "leaderboard (" in text

    good = [f for f in frames if live(f)]
    assert good, "no frame showed a run training (epoch, ETA) beside a leaderboard:\n" + "\n---\n".join(frames[-5:])
    frame = good[0]
    rows = _rows(frame)
    run = next(r for r in rows.values() if r[1] == "training")
    epoch, most = map(int, run[2].split("/"))
    assert 1 <= epoch < most == EPOCHS and run[4] == "cpu" and re.fullmatch(r"<=\d+(s|m\d\ds)", run[6]), frame
    assert "quick" in frame.split("leaderboard (", 1)[1]  # the finished run is on the board
    # history.csv of a running run holds its finished epochs (written after every epoch, not only at the end)
    assert any(0 < n < EPOCHS for _, n in histories), histories

    final = _status(root)
    print(f"{len(frames)} frames, {len(good)} live; a live one:\n{frame}")
    assert "3 runs: " in final and all(r[1] in ("done", "degenerate") for r in _rows(final).values()), final

    best = json.loads((root / paths.summary_json()).read_text())["best_run_id"] or "slow_a"
    out = subprocess.run([sys.executable, "-m", "beadseg", "export", "--run", best], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    pytest.importorskip("bioimageio.spec")
    from bioimageio.spec import load_description

    summary = load_description(root / "export" / best / f"{best}.bioimageio.zip", perform_io_checks=True)
    assert summary.validation_summary.status in ("passed", "valid-format"), summary.validation_summary.format()
