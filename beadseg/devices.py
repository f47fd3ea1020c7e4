"""Device choice for one training job: lease a GPU slot with a per-slot ``flock``, else MPS or the CPU.

Snakemake only *counts* ``gpu`` resources (``--resources gpu=2`` lets two training jobs run at once);
it never says which card a job should use. Each job therefore leases a card itself: it takes a
non-blocking exclusive ``flock`` on ``<lock dir>/gpu-<card id>.<slot>.lock``. The kernel releases the
lock when the process dies, even on ``kill -9``, so a crashed job never leaves a card "taken".

* **Lock folder.** By default ``<tmp>/beadseg-gpu-locks-<uid>``, private to the user (mode 0700): a
  folder shared by accident is created with the first user's umask and locks everyone else out, and
  anyone who can write to it can plant a symlink that a job would open and write through. A folder
  owned by someone else, a symlink, or one that is group/world-writable without the sticky bit is
  refused with a :class:`DeviceError`. Jobs of *different* users see each other's leases only through
  a deliberately shared ``BEADSEG_LOCK_DIR``, which must be writable by every user of the machine and
  sticky (mode 1777, like /tmp); lock files in it are made mode 0666 so every user can open them.
  Lock files are opened with ``O_NOFOLLOW``: a symlink is never followed.
* **Card ids.** ``CUDA_VISIBLE_DEVICES`` set by a cluster scheduler is honoured: only those cards are
  candidates, and lock files are named by a stable id — the physical index for a number, the token
  itself (sanitised for a file name) for a ``GPU-<uuid>`` or ``MIG-<...>`` id — so jobs with different
  visible sets never collide. ``CUDA_DEVICE_ORDER`` defaults to ``PCI_BUS_ID`` (set on import, before
  CUDA initialises) so physical indices mean what ``nvidia-smi`` and Slurm mean.
* **Slots.** ``BEADSEG_JOBS_PER_GPU=N`` (default 1) lets one card hold N leases (small U-Nets leave a
  big card idle). A free card is preferred to a second slot on a busy one. Use the same N for every
  job on a machine.
* **Packing by memory.** ``BEADSEG_JOBS_PER_GPU=auto`` divides every card into :data:`AUTO_SLOTS` slots of
  equal memory (90 % of the card / 16); a job leases as many slots of one card as its memory needs
  (:func:`slots_needed`; the training step passes its measured peak, else an estimate, see
  :func:`beadseg.train.job_memory_mb`), on the card with the most free slots. Jobs of different sizes share
  a card safely because every job counts in the same slots. A card then holds ``16 // slots`` jobs of a size.
* **No free slot.** The job says so in one line at once and waits (polling) up to ``BEADSEG_GPU_WAIT``
  seconds (default 600). Then it stops with a :class:`DeviceError`, unless ``BEADSEG_GPU_FALLBACK=cpu``
  asks it to train on the CPU instead. (A machine without a GPU trains on the CPU as always.)
* **Testing.** ``BEADSEG_FAKE_GPUS=N`` pretends N cards exist (the job still computes on the CPU); tests
  use it to check leasing on machines without a GPU. ``N x MB`` (e.g. ``2x24000``) also gives their memory
  (default 81920 MB).
* **Other platforms.** Without ``fcntl`` (Windows) nothing is locked: a CUDA card is used unleased (with
  a warning), else MPS or the CPU. Without CUDA, Apple's MPS is used when available and
  ``BEADSEG_DEVICE`` is unset or ``mps``. ``BEADSEG_DEVICE=cpu`` always forces the CPU.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from beadseg.errors import BeadsegError

GpuId = int | str  # physical index, or a sanitised GPU-/MIG- token from CUDA_VISIBLE_DEVICES

_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_BUSY_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})  # some filesystems say EACCES


class DeviceError(BeadsegError):
    """The GPU lock folder or a device setting cannot be used (printed as one line by the CLI)."""


#: BEADSEG_JOBS_PER_GPU=auto: every card is this many slots of equal memory.
AUTO_SLOTS = 16
#: The share of a card's memory the slots divide (the rest: other processes, fragmentation).
USABLE_MEMORY = 0.9
FAKE_CARD_MB = 81920.0


@dataclass
class DeviceLease:
    """The device a job computes on, and the GPU (and slot on it) it holds, if any."""

    device: torch.device
    gpu_id: GpuId | None  # stable id of the leased card (None when no card is held)
    name: str
    fake: bool = False
    slot: int | None = None  # the first of the card's slots that are held
    slots: int = 0  # how many of its slots this job holds (more than 1 only with BEADSEG_JOBS_PER_GPU=auto)
    slots_per_card: int = 0

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


def slots_needed(job_mb: float | None, card_mb: float, slots: int = AUTO_SLOTS) -> int:
    """Slots of a card of ``card_mb`` (cut into ``slots`` slots of :data:`USABLE_MEMORY` of it) that a job of
    ``job_mb`` peak memory needs: at least 1, at most all; unknown memory takes 1."""
    if job_mb is None or not math.isfinite(job_mb):
        return 1
    slot_mb = card_mb * USABLE_MEMORY / slots
    return max(1, min(slots, math.ceil(job_mb / slot_mb)))


def jobs_per_card(job_mb: float | None, card_mb: float, slots: int = AUTO_SLOTS) -> int:
    """How many jobs of ``job_mb`` one card holds under BEADSEG_JOBS_PER_GPU=auto."""
    return slots // slots_needed(job_mb, card_mb, slots)


def _pin_device_order() -> None:
    """Number cards by PCI bus id unless the user chose otherwise.

    CUDA's default order ("fastest first") can differ from nvidia-smi's and Slurm's, so a numeric
    ``CUDA_VISIBLE_DEVICES`` would name other cards than intended. CUDA reads the variable once, when
    it initialises, so this must run before any CUDA call: it runs on import and again on each lease.
    """
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")


_pin_device_order()


def _fcntl() -> ModuleType | None:
    """``fcntl`` if this platform has it (not on Windows); imported lazily so importing this module never fails."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def _euid() -> int | None:
    """Effective user id, or None where the platform has no uids."""
    geteuid = getattr(os, "geteuid", None)
    return geteuid() if geteuid else None


