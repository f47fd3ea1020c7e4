"""`beadseg sync` fails closed: it syncs only on an answer it can read, and never runs `dvc commit` (to-dvc) or
`snakemake --touch` (from-dvc) after an answer it could not read.

The unit tests replace ``beadseg.sync._run`` with a recorder that answers each command with a canned
CompletedProcess: a Snakemake output-format change cannot be produced with the real tools, so a fake answer
is the honest way to test it. The recorder keeps every command, so each test can also show what was NOT run.
The integration tests use the real snakemake and dvc (no fakes).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from beadseg import sync
from beadseg.errors import BeadsegError
from tests.helpers.workflow import Recorder

# What Snakemake 9 prints, trimmed (the real answers were captured from the tiny project's `snakemake -n`).
STATS = """Job stats:
job            count
-----------  -------
tile               1
train              2
all                1
total              4
"""
JOBS = """
[Sat Nov 28 08:48:25 2026]
rule tile:
    input: data/split/train.npz, data/split/val.npz
    output: data/tiles/t64/train.npz, data/tiles/t64/val.npz, data/tiles/t64/manifest.csv
    jobid: 4
    reason: Missing output files: data/tiles/t64/train.npz
    wildcards: size=64
    resources: tmpdir=/tmp
[Sat Nov 28 08:48:25 2026]
rule train:
    output: results/runs/t64_dice/model.pt
    jobid: 3
    reason: Missing output files: results/runs/t64_dice/model.pt
    wildcards: run=t64_dice
    threads: 8
    resources: tmpdir=/tmp, gpu=1
[Sat Nov 28 08:48:25 2026]
rule train:
    output: results/runs/t128/model.pt
    jobid: 2
    reason: Missing output files: results/runs/t128/model.pt
    wildcards: run=t128
    resources: tmpdir=/tmp, gpu=1
[Sat Nov 28 08:48:25 2026]
localrule all:
    input: results/report/REPORT.md
    jobid: 0
    reason: Input files updated by another job: results/report/REPORT.md
    resources: tmpdir=/tmp
