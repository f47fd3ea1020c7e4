"""Watch a search while it runs: ``beadseg status [--watch]``.

One row per run of the run table (``runs`` and ``finetune``; a halving search's rungs are ordinary rows):
its state, epoch / max, best validation tile Jaccard so far, device, elapsed time and an ETA; then a
leaderboard of the runs scored so far, in the report's order (results first, then by best val Jaccard).

It reads only files the steps already write, and never takes a lock:

* ``results/runs/<id>/history.csv`` (one row per finished epoch; written atomically by train), else the
  epoch lines of ``logs/train/<id>.log`` (Snakemake's log of the train job);
* ``train.json``, ``evaluation.json`` and ``metrics.json`` of finished steps;
* ``.beadseg-locks/run-<id>.holder`` (:mod:`beadseg.runlock`): which step holds the run, its pid and start time;
* the first line of the train log for the device, and ``resume/last.pt`` (a stopped run that will resume).

The parts are separate so the decisions are pure and tested on known answers: :func:`read_run` gathers one
run's files into a :class:`RunFiles`, :func:`run_status` decides its :class:`RunStatus` from that and the
clock, and :func:`table_lines` / :func:`leaderboard_lines` write the text.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from beadseg import paths
from beadseg.config import Config
from beadseg.runlock import lock_path

#: Every state a run can be in, in the order a run passes through them.
STATES = ("waiting", "training", "trained", "evaluating", "done", "degenerate", "diverged", "failed")
#: Evaluation statuses that are not results (the report never names them best).
INVALID_STATUSES = ("degenerate", "diverged")
#: A train log younger than this with no lock holder yet is a job that is starting, not one that died.
STARTING_GRACE_S = 30.0

_HOLDER = re.compile(r"^beadseg (?P<step>train|evaluate) --run \S+ \(pid (?P<pid>\d+) on (?P<host>\S+), "
                     r"since (?P<since>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\)")
_EPOCH_LINE = re.compile(r"^train\[[^\]]+\]: epoch (?P<epoch>\d+)/(?P<max>\d+) .*val_jaccard (?P<val>[-\d.e]+|nan) "
                         r"\(best (?P<best>[-\d.e]+|nan) @ \d+\) (?P<seconds>[\d.]+)s\s*$")
_DEVICE_LINE = re.compile(r"^train\[[^\]]+\]: (?P<device>.+?), (?:random crops of|tiles drawn) ")
_RESUME_LINE = re.compile(r"^train\[[^\]]+\]: resuming after epoch (?P<epoch>\d+) ")
_ERROR_LINE = re.compile(r"(error|Error|Traceback|Killed)")


# --------------------------------------------------------------------------- what was read
@dataclass(frozen=True)
class Epoch:
    """One finished epoch: its number, validation tile Jaccard and wall seconds."""

    epoch: int
    val_jaccard: float
    seconds: float


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock, from the holder file :mod:`beadseg.runlock` writes."""

    step: str  # "train" | "evaluate"
    pid: int
    host: str
    since: float  # seconds since the epoch
    alive: bool  # False when the holder is a process on this host that no longer exists (killed: kill -9)


@dataclass(frozen=True)
class LogInfo:
    """What a train log says: the device, the epochs it printed, the last error line, when it last changed."""

    device: str | None = None
    epochs: tuple[Epoch, ...] = ()
    resumed_after: int = 0
    error: str | None = None
    mtime: float = 0.0


@dataclass(frozen=True)
class RunFiles:
    """Everything :func:`run_status` needs about one run, as read from disk (no decisions yet)."""

    run_id: str
    max_epochs: int
    history: tuple[Epoch, ...] = ()
    train_info: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    holder: Holder | None = None
    log: LogInfo | None = None
    eval_log: LogInfo | None = None
    checkpoint: bool = False
    settings_changed: bool = False  # train.json's settings differ from params.yaml's: it will retrain


@dataclass(frozen=True)
class RunStatus:
    """One row of the status table."""

    run_id: str
    state: str
    epoch: int
    max_epochs: int
    best_val: float | None  # best validation tile Jaccard so far (training's own score)
    device: str | None
    elapsed_s: float | None
    eta_s: float | None  # time to the last epoch at the mean epoch time so far (early stopping may end it sooner)
    detail: str = ""
    scores: Mapping[str, Any] = field(default_factory=dict)  # metrics.json, once scored


