"""GPU leasing with per-slot flock, tested with faked GPU counts and a faked torch.cuda (no GPU needed)."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import torch

from beadseg import devices
from beadseg.devices import DeviceError, amp_dtype, lease_device, lock_dir, visible_gpu_ids
from beadseg.errors import BeadsegError
from tests.helpers.devices import clean_env  # noqa: F401  (autouse fixture)


def _fake_cuda(monkeypatch, count: int, visible: str | None = None) -> None:
    """torch.cuda as seen on a machine with ``count`` cards (no call reaches a real driver)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"Fake card {device}")
    if visible is not None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


# --- leasing between processes (kept from before) -------------------------------------------------


def test_cuda_visible_devices_names_the_physical_ids(monkeypatch):
    _fake_cuda(monkeypatch, 2, "3,5")
    assert visible_gpu_ids() == ([3, 5], False)


def test_cpu_forced_and_no_gpu(monkeypatch, tmp_path):
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "2")
    monkeypatch.setenv("BEADSEG_DEVICE", "cpu")
    with lease_device() as lease:
        assert lease.gpu_id is None and lease.device.type == "cpu"
    assert amp_dtype(torch.device("cpu")) is None


# --- 1. the lock folder on a shared machine ----------------------------------------------------------


@pytest.fixture
def private_tmp(monkeypatch, tmp_path) -> Path:
    """The temp dir the default lock folder lives in, redirected into tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    monkeypatch.setenv("BEADSEG_GPU_WAIT", "0")
    return tmp_path


def test_default_lock_dir_is_private_to_the_user(private_tmp):
    with lease_device() as lease:
        assert lease.gpu_id == 0
    folder = lock_dir()
    assert folder == private_tmp / f"beadseg-gpu-locks-{os.geteuid()}"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [p.name for p in folder.iterdir()] == ["gpu-0.0.lock"]
    assert stat.S_IMODE((folder / "gpu-0.0.lock").stat().st_mode) == 0o600


def test_default_lock_dir_owned_by_someone_else_is_refused(private_tmp, monkeypatch):
    lock_dir().mkdir(mode=0o700)
    monkeypatch.setattr(devices, "_euid", lambda: os.geteuid() + 1)  # as if another user made it
    with pytest.raises(DeviceError, match=r"belongs to uid .*BEADSEG_LOCK_DIR"), lease_device():
        pass


def test_default_lock_dir_planted_as_a_symlink_is_refused(private_tmp):
    elsewhere = private_tmp / "attacker"
    elsewhere.mkdir(mode=0o700)
    lock_dir().symlink_to(elsewhere)
    with pytest.raises(DeviceError, match="symbolic link"), lease_device():
        pass
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("shared", [False, True])
def test_writable_lock_dir_without_sticky_bit_is_refused(private_tmp, monkeypatch, shared):
    folder = private_tmp / "shared-locks" if shared else lock_dir()
    folder.mkdir()
    folder.chmod(0o777)
    if shared:
        monkeypatch.setenv("BEADSEG_LOCK_DIR", str(folder))
    with pytest.raises(DeviceError, match=r"sticky bit.*BEADSEG_LOCK_DIR"), lease_device():
        pass
    folder.chmod(0o1777)  # sticky, like /tmp: accepted
    with lease_device() as lease:
        assert lease.gpu_id == 0


def test_planted_symlink_lock_file_is_never_followed(tmp_path, monkeypatch):
    locks, victim = tmp_path / "locks", tmp_path / "precious.txt"
    locks.mkdir(mode=0o700)
    victim.write_text("precious")
    for name in ("gpu-0.lock", "gpu-0.0.lock"):  # the old and the new lock file names
        (locks / name).symlink_to(victim)
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(locks))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    with pytest.raises(DeviceError, match="symbolic link"), lease_device(wait_s=0):
        pass
    assert victim.read_text() == "precious"


def test_lock_dir_that_cannot_be_created_is_one_clear_error(tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    folder = tmp_path / "a-file" / "locks"
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(folder))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    with pytest.raises(DeviceError) as error, lease_device(wait_s=0):
        pass
    message = str(error.value)
    assert isinstance(error.value, BeadsegError)  # the CLI prints it as one line, exit 2, no traceback
    assert str(folder) in message and "BEADSEG_LOCK_DIR" in message and "\n" not in message


def test_lock_file_that_cannot_be_opened_is_one_clear_error(tmp_path, monkeypatch):
    """As a second user in a folder made by the first one (simulated: tests may run as root)."""
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(DeviceError, match=r"Permission denied.*BEADSEG_LOCK_DIR") as error, lease_device(wait_s=0):
        pass
    assert str(tmp_path) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_shared_lock_dir_is_one_clear_error(tmp_path, monkeypatch):
    tmp_path.chmod(0o500)
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    try:
        with pytest.raises(DeviceError, match="BEADSEG_LOCK_DIR"), lease_device(wait_s=0):
            pass
    finally:
        tmp_path.chmod(0o700)


def test_lock_files_in_a_shared_dir_can_be_opened_by_every_user(tmp_path, monkeypatch):
    tmp_path.chmod(0o1777)
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    old_umask = os.umask(0o022)
    try:
        with lease_device(wait_s=0):
            pass
    finally:
        os.umask(old_umask)
    (lock,) = tmp_path.glob("gpu-0*.lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o666


# --- 2. UUID / MIG ids in CUDA_VISIBLE_DEVICES -------------------------------------------------------

UUID_A = "GPU-8f3a4b1c-0d2e-4f5a-9b6c-7d8e9f0a1b2c"
UUID_B = "GPU-11111111-2222-3333-4444-555555555555"
MIG = "MIG-GPU-5c89852c-d268-c3f3-1b07-005d5ae1dc3f/7/0"


def test_uuid_and_mig_ids_are_the_card_ids(monkeypatch):
    _fake_cuda(monkeypatch, 3, f"{UUID_A}, {MIG},2")
    ids, fake = visible_gpu_ids()
    assert not fake
    assert ids == [UUID_A, MIG.replace("/", "_"), 2]


def test_jobs_seeing_the_same_card_by_uuid_lock_the_same_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    _fake_cuda(monkeypatch, 2, f"{UUID_A},{UUID_B}")
    with lease_device(wait_s=0) as first, lease_device(wait_s=0) as second:
        assert (first.gpu_id, first.device) == (UUID_A, torch.device("cuda:0"))
        assert (second.gpu_id, second.device) == (UUID_B, torch.device("cuda:1"))
        _fake_cuda(monkeypatch, 1, UUID_B)  # another job, whose scheduler gave it only card B
        monkeypatch.setenv("BEADSEG_GPU_FALLBACK", "cpu")
        with lease_device(wait_s=0) as third:
            assert third.device.type == "cpu"  # B is taken, although it is cuda:0 for this job
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"gpu-{UUID_A}.0.lock", f"gpu-{UUID_B}.0.lock"])


def test_mig_lock_file_stays_in_the_lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    _fake_cuda(monkeypatch, 1, MIG)
    with lease_device(wait_s=0) as lease:
        assert lease.is_cuda
    assert [p.name for p in tmp_path.iterdir()] == [f"gpu-{MIG.replace('/', '_')}.0.lock"]


# --- 3. amp dtype from the leased card's compute capability ------------------------------------------


@pytest.mark.parametrize(("capability", "dtype"), [((7, 5), torch.float16), ((6, 1), torch.float16),
                                                   ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_amp_dtype_asks_only_the_leased_card(monkeypatch, capability, dtype):
    asked: list[object] = []

    def capability_of(device=None):
        asked.append(device)
        return capability

    def emulated(*args, **kwargs):
        raise AssertionError("is_bf16_supported reports emulated bf16 and asks cuda:0")

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability_of)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", emulated)
    assert amp_dtype(torch.device("cuda:1")) == dtype
    assert asked == [torch.device("cuda:1")]


def test_amp_dtype_is_none_off_cuda():
    assert amp_dtype(torch.device("cpu")) is None
    assert amp_dtype(torch.device("mps")) is None


# --- 4. CUDA_DEVICE_ORDER ----------------------------------------------------------------------------

PRINT_ORDER = "import os, beadseg.devices; print(os.environ.get('CUDA_DEVICE_ORDER'))"


def test_leasing_sets_pci_bus_order_when_unset_and_keeps_the_users(monkeypatch):
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    monkeypatch.setenv("BEADSEG_DEVICE", "cpu")
    with lease_device():
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    with lease_device():
        assert os.environ["CUDA_DEVICE_ORDER"] == "FASTEST_FIRST"


# --- 5. several jobs per card --------------------------------------------------------------------------


class _Holder(threading.Thread):
    """Holds a lease in its own thread (its own open file description) until ``release`` is set."""

    def __init__(self, log: list[str], name: str, wait_s: float = 0) -> None:
        super().__init__(daemon=True)
        self.log, self.label, self.wait_s = log, name, wait_s
        self.got, self.release = threading.Event(), threading.Event()
        self.lease: devices.DeviceLease | None = None

    def run(self) -> None:
        with lease_device(wait_s=self.wait_s, poll_s=0.02) as lease:
            self.lease = lease
            self.log.append(f"{self.label} got {lease.gpu_id}")
            self.got.set()
            self.release.wait(60)
            self.log.append(f"{self.label} releases")


@pytest.fixture
def one_card_two_slots(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    monkeypatch.setenv("BEADSEG_JOBS_PER_GPU", "2")
    return tmp_path


def test_one_card_holds_two_leases_and_a_third_stops_or_falls_back_when_asked(one_card_two_slots, monkeypatch,
                                                                               capsys):
    log: list[str] = []
    holders = [_Holder(log, "a"), _Holder(log, "b")]
    for holder in holders:
        holder.start()
        assert holder.got.wait(60)
    assert sorted((h.lease.gpu_id, h.lease.slot) for h in holders) == [(0, 0), (0, 1)]
    with pytest.raises(DeviceError, match=r"no free slot on 1 GPU\(s\) x 2 slots after 0 s .* BEADSEG_GPU_FALLBACK=cpu"):
        with lease_device(wait_s=0):
            pass
    monkeypatch.setenv("BEADSEG_GPU_FALLBACK", "cpu")
    with lease_device(wait_s=0) as third:
        assert third.gpu_id is None and third.device.type == "cpu"
    assert "training on the CPU (BEADSEG_GPU_FALLBACK=cpu)" in capsys.readouterr().err
    for holder in holders:
        holder.release.set()
        holder.join(60)
    assert sorted(p.name for p in one_card_two_slots.iterdir()) == ["gpu-0.0.lock", "gpu-0.1.lock"]


def test_a_third_lease_waits_for_a_free_slot(one_card_two_slots):
    log: list[str] = []
    a, b = _Holder(log, "a"), _Holder(log, "b")
    for holder in (a, b):
        holder.start()
        assert holder.got.wait(60)
    c = _Holder(log, "c", wait_s=60)
    c.start()
    assert not c.got.wait(0.2)  # still waiting (no timing assertion: the order below decides)
    b.release.set()
    assert c.got.wait(60)
    assert log.index("b releases") < log.index("c got 0")
    assert c.lease.slot == b.lease.slot
    for holder in (a, c):
        holder.release.set()
        holder.join(60)


def test_a_free_card_is_taken_before_a_second_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "2")
    with lease_device(wait_s=0, jobs_per_gpu=2) as first, lease_device(wait_s=0, jobs_per_gpu=2) as second:
        assert {first.gpu_id, second.gpu_id} == {0, 1}
        assert first.slot == second.slot == 0


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_jobs_per_gpu_is_a_clear_error(one_card_two_slots, monkeypatch, value):
    monkeypatch.setenv("BEADSEG_JOBS_PER_GPU", value)
    with pytest.raises(DeviceError, match="BEADSEG_JOBS_PER_GPU"), lease_device(wait_s=0):
        pass


# --- 6. platforms without fcntl, and Apple's MPS --------------------------------------------------------


@pytest.fixture
def no_fcntl_with_mps(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))


@pytest.mark.parametrize(("setting", "device"), [(None, "mps"), ("mps", "mps"), ("cpu", "cpu"), ("MPS", "mps")])
def test_mps_is_used_unless_the_cpu_is_forced(no_fcntl_with_mps, monkeypatch, setting, device):
    if setting:
        monkeypatch.setenv("BEADSEG_DEVICE", setting)
    with lease_device() as lease:
        assert lease.device.type == device and lease.gpu_id is None
        assert amp_dtype(lease.device) is None


def test_mac_with_fcntl_and_no_cuda_uses_mps(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with lease_device() as lease:
        assert lease.device.type == "mps"


def test_without_fcntl_a_real_card_is_used_unleased(no_fcntl_with_mps, monkeypatch, tmp_path, capsys):
    _fake_cuda(monkeypatch, 2, "4,6")
    with lease_device() as lease:
        assert (lease.device, lease.gpu_id) == (torch.device("cuda:0"), 4)
    assert "without a lease" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_gpu_lease(monkeypatch, tmp_path):
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    with lease_device() as lease:
        assert lease.is_cuda and lease.gpu_id is not None


# --- 7. packing jobs by memory (BEADSEG_JOBS_PER_GPU=auto) ---------------------------------------------


@pytest.mark.parametrize(("job_mb", "card_mb", "slots", "jobs"), [
    (1000, 81920, 1, 16),  # a demo job: one sixteenth of an 80 GB card (4608 MB) is plenty
    (4608, 81920, 1, 16),  # exactly one slot
    (4609, 81920, 2, 8),
    (20000, 81920, 5, 3),  # 5 slots of 4608 MB
    (200000, 81920, 16, 1),  # more than the card: the whole card (training will retry smaller on OOM)
    (None, 24576, 1, 16),  # unknown: one slot
])
def test_slots_needed_known_answers(job_mb, card_mb, slots, jobs):
    assert devices.slots_needed(job_mb, card_mb) == slots
    assert devices.jobs_per_card(job_mb, card_mb) == jobs


@pytest.fixture
def auto_two_cards(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "2x16000")  # 16 slots of 900 MB each
    monkeypatch.setenv("BEADSEG_JOBS_PER_GPU", "auto")
    return tmp_path


def test_auto_packs_jobs_by_memory_and_spreads_them_over_the_cards(auto_two_cards):
    with contextlib.ExitStack() as stack:
        big = stack.enter_context(lease_device(wait_s=0, job_mb=7000))  # 8 slots
        small = [stack.enter_context(lease_device(wait_s=0, job_mb=500)) for _ in range(3)]
        assert (big.slots, big.slots_per_card) == (8, 16)
        assert [s.slots for s in small] == [1, 1, 1]
        # the card with the most free slots first: the second card, until it is as full as the first
        assert [s.gpu_id for s in small] == [1 - big.gpu_id] * 3
        more = [stack.enter_context(lease_device(wait_s=0, job_mb=800)) for _ in range(21)]
        on_card = {g: sum(x.slots for x in [big, *small, *more] if x.gpu_id == g) for g in (0, 1)}
        assert on_card == {0: 16, 1: 16}  # every slot of both cards, none twice
        with pytest.raises(DeviceError, match="no free slot on 2 GPU"), lease_device(wait_s=0, job_mb=100):
            pass
    with lease_device(wait_s=0, job_mb=15000) as whole:  # all released: a job of a whole card fits again
        assert whole.slots == 16


def test_a_job_too_big_for_the_free_slots_waits_in_one_line(auto_two_cards, monkeypatch, capsys):
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1x16000")
    with lease_device(wait_s=0, job_mb=9000):  # 10 of 16 slots
        with pytest.raises(DeviceError, match="no 10 free slots on one card"), lease_device(wait_s=0.05, poll_s=0.01,
                                                                                           job_mb=9000):
            pass
        waiting = [line for line in capsys.readouterr().err.splitlines() if "waiting" in line]
        assert len(waiting) == 1 and "no 10 free slots on one card" in waiting[0]
        with lease_device(wait_s=0, job_mb=5000) as second:  # 6 slots still fit beside it
            assert second.slots == 6


def test_bad_fake_gpus_and_fallback_settings_are_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("BEADSEG_LOCK_DIR", str(tmp_path))
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "2xlots")
    with pytest.raises(DeviceError, match="BEADSEG_FAKE_GPUS"), lease_device(wait_s=0):
        pass
    monkeypatch.setenv("BEADSEG_FAKE_GPUS", "1")
    monkeypatch.setenv("BEADSEG_GPU_FALLBACK", "gpu")
    with pytest.raises(DeviceError, match="BEADSEG_GPU_FALLBACK"), lease_device(wait_s=0):
        pass
