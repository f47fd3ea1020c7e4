"""`beadseg status`: each run's state from the files the steps write (known answers), the leaderboard's order,
and the --watch output on a terminal and in a pipe."""

from __future__ import annotations

import io
import json
import os
import socket
import time
from pathlib import Path

import pytest
import yaml

from beadseg import paths
from beadseg.cli import main
from beadseg.config import validate
from beadseg.runlock import lock_path
from beadseg.status import (
    Epoch,
    Holder,
    LogInfo,
    RunFiles,
    collect,
    duration,
    leaderboard,
    leaderboard_lines,
    parse_history,
    parse_holder,
    parse_train_log,
    run_status,
    status_lines,
    summary_line,
    table_lines,
    watch,
)
from tests.helpers.tiny import tiny_params

NOW = 1_800_000_000.0
HISTORY = """epoch,train_loss,val_loss,train_jaccard,val_jaccard,val_dice,lr,seconds,optimizer_steps
1,0.52,0.58,0.28,0.40,0.5,0.003,10.0,3
2,0.43,0.57,0.56,0.70,0.8,0.003,20.0,6
"""
LOG = """train[a]: NVIDIA H100 80GB HBM3 (slot 1), random crops of 3 train image(s) (val 4 tiles), 3 steps/epoch x up to 15
train[a]: epoch 1/15 loss 0.5235 val_loss 0.5805 val_jaccard 0.4000 (best 0.4000 @ 1) 10.0s
train[a]: epoch 2/15 loss 0.4348 val_loss 0.5793 val_jaccard 0.7000 (best 0.7000 @ 2) 20.0s
train[a]: epoch 3/15 loss 0.4348 val_loss 0.5793 val_jaccard 0.6500 (best 0.7000 @ 2) 30.0s
"""


def _holder(step: str = "train", since: float = NOW - 100, alive: bool = True) -> Holder:
    return Holder(step=step, pid=4242, host="node1", since=since, alive=alive)


# --------------------------------------------------------------------------- parsing
def test_history_holder_and_log_are_parsed() -> None:
    assert parse_history(HISTORY) == (Epoch(1, 0.40, 10.0), Epoch(2, 0.70, 20.0))
    assert parse_history("epoch,val_jaccard,seconds\n") == ()
    since = time.mktime(time.strptime("2026-03-01 10:00:00", "%Y-%m-%d %H:%M:%S"))
    holder = parse_holder("beadseg train --run t256_a (pid 77 on gpu-node-3, since 2026-03-01 10:00:00)\n",
                          alive=lambda pid, host: (pid, host) == (77, "gpu-node-3"))
    assert holder == Holder("train", 77, "gpu-node-3", since, True)
    assert parse_holder("something else", alive=lambda *_: True) is None
    log = parse_train_log(LOG + "train[a]: resuming after epoch 2 from results/runs/a/resume/last.pt\n", 5.0)
    assert log.device == "NVIDIA H100 80GB HBM3 (slot 1)"
    assert [e.epoch for e in log.epochs] == [1, 2, 3] and log.epochs[-1] == Epoch(3, 0.65, 30.0)
    assert log.resumed_after == 2 and log.error is None and log.mtime == 5.0
    failed = parse_train_log(LOG + "beadseg train: error: run 'a': CUDA out of memory on x even with batch_size 1\n")
    assert failed.error is not None and failed.error.startswith("beadseg train: error: run 'a'")


def test_durations() -> None:
    assert [duration(s) for s in (None, 0.4, 42, 185, 7620)] == ["-", "0s", "42s", "3m05s", "2h07m"]


# --------------------------------------------------------------------------- states (known answers)
def test_a_training_run_shows_epoch_best_elapsed_and_eta_from_its_history() -> None:
    files = RunFiles("a", 15, history=parse_history(HISTORY), holder=_holder(), log=LogInfo(device="cpu"))
    s = run_status(files, NOW)
    assert (s.state, s.epoch, s.max_epochs, s.best_val, s.device) == ("training", 2, 15, 0.70, "cpu")
    assert s.elapsed_s == 100 and s.eta_s == pytest.approx(13 * 15.0)  # 13 epochs left at the mean 15 s


def test_the_log_stands_in_for_a_history_that_is_not_written_yet_or_behind() -> None:
    log = parse_train_log(LOG)
    s = run_status(RunFiles("a", 15, holder=_holder(), log=log), NOW)
    assert (s.epoch, s.best_val, s.device) == (3, 0.70, "NVIDIA H100 80GB HBM3 (slot 1)")
    assert s.eta_s == pytest.approx(12 * 20.0)
    behind = run_status(RunFiles("a", 15, history=parse_history(HISTORY), holder=_holder(), log=log), NOW)
    assert behind.epoch == 3


