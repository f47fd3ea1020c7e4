"""Device choice for one training job: lease a free GPU with a per-GPU ``flock``, else use the CPU.

Snakemake only *counts* ``gpu`` resources (``--resources gpu=2`` lets two training jobs run at once);
it never says which card a job should use. Each job therefore leases one card itself: it takes a
non-blocking exclusive ``flock`` on ``<lock dir>/gpu-<physical id>.lock``. The kernel releases the lock
when the process dies, even on ``kill -9``, so a crashed job never leaves a card "taken".

* ``CUDA_VISIBLE_DEVICES`` set by a cluster scheduler is honoured: only those cards are candidates,
  and lock files are named by their physical ids, so jobs with different visible sets never collide.
* When every visible card is leased, the job waits (polling) up to ``BEADSEG_GPU_WAIT`` seconds
  (default 600), then falls back to the CPU with a warning. ``BEADSEG_GPU_WAIT=0`` falls back at once.
* ``BEADSEG_FAKE_GPUS=N`` pretends N cards exist (the job still computes on the CPU); tests use it to
  check leasing on machines without a GPU.
* ``BEADSEG_DEVICE=cpu`` forces the CPU.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch


@dataclass
class DeviceLease:
    """The device a job computes on, and the GPU it holds (if any)."""

    device: torch.device
    gpu_id: int | None  # physical id of the leased card (None on CPU)
    name: str
    fake: bool = False

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def lock_dir() -> Path:
    """Folder of the per-GPU lock files (machine-wide by default, since GPUs are machine-wide)."""
    return Path(os.environ.get("BEADSEG_LOCK_DIR", Path(tempfile.gettempdir()) / "beadseg-gpu-locks"))


def visible_gpu_ids() -> tuple[list[int], bool]:
    """Physical ids of the candidate GPUs and whether they are fake (``BEADSEG_FAKE_GPUS``)."""
    fake = os.environ.get("BEADSEG_FAKE_GPUS")
    if fake:
        return list(range(int(fake))), True
    if not torch.cuda.is_available():
        return [], False
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        ids = []
        for token in visible.split(",")[:count]:
            token = token.strip()
            ids.append(int(token) if token.isdigit() else len(ids))  # UUIDs: fall back to position
        return ids, False
    return list(range(count)), False


def _try_lock(path: Path) -> IO[str] | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - kept open while the lease lives
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@contextlib.contextmanager
def lease_device(wait_s: float | None = None, poll_s: float = 2.0) -> Iterator[DeviceLease]:
    """Lease one free GPU for the duration of the ``with`` block, or use the CPU."""
    if os.environ.get("BEADSEG_DEVICE", "").lower() == "cpu":
        yield DeviceLease(torch.device("cpu"), None, "cpu")
        return
    ids, fake = visible_gpu_ids()
    if not ids:
        yield DeviceLease(torch.device("cpu"), None, "cpu")
        return
    if wait_s is None:
        wait_s = float(os.environ.get("BEADSEG_GPU_WAIT", "600"))
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        for local_index, gpu_id in enumerate(ids):
            handle = _try_lock(lock_dir() / f"gpu-{gpu_id}.lock")
            if handle is None:
                continue
            try:
                if fake:
                    yield DeviceLease(torch.device("cpu"), gpu_id, f"fake-gpu-{gpu_id}", fake=True)
                else:
                    device = torch.device(f"cuda:{local_index}")
                    yield DeviceLease(device, gpu_id, torch.cuda.get_device_name(device))
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
                handle.close()
            return
        if time.monotonic() >= deadline:
            print(f"beadseg: all {len(ids)} GPU(s) are leased by other jobs; falling back to the CPU "
                  "(set BEADSEG_GPU_WAIT to wait longer)", file=sys.stderr)
            yield DeviceLease(torch.device("cpu"), None, "cpu")
            return
        if not announced:
            print(f"beadseg: all {len(ids)} GPU(s) are leased; waiting up to {wait_s:.0f} s for one",
                  file=sys.stderr)
            announced = True
        time.sleep(poll_s)


def set_threads(threads: int) -> None:
    """Cap intra-op threads so parallel jobs do not oversubscribe the cores they were given."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # may only be set once per process
        torch.set_num_interop_threads(max(1, min(threads, 2)))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16; None on CPU (no autocast)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