def _user_tag() -> str:
    """What makes the default lock folder per-user: the uid, else a sanitised login name."""
    uid = _euid()
    if uid is not None:
        return str(uid)
    import getpass

    return _UNSAFE_FILE_CHARS.sub("_", getpass.getuser())


def _shared_lock_dir() -> str | None:
    """``BEADSEG_LOCK_DIR`` if set: a folder deliberately shared by the users of a machine."""
    return os.environ.get("BEADSEG_LOCK_DIR") or None


def lock_dir() -> Path:
    """Folder of the lock files: ``BEADSEG_LOCK_DIR``, else a per-user folder in the temp dir.

    Per-user by default because a folder shared by accident is either unusable by the second user or
    writable by everyone (planted symlinks). Sharing leases between users needs ``BEADSEG_LOCK_DIR``.
    """
    shared = _shared_lock_dir()
    if shared:
        return Path(shared)
    return Path(tempfile.gettempdir()) / f"beadseg-gpu-locks-{_user_tag()}"


def _env_number(name: str, default: float, minimum: float, kind: type = int) -> float:
    """Read a numeric environment setting; a bad value is a one-line :class:`DeviceError`, not a traceback."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise DeviceError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
    if value < minimum:
        raise DeviceError(f"{name}={raw!r} must be at least {minimum}")
    return value


def _card_id(token: str, position: int) -> GpuId:
    """Stable lock name of one ``CUDA_VISIBLE_DEVICES`` entry.

    A number is the physical index. A ``GPU-<uuid>`` / ``MIG-<...>`` token names one card (or MIG
    instance) whatever its position, so it is its own id; characters that cannot be in a file name
    (``/`` in old-style MIG ids) become ``_``.
    """
    if token.isdigit():
        return int(token)
    return _UNSAFE_FILE_CHARS.sub("_", token) or f"visible{position}"


def _fake_gpus() -> tuple[int, float] | None:
    """``BEADSEG_FAKE_GPUS``: N, or N x MB (cards and their memory), or None when unset."""
    raw = os.environ.get("BEADSEG_FAKE_GPUS", "").strip().lower()
    if not raw:
        return None
    count, _, memory = raw.partition("x")
    try:
        n, mb = int(count), float(memory) if memory else FAKE_CARD_MB
    except ValueError:
        raise DeviceError(f"BEADSEG_FAKE_GPUS={raw!r} is not N or NxMB (e.g. 2 or 2x24000)") from None
    if n < 0 or mb <= 0:
        raise DeviceError(f"BEADSEG_FAKE_GPUS={raw!r}: cards and memory must be positive")
    return n, mb


def card_memory_mb(local_index: int) -> float:
    """Total memory of a visible card (fake cards: the MB of ``BEADSEG_FAKE_GPUS=NxMB``)."""
    fake = _fake_gpus()
    if fake is not None:
        return fake[1]
    return torch.cuda.get_device_properties(local_index).total_memory / 2**20


def visible_gpu_ids() -> tuple[list[GpuId], bool]:
    """Stable ids of the candidate GPUs and whether they are fake (``BEADSEG_FAKE_GPUS``)."""
    _pin_device_order()
    fake = _fake_gpus()
    if fake is not None:
        return list(range(fake[0])), True
    if not torch.cuda.is_available():
        return [], False
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible:
        return list(range(count)), False
    tokens = [token.strip() for token in visible.split(",")][:count]
    return [_card_id(token, position) for position, token in enumerate(tokens)], False


def _lock_dir_problem(info: os.stat_result, shared: bool) -> str | None:
    """Why a lock folder is unsafe, or None.

    Someone else's folder (default only) or a symlink could be redirected by its owner; a folder that
    others can write without the sticky bit lets them delete a held lock file, after which a new job
    locks a fresh file and two jobs share one card.
    """
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    euid = _euid()
    if not shared and euid is not None and info.st_uid != euid:
        return f"belongs to uid {info.st_uid}, not to you (uid {euid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX:
        return "is group/world-writable without the sticky bit (others could delete held lock files)"
    return None


def _folder_error(folder: Path, reason: str) -> DeviceError:
    """One line that names the folder, the reason and the way out."""
    return DeviceError(
        f"GPU lock folder {folder} {reason}; set BEADSEG_LOCK_DIR to a folder you can write "
        "(shared between users: writable by all of them and sticky, mode 1777 like /tmp)")


def _prepare_lock_dir(folder: Path, shared: bool) -> None:
    """Create the lock folder (private: mode 0700) and refuse an unsafe one."""
    try:
        if shared:
            folder.mkdir(parents=True, exist_ok=True)
            info = folder.stat()  # the user chose this path: a symlink to a good folder is fine
        else:
            folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
            info = folder.lstat()  # never follow a symlink planted under our default name
    except OSError as exc:
        raise _folder_error(folder, f"cannot be created or read ({exc.strerror})") from None
    problem = _lock_dir_problem(info, shared)
    if problem:
        raise _folder_error(folder, problem)


def _open_existing(path: Path, flags: int) -> int:
    """Open an existing lock file; read-only if another user's file is not writable (flock needs no write)."""
    try:
        return os.open(path, flags)
    except PermissionError:
        return os.open(path, flags & ~os.O_RDWR | os.O_RDONLY)