# --------------------------------------------------------------------------- parsing (pure)
def _float(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_history(text: str) -> tuple[Epoch, ...]:
    """The epochs of a history.csv (header + one row per epoch); rows without a number are skipped."""
    rows = []
    for row in csv.DictReader(text.splitlines()):
        epoch = _float(row.get("epoch"))
        if epoch is None:
            continue
        rows.append(Epoch(int(epoch), _float(row.get("val_jaccard")) or 0.0, _float(row.get("seconds")) or 0.0))
    return tuple(rows)


def parse_holder(text: str, alive: Callable[[int, str], bool]) -> Holder | None:
    """The holder file's one line (``beadseg train --run X (pid 12 on host, since 2026-01-01 10:00:00)``)."""
    match = _HOLDER.match(text.strip())
    if match is None:
        return None
    pid, host = int(match["pid"]), match["host"]
    since = time.mktime(time.strptime(match["since"], "%Y-%m-%d %H:%M:%S"))  # runlock writes local time
    return Holder(step=match["step"], pid=pid, host=host, since=since, alive=alive(pid, host))


def parse_train_log(text: str, mtime: float = 0.0) -> LogInfo:
    """Device, printed epochs (the last attempt's: a resumed or retried run prints from its resume point),
    and the last error line of a ``beadseg train`` log."""
    device, error, resumed = None, None, 0
    epochs: dict[int, Epoch] = {}
    for line in text.splitlines():
        if (m := _EPOCH_LINE.match(line)) is not None:
            epochs[int(m["epoch"])] = Epoch(int(m["epoch"]), _float(m["val"]) or 0.0, float(m["seconds"]))
        elif (m := _DEVICE_LINE.match(line)) is not None:
            device = m["device"]
        elif (m := _RESUME_LINE.match(line)) is not None:
            resumed = int(m["epoch"])
        elif _ERROR_LINE.search(line) and "warning" not in line:
            error = line.strip()
    return LogInfo(device=device, epochs=tuple(epochs[k] for k in sorted(epochs)), resumed_after=resumed,
                   error=error, mtime=mtime)


def pid_alive(pid: int, host: str) -> bool:
    """False only when ``pid`` is known dead: a process of this host that no longer exists. A holder on
    another host (a cluster node) counts as alive: its lock is the cluster's to judge."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


# --------------------------------------------------------------------------- deciding (pure)
def _eta(done: Sequence[Epoch], max_epochs: int) -> float | None:
    if not done:
        return None
    mean = sum(e.seconds for e in done) / len(done)
    return max(0, max_epochs - done[-1].epoch) * mean


def _best(epochs: Sequence[Epoch]) -> float | None:
    return max((e.val_jaccard for e in epochs), default=None)


def run_status(files: RunFiles, now: float) -> RunStatus:
    """The state of one run from what its files say at time ``now`` (seconds since the epoch)."""
    info, evaluation = files.train_info, files.evaluation
    log = files.log
    holder = files.holder if files.holder is not None and files.holder.alive else None
    device = (info or {}).get("device_name") or (log.device if log else None)
    epochs_seen = files.history or (log.epochs if log else ())

    def row(state: str, *, epoch: int | None = None, best: float | None = None, elapsed: float | None = None,
            eta: float | None = None, detail: str = "", scores: Mapping[str, Any] | None = None) -> RunStatus:
        last = epochs_seen[-1].epoch if epochs_seen else 0
        return RunStatus(files.run_id, state, last if epoch is None else epoch, files.max_epochs,
                         _best(epochs_seen) if best is None else best, device, elapsed, eta, detail,
                         dict(scores or {}))

    if holder is not None and holder.step == "train":
        # history.csv is rewritten after every epoch; an older run's file may still be there at the first epoch,
        # so the log's epochs win when they run ahead of it
        log_epochs = log.epochs if log else ()
        if log_epochs and (not files.history or log_epochs[-1].epoch > files.history[-1].epoch):
            epochs_seen = log_epochs
        last = epochs_seen[-1].epoch if epochs_seen else 0
        detail = f"resumed after epoch {log.resumed_after}" if log and log.resumed_after else ""
        return row("training", elapsed=now - holder.since, eta=_eta(epochs_seen, files.max_epochs),
                   epoch=last, detail=detail)
    if holder is not None and holder.step == "evaluate":
        return row("evaluating", elapsed=now - holder.since, detail="scoring full val and test images")
    if files.settings_changed and info is not None:
        return row("waiting", epoch=0, best=None, detail="settings changed since it trained: it retrains")
    if info is None:
        if log is not None and log.error:
            return row("failed", detail=_error_detail(log.error, files.checkpoint))
        if log is not None and now - log.mtime < STARTING_GRACE_S:
            return row("training", detail="starting")
        if files.checkpoint:
            return row("failed", detail="stopped (killed?) before finishing: re-running resumes from its checkpoint")
        if files.holder is not None:  # the holder file of a process that is gone: killed before it could clean up
            return row("failed", detail=f"its {files.holder.step} process (pid {files.holder.pid}) is gone: run it again")
        if log is not None:
            return row("failed", detail="its train job stopped without writing train.json: see its log")
        return row("waiting", epoch=0, best=None)
    wall = _float(info.get("wall_seconds"))
    best_tiles = _float(info.get("best_val_jaccard"))
    epochs_run = int(info.get("epochs_run") or 0)
    stop = str(info.get("stop_reason") or "completed")
    if stop == "diverged":
        return row("diverged", epoch=epochs_run, best=best_tiles, elapsed=wall, detail="loss became NaN/inf")
    if evaluation is None:
        eval_log = files.eval_log
        if eval_log is not None and eval_log.error:
            return row("failed", epoch=epochs_run, best=best_tiles, elapsed=wall,
                       detail="evaluate: " + _error_detail(eval_log.error, False))
        return row("trained", epoch=epochs_run, best=best_tiles, elapsed=wall, detail=f"{stop}; evaluate is next")
    status = str(evaluation.get("status") or stop)
    elapsed = None if wall is None else wall + (_float(evaluation.get("eval_seconds")) or 0.0)
    state = status if status in INVALID_STATUSES else "done"
    detail = stop if state == "done" else "; ".join(evaluation.get("degenerate_reasons") or [])
    return row(state, epoch=epochs_run, best=best_tiles, elapsed=elapsed, eta=0.0, detail=detail,
               scores=files.metrics or {})


def _error_detail(error: str, checkpoint: bool) -> str:
    text = error if len(error) <= 90 else error[:87] + "..."
    return text + ("; re-running resumes from its checkpoint" if checkpoint else "")


# --------------------------------------------------------------------------- reading files
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or caught between two writes of a non-atomic writer
        return None
    return data if isinstance(data, dict) else None


def _read_text(path: Path) -> tuple[str, float] | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace"), path.stat().st_mtime
    except OSError:
        return None


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def read_run(cfg: Config, run_id: str, root: Path = Path("."),
             alive: Callable[[int, str], bool] = pid_alive) -> RunFiles:
    """Gather one run's files (see the module docstring) into a :class:`RunFiles`."""
    history_text = _read_text(root / paths.history_file(run_id))
    holder_text = _read_text(lock_path(run_id, root).with_suffix(".holder"))
    train_log = _read_text(root / "logs" / "train" / f"{run_id}.log")
    eval_log = _read_text(root / "logs" / "evaluate" / f"{run_id}.log")
    info = _read_json(root / paths.train_info_file(run_id))
    run_cfg = cfg.run(run_id)
    changed = info is not None and "params" in info and _plain(info["params"]) != _plain(run_cfg.to_dict())
    return RunFiles(
        run_id=run_id, max_epochs=run_cfg.max_epochs,
        history=parse_history(history_text[0]) if history_text else (),
        train_info=info, evaluation=_read_json(root / paths.evaluation_info_file(run_id)),
        metrics=_read_json(root / paths.metrics_file(run_id)),
        holder=parse_holder(holder_text[0], alive) if holder_text else None,
        log=parse_train_log(*train_log) if train_log else None,
        eval_log=parse_train_log(*eval_log) if eval_log else None,
        checkpoint=(root / paths.checkpoint_file(run_id)).is_file(), settings_changed=changed)


def collect(cfg: Config, root: Path = Path("."), now: float | None = None,
            alive: Callable[[int, str], bool] = pid_alive) -> list[RunStatus]:
    """Every run's status, in run-table order."""
    now = time.time() if now is None else now
    return [run_status(read_run(cfg, run_id, root, alive), now) for run_id in cfg.run_ids]


# --------------------------------------------------------------------------- writing
def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h07m``; ``-`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _score(value: Any) -> str:
    number = _float(value)
    return "-" if number is None else f"{number:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*r).rstrip() for r in rows)]


def table_lines(statuses: Sequence[RunStatus]) -> list[str]:
    """The run table: state, epoch / max, best val tile Jaccard so far, device, elapsed, ETA, detail."""
    rows = []
    for s in statuses:
        eta = "-" if s.eta_s is None else ("0s" if s.eta_s == 0 else "<=" + duration(s.eta_s))
        rows.append([s.run_id, s.state, f"{s.epoch}/{s.max_epochs}", _score(s.best_val), s.device or "-",
                     duration(s.elapsed_s), eta, s.detail])
    return _table(["run", "state", "epoch", "best val", "device", "elapsed", "eta", "note"], rows)


def summary_line(statuses: Sequence[RunStatus]) -> str:
    """``6 runs: 2 done, 1 training, 3 waiting`` (states in their order) and the longest ETA of running runs."""
    counts = {state: sum(s.state == state for s in statuses) for state in STATES}
    parts = [f"{n} {state}" for state, n in counts.items() if n]
    etas = [s.eta_s for s in statuses if s.state == "training" and s.eta_s is not None]
    tail = f"; running runs finish training within {duration(max(etas))}" if etas else ""
    return f"{len(statuses)} runs: {', '.join(parts)}{tail}"


def leaderboard(statuses: Sequence[RunStatus]) -> list[RunStatus]:
    """Scored runs in the report's order: results first, each group by best val tile Jaccard (ties: table order).
    Test scores never enter the order."""
    scored = [s for s in statuses if s.state in ("done", *INVALID_STATUSES)]
    return sorted(scored, key=lambda s: (s.state != "done", -(s.best_val or 0.0)))


def leaderboard_lines(statuses: Sequence[RunStatus]) -> list[str]:
    ranked = leaderboard(statuses)
    if not ranked:
        return ["leaderboard: no run scored yet"]
    rows = []
    for i, s in enumerate(ranked, 1):
        m = s.scores
        rows.append([str(i) if s.state == "done" else "-", s.run_id, _score(s.best_val), _score(m.get("full_val_jaccard")),
                     _score(m.get("ap_50")), _score(m.get("test_jaccard")), s.state])
    return [f"leaderboard ({len(ranked)} scored; ranked on val, test chooses nothing):",
            *_table(["rank", "run", "val tiles", "val full", "val AP50", "test full", "status"], rows)]


def status_lines(cfg: Config, root: Path = Path("."), now: float | None = None,
                 alive: Callable[[int, str], bool] = pid_alive) -> list[str]:
    """The whole view: a header, the run table, the leaderboard (and, for a halving search, its rungs)."""
    now = time.time() if now is None else now
    statuses = collect(cfg, root, now, alive)
    lines = [f"beadseg status: {cfg.source}, {time.strftime('%H:%M:%S', time.localtime(now))}",
             summary_line(statuses), "", *table_lines(statuses), "", *leaderboard_lines(statuses)]
    if cfg.search is not None:
        from beadseg.search_driver import status_lines as rung_lines

        lines += ["", *rung_lines(cfg, root)]
    report = root / paths.report_file()
    if statuses and all(s.state in ("done", *INVALID_STATUSES) for s in statuses) and report.is_file():
        lines += ["", f"report: {paths.report_file()}"]
    return lines


def watch(render: Callable[[], list[str]], interval: float, stream: TextIO | None = None,
          once: bool = False, sleep: Callable[[float], None] = time.sleep) -> None:
    """Print ``render()`` every ``interval`` seconds: redrawn in place on a terminal, as plain blocks of lines
    (separated by a blank line) when piped. Stops on Ctrl-C (or after one frame with ``once``)."""
    stream = stream if stream is not None else sys.stdout
    isatty = getattr(stream, "isatty", None)
    tty = bool(isatty is not None and isatty())
    try:
        first = True
        while True:
            lines = render()
            if tty:
                stream.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n")  # cursor home, clear screen, redraw
            else:
                stream.write(("" if first else "\n") + "\n".join(lines) + "\n")
            stream.flush()
            first = False
            if once:
                return
            sleep(interval)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:  # piped into `head` or a closed pager: stop quietly
        if stream is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
