"""Hand a finished search from one engine to the other without recomputing anything.

    beadseg sync to-dvc      # after `snakemake ...`: record every output in dvc.lock (no stage re-runs)
    beadseg sync from-dvc    # after `dvc repro` / `dvc pull` / `dvc checkout`: Snakemake sees outputs as current

(also `python -m beadseg.sync to-dvc|from-dvc`.)

Why a command and not just `dvc commit`: DVC decides by content hashes, Snakemake by modification times
(plus params / shell-command / input-set metadata in `.snakemake/`). `dvc commit`, `dvc checkout` and
`dvc pull` rewrite output files in arbitrary order, so afterwards an input can look newer than the output
made from it and Snakemake would retrain (it only forgives that for files under
`--max-checksum-file-size`, 1 MB by default, and only when it has metadata; a fresh clone has none).
So both directions end with `snakemake --touch`, which marks outputs current without running anything, and
both refuse to start unless the side they copy from is complete and up to date, so `--touch` never hides a
real change:

* to-dvc:   `snakemake -n` must have nothing to do, params.yaml must carry every key dvc.yaml declares and
            `dvc status` must answer -> `dvc commit --force` -> `snakemake --touch` (also when the commit
            fails part-way, so Snakemake's view is as it was)
* from-dvc: `dvc status` must be clean and `snakemake -n` must answer -> `snakemake --touch` ->
            `snakemake -n` is empty
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

#: Snakemake's own words when the dry run has no job (snakemake.common.NOTHING_TO_BE_DONE_MSG, Snakemake 8-9).
NOTHING_TO_BE_DONE = "Nothing to be done (all requested files are present and up to date)."
_JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\S+?):\s*$")  # one job block of the dry run
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
_STATS_TITLE = re.compile(r"^Job stats:\s*$")
_STATS_HEAD = re.compile(r"^job\s+count\s*$")
_STATS_RULER = re.compile(r"^-+\s+-+\s*$")
_STATS_ROW = re.compile(r"^(\S+)\s+(\d+)\s*$")
_UNREADABLE = ("; beadseg sync stops here. Run `snakemake -n` yourself: finish any jobs it lists with `snakemake`; "
               "if it lists none, its output format is not one beadseg reads (made for Snakemake 9, as pinned in "
               "pyproject.toml)")


class _Unreadable(BeadsegError):
    pass


def _run(cmd: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(cmd), cwd=cwd, text=True, capture_output=True, check=False)
    except FileNotFoundError:
        raise BeadsegError(f"cannot run `{cmd[0]}`: no such command on PATH; activate the environment beadseg "
                           f"and {cmd[0]} are installed in (e.g. `source .venv/bin/activate`), then sync again "
                           "(nothing was synced)") from None
    except OSError as exc:
        raise BeadsegError(f"cannot run `{cmd[0]}`: {exc} (nothing was synced)") from None


def _check(proc: subprocess.CompletedProcess[str], what: str) -> str:
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BeadsegError(f"{what} failed (exit {proc.returncode}); fix that, then sync again:\n{tail}")
    return proc.stdout


def _job_stats(lines: list[str]) -> list[dict[str, int]]:
    """Every "Job stats:" table of a dry run, as {rule: count} including 'total' (checked to add up)."""
    tables = []
    for i, line in enumerate(lines):
        if not _STATS_TITLE.match(line):
            continue
        if i + 2 >= len(lines) or not (_STATS_HEAD.match(lines[i + 1]) and _STATS_RULER.match(lines[i + 2])):
            raise _Unreadable("its \"Job stats:\" table has no `job count` header")
        table: dict[str, int] = {}
        for row in lines[i + 3:]:
            m = _STATS_ROW.match(row)
            if not m or m.group(1) in table:
                raise _Unreadable(f"its \"Job stats:\" table has a row that is not `rule count`: {row.strip()!r}")
            table[m.group(1)] = int(m.group(2))
            if m.group(1) == "total":
                break
        else:
            raise _Unreadable("its \"Job stats:\" table has no `total` row")
        if sum(n for rule, n in table.items() if rule != "total") != table["total"] or table["total"] < 1:
            raise _Unreadable(f"its \"Job stats:\" table does not add up: {table}")
        tables.append(table)
    return tables


def _parse_dry_run(text: str) -> list[str]:
    """The jobs of a ``snakemake --dry-run`` (every job, rule all included), or [] when Snakemake says, in so many
    words, that nothing is to be done. Raises :class:`_Unreadable` for anything else."""
    lines = text.splitlines()
    jobs: list[str] = []
    rules: list[str] = []
    for line in lines:
        m = _JOB.match(line)
        if m:
            jobs.append(m.group(1))
            rules.append(m.group(1))
            continue
        w = _WILDCARDS.match(line)
        if w and jobs and "[" not in jobs[-1]:
            jobs[-1] = f"{jobs[-1]}[{w.group(1)}]"
    tables = _job_stats(lines)
    nothing = any(line.strip() == NOTHING_TO_BE_DONE for line in lines)
    if nothing:
        if tables or jobs:
            raise _Unreadable(f"it says \"{NOTHING_TO_BE_DONE}\" but also lists jobs")
        return []
    if not tables:
        raise _Unreadable("it neither lists jobs in a \"Job stats:\" table nor says "
                          f"\"{NOTHING_TO_BE_DONE}\"")
    if any(t != tables[0] for t in tables[1:]):
        raise _Unreadable("its \"Job stats:\" tables disagree")
    counted = {rule: n for rule, n in tables[0].items() if rule != "total"}
    parsed: dict[str, int] = {}
    for rule in rules:
        parsed[rule] = parsed.get(rule, 0) + 1
    if parsed != counted:
        raise _Unreadable(f"its \"Job stats:\" table counts {tables[0]['total']} job(s) ({counted}) but "
                          f"{len(rules)} job block(s) were read ({parsed})")
    return jobs


def snakemake_pending(cwd: Path = Path("."), extra: Sequence[str] = ()) -> list[str]:
    """Jobs ``snakemake -n`` would run, as ``rule`` or ``rule[wildcards]`` strings (rule ``all`` left out).

    Empty only when Snakemake says "Nothing to be done"; jobs only when its "Job stats" table and the job blocks
    read agree rule by rule. Any other answer raises :class:`BeadsegError`: unreadable means "do not sync"."""
    cmd = ["snakemake", "--dry-run", "--cores", "1", "--nocolor", *extra]
    proc = _run(cmd, cwd)
    _check(proc, "snakemake --dry-run")
    try:
        jobs = _parse_dry_run(proc.stdout + "\n" + proc.stderr)
    except _Unreadable as exc:
        raise BeadsegError(f"could not read the answer of `snakemake --dry-run`: {exc}"
                           + _UNREADABLE) from None
    return [j for j in jobs if j != "all"]


def dvc_stale(cwd: Path = Path(".")) -> list[str]:
    """Stages (and files) ``dvc status`` reports as changed (empty: data and pipelines up to date).

    Empty only when ``dvc status --json`` answers a JSON object with no entry; any other answer raises
    :class:`BeadsegError`."""
    out = _check(_run(["dvc", "status", "--json"], cwd), "dvc status")
    try:
        status = json.loads(out)
    except json.JSONDecodeError:
        status = None
    if not isinstance(status, dict):
        shown = out.strip()[:120] or "(nothing)"
        raise BeadsegError(f"could not read the answer of `dvc status --json` (expected a JSON object, got "
                           f"{shown!r}); beadseg sync stops here. Run `dvc status` yourself, bring it to \"Data and "
                           "pipelines are up to date\", and sync again")
    return sorted(status)


def snakemake_touch(cwd: Path) -> None:
    """``snakemake --touch`` judged by mtimes alone (checksum size limit 0), so the result also holds for
    inputs too big for Snakemake's checksum shortcut, e.g. real tiles and models."""
    cmd = ["snakemake", "--touch", "--cores", "1", "--quiet", "--max-checksum-file-size", "0"]
    _check(_run(cmd, cwd), "snakemake --touch")


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (proc.stdout + "\n" + proc.stderr).splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def check_dvc_can_commit(cwd: Path) -> None:
    """Everything ``dvc commit`` checks that can be checked without writing: the params every stage declares
    are in params.yaml, and dvc.yaml parses (``dvc status`` answers). Raises one BeadsegError otherwise."""
    from beadseg.config import read_params
    from beadseg.dvc_params import check_params_for_dvc

    if (cwd / "dvc.yaml").is_file():
        try:
            check_params_for_dvc(read_params(cwd / "params.yaml"), "params.yaml", cwd / "dvc.yaml")
        except BeadsegError as exc:
            raise BeadsegError(f"{exc}; nothing was synced") from None
    dvc_stale(cwd)  # raises when dvc.yaml does not parse or `dvc status` cannot be read