def _open_lock_file(path: Path, shared: bool) -> int:
    """Open (or create) a lock file without ever following a symlink.

    Existing files are opened without ``O_CREAT`` because Linux's ``fs.protected_regular`` refuses
    ``O_CREAT`` on another user's file in a sticky folder. New files in a shared folder are made
    0666 (past the umask) so other users' jobs can open them too.
    """
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return _open_existing(path, flags)
    except FileNotFoundError:
        pass
    try:
        fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666 if shared else 0o600)
    except FileExistsError:  # another job created it just now
        return _open_existing(path, flags)
    if shared:
        os.fchmod(fd, 0o666)
    return fd


def _open_lock_checked(path: Path, shared: bool) -> int:
    """:func:`_open_lock_file`, with every failure turned into one clear :class:`DeviceError`."""
    try:
        fd = _open_lock_file(path, shared)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DeviceError(f"GPU lock file {path} is a symbolic link; refusing to follow it "
                              "(remove it, and check who can write to its folder)") from None
        raise _folder_error(path.parent, f"does not let this job open {path.name} ({exc.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DeviceError(f"GPU lock file {path} is not a regular file; remove it")
    return fd


def _note_holder(fd: int) -> None:
    """Write our pid into the lock file (for people debugging), only into a file with no other name."""
    if os.fstat(fd).st_nlink != 1:  # a hard link could make us overwrite some other file
        return
    with contextlib.suppress(OSError):  # opened read-only, or a full disk: the lock still holds
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())


