"""``beadseg search run``: drive a successive-halving search rung by rung with Snakemake (or DVC).

Loop: read params.yaml and the runs' results; if no search is planned, write rung 0 (the grid at the rung-0
budget); run the engine on the current rung's evaluate outputs (``--rerun-incomplete``: a killed rung
resumes, finished runs are not retrained, killed training runs resume after their last epoch); when the rung
is complete, select the survivors (:func:`beadseg.search.select`) and write the next rung into params.yaml
(temporary file + rename, comments kept). After the last rung the whole pipeline runs once (analysis and
report). The state lives only in params.yaml and the runs' files, so re-running the same command resumes,
between or inside rungs.

A Snakemake killed with the driver (``kill -9`` of its process group) leaves its directory lock behind; the
driver records the pid of the Snakemake it starts and, when that process is gone, removes the stale lock
(``snakemake --unlock``) before resuming. A second driver in the same folder is refused (an OS file lock).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import filelock

from beadseg import paths
from beadseg.config import Config, read_params, validate
from beadseg.errors import BeadsegError, ConfigError
from beadseg.plan import write_params_text
from beadseg.runlock import LOCK_DIR
from beadseg.search import (
    Outcome,
    check_matches,
    full_budget,
    full_grid_steps,
    keep_count,
    load_search,
    read_outcome,
    replicate_groups,
    rung_budgets,
    rung_states,
    select,
    settings,
    train_defaults_raw,
    write_rungs,
)

PARAMS = "params.yaml"


@dataclass(frozen=True)
class Engine:
    """How to run targets: Snakemake (cores, resources, profile passed through) or DVC."""

    name: str = "snakemake"
    cores: str | None = None
    resources: tuple[str, ...] = ()
    profile: str | None = None
    extra: tuple[str, ...] = ()

    def snakemake(self, targets: Sequence[str]) -> list[str]:
        cmd = [sys.executable, "-m", "snakemake", "--rerun-incomplete"]
        if self.profile:
            cmd += ["--profile", self.profile]
        if self.cores or not self.profile:
            cmd += ["--cores", self.cores or "all"]
        if self.resources:
            cmd += ["--resources", *self.resources]
        return [*cmd, *self.extra, *targets]

    def command(self, cfg: Config, run_ids: Sequence[str] | None) -> list[str]:
        """The command that brings ``run_ids``' evaluate outputs up to date (None: the whole pipeline)."""
        if self.name == "dvc":
            if run_ids is None:
                return ["dvc", "repro", *self.extra]
            stages = [f"evaluate-finetune@{r}" if r in cfg.finetune_ids else f"evaluate@{r}" for r in run_ids]
            return ["dvc", "repro", *self.extra, *stages]
        return self.snakemake([] if run_ids is None else [str(paths.metrics_file(r)) for r in run_ids])


