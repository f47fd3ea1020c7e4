"""Shared by the GPU-leasing tests: every test starts without the user's device settings."""

from __future__ import annotations

import pytest

ENV_VARS = ("BEADSEG_FAKE_GPUS", "BEADSEG_LOCK_DIR", "BEADSEG_GPU_WAIT", "BEADSEG_JOBS_PER_GPU", "BEADSEG_DEVICE",
            "CUDA_VISIBLE_DEVICES")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autouse in every module that imports it: no BEADSEG_* / CUDA_VISIBLE_DEVICES of the user leak in."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