def _try_lock(path: Path, shared: bool, fcntl: ModuleType) -> int | None:
    """The locked file descriptor, or None if another job holds this slot.

    ``flock`` belongs to the open file description, so every attempt opens its own descriptor:
    two threads of one process exclude each other just as two processes do.
    """
    fd = _open_lock_checked(path, shared)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in _BUSY_ERRNOS:
            return None
        raise _folder_error(path.parent, f"does not support locking {path.name} ({exc.strerror})") from None
    _note_holder(fd)
    return fd


def _release(fd: int, fcntl: ModuleType) -> None:
    """Unlock and close; the kernel would also do it if the process died."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_name(gpu_id: GpuId, slot: int) -> str:
    return f"gpu-{gpu_id}.{slot}.lock"


@dataclass
class _Held:
    fds: list[int]
    local_index: int
    gpu_id: GpuId
    slots: list[int]


def _free_slots(folder: Path, shared: bool, gpu_id: GpuId, slots: int, fcntl: ModuleType) -> int:
    """How many of a card's slots are free now (each locked and released at once, so a job probing at the same
    moment is not misled for longer than a system call)."""
    free = 0
    for slot in range(slots):
        fd = _try_lock(folder / _lock_name(gpu_id, slot), shared, fcntl)
        if fd is not None:
            _release(fd, fcntl)
            free += 1
    return free


def _take(folder: Path, shared: bool, gpu_id: GpuId, slots: int, need: int,
          fcntl: ModuleType) -> list[tuple[int, int]] | None:
    """Lock ``need`` free slots of one card, the lowest first; (slot, fd) of each, or None (nothing kept)."""
    taken: list[tuple[int, int]] = []
    for slot in range(slots):
        if len(taken) == need:
            break
        fd = _try_lock(folder / _lock_name(gpu_id, slot), shared, fcntl)
        if fd is not None:
            taken.append((slot, fd))
    if len(taken) < need:
        for _slot, fd in taken:
            _release(fd, fcntl)
        return None
    return taken


def _try_all(folder: Path, shared: bool, ids: list[GpuId], slots: int, need: list[int],
             fcntl: ModuleType) -> _Held | None:
    """One pass: take ``need[card]`` slots on the card with the most free slots left after them (a free card
    before a second slot on a busy one); another card if a concurrent job got there first; else None."""
    free = [_free_slots(folder, shared, gpu_id, slots, fcntl) if slots > 1 else 1 for gpu_id in ids]
    order = sorted((i for i in range(len(ids)) if free[i] >= need[i]), key=lambda i: (need[i] - free[i], i))
    for i in order:
        taken = _take(folder, shared, ids[i], slots, need[i], fcntl)
        if taken is not None:
            return _Held([fd for _, fd in taken], i, ids[i], [slot for slot, _ in taken])
    return None


def _acquire(ids: list[GpuId], slots: int, need: list[int], wait_s: float, poll_s: float, fallback: bool,
             fcntl: ModuleType) -> _Held | None:
    """Poll until a card has the slots this job needs or ``wait_s`` has passed; then None (use the CPU) when
    ``fallback``, else a :class:`DeviceError`."""
    folder, shared = lock_dir(), _shared_lock_dir() is not None
    _prepare_lock_dir(folder, shared)
    deadline = time.monotonic() + wait_s
    what = f"{len(ids)} GPU(s)" + (f" x {slots} slots" if slots > 1 else "")
    wanted = f"{min(need)} free slots on one card" if min(need) > 1 else "free slot"
    announced = False
    while True:
        held = _try_all(folder, shared, ids, slots, need, fcntl)
        if held is not None:
            return held
        if time.monotonic() >= deadline:
            if fallback:
                print(f"beadseg: no {wanted} on {what} after {wait_s:.0f} s; training on the CPU "
                      "(BEADSEG_GPU_FALLBACK=cpu)", file=sys.stderr)
                return None
            raise DeviceError(f"no {wanted} on {what} after {wait_s:.0f} s (other jobs hold them): raise "
                              "BEADSEG_GPU_WAIT, give Snakemake fewer --resources gpu, or set "
                              "BEADSEG_GPU_FALLBACK=cpu to train on the CPU instead")
        if not announced:
            print(f"beadseg: no {wanted} on {what} now (other jobs hold them); waiting up to {wait_s:.0f} s"
                  + ("" if fallback else " (BEADSEG_GPU_FALLBACK=cpu would use the CPU instead)"), file=sys.stderr)
            announced = True
        time.sleep(poll_s)


def _cpu() -> DeviceLease:
    return DeviceLease(torch.device("cpu"), None, "cpu")


def _mps_available() -> bool:
    """Apple's GPU backend, asked defensively (older or stripped-down torch builds may lack it)."""
    mps = getattr(torch.backends, "mps", None)
    try:
        return bool(mps is not None and mps.is_available())
    except RuntimeError:
        return False


