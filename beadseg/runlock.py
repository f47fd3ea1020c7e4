"""One process per run at a time: a second ``beadseg train`` / ``evaluate`` of the same run id refuses.

Two terminals, or a manual run beside a pipeline, would otherwise write the same checkpoint, model and
metrics files. The lock is an OS file lock (``filelock``: ``flock`` on Linux and macOS, ``LockFileEx`` on
Windows) on ``.beadseg-locks/run-<id>.lock`` under the project root, outside ``results/`` so neither
engine sees it; the kernel drops it when the holder dies, even on ``kill -9``. A sidecar file names the
holder (pid, host, step, start time) for the refusal message.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from beadseg.errors import TrainingError

LOCK_DIR = Path(".beadseg-locks")


def lock_path(run_id: str, root: Path = Path(".")) -> Path:
    return root / LOCK_DIR / f"run-{run_id}.lock"


@contextlib.contextmanager
def run_lock(run_id: str, step: str, root: Path = Path(".")) -> Iterator[None]:
    """Hold run ``run_id``'s lock for the ``with`` block, or raise TrainingError naming the holder."""
    path = lock_path(run_id, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = path.with_suffix(".holder")
    lock = filelock.FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        who = holder.read_text().strip() if holder.is_file() else "another process"
        raise TrainingError(f"run '{run_id}' is busy: {who} holds {path}; wait for it to finish (or stop it), "
                            "then run this again") from None
    try:
        holder.write_text(f"{step} (pid {os.getpid()} on {socket.gethostname()}, since "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()
