"""Hand a finished search from one engine to the other without recomputing anything.

    beadseg sync to-dvc      # after `snakemake ...`: record every output in dvc.lock (no stage re-runs)
    beadseg sync from-dvc    # after `dvc repro` / `dvc pull` / `dvc checkout`: Snakemake sees outputs as current

(also ``python -m beadseg.sync to-dvc|from-dvc``.)

Why a command and not just ``dvc commit``: DVC decides by content hashes, Snakemake by modification times
(plus params / shell-command / input-set metadata in ``.snakemake/``). ``dvc commit``, ``dvc checkout`` and
``dvc pull`` rewrite output files in arbitrary order, so afterwards an input can look newer than the output
made from it and Snakemake would retrain (it only forgives that for files under
``--max-checksum-file-size``, 1 MB by default, and only when it has metadata; a fresh clone has none).
So both directions end with ``snakemake --touch``, which marks outputs current without running anything, and
both refuse to start unless the side they copy from is complete and up to date, so ``--touch`` never hides a
real change:

* to-dvc:   ``snakemake -n`` must have nothing to do  -> ``dvc commit --force`` -> ``snakemake --touch``
* from-dvc: ``dvc status`` must be clean              -> ``snakemake --touch``    -> ``snakemake -n`` is empty
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from beadseg.errors import BeadsegError

_RULE = re.compile(r"^(?:local)?rule (\S+?):\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), cwd=cwd, text=True, capture_output=True, check=False)


def _check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BeadsegError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout


def snakemake_pending(cwd: Path = Path("."), extra: Sequence[str] = ()) -> list[str]:
    """Jobs ``snakemake -n`` would run, as ``rule`` or ``rule[wildcards]`` strings (empty: nothing to do)."""
    out = _check(_run(["snakemake", "--dry-run", "--cores", "1", *extra], cwd), "snakemake --dry-run")
    if "Nothing to be done" in out:
        return []
    jobs: list[str] = []
    for line in out.splitlines():
        m = _RULE.match(line)
        if m:
            jobs.append(m.group(1))
            continue
        w = _WILDCARDS.match(line)
        if w and jobs:
            jobs[-1] = f"{jobs[-1]}[{w.group(1)}]"
    return [j for j in jobs if j != "all"]


def dvc_stale(cwd: Path = Path(".")) -> list[str]:
    """Stages (and files) ``dvc status`` reports as changed (empty: data and pipelines up to date)."""
    out = _check(_run(["dvc", "status", "--json"], cwd), "dvc status")
    status = json.loads(out or "{}")
    return sorted(status)


def snakemake_touch(cwd: Path) -> None:
    """``snakemake --touch`` judged by mtimes alone (checksum size limit 0), so the result also holds for
    inputs too big for Snakemake's checksum shortcut, e.g. real tiles and models."""
    cmd = ["snakemake", "--touch", "--cores", "1", "--quiet", "--max-checksum-file-size", "0"]
    _check(_run(cmd, cwd), "snakemake --touch")


def to_dvc(cwd: Path = Path(".")) -> None:
    """Record the outputs of a finished Snakemake run in dvc.lock without re-running any stage."""
    pending = snakemake_pending(cwd)
    if pending:
        raise BeadsegError(f"Snakemake still has {len(pending)} job(s) to run ({', '.join(pending[:8])}"
                           f"{', ...' if len(pending) > 8 else ''}): finish `snakemake` first, then sync")
    _check(_run(["dvc", "commit", "--force", "--quiet"], cwd), "dvc commit")
    snakemake_touch(cwd)  # dvc commit re-copies cached outputs (new mtimes): tell Snakemake they are current
    stale = dvc_stale(cwd)
    if stale:
        raise BeadsegError(f"after dvc commit, dvc status still reports {', '.join(stale)}")
    print("sync to-dvc: every output recorded in dvc.lock; `dvc status` is clean and `snakemake -n` has "
          "nothing to do. Next: git add dvc.lock && git commit, then dvc push", file=sys.stderr)


def from_dvc(cwd: Path = Path(".")) -> None:
    """After dvc repro / pull / checkout: make Snakemake treat the (verified) outputs as up to date."""
    stale = dvc_stale(cwd)
    if stale:
        raise BeadsegError(f"dvc status is not clean ({', '.join(stale[:8])}{', ...' if len(stale) > 8 else ''}): "
                           "run `dvc repro`, or `dvc pull` / `dvc checkout`, first")
    snakemake_touch(cwd)
    pending = snakemake_pending(cwd)
    if pending:
        raise BeadsegError(f"after snakemake --touch, Snakemake still wants to run {', '.join(pending)}")
    print("sync from-dvc: outputs match dvc.lock and `snakemake -n` has nothing to do", file=sys.stderr)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register ``beadseg sync`` on the CLI's subparsers."""
    p = sub.add_parser("sync", help="hand finished outputs from Snakemake to DVC or back, without re-running",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("direction", choices=["to-dvc", "from-dvc"])
    p.set_defaults(func=cmd_sync)
    return p


def cmd_sync(args: argparse.Namespace) -> None:
    (to_dvc if args.direction == "to-dvc" else from_dvc)(Path("."))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="beadseg")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sync", *(argv if argv is not None else sys.argv[1:])])
    try:
        args.func(args)
    except BeadsegError as exc:
        print(f"beadseg sync: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