"""
HEADER = "Assuming unrestricted shared filesystem usage.\n\nSNAKEMAKE\n=========\n  Snakemake version: 9.27.1\n\n"
PENDING = HEADER + "Building DAG of jobs...\n" + STATS + "\n" + JOBS + STATS + (
    "\nReasons:\n    (check individual jobs above for details)\n"
    "This was a dry-run (flag -n). The order of jobs does not reflect the order of execution.\n")
NOTHING = HEADER + "Building DAG of jobs...\n" + sync.NOTHING_TO_BE_DONE + "\n"
CLEAN = "{}\n"

# Answers of `snakemake --dry-run` that say neither "nothing to do" nor a job list that adds up.
UNREADABLE_SNAKEMAKE = {
    "empty": "",
    "only the banner": HEADER + "Building DAG of jobs...\n",
    "reworded nothing-to-do": HEADER + "Building DAG of jobs...\nAll outputs are up to date.\n",
    "renamed job blocks, no table": HEADER + "Building DAG of jobs...\n" + JOBS.replace("rule ", "job "),
    "table renamed": HEADER + STATS.replace("Job stats:", "Jobs:") + JOBS,
    "job blocks hidden (--quiet rules)": HEADER + "Building DAG of jobs...\n" + STATS,
    "job blocks of a new format": HEADER + STATS + JOBS.replace("rule train:", "Job 3: training t64_dice"),
    "table does not add up": HEADER + STATS.replace("total              4", "total              5") + JOBS,
    "table without total": HEADER + STATS.replace("total              4\n", "") + JOBS,
    "table with a new header": HEADER + STATS.replace("job            count", "rule   jobs") + JOBS,
    "nothing-to-do next to jobs": HEADER + sync.NOTHING_TO_BE_DONE + "\n" + STATS + JOBS,
    "coloured": HEADER + "\x1b[32m" + STATS.replace("\n", "\x1b[0m\n\x1b[32m") + JOBS.replace("\n", "\x1b[0m\n"),
    "json": '{"jobs": []}\n',
}

# Answers of `dvc status --json` that are not a JSON object.
UNREADABLE_DVC = {
    "empty": "",
    "text": "Data and pipelines are up to date.\n",
    "truncated json": '{"train@t64_dice": [{"changed deps"',
    "a list": "[]\n",
    "null": "null\n",
    "a string": '"clean"\n',
    "warning before json": "WARNING: something\n{}\n",
}


def _proc(cmd: Sequence[str], stdout: str = "", returncode: int = 0,
          stderr: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(list(cmd), returncode, stdout, stderr)


def answers(dry_run: str = NOTHING, status: str = CLEAN, dry_rc: int = 0, status_rc: int = 0,
            touch_rc: int = 0) -> Callable[[list[str], Path], subprocess.CompletedProcess[str]]:
    def answer(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        if cmd[0] == "snakemake" and "--dry-run" in cmd:
            return _proc(cmd, dry_run, dry_rc, "" if dry_rc == 0 else "WorkflowError: something broke")
        if cmd[0] == "snakemake" and "--touch" in cmd:
            return _proc(cmd, "", touch_rc, "" if touch_rc == 0 else "touch failed")
        if cmd[:2] == ["dvc", "status"]:
            return _proc(cmd, status, status_rc, "" if status_rc == 0 else "ERROR: unexpected error")
        if cmd[:2] == ["dvc", "commit"]:
            return _proc(cmd)
        raise AssertionError(f"unexpected command {cmd}")
    return answer


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Recorder]:
    def install(**kwargs: object) -> Recorder:
        rec = Recorder(answers(**kwargs))  # type: ignore[arg-type]
        monkeypatch.setattr(sync, "_run", rec)
        return rec
    return install


# --- controls: readable answers go through, so the "not run" assertions below mean something ---------------

def test_readable_nothing_to_do_syncs_to_dvc(record, tmp_path: Path) -> None:
    rec = record()
    sync.to_dvc(tmp_path)
    assert [c[:2] for c in rec.calls] == [["snakemake", "--dry-run"], ["dvc", "status"], ["dvc", "commit"],
                                        ["snakemake", "--touch"], ["dvc", "status"]]


def test_readable_clean_status_syncs_from_dvc(record, tmp_path: Path) -> None:
    rec = record()
    sync.from_dvc(tmp_path)
    assert [c[:2] for c in rec.calls] == [["dvc", "status"], ["snakemake", "--dry-run"], ["snakemake", "--touch"],
                                        ["snakemake", "--dry-run"]]


# --- all or nothing: checks before dvc commit, Snakemake's view restored after a failed one -----------------

def test_missing_dvc_params_refuse_to_dvc_before_anything_is_rewritten(record, tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages:\n  measure:\n    cmd: beadseg measure\n    params:\n"
                                       "      - analysis.gradient_max_tiles\n      - evaluation\n")
    (tmp_path / "params.yaml").write_text("analysis: {title: x}\n")
    rec = record()
    with pytest.raises(BeadsegError, match=r"lacks analysis.gradient_max_tiles, evaluation.*add analysis: "
                                           r"\{gradient_max_tiles: 64\}; evaluation: \{\}; nothing was synced"):
        sync.to_dvc(tmp_path)
    assert not rec.ran("dvc", "commit") and not rec.ran_flag("snakemake", "--touch")


def test_failed_dvc_commit_restores_snakemakes_view_and_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    base = answers()

    def answer(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        if cmd[:2] == ["dvc", "commit"]:
            return _proc(cmd, "", 1, "ERROR: failed to commit - Parameters 'x' are missing from 'params.yaml'")
        return base(cmd, cwd)

    rec = Recorder(answer)
    monkeypatch.setattr(sync, "_run", rec)
    with pytest.raises(BeadsegError) as exc:
        sync.to_dvc(tmp_path)
    message = str(exc.value)
    assert "\n" not in message and "dvc commit failed part-way (exit 1: ERROR: failed to commit" in message
    assert "Snakemake's view is restored" in message
    assert [c[:2] for c in rec.calls][-3:] == [["dvc", "commit"], ["snakemake", "--touch"], ["snakemake", "--dry-run"]]


def test_failed_dvc_commit_says_when_snakemake_still_wants_jobs(monkeypatch: pytest.MonkeyPatch,
                                                                tmp_path: Path) -> None:
    dry_runs = iter([NOTHING, PENDING])
    base = answers()

    def answer(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        if cmd[:2] == ["dvc", "commit"]:
            return _proc(cmd, "", 1, "ERROR: boom")
        if "--dry-run" in cmd:
            return _proc(cmd, next(dry_runs))
        return base(cmd, cwd)

    monkeypatch.setattr(sync, "_run", Recorder(answer))
    with pytest.raises(BeadsegError, match=r"Snakemake now wants to run tile\[size=64\]"):
        sync.to_dvc(tmp_path)


def test_pending_jobs_are_read_with_their_wildcards(record, tmp_path: Path) -> None:
    record(dry_run=PENDING)
    assert sync.snakemake_pending(tmp_path) == ["tile[size=64]", "train[run=t64_dice]", "train[run=t128]"]


def test_pending_jobs_refuse_to_dvc(record, tmp_path: Path) -> None:
    rec = record(dry_run=PENDING)
    with pytest.raises(BeadsegError, match=r"Snakemake still has 3 job\(s\) to run \(tile\[size=64\], train"):
        sync.to_dvc(tmp_path)
    assert not rec.ran("dvc", "commit")


def test_checkpoint_and_local_jobs_are_counted(record, tmp_path: Path) -> None:
    text = HEADER + STATS + JOBS.replace("rule tile:", "localcheckpoint tile:")
    record(dry_run=text)
    assert sync.snakemake_pending(tmp_path)[0] == "tile[size=64]"


def test_stale_stages_are_read(record, tmp_path: Path) -> None:
    record(status='{"train@b": [{"changed outs": {}}], "train@a": []}')
    assert sync.dvc_stale(tmp_path) == ["train@a", "train@b"]


# --- refusals ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", list(UNREADABLE_SNAKEMAKE.values()), ids=list(UNREADABLE_SNAKEMAKE))
def test_unreadable_snakemake_answer_refuses_to_dvc(record, tmp_path: Path, answer: str) -> None:
    rec = record(dry_run=answer)
    with pytest.raises(BeadsegError, match=r"could not read the answer of `snakemake --dry-run`") as exc:
        sync.to_dvc(tmp_path)
    assert "Run `snakemake -n` yourself" in str(exc.value)
    assert "\n" not in str(exc.value).strip()  # one line
    assert rec.calls and not rec.ran("dvc", "commit") and not rec.ran_flag("snakemake", "--touch")


@pytest.mark.parametrize("answer", list(UNREADABLE_SNAKEMAKE.values()), ids=list(UNREADABLE_SNAKEMAKE))
def test_unreadable_snakemake_answer_refuses_from_dvc(record, tmp_path: Path, answer: str) -> None:
    """from-dvc asks Snakemake last (after --touch): an unreadable answer must not be reported as success."""
    rec = record(dry_run=answer)
    with pytest.raises(BeadsegError, match=r"could not read the answer of `snakemake --dry-run`"):
        sync.from_dvc(tmp_path)
    assert not rec.ran("dvc", "commit")


@pytest.mark.parametrize("answer", list(UNREADABLE_DVC.values()), ids=list(UNREADABLE_DVC))
def test_unreadable_dvc_answer_refuses_from_dvc(record, tmp_path: Path, answer: str) -> None:
    rec = record(status=answer)
    with pytest.raises(BeadsegError, match=r"could not read the answer of `dvc status --json`") as exc:
        sync.from_dvc(tmp_path)
    assert "\n" not in str(exc.value).strip()
    assert rec.calls == [["dvc", "status", "--json"]]  # no --touch, no commit


@pytest.mark.parametrize("answer", list(UNREADABLE_DVC.values()), ids=list(UNREADABLE_DVC))
def test_unreadable_dvc_answer_fails_to_dvc(record, tmp_path: Path, answer: str) -> None:
    """to-dvc checks dvc status after its commit: an unreadable answer is an error, not "clean"."""
    record(status=answer)
    with pytest.raises(BeadsegError, match=r"could not read the answer of `dvc status --json`"):
        sync.to_dvc(tmp_path)


def test_snakemake_failure_refuses_to_dvc(record, tmp_path: Path) -> None:
    rec = record(dry_rc=1)
    with pytest.raises(BeadsegError, match=r"(?s)snakemake --dry-run failed \(exit 1\).*WorkflowError"):
        sync.to_dvc(tmp_path)
    assert rec.calls == [rec.calls[0]] and rec.calls[0][:2] == ["snakemake", "--dry-run"]


def test_snakemake_failure_with_a_nothing_to_do_line_still_refuses(record, tmp_path: Path) -> None:
    rec = record(dry_run=NOTHING, dry_rc=1)
    with pytest.raises(BeadsegError, match=r"snakemake --dry-run failed"):
        sync.to_dvc(tmp_path)
    assert not rec.ran("dvc", "commit")


def test_dvc_status_failure_refuses_from_dvc(record, tmp_path: Path) -> None:
    rec = record(status_rc=255)
    with pytest.raises(BeadsegError, match=r"dvc status failed \(exit 255\)"):
        sync.from_dvc(tmp_path)
    assert rec.calls == [["dvc", "status", "--json"]]


def test_snakemake_touch_failure_stops_from_dvc(record, tmp_path: Path) -> None:
    rec = record(touch_rc=1)
    with pytest.raises(BeadsegError, match=r"(?s)snakemake --touch failed.*no file DVC tracks was rewritten"):
        sync.from_dvc(tmp_path)
    assert [c[:2] for c in rec.calls] == [["dvc", "status"], ["snakemake", "--dry-run"], ["snakemake", "--touch"]]


# --- missing executables: the real _run, with a PATH that has neither tool ---------------------------------

@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Recorder:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    rec = Recorder(sync._run)  # the real one
    monkeypatch.setattr(sync, "_run", rec)
    return rec


def test_missing_snakemake_refuses_to_dvc(no_tools: Recorder, tmp_path: Path) -> None:
    with pytest.raises(BeadsegError, match=r"cannot run `snakemake`: no such command on PATH; activate") as exc:
        sync.to_dvc(tmp_path)
    assert "\n" not in str(exc.value)
    assert no_tools.calls == [no_tools.calls[0]] and not no_tools.ran("dvc", "commit")


def test_missing_dvc_refuses_from_dvc(no_tools: Recorder, tmp_path: Path) -> None:
    with pytest.raises(BeadsegError, match=r"cannot run `dvc`: no such command on PATH"):
        sync.from_dvc(tmp_path)
    assert no_tools.calls == [["dvc", "status", "--json"]]


def test_missing_executable_is_a_beadseg_error_on_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert sync.main(["to-dvc"]) == 2
    assert "beadseg sync: error: cannot run `snakemake`" in capsys.readouterr().err


# --- real tools --------------------------------------------------------------------------------------------