def _say(text: str) -> None:
    print(f"search: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- locks and the engine process


def _pid_file(root: Path) -> Path:
    return root / LOCK_DIR / "search-engine.pid"


def _alive(pid: int) -> bool:
    """Whether the engine process ``pid`` still runs (a zombie, or a pid reused by another program, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():  # Linux: a killed process is a zombie until its new parent reaps it
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and (b"snakemake" in cmdline or b"dvc" in cmdline)
    return True


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@contextlib.contextmanager
def driver_lock(root: Path) -> Iterator[None]:
    path = root / LOCK_DIR / "search.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise BeadsegError(f"another `beadseg search run` is running in {root.resolve()} (it holds {path}); wait for "
                           "it or stop it, then run this again") from None
    try:
        yield
    finally:
        lock.release()


def clear_stale_snakemake_lock(root: Path, engine: Engine) -> None:
    """Remove the directory lock a killed Snakemake of an earlier driver left (only when that process is gone)."""
    locks = root / ".snakemake" / "locks"
    pid_file = _pid_file(root)
    if engine.name != "snakemake" or not locks.is_dir() or not any(locks.iterdir()):
        return
    if not pid_file.is_file():
        return  # someone else's Snakemake: let it report its own lock
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        pid = -1
    if pid > 0 and not _wait_gone(pid):
        raise BeadsegError(f"the Snakemake this search started (pid {pid}) is still running; wait for it or stop it, "
                           "then run this again")
    _say(f"removing the lock left by the killed Snakemake (pid {pid}) and resuming")
    subprocess.run([sys.executable, "-m", "snakemake", "--unlock", "--cores", "1"], cwd=root, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pid_file.unlink(missing_ok=True)


def run_engine(cmd: list[str], root: Path, what: str) -> None:
    _say(f"{what}: {shlex.join(cmd)}")
    pid_file = _pid_file(root)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, cwd=root)
    pid_file.write_text(f"{proc.pid}\n")
    previous = signal.getsignal(signal.SIGTERM)

    def forward(signum: int, _frame: object) -> None:  # `kill <driver>` stops the engine too, cleanly
        proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    pid_file.unlink(missing_ok=True)
    if rc != 0:
        raise BeadsegError(f"{what}: `{cmd[0] if 'snakemake' not in cmd else 'snakemake'}` failed (exit {rc}); fix "
                           "what it reports, then run the same `beadseg search run` command again: it resumes")


# --------------------------------------------------------------------------- the loop


def _load(root: Path) -> tuple[dict, Config]:
    raw = read_params(root / PARAMS)
    return raw, validate(raw, source=PARAMS)


def _write(root: Path, text: str) -> Config:
    return write_params_text(root / PARAMS, text, "with the next rung")


def plan_lines(search_file: str, root: Path = Path(".")) -> list[str]:
    """What a search would do (``--dry-run``): budgets, rung sizes, most steps per rung vs the full grid."""
    spec = load_search(search_file)
    raw, _ = _load(root)
    defaults = train_defaults_raw(raw)
    budgets = rung_budgets(spec.min_epochs, spec.eta, full_budget(spec, defaults))
    config_settings = settings(spec, defaults)
    groups = replicate_groups(config_settings)
    spe = {cid: int(s["steps_per_epoch"]) for cid, s in config_settings.items()}
    full = sum(spe.values()) * budgets[-1]
    lines = [f"{spec.file}: {len(spec.configs)} configurations ({len(groups)} without replicates), eta {spec.eta}, "
             f"rung budgets {budgets} epochs"]
    n, total = len(groups), 0
    # the most a rung can cost: its n survivors are the n groups with the most steps per epoch
    group_spe = sorted((sum(spe[c] for c in g) for g in groups), reverse=True)
    group_runs = sorted((len(g) for g in groups), reverse=True)
    for k, b in enumerate(budgets):
        epochs = b - (budgets[k - 1] if k else 0)
        runs = sum(group_runs[:n])
        steps = sum(group_spe[:n]) * epochs
        total += steps
        lines.append(f"rung {k}: {n} configuration group(s), {runs if k == 0 else f'at most {runs}'} run(s) x "
                     f"{epochs} epoch(s) ({'runs' if k == 0 else 'finetune'} r{k}_*), at most {steps} optimizer steps")
        n = keep_count(n, spec.eta)
    lines.append(f"at most {total} optimizer steps in all, {total / full:.0%} of the full grid's {full}")
    return lines


def check_engine(engine: Engine) -> None:
    """One line, before anything is written, when the engine is not installed."""
    import importlib.util
    import shutil

    missing = (importlib.util.find_spec("snakemake") is None if engine.name == "snakemake"
               else shutil.which("dvc") is None)
    if missing:
        raise BeadsegError(f"{engine.name} is not installed in this environment: pip install 'beadseg[workflow]' "
                           "(nothing was written)")


def run_search(search_file: str, engine: Engine, root: Path = Path(".")) -> Config:
    """Plan, run and select rung after rung until the last rung and the report are done (resumable)."""
    spec = load_search(search_file)
    check_engine(engine)
    with driver_lock(root):
        while True:
            raw, cfg = _load(root)
            defaults = train_defaults_raw(raw)
            if cfg.search is None:
                text = (root / PARAMS).read_text(encoding="utf-8")
                replaced = sorted(set(cfg.run_ids) - {f"r0_{c}" for c in spec.configs})
                cfg = _write(root, write_rungs(text, spec, defaults, [list(spec.configs)]))
                budgets = rung_budgets(spec.min_epochs, spec.eta, full_budget(spec, defaults))
                _say(f"planned rung 0 of {spec.name}: {len(spec.configs)} runs x {budgets[0]} epoch(s) "
                     f"(budgets {budgets}) in {PARAMS}"
                     + (f"; replaced its run table ({len(replaced)} runs)" if replaced else ""))
                continue
            check_matches(cfg.search, spec, defaults, PARAMS)
            search = cfg.search
            k = len(search.rungs) - 1
            last = k == len(search.budgets) - 1
            clear_stale_snakemake_lock(root, engine)
            run_engine(engine.command(cfg, search.rung_runs(k)), root,
                       f"rung {k} of {len(search.budgets) - 1} ({len(search.rungs[k])} runs to {search.budgets[k]} epochs)")
            if last:
                clear_stale_snakemake_lock(root, engine)
                run_engine(engine.command(cfg, None), root, "the whole pipeline (analysis and report)")
                for line in status_lines(cfg, root):
                    _say(line)
                return cfg
            outcomes = {}
            for cid, run_id in zip(search.rungs[k], search.rung_runs(k)):
                outcome = read_outcome(run_id, root, cfg.analysis.rank_by)
                if outcome is None:
                    raise BeadsegError(f"rung {k}: {paths.metrics_file(run_id)} is missing after the engine finished; "
                                       "run the same command again")
                outcomes[cid] = outcome
            selection = select(outcomes, replicate_groups(settings(spec, defaults)), spec.eta, list(spec.configs))
            for line in selection.lines():
                _say(f"rung {k}: {line}")
            if not selection.kept:
                raise BeadsegError(f"rung {k}: every configuration is degenerate or diverged, nothing to continue: "
                                   "see `beadseg search status` and the runs' evaluation.json")
            text = (root / PARAMS).read_text(encoding="utf-8")
            _write(root, write_rungs(text, spec, defaults, [*search.rungs, selection.kept]))
            _say(f"planned rung {k + 1}: {', '.join(selection.kept)} to {search.budgets[k + 1]} epochs")


# --------------------------------------------------------------------------- status


def _best(outcomes: Mapping[str, Outcome | None]) -> tuple[str, float] | None:
    """The valid run with the highest score, or None."""
    scored = [(r, o.score) for r, o in outcomes.items() if o is not None and o.valid and o.score is not None]
    return max(scored, key=lambda x: x[1], default=None)


def status_lines(cfg: Config, root: Path = Path(".")) -> list[str]:
    search = cfg.search
    if search is None:
        return [f"{cfg.source} has no search section: start one with `beadseg search run SEARCH.yaml`"]
    states = rung_states(cfg, root)
    lines = [f"search {search.name} ({search.file}): successive halving, eta {search.eta}, budgets "
             f"{list(search.budgets)} epochs, {len(search.rungs)} of {len(search.budgets)} rung(s) planned"]
    used = 0
    for state in states:
        done = sum(o is not None for o in state.outcomes.values())
        used += state.steps
        best = _best(state.outcomes)
        bad = [f"{r} {o.status}" for r, o in state.outcomes.items() if o is not None and not o.valid]
        line = (f"rung {state.rung} ({state.epochs} epochs): {done}/{len(state.runs)} runs evaluated, "
                f"{state.steps} optimizer steps")
        if best:
            line += f"; best {best[0]} (full-image val Jaccard {best[1]:.4f})"
        if bad:
            line += f"; dropped: {', '.join(bad)}"
        lines.append(line)
        nxt = state.rung + 1
        if nxt < len(search.rungs):
            lines.append(f"  survivors: {', '.join(search.rungs[nxt])}")
    full = full_grid_steps(cfg)
    lines.append(f"optimizer steps used: {used} of the full grid's {full} ({used / full:.0%})")
    if len(search.rungs) == len(search.budgets) and states and states[-1].complete:
        final = states[-1]
        best = _best(final.outcomes)
        lines.append(f"done: winner {best[0]} (full-image val Jaccard {best[1]:.4f})" if best
                     else "done: no valid run in the last rung")
    return lines


def check_params_path(params: str) -> None:
    if Path(params) != Path(PARAMS):
        raise ConfigError(f"--params {params}: the pipeline (Snakefile, dvc.yaml) reads {PARAMS}; copy your file "
                          f"over {PARAMS} and run from the project root")