def _local_device(choice: str) -> DeviceLease:
    """No CUDA card to lease: MPS when available and wanted (``BEADSEG_DEVICE`` unset or ``mps``), else the CPU."""
    if choice in ("", "mps") and _mps_available():
        return DeviceLease(torch.device("mps"), None, "mps")
    if choice == "mps":
        print("beadseg: BEADSEG_DEVICE=mps but MPS is not available; using the CPU", file=sys.stderr)
    return _cpu()


def _unlocked_device(ids: list[GpuId], fake: bool, choice: str) -> DeviceLease:
    """Without ``fcntl`` (Windows) nothing can be leased.

    Fake cards only exist to test leasing, so they mean the CPU; a real card is still far better than
    the CPU, so the first visible one is used without a lease (parallel jobs would share it).
    """
    if fake:
        return _local_device(choice)
    print("beadseg: GPU leasing needs fcntl (not on this platform); using the first visible GPU without "
          "a lease, so run one GPU job at a time", file=sys.stderr)
    device = torch.device("cuda:0")
    return DeviceLease(device, ids[0], torch.cuda.get_device_name(device))


def _lease_for(held: _Held, fake: bool, slots: int) -> DeviceLease:
    """Describe held slots; fake cards compute on the CPU."""
    taken = len(held.slots)
    suffix = ("" if slots == 1 else f" (slot {held.slots[0] + 1}/{slots})" if taken == 1
              else f" ({taken} of {slots} slots)")
    first = held.slots[0]
    if fake:
        return DeviceLease(torch.device("cpu"), held.gpu_id, f"fake-gpu-{held.gpu_id}{suffix}", True, first, taken,
                           slots)
    device = torch.device(f"cuda:{held.local_index}")
    return DeviceLease(device, held.gpu_id, torch.cuda.get_device_name(device) + suffix, False, first, taken, slots)


