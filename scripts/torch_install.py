#!/usr/bin/env python3
"""Install the right build of PyTorch for this machine (called by `make install`; standard library only).

* A machine whose ``nvidia-smi -L`` works (an NVIDIA driver) gets pip's default build: CUDA on Linux.
* Any other machine asks for the CPU build: ``torch==2.13.0`` (``TORCH_SPEC`` overrides), with
  ``TORCH_INDEX_URL`` as an extra index when you set it to a wheel index that serves CPU builds (PyTorch
  publishes one; its address is in PyTorch's installation guide). An index that cannot be reached is left out
  with a note, so a CPU wheel already at hand (pip's find-links or a local index, as on our CI) still installs
  at once. Before installing, pip's dry run is read: if it would pull the CUDA libraries (``nvidia-*``
  packages, Linux's default build from the main index) on a machine without a driver, nothing is installed
  and one line says to set ``TORCH_INDEX_URL`` (or ``TORCH_ALLOW_CUDA=1`` to take them anyway).

``--print`` prints the decision and the pip command without installing. Exit status 2 on a refusal.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CPU_SPEC = "torch==2.13.0"
GPU_SPEC = "torch>=2.2"


@dataclass(frozen=True)
class Plan:
    machine: str  # "gpu" | "cpu"
    spec: str
    index_url: str | None  # extra index for the CPU build, None for none
    note: str

    def pip_args(self) -> list[str]:
        extra = ["--extra-index-url", self.index_url] if self.index_url else []
        return ["install", *extra, self.spec]


def has_nvidia_driver(which: Callable[[str], str | None] = shutil.which,
                      run: Callable[[Sequence[str]], int] | None = None) -> bool:
    """True when ``nvidia-smi`` is on PATH and ``nvidia-smi -L`` succeeds (a driver is loaded)."""
    exe = which("nvidia-smi")
    if exe is None:
        return False
    if run is None:
        def run(cmd: Sequence[str]) -> int:
            try:
                return subprocess.run(list(cmd), capture_output=True, timeout=20, check=False).returncode
            except (OSError, subprocess.TimeoutExpired):
                return 1
    return run([exe, "-L"]) == 0


def reachable(url: str, timeout: float = 5.0) -> bool:
    """True when ``url`` answers at all (any HTTP status) within ``timeout`` seconds; file: URLs must exist."""
    if url.startswith("file:"):
        return os.path.exists(url[len("file://"):] if url.startswith("file://") else url[len("file:"):])
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True  # it answered
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return True


def plan(gpu: bool, spec: str | None, index_url: str | None,
         is_reachable: Callable[[str], bool] = reachable) -> Plan:
    """What to install: pure apart from the reachability probe it is given."""
    index_url = (index_url or "").strip() or None
    if gpu:
        return Plan("gpu", spec or GPU_SPEC, None, "NVIDIA driver found (nvidia-smi -L): pip's default build (CUDA)")
    spec = spec or CPU_SPEC
    if index_url is None:
        return Plan("cpu", spec, None, "no NVIDIA driver: the CPU build (no TORCH_INDEX_URL set: pip's indexes and "
                                      "find-links must offer it)")
    if not is_reachable(index_url):
        return Plan("cpu", spec, None, f"no NVIDIA driver: the CPU build; TORCH_INDEX_URL {index_url} cannot be "
                                      "reached, so it is left out (a CPU wheel at hand is used)")
    return Plan("cpu", spec, index_url, f"no NVIDIA driver: the CPU build, with TORCH_INDEX_URL {index_url} as an "
                                        "extra index")


def cuda_packages(report: dict) -> list[str]:
    """The CUDA runtime packages (``nvidia-*``) that a ``pip install --dry-run --report`` report would install."""
    names = [str(item.get("metadata", {}).get("name", "")) for item in report.get("install", [])]
    return sorted(n for n in names if n.lower().replace("_", "-").startswith("nvidia-"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    only_print = "--print" in args
    python = os.environ.get("TORCH_PYTHON", sys.executable)
    the_plan = plan(has_nvidia_driver(), os.environ.get("TORCH_SPEC") or None, os.environ.get("TORCH_INDEX_URL"))
    pip = [python, "-m", "pip", *the_plan.pip_args()]
    print(f"torch: {the_plan.note}", file=sys.stderr)
    print(f"torch: {shlex.join(pip)}", file=sys.stderr)
    if only_print:
        print(the_plan.machine, the_plan.spec, the_plan.index_url or "-")
        return 0
    if the_plan.machine == "cpu" and os.environ.get("TORCH_ALLOW_CUDA") != "1":
        dry = subprocess.run([*pip, "--dry-run", "--quiet", "--report", "-"], capture_output=True, text=True,
                             check=False)
        if dry.returncode != 0:
            sys.stderr.write(dry.stderr)
            return dry.returncode
        cuda = cuda_packages(json.loads(dry.stdout or "{}"))
        if cuda:
            print(f"torch: refusing: this machine has no NVIDIA driver, but pip would install the CUDA build "
                  f"({', '.join(cuda[:3])}{', ...' if len(cuda) > 3 else ''}, gigabytes): set TORCH_INDEX_URL to a "
                  "wheel index that serves CPU builds of torch (see README, Quickstart), or TORCH_ALLOW_CUDA=1 to "
                  "take the CUDA build", file=sys.stderr)
            return 2
    return subprocess.run(pip, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
