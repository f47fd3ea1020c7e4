"""scripts/torch_install.py (what `make install` runs): the CPU build without an NVIDIA driver, pip's default with one,
an unreachable CPU index left out, and a refusal when pip would pull the CUDA libraries on a machine without a driver.
Machines are stood in for by a fake `nvidia-smi` on PATH (and none), and the registry's CUDA build by a fake pip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "torch_install.py"
sys.path.insert(0, str(SCRIPT.parent))
import torch_install  # noqa: E402  (a script, not a package module)


def _bin(tmp_path: Path, name: str, body: str) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    exe = folder / name
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return folder


def _run(path_dirs: list[Path], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_")}
    clean["PATH"] = os.pathsep.join(str(p) for p in path_dirs)  # no system folder: no real nvidia-smi either
    return subprocess.run([sys.executable, str(SCRIPT), *args], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120, check=False)


def test_without_nvidia_smi_the_cpu_build_is_asked_for(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run([empty], "--print")
    assert proc.returncode == 0 and proc.stdout.split() == ["cpu", "torch==2.13.0", "-"]
    assert "no NVIDIA driver" in proc.stderr


def test_with_a_working_nvidia_smi_pip_keeps_its_default_cuda_build(tmp_path: Path) -> None:
    fake = _bin(tmp_path, "nvidia-smi", 'echo "GPU 0: NVIDIA H100 (UUID: GPU-0)"')
    proc = _run([fake], "--print")
    assert proc.returncode == 0 and proc.stdout.split() == ["gpu", "torch>=2.2", "-"]
    assert "--extra-index-url" not in proc.stderr and "--index-url" not in proc.stderr
    # an index set for CPU machines is not used on a GPU machine
    assert _run([fake], "--print", TORCH_INDEX_URL="file:///").stdout.split() == ["gpu", "torch>=2.2", "-"]


def test_an_nvidia_smi_without_a_driver_counts_as_no_gpu(tmp_path: Path) -> None:
    broken = _bin(tmp_path, "nvidia-smi", 'echo "NVIDIA-SMI has failed because it couldn\'t communicate" >&2; exit 9')
    assert _run([broken], "--print").stdout.split() == ["cpu", "torch==2.13.0", "-"]


def test_the_cpu_index_is_an_extra_index_when_reachable_and_left_out_when_not(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    index = tmp_path / "index"
    index.mkdir()
    here = _run([empty], "--print", TORCH_INDEX_URL=index.as_uri())
    assert here.stdout.split() == ["cpu", "torch==2.13.0", index.as_uri()]
    assert f"--extra-index-url {index.as_uri()} torch==2.13.0" in here.stderr
    gone = _run([empty], "--print", TORCH_INDEX_URL="http://127.0.0.1:9/simple")  # nothing listens on port 9
    assert gone.stdout.split() == ["cpu", "torch==2.13.0", "-"] and "cannot be reached" in gone.stderr
    spec = _run([empty], "--print", TORCH_SPEC="torch==2.12.1")
    assert spec.stdout.split() == ["cpu", "torch==2.12.1", "-"]


def test_plan_and_cuda_packages_known_answers() -> None:
    p = torch_install.plan(False, None, "https://wheels.invalid/cpu", is_reachable=lambda url: True)
    assert p.pip_args() == ["install", "--extra-index-url", "https://wheels.invalid/cpu", "torch==2.13.0"]
    assert torch_install.plan(True, None, None).pip_args() == ["install", "torch>=2.2"]
    report = {"install": [{"metadata": {"name": "torch", "version": "2.13.0"}},
                          {"metadata": {"name": "nvidia_cublas_cu12"}}, {"metadata": {"name": "nvidia-nccl-cu12"}},
                          {"metadata": {"name": "sympy"}}]}
    assert torch_install.cuda_packages(report) == ["nvidia-nccl-cu12", "nvidia_cublas_cu12"]
    assert torch_install.cuda_packages({"install": [{"metadata": {"name": "torch"}}]}) == []


@pytest.mark.parametrize("allow", ["", "1"])
def test_a_cpu_machine_refuses_a_cuda_build_unless_allowed(tmp_path: Path, allow: str) -> None:
    # pip stood in for: its dry run would install torch with the CUDA libraries (what the main index gives Linux)
    calls = tmp_path / "calls.txt"
    report = json.dumps({"install": [{"metadata": {"name": "torch"}}, {"metadata": {"name": "nvidia-cudnn-cu12"}}]})
    fake_python = _bin(tmp_path, "python", f'echo "$*" >> {calls}\ncase "$*" in *--dry-run*) echo \'{report}\';; esac')
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run([empty], TORCH_PYTHON=str(fake_python / "python"), TORCH_ALLOW_CUDA=allow)
    lines = calls.read_text().splitlines()
    if allow:
        assert proc.returncode == 0 and lines == ["-m pip install torch==2.13.0"]
    else:
        assert proc.returncode == 2 and "set TORCH_INDEX_URL" in proc.stderr and "nvidia-cudnn-cu12" in proc.stderr
        assert lines == ["-m pip install torch==2.13.0 --dry-run --quiet --report -"]  # nothing installed


def test_make_install_runs_the_script_with_the_users_settings() -> None:
    proc = subprocess.run(["make", "-n", "-B", "install", "TORCH_INDEX_URL=file:///x", "VENV=/nonexistent-venv"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_INDEX_URL='file:///x'" in proc.stdout and "scripts/torch_install.py" in proc.stdout
