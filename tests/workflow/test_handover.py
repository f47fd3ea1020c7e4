"""Snakemake -> DVC and DVC -> Snakemake without recomputing, and the push / wipe / pull round trip."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

# Cached DVC outputs and git-tracked metrics that must survive a round trip unchanged.
RECORDED = ["data/tiles", "data/split", "results/runs", "results/summary", "results/report/figures"]


def test_plain_dvc_commit_would_make_snakemake_retrain(project_copy: Path, wf) -> None:
    """Why `beadseg sync` exists: `dvc commit` rewrites outputs, and big files have no checksum in Snakemake."""
    root = project_copy
    wf.run(["dvc", "commit", "--force", "--quiet"], root)
    assert wf.dvc_status(root) == {}
    # --max-checksum-file-size 0 = what Snakemake does for files over 1 MB (real tiles and models).
    assert any(j.startswith("train[") for j in wf.snakemake_jobs(root, "--max-checksum-file-size", "0"))


def test_snakemake_to_dvc_records_everything_without_rerunning(project_copy: Path, wf) -> None:
    root = project_copy
    before = wf.sha256_tree(root, RECORDED)
    logs_before = {p: p.stat().st_mtime_ns for p in (root / "logs/train").iterdir()}
    wf.sync(root, "to-dvc")
    assert wf.dvc_status(root) == {}
    assert wf.dvc_would_run(root) == []
    assert wf.sha256_tree(root, RECORDED) == before  # nothing recomputed ...
    assert {p: p.stat().st_mtime_ns for p in (root / "logs/train").iterdir()} == logs_before  # ... no job ran
    assert wf.snakemake_jobs(root, "--max-checksum-file-size", "0") == []  # and Snakemake still agrees
    lock = (root / "dvc.lock").read_text()
    for run_id in wf.runs:
        assert f"train@{run_id}" in lock or f"finetune@{run_id}" in lock


def test_push_wipe_pull_round_trip_then_snakemake_has_nothing_to_do(project_copy: Path, tmp_path: Path, wf) -> None:
    root = project_copy
    wf.sync(root, "to-dvc")
    wf.run(["git", "add", "-A"], root)
    wf.run(["git", "commit", "-q", "-m", "search results"], root)
    remote = wf.run(["dvc", "remote", "list"], root).stdout
    assert "(default)" in remote, remote  # the committed default remote: a folder beside the project
    wf.run(["dvc", "push", "--quiet"], root)
    before = wf.sha256_tree(root, RECORDED)
    assert any(k.endswith("model.pt") for k in before) and any("data/tiles" in k for k in before)

    # Wipe: a fresh clone has no cache and no outputs (the remote sits beside both, the same relative path).
    clone = tmp_path / "clone"
    wf.run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    assert not (clone / ".dvc/cache").exists() and not (clone / "results/runs/t64_dice/model.pt").exists()
    wf.run(["dvc", "pull", "--quiet"], clone)
    assert wf.sha256_tree(clone, RECORDED) == before
    assert wf.dvc_status(clone) == {}

    # DVC -> Snakemake: no .snakemake metadata and arbitrary mtimes; one command makes them agree.
    wf.sync(clone, "from-dvc")
    assert wf.snakemake_jobs(clone, "--max-checksum-file-size", "0") == []
    assert wf.sha256_tree(clone, RECORDED) == before


def test_from_dvc_refuses_when_dvc_is_not_clean(project_copy: Path, wf) -> None:
    root = project_copy
    wf.sync(root, "to-dvc")
    wf.set_param(root, f"runs.{next(iter(wf.runs))}.lr", 0.02)
    proc = wf.run([sys.executable, "-m", "beadseg.sync", "from-dvc"], root, check=False)
    assert proc.returncode == 2 and "dvc status is not clean" in proc.stderr


def test_a_dvc_commit_that_fails_part_way_leaves_snakemake_with_nothing_to_do(project_copy: Path, tmp_path: Path,
                                                                              wf) -> None:
    """A real partial commit: a `dvc` in front of the real one commits the split stage (rewriting its outputs, so
    they look newer than everything built from them) and then fails. Snakemake must still have nothing to do."""
    import os
    import shutil

    root = project_copy
    real = shutil.which("dvc")
    assert real
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "dvc").write_text(f'#!/bin/sh\nif [ "$1" = commit ]; then\n  "{real}" commit --force --quiet split '
                                  '|| exit 3\n  echo "ERROR: injected failure after the split stage" >&2\n  exit 1\n'
                                  f'fi\nexec "{real}" "$@"\n')
    (fake_bin / "dvc").chmod(0o755)
    split_mtime = (root / "data/split/train.npz").stat().st_mtime_ns
    env = {"PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    proc = wf.run([sys.executable, "-m", "beadseg.sync", "to-dvc"], root, check=False, env=env)
    assert proc.returncode == 2, proc.stderr
    assert (root / "data/split/train.npz").stat().st_mtime_ns != split_mtime  # the commit did rewrite outputs
    (line,) = [x for x in proc.stderr.splitlines() if x.strip()]
    assert "dvc commit failed part-way (exit 1: ERROR: injected failure" in line
    assert "Snakemake's view is restored" in line
    assert wf.snakemake_jobs(root, "--max-checksum-file-size", "0") == []
    wf.sync(root, "to-dvc")  # and the real one then goes through
    assert wf.dvc_status(root) == {}
