"""What this machine offers a process, portably (Linux, macOS, Windows); no torch import."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use: its affinity set where the OS has one (Linux), else every core."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)
