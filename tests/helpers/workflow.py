"""Builders and commands for the workflow tests: a tiny copy of the project (Snakefile, workflow/, dvc.yaml,
.dvc/config and a tiny params.yaml derived from the real one) in a temporary git + DVC repository, and
short wrappers around snakemake / dvc / git."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from beadseg.workflow import copy_pipeline
from tests.helpers import REPO

TINY_RUNS: dict[str, dict[str, Any]] = {
    "t64_dice": {"tile_size": 64, "loss": "dice"},
    "t128_combined_lr1e-3": {"tile_size": 128, "loss": "combined", "lr": 1.0e-3},
}


GIT_ENV = {
    "GIT_AUTHOR_NAME": "beadseg-test",
    "GIT_AUTHOR_EMAIL": "test@beadseg.invalid",
    "GIT_COMMITTER_NAME": "beadseg-test",
    "GIT_COMMITTER_EMAIL": "test@beadseg.invalid",
    "DVC_NO_ANALYTICS": "1",
}


def tiny_params_dict() -> dict[str, Any]:
    """The repository's params.yaml with small data, small models and a two-run table."""
    from beadseg.config import schema

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {**params.get("data", {}), "source": "synthetic", "images": "data/raw/demo/images",
                      "masks": "data/raw/demo/masks", "synthetic": {"n_images": 4, "size": 128, "seed": 1}}
    params["tiling"] = {**params.get("tiling", {}), "sizes": [64, 128]}
    params["train"] = {**params.get("train", {}), "depth": 3, "base_channels": 4, "max_epochs": 2, "patience": 2,
                       "steps_per_epoch": 3,
                       "batch_size": 4, "tile_size": 64, "lr": 3.0e-3}
    params["runs"] = {k: dict(v) for k, v in TINY_RUNS.items()}
    if "finetune" in schema().get("properties", {}):
        params["finetune"] = {}
    analysis_props = schema()["properties"]["analysis"]["properties"]
    cheap = {"top_k": 2, "title": "tiny test search", "bootstrap_samples": 100, "gradient_max_tiles": 2}
    params["analysis"] = {k: v for k, v in {**params.get("analysis", {}), **cheap}.items() if k in analysis_props}
    return params


def run(cmd: Sequence[str] | str, cwd: Path, check: bool = True, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a command (list, or a string for the shell) in ``cwd``; on failure show its output."""
    proc = subprocess.run(cmd, cwd=cwd, shell=isinstance(cmd, str), text=True, capture_output=True,
                          env={**os.environ, **GIT_ENV, **(env or {})}, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd!r} failed with exit {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}"
                             f"\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


def make_project(dest: Path, params: dict[str, Any] | None = None, git: bool = True) -> Path:
    """A tiny copy of the project in ``dest``: pipeline files + tiny params, in a fresh git + DVC repo."""
    copy_pipeline(dest)
    with open(dest / ".gitignore", "a") as fh:  # also what Snakemake writes besides DVC's outputs
        fh.write("\n/logs/\n/benchmarks/\n.snakemake/\n")
    (dest / "params.yaml").write_text(yaml.safe_dump(params or tiny_params_dict(), sort_keys=False))
    if git:
        run(["git", "init", "-q", "-b", "main"], dest)
        run(["dvc", "init", "-q"], dest)
        if (REPO / ".dvc" / "config").is_file():  # the documented default remote, as committed
            shutil.copy2(REPO / ".dvc" / "config", dest / ".dvc" / "config")
        run(["git", "add", "-A"], dest)
        run(["git", "commit", "-q", "-m", "tiny project"], dest)
    return dest


def sha256_tree(root: Path, paths: Iterable[str]) -> dict[str, str]:
    """sha256 of every file under the given paths (relative to ``root``)."""
    out = {}
    for rel in paths:
        base = root / rel
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            if f.name == ".gitignore":
                continue
            out[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def snakemake_jobs(root: Path, *extra: str) -> list[str]:
    """Jobs `snakemake -n` would run: 'rule' or 'rule[wildcards]' (rule all left out)."""
    from beadseg.sync import snakemake_pending

    return sorted(j for j in snakemake_pending(root, extra) if j != "all")


def dvc_status(root: Path) -> dict[str, Any]:
    return json.loads(run(["dvc", "status", "--json"], root).stdout or "{}")


def dvc_would_run(root: Path) -> list[str]:
    """Stages `dvc repro --dry` would run (everything downstream of a change, unlike `dvc status`)."""
    out = run(["dvc", "repro", "--dry"], root).stdout
    return sorted(set(re.findall(r"Running stage '([^']+)'", out)))


def set_param(root: Path, dotted: str, value: Any) -> None:
    """Edit one key of the project's params.yaml (e.g. 'runs.t64_dice.lr')."""
    path = root / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


class Workflow:
    """Helpers handed to tests through the ``wf`` fixture."""

    repo = REPO
    runs = TINY_RUNS
    run = staticmethod(run)
    make_project = staticmethod(make_project)
    tiny_params = staticmethod(tiny_params_dict)
    sha256_tree = staticmethod(sha256_tree)
    snakemake_jobs = staticmethod(snakemake_jobs)
    dvc_status = staticmethod(dvc_status)
    dvc_would_run = staticmethod(dvc_would_run)
    set_param = staticmethod(set_param)

    @staticmethod
    def sync(root: Path, direction: str) -> subprocess.CompletedProcess[str]:
        return run([sys.executable, "-m", "beadseg.sync", direction], root)


def copy_project(src: Path, dest: Path) -> Path:
    """A private copy of a project (mtimes and .snakemake metadata kept, so Snakemake sees the same state)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest



class Recorder:
    """Stands in for ``sync._run``: records each command and answers it with ``answer(cmd)``."""

    def __init__(self, answer: Callable[[list[str], Path], subprocess.CompletedProcess[str]]) -> None:
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        return self.answer(list(cmd), cwd)

    def ran(self, *words: str) -> bool:
        """Whether any recorded command starts with these words (e.g. 'dvc', 'commit')."""
        return any(call[:len(words)] == list(words) for call in self.calls)

    def ran_flag(self, program: str, flag: str) -> bool:
        return any(call[0] == program and flag in call for call in self.calls)
