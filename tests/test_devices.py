"""GPU leasing with per-GPU flock, tested with faked GPU counts (no GPU needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from beadseg.devices import amp_dtype, lease_device, visible_gpu_ids

HOLDER = textwrap.dedent("""
    import sys, time
    from beadseg.devices import lease_device
    with lease_device(poll_s=0.1) as lease:
        print(lease.gpu_id, lease.device.type, flush=True)
        time.sleep(float(sys.argv[1]))
""")


def _env(tmp_path: Path, gpus: int, wait: float) -> dict[str, str]:
    return {**os.environ, "BEADSEG_FAKE_GPUS": str(gpus), "BEADSEG_LOCK_DIR": str(tmp_path),
            "BEADSEG_GPU_WAIT": str(wait)}


def _start(env: dict[str, str], hold: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(hold)], env=env, stdout=subprocess.PIPE, text=True)


def test_two_concurrent_jobs_take_different_gpus(tmp_path):
    env = _env(tmp_path, 2, 0)
    first = _start(env, 120)
    gpu_first = first.stdout.readline().split()
    second = _start(env, 0)
    gpu_second = second.stdout.readline().split()
    second.wait()
    first.kill()
    first.wait()
    assert {gpu_first[0], gpu_second[0]} == {"0", "1"}


def test_with_one_gpu_the_second_job_falls_back_to_cpu_when_not_waiting(tmp_path):
    env = _env(tmp_path, 1, 0)
    first = _start(env, 120)
    assert first.stdout.readline().split()[0] == "0"
    second = _start(env, 0)
    assert second.stdout.readline().split() == ["None", "cpu"]
    second.wait()
    first.kill()
    first.wait()


def test_with_one_gpu_the_second_job_waits_for_the_first(tmp_path):
    env = _env(tmp_path, 1, 30)
    first = _start(env, 1.5)
    assert first.stdout.readline().split()[0] == "0"
    t0 = time.monotonic()
    second = _start(env, 0)
    assert second.stdout.readline().split()[0] == "0"
    assert time.monotonic() - t0 > 0.5
    second.wait()
    first.wait()


def test_lease_is_released_when_the_holder_is_killed(tmp_path):
    env = _env(tmp_path, 1, 0)
    first = _start(env, 60)
    assert first.stdout.readline().split()[0] == "0"
    first.kill()  # SIGKILL: the kernel drops the flock
    first.wait()
    second = _start(env, 0)
    assert second.stdout.readline().split()[0] == "0"
    second.wait()


def test_cuda_visible_devices_names_the_physical_ids(monkeypatch):
    monkeypatch.delenv("BEADSEG_FAKE_GPUS", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    assert visible_gpu_ids() == ([3, 5], False)


def test_cpu_forced_and_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "2")
    monkeypatch.setenv("BEADSEG_DEVICE", "cpu")
    with lease_device() as lease:
        assert lease.gpu_id is None and lease.device.type == "cpu"
    assert amp_dtype(torch.device("cpu")) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_gpu_lease(monkeypatch, tmp_path):
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    with lease_device() as lease:
        assert lease.is_cuda and lease.gpu_id is not None
