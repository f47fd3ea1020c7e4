"""GPU leasing between real processes (faked GPU counts; each test starts Python processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.devices import clean_env  # noqa: F401  (autouse fixture)

# Holds a lease for argv[1] seconds, or until stdin is closed when argv[1] is "stdin".
HOLDER = textwrap.dedent("""
    import sys, time
    from beadseg.devices import lease_device
    with lease_device(poll_s=0.05) as lease:
        print(lease.gpu_id, lease.device.type, flush=True)
        if sys.argv[1] == "stdin":
            sys.stdin.read()
        else:
            time.sleep(float(sys.argv[1]))
""")


def _env(tmp_path: Path, gpus: int, wait: float, **extra: str) -> dict[str, str]:
    return {**os.environ, "BEADSEG_FAKE_GPUS": str(gpus), "BEADSEG_LOCK_DIR": str(tmp_path),
            "BEADSEG_GPU_WAIT": str(wait), **extra}


def _start(env: dict[str, str], hold: float | str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(hold)], env=env, stdout=subprocess.PIPE, text=True,
                            **kwargs)


PRINT_ORDER = "import os, beadseg.devices; print(os.environ.get('CUDA_DEVICE_ORDER'))"



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


def test_with_one_gpu_the_second_job_stops_in_one_line_or_falls_back_to_cpu_when_asked(tmp_path):
    env = _env(tmp_path, 1, 0)
    first = _start(env, 120)
    assert first.stdout.readline().split()[0] == "0"
    stopped = _start(env, 0, stderr=subprocess.PIPE)
    out, err = stopped.communicate(timeout=60)
    assert stopped.returncode != 0 and out == "" and "BEADSEG_GPU_FALLBACK=cpu" in err
    second = _start({**env, "BEADSEG_GPU_FALLBACK": "cpu"}, 0)
    assert second.stdout.readline().split() == ["None", "cpu"]
    second.wait()
    first.kill()
    first.wait()


def test_with_one_gpu_the_second_job_waits_for_the_first(tmp_path):
    """Ordering, not elapsed time: the second job says it waits, and gets the card only after release."""
    env = _env(tmp_path, 1, 60)
    first = _start(env, "stdin", stdin=subprocess.PIPE)
    assert first.stdout.readline().split()[0] == "0"
    second = _start(env, 0, stderr=subprocess.PIPE)
    assert any("waiting up to" in line for line in iter(second.stderr.readline, ""))  # blocked by the first
    first.stdin.close()  # release
    assert first.wait(timeout=60) == 0
    out, _ = second.communicate(timeout=60)
    assert out.split()[:2] == ["0", "cpu"]  # fake card 0 (fake cards compute on the CPU)


def test_lease_is_released_when_the_holder_is_killed(tmp_path):
    env = _env(tmp_path, 1, 0)
    first = _start(env, 60)
    assert first.stdout.readline().split()[0] == "0"
    first.kill()  # SIGKILL: the kernel drops the flock
    first.wait()
    second = _start(env, 0)
    assert second.stdout.readline().split()[0] == "0"
    second.wait()


@pytest.mark.parametrize(("given", "expected"), [(None, "PCI_BUS_ID"), ("FASTEST_FIRST", "FASTEST_FIRST")])
def test_importing_devices_pins_pci_bus_order_unless_set(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "CUDA_DEVICE_ORDER"}
    if given:
        env["CUDA_DEVICE_ORDER"] = given
    out = subprocess.run([sys.executable, "-c", PRINT_ORDER], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_two_processes_share_one_card_with_two_slots(tmp_path):
    env = _env(tmp_path, 1, 0, BEADSEG_JOBS_PER_GPU="2")
    first, second = _start(env, 120), _start(env, 120)
    try:
        assert first.stdout.readline().split()[0] == "0"
        assert second.stdout.readline().split()[0] == "0"
        third = _start({**env, "BEADSEG_GPU_FALLBACK": "cpu"}, 0)
        assert third.stdout.readline().split() == ["None", "cpu"]
        third.wait()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_importing_devices_works_without_fcntl(tmp_path):
    script = textwrap.dedent("""
        import sys
        sys.modules["fcntl"] = None  # as on Windows: `import fcntl` raises ImportError
        from beadseg.devices import lease_device
        with lease_device(wait_s=0) as lease:
            print(lease.device.type, lease.gpu_id)
    """)
    env = _env(tmp_path, 1, 0)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cpu", "None"]
    assert list(tmp_path.iterdir()) == []  # nothing to lock

