"""Degraded searches produce an honest report: one run, one loss, a diverged run, no second tile size."""

from __future__ import annotations

import pytest

from beadseg import paths
from beadseg.analysis import FIGURES
from tests.helpers.fakes import make_project, run_analysis

ONE_RUN = {"only": {"tile_size": 32, "best": 0.5, "final": 0.48, "best_epoch": 6, "epochs_run": 10}}
ONE_LOSS = {
    "a": {"lr": 1e-3, "best": 0.5, "final": 0.5, "best_epoch": 4, "epochs_run": 8},
    "b": {"lr": 3e-4, "best": 0.45, "final": 0.45, "best_epoch": 5, "epochs_run": 9},
    "c": {"lr": 1e-3, "tile_size": 64, "best": 0.40, "final": 0.40, "best_epoch": 5, "epochs_run": 9},
}
DIVERGED = {
    "good": {"lr": 1e-3, "loss": "dice", "best": 0.5, "final": 0.5, "best_epoch": 4, "epochs_run": 8},
    "bad": {"lr": 1e-1, "loss": "dice", "best": 0.0, "final": 0.0, "best_epoch": 0, "epochs_run": 0,
            "status": "diverged", "full": None},
    "mid": {"lr": 3e-4, "loss": "focal", "best": 0.3, "final": 0.3, "best_epoch": 5, "epochs_run": 9},
}
NO_LARGE = {
    "d": {"loss": "dice", "best": 0.5, "final": 0.5, "best_epoch": 4, "epochs_run": 8},
    "f": {"loss": "focal", "best": 0.45, "final": 0.45, "best_epoch": 5, "epochs_run": 9},
}


@pytest.mark.parametrize("runs, sizes, phrases", [
    (ONE_RUN, (32,), ["**Only one run.**", "no ranking", "only one loss type (combined) was run",
                      "Only 32 px tiles were searched"]),
    (ONE_LOSS, (32, 64), ["**All runs used the same loss (combined).**", "no loss comparison is possible"]),
    (DIVERGED, (32,), ["**1 run(s) diverged**", "- **bad** (diverged)", "Avoid the learning rates that diverged",
                       "left out (not results): bad (diverged)", "worst (mid, 0.3000, early_stopped)"]),
    (NO_LARGE, (32,), ["**Only one tile size (32 px) was searched:**", "there is no resolution comparison"]),
], ids=["one_run", "one_loss", "diverged", "no_large_size"])
def test_degraded_search_reports_honestly(tmp_path, runs, sizes, phrases):
    root = make_project(tmp_path, runs, sizes=sizes)
    run_analysis(root)
    text = (root / paths.report_file()).read_text()
    for phrase in phrases:
        assert phrase in text or phrase in (root / paths.REPORT_DIR / "ANALYSIS_COMPLETE.md").read_text(), phrase
    for name in FIGURES:
        assert (root / paths.FIGURES_DIR / name).stat().st_size > 5000
    assert " nan " not in text.lower() and "| nan |" not in text.lower()
