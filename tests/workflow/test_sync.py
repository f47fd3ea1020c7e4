"""beadseg sync with the real snakemake and dvc."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from beadseg import sync
from beadseg.errors import BeadsegError
from tests.helpers.workflow import Recorder


@pytest.mark.integration
def test_to_dvc_refuses_a_fresh_project_with_real_snakemake(tmp_path: Path, wf,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root = wf.make_project(tmp_path / "p")
    rec = Recorder(sync._run)  # the real one, recording
    monkeypatch.setattr(sync, "_run", rec)
    with pytest.raises(BeadsegError, match=r"Snakemake still has \d+ job\(s\) to run \(.*train\[run=t64_dice\]"):
        sync.to_dvc(root)
    assert not rec.ran("dvc", "commit") and not rec.ran_flag("snakemake", "--touch")
    assert not (root / "dvc.lock").exists()
    assert wf.run(["git", "status", "--porcelain"], root).stdout == ""  # nothing written that git would see
    proc = wf.run([sys.executable, "-m", "beadseg.sync", "to-dvc"], root, check=False)  # and on the command line
    assert proc.returncode == 2 and "Snakemake still has" in proc.stderr
    assert not (root / "dvc.lock").exists()

