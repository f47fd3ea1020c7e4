"""The whole analysis on a fake search with the demo's confound (issue 20): measure computes the matched
effects once, and fig2, REPORT.md, ANALYSIS_COMPLETE.md and next_search.yaml all show those numbers."""

from __future__ import annotations

import json

import matplotlib.image as mpimg
import pytest
import yaml

from beadseg import paths
from beadseg.analysis import effects
from tests.helpers.fakes import analysed_project, report_section

# lr 3e-4 only with combined; batch_size 1 only with 64 px tiles. combined wins every matched comparison.
CONFOUND = {
    "t32_combined_lr3e-3": {"tile_size": 32, "loss": "combined", "lr": 3e-3, "best": 0.70},
    "t32_dice_lr3e-3": {"tile_size": 32, "loss": "dice", "lr": 3e-3, "best": 0.66},
    "t32_focal_lr3e-3": {"tile_size": 32, "loss": "focal", "lr": 3e-3, "best": 0.62},
    "t32_combined_lr3e-4": {"tile_size": 32, "loss": "combined", "lr": 3e-4, "best": 0.30},
    "t64_combined_lr3e-3_bs1": {"tile_size": 64, "loss": "combined", "lr": 3e-3, "batch_size": 1, "best": 0.72,
                                "full": 0.70},
    "t64_dice_lr3e-3_bs1": {"tile_size": 64, "loss": "dice", "lr": 3e-3, "batch_size": 1, "best": 0.68,
                            "full": 0.66},
    "t32_dice_lr3e-2": {"tile_size": 32, "loss": "dice", "lr": 3e-2, "best": 0.0, "final": 0.0, "best_epoch": 0,
                        "epochs_run": 2, "status": "diverged"},
}


@pytest.fixture(scope="module")
def confounded(tmp_path_factory):
    return analysed_project(tmp_path_factory.mktemp("confound"), CONFOUND)


def _numbers(root):
    return json.loads((root / paths.analysis_numbers_file()).read_text())


def test_measure_writes_the_matched_effects(confounded):
    eff = _numbers(confounded)["effects"]
    assert eff["left_out"] == ["t32_dice_lr3e-2 (diverged)"] and eff["n_results"] == 6
    loss = effects.setting(eff, "loss")
    means = {(c["label_a"], c["label_b"]): (c["n_pairs"], c["mean"]) for c in loss["contrasts"]}
    assert means[("combined", "dice")] == (2, pytest.approx(-0.04))
    assert means[("combined", "focal")] == (1, pytest.approx(-0.08))
    assert [c["label_b"] + " − " + c["label_a"] for c in effects.setting(eff, "lr")["contrasts"]] == ["3e-3 − 3e-4"]
    assert effects.setting(eff, "tile_size")["aliased_with"] == ["batch_size"]
    assert effects.setting(eff, "batch_size")["aliased_with"] == ["tile_size"]


def test_report_and_summary_write_the_same_numbers(confounded):
    report = (confounded / paths.report_file()).read_text()
    impact = report_section(report, "Hyperparameter impact")
    assert "| loss | dice − combined | 2 | -0.0400 |" in impact
    assert "**confounded with" in impact and ("+0.0200 (2 pairs)" in impact or "-0.0200 (2 pairs)" in impact)
    assert "left out (not results): t32_dice_lr3e-2 (diverged)" in impact
    assert "| tile_size |" not in impact
    complete = (confounded / paths.REPORT_DIR / "ANALYSIS_COMPLETE.md").read_text()
    assert "loss dice − combined -0.0400 (2 pairs)" in complete
    assert "not separable (always changed together): batch_size & tile_size" in complete
    assert "Per loss (mean" not in complete
    recs = report_section(report, "Recommendations")
    assert "rule `confounded`" in recs and "batch_size and tile_size always changed together" in recs


def test_next_search_keeps_the_loss_that_did_best_in_matched_pairs(confounded):
    spec = yaml.safe_load((confounded / paths.REPORT_DIR / "next_search.yaml").read_text())
    assert spec["grid"]["loss"] == ["combined", "dice"]


def test_fig2_is_drawn(confounded):
    img = mpimg.imread(confounded / paths.FIGURES_DIR / "fig2_hyperparameter_impact.png")
    assert img.shape[0] > 300 and img.shape[1] > 600