def test_waiting_starting_failed_and_stopped_runs() -> None:
    assert run_status(RunFiles("a", 15), NOW).state == "waiting"
    starting = run_status(RunFiles("a", 15, log=LogInfo(mtime=NOW - 5)), NOW)
    assert (starting.state, starting.detail) == ("training", "starting")
    error = "beadseg train: error: run 'a': CUDA out of memory even with batch_size 1"
    failed = run_status(RunFiles("a", 15, log=LogInfo(error=error, mtime=NOW - 500), checkpoint=True), NOW)
    assert failed.state == "failed" and "CUDA out of memory" in failed.detail and "resumes" in failed.detail
    # killed with -9: the holder file stays, its process is gone
    killed = RunFiles("a", 15, holder=_holder(alive=False), log=parse_train_log(LOG, NOW - 600), checkpoint=True)
    s = run_status(killed, NOW)
    assert (s.state, s.epoch) == ("failed", 3) and "resumes from its checkpoint" in s.detail


def test_trained_evaluating_done_degenerate_and_diverged() -> None:
    info = {"stop_reason": "early_stopped", "best_val_jaccard": 0.8, "epochs_run": 9, "wall_seconds": 90.0,
            "device_name": "cpu"}
    trained = run_status(RunFiles("a", 15, train_info=info), NOW)
    assert (trained.state, trained.epoch, trained.best_val, trained.elapsed_s) == ("trained", 9, 0.8, 90.0)
    evaluating = run_status(RunFiles("a", 15, train_info=info, holder=_holder("evaluate", NOW - 7)), NOW)
    assert (evaluating.state, evaluating.elapsed_s) == ("evaluating", 7)
    metrics = {"full_val_jaccard": 0.9, "test_jaccard": 0.85}
    done = run_status(RunFiles("a", 15, train_info=info, evaluation={"status": "early_stopped", "eval_seconds": 3.0},
                               metrics=metrics), NOW)
    assert (done.state, done.elapsed_s, done.eta_s, done.scores) == ("done", 93.0, 0.0, metrics)
    bad = run_status(RunFiles("a", 15, train_info=info, evaluation={"status": "degenerate",
                                                                   "degenerate_reasons": ["no bead found"]}), NOW)
    assert (bad.state, bad.detail) == ("degenerate", "no bead found")
    nan = run_status(RunFiles("a", 15, train_info={**info, "stop_reason": "diverged"}), NOW)
    assert nan.state == "diverged"
    changed = run_status(RunFiles("a", 15, train_info=info, evaluation={"status": "completed"},
                                  settings_changed=True), NOW)
    assert (changed.state, changed.epoch) == ("waiting", 0) and "retrains" in changed.detail
    failed_eval = run_status(RunFiles("a", 15, train_info=info, eval_log=LogInfo(error="beadseg evaluate: error: x")),
                             NOW)
    assert failed_eval.state == "failed" and failed_eval.detail.startswith("evaluate: ")


# --------------------------------------------------------------------------- text
def test_leaderboard_puts_results_first_by_best_val_and_never_by_test() -> None:
    def done(run: str, best: float, test: float, state: str = "done") -> RunFiles:
        info = {"best_val_jaccard": best, "epochs_run": 3, "stop_reason": "completed"}
        return RunFiles(run, 3, train_info=info, evaluation={"status": "completed" if state == "done" else state},
                        metrics={"test_jaccard": test})

    statuses = [run_status(f, NOW) for f in (done("low", 0.5, 0.99), done("high", 0.9, 0.1),
                                             done("junk", 0.95, 0.9, "degenerate"), RunFiles("w", 3))]
    assert [s.run_id for s in leaderboard(statuses)] == ["high", "low", "junk"]
    lines = leaderboard_lines(statuses)
    assert lines[2].split()[:2] == ["1", "high"] and lines[4].split()[:2] == ["-", "junk"]
    assert summary_line(statuses) == "4 runs: 1 waiting, 2 done, 1 degenerate"
    assert leaderboard_lines(statuses[3:]) == ["leaderboard: no run scored yet"]
    table = table_lines(statuses)
    assert table[0].split() == ["run", "state", "epoch", "best", "val", "device", "elapsed", "eta", "note"]
    assert table[4].split()[:3] == ["w", "waiting", "0/3"]