def auto_slots() -> bool:
    """Whether ``BEADSEG_JOBS_PER_GPU=auto`` (slots by memory) is set."""
    return os.environ.get("BEADSEG_JOBS_PER_GPU", "").strip().lower() == "auto"


def _slots(jobs_per_gpu: int | None) -> int:
    """Slots of one card: the argument, else ``BEADSEG_JOBS_PER_GPU`` (default 1; auto: :data:`AUTO_SLOTS`)."""
    if jobs_per_gpu is None:
        if auto_slots():
            return AUTO_SLOTS
        return int(_env_number("BEADSEG_JOBS_PER_GPU", 1, 1))
    if jobs_per_gpu < 1:
        raise ValueError(f"jobs_per_gpu must be at least 1, not {jobs_per_gpu}")
    return jobs_per_gpu


def _fallback() -> bool:
    """``BEADSEG_GPU_FALLBACK=cpu``: train on the CPU when no GPU slot frees up in time."""
    raw = os.environ.get("BEADSEG_GPU_FALLBACK", "").strip().lower()
    if raw not in ("", "cpu", "none"):
        raise DeviceError(f"BEADSEG_GPU_FALLBACK={raw!r}: use 'cpu' (train on the CPU when no GPU slot is free) "
                          "or leave it unset (wait, then stop)")
    return raw == "cpu"


@contextlib.contextmanager
def lease_device(wait_s: float | None = None, poll_s: float = 2.0, *,
                 jobs_per_gpu: int | None = None, job_mb: float | None = None) -> Iterator[DeviceLease]:
    """Lease GPU slots for the duration of the ``with`` block, or use MPS / the CPU.

    One slot, or under ``BEADSEG_JOBS_PER_GPU=auto`` as many as ``job_mb`` (the job's peak memory) needs.
    Raises :class:`DeviceError` (one line, no traceback from the CLI) when the lock folder is unusable, or
    when no slot frees up in time and ``BEADSEG_GPU_FALLBACK=cpu`` is not set.
    """
    _pin_device_order()
    choice = os.environ.get("BEADSEG_DEVICE", "").strip().lower()
    if choice == "cpu":
        yield _cpu()
        return
    ids, fake = visible_gpu_ids() if choice != "mps" else ([], False)
    fcntl = _fcntl()
    if not ids or fcntl is None:
        yield _unlocked_device(ids, fake, choice) if ids else _local_device(choice)
        return
    slots = _slots(jobs_per_gpu)
    by_memory = jobs_per_gpu is None and auto_slots()
    need = [slots_needed(job_mb, card_memory_mb(i), slots) if by_memory else 1 for i in range(len(ids))]
    wait = wait_s if wait_s is not None else float(_env_number("BEADSEG_GPU_WAIT", 600.0, 0.0, float))
    held = _acquire(ids, slots, need, wait, poll_s, _fallback(), fcntl)
    if held is None:
        yield _cpu()
        return
    try:
        yield _lease_for(held, fake, slots)
    finally:
        for fd in held.fds:
            _release(fd, fcntl)


def set_threads(threads: int) -> None:
    """Cap intra-op threads so parallel jobs do not oversubscribe the cores they were given."""
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # may only be set once per process
        torch.set_num_interop_threads(max(1, min(threads, 2)))


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 on cards with native bf16 (compute capability >= 8, Ampere on), else fp16.

    ``torch.cuda.is_bf16_supported()`` is not used: it says True on older cards through slow emulation,
    and it asks the *current* device (cuda:0, creating a context there) rather than the leased card.
    Asking about ``device`` only keeps the job off cards it does not hold. None on CPU and MPS (no autocast).
    """
    if device.type != "cuda":
        return None
    major, _minor = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16