def to_dvc(cwd: Path = Path(".")) -> None:
    """Record the outputs of a finished Snakemake run in dvc.lock without re-running any stage.

    All or nothing: everything DVC will check is checked before anything is rewritten; if ``dvc commit`` still
    fails part-way (it rewrites outputs as it goes), Snakemake's view is restored with ``snakemake --touch``
    (everything was current before), so ``snakemake -n`` is as empty as it was."""
    pending = snakemake_pending(cwd)
    if pending:
        raise BeadsegError(f"Snakemake still has {len(pending)} job(s) to run ({', '.join(pending[:8])}"
                           f"{', ...' if len(pending) > 8 else ''}): finish `snakemake` first, then sync")
    check_dvc_can_commit(cwd)
    commit = _run(["dvc", "commit", "--force", "--quiet"], cwd)
    if commit.returncode != 0:
        snakemake_touch(cwd)  # outputs it already rewrote have new mtimes; they were all current before
        left = snakemake_pending(cwd)
        state = ("Snakemake's view is restored (`snakemake -n` has nothing to do)" if not left else
                 f"and Snakemake now wants to run {', '.join(left[:8])}")
        raise BeadsegError(f"dvc commit failed part-way (exit {commit.returncode}: {_last_line(commit)}); {state}; "
                           "fix that, then sync again")
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
    snakemake_pending(cwd)  # Snakemake parses the workflow and answers, before any mtime changes
    try:
        snakemake_touch(cwd)
    except BeadsegError as exc:
        raise BeadsegError(f"{exc}\n(only modification times were changed; no file DVC tracks was rewritten)") from None
    pending = snakemake_pending(cwd)
    if pending:
        raise BeadsegError(f"after snakemake --touch, Snakemake still wants to run {', '.join(pending)}")
    print("sync from-dvc: outputs match dvc.lock and `snakemake -n` has nothing to do", file=sys.stderr)


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``beadseg sync`` on the CLI's subparsers."""
    p = sub.add_parser("sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