def test_watch_redraws_in_place_on_a_terminal_and_prints_plain_blocks_in_a_pipe() -> None:
    frames = iter([["frame 1"], ["frame 2"]])

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    watch(lambda: next(frames), 1.0, stream=tty, once=True)
    assert tty.getvalue() == "\x1b[H\x1b[2Jframe 1\n"
    pipe, calls = io.StringIO(), []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:
            raise KeyboardInterrupt

    frames = iter([["a", "b"], ["c"]])
    watch(lambda: next(frames), 2.5, stream=pipe, sleep=sleep)
    assert pipe.getvalue() == "a\nb\n\nc\n" and calls == [2.5, 2.5]


# --------------------------------------------------------------------------- files on disk
def test_status_reads_a_projects_files(tmp_path: Path) -> None:
    params = tiny_params()
    params["runs"] = {"a": {}, "b": {"lr": 1e-3}, "c": {"lr": 1e-4}}
    cfg = validate(params)
    # a: mid-training, its lock held by this (live) process; b: scored; c: nothing yet
    run_a = tmp_path / paths.run_dir("a")
    run_a.mkdir(parents=True)
    (run_a / "history.csv").write_text(HISTORY)
    holder = lock_path("a", tmp_path).with_suffix(".holder")
    holder.parent.mkdir(parents=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW - 60))
    holder.write_text(f"beadseg train --run a (pid {os.getpid()} on {socket.gethostname()}, since {started})\n")
    run_b = tmp_path / paths.run_dir("b")
    run_b.mkdir(parents=True)
    (run_b / "train.json").write_text(json.dumps({"best_val_jaccard": 0.75, "epochs_run": 3, "wall_seconds": 12,
                                                     "stop_reason": "completed", "device_name": "cpu",
                                                     "params": cfg.run("b").to_dict()}))
    (run_b / "evaluation.json").write_text('{"status": "completed", "eval_seconds": 1}')
    (run_b / "metrics.json").write_text('{"full_val_jaccard": 0.8, "test_jaccard": 0.7}')
    a, b, c = collect(cfg, tmp_path, now=NOW)
    assert (a.state, a.epoch, a.max_epochs, a.best_val, a.elapsed_s) == ("training", 2, 3, 0.70, 60.0)
    assert a.eta_s == pytest.approx(15.0)
    assert (b.state, b.best_val, b.elapsed_s, b.device) == ("done", 0.75, 13.0, "cpu")
    assert c.state == "waiting"
    # a holder whose process is gone (kill -9) is not a training run
    dead = collect(cfg, tmp_path, now=NOW, alive=lambda pid, host: False)[0]
    assert dead.state == "failed"
    # b's settings edited in params.yaml: its results are stale, it will retrain
    params["runs"]["b"]["lr"] = 5e-4
    assert collect(validate(params), tmp_path, now=NOW)[1].state == "waiting"
    text = "\n".join(status_lines(cfg, tmp_path, now=NOW))
    assert "3 runs: 1 waiting, 1 training, 1 done" in text and "leaderboard (1 scored" in text


def test_cli_status_and_a_bad_watch_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    monkeypatch.chdir(tmp_path)
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "1 runs: 1 waiting" in out and "leaderboard: no run scored yet" in out
    assert main(["status", "--watch", "0"]) == 2
    assert "--watch 0: give the seconds between refreshes" in capsys.readouterr().err


def test_a_halving_search_shows_its_rungs_as_search_status_says_them(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from beadseg import search_driver
    from tests.unit.test_search import HARD_PARAMS, HARD_SEARCH, FakeEngine

    monkeypatch.chdir(tmp_path)
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "hard.search.yaml").write_text(HARD_SEARCH.read_text())
    (tmp_path / "params.yaml").write_text(HARD_PARAMS.read_text())
    monkeypatch.setattr(search_driver, "run_engine", FakeEngine(tmp_path))
    cfg = search_driver.run_search("presets/hard.search.yaml", search_driver.Engine(cores="2"), tmp_path)
    lines = status_lines(cfg, tmp_path, now=NOW)
    rungs = search_driver.status_lines(cfg, tmp_path)
    assert lines[-len(rungs):] == rungs  # `beadseg status` ends with `beadseg search status`'s lines
    statuses = collect(cfg, tmp_path, now=NOW)
    assert len(statuses) == 8 + 2 + 1 and {s.state for s in statuses} == {"done"}  # every rung's runs
    assert {s.run_id[:3] for s in statuses} == {"r0_", "r1_", "r2_"}
    assert "leaderboard (11 scored" in "\n".join(lines)
