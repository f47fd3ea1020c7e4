"""Degenerate-run detection: trivial references, probability spread, reasons and causes (known answers)."""

from __future__ import annotations

import numpy as np
import pytest

from beadseg.quality import MIN_STEPS, degenerate_reasons, likely_causes, probability_spread, trivial_scores


def test_trivial_scores_known_answers():
    a = np.zeros((10, 10), np.uint8)
    a[:5, :5] = 1  # 25 bead pixels of 100
    b = np.zeros((10, 10), np.uint8)  # no beads: pooled 25 of 200
    t = trivial_scores([a, b])
    assert t["all_foreground_jaccard"] == pytest.approx(25 / 200)
    assert t["all_background_jaccard"] == 0.0
    assert t["foreground_fraction"] == pytest.approx(0.125)
    assert trivial_scores([b])["all_background_jaccard"] == 1.0  # nothing to find, nothing found


def test_probability_spread_known_answers():
    assert probability_spread([np.full((4, 4), 0.3)]) == pytest.approx(0.0, abs=1e-12)
    half = np.zeros((2, 2))
    half[0] = 1.0
    assert probability_spread([half]) == pytest.approx(0.5)
    assert probability_spread([np.zeros((2, 2)), np.ones((2, 2))]) == pytest.approx(0.5)  # pooled over images


TRIVIAL = {"all_background_jaccard": 0.0, "all_foreground_jaccard": 0.25}


def test_a_model_no_better_than_all_foreground_is_degenerate():
    reasons = degenerate_reasons({"full_val_jaccard": 0.252, "bead_f1": 0.0, "bead_n_true": 12}, TRIVIAL, 0.3)
    assert any("no better than predicting every pixel bead (0.250)" in r for r in reasons)
    assert any("bead F1 0" in r for r in reasons)


def test_a_nearly_constant_map_is_degenerate():
    reasons = degenerate_reasons({"full_val_jaccard": 0.6, "bead_f1": 0.5, "bead_n_true": 12}, TRIVIAL, 0.01)
    assert reasons == ["the probability map is nearly constant (std 0.010 over all pixels)"]


def test_a_good_model_has_no_reasons():
    assert degenerate_reasons({"full_val_jaccard": 0.8, "bead_f1": 0.9, "bead_n_true": 12}, TRIVIAL, 0.4) == []


def test_bead_f1_zero_without_beads_is_not_a_reason():
    trivial = {"all_background_jaccard": 1.0, "all_foreground_jaccard": 0.0}
    assert degenerate_reasons({"full_val_jaccard": 1.0, "bead_f1": 0.0, "bead_n_true": 0}, trivial, 0.1,
                              margin=0.0) == []


def _history(val_losses, train_losses=None):
    train_losses = train_losses or [1.0 - 0.1 * i for i in range(len(val_losses))]
    return [{"val_loss": v, "train_loss": t} for v, t in zip(val_losses, train_losses)]


def test_likely_causes_names_too_few_steps_and_early_stopping_while_improving():
    causes = likely_causes(_history([0.9, 0.8, 0.7]), optimizer_steps=3, lr=1e-3, steps_per_epoch=1,
                           stop_status="early_stopped")
    assert causes[0].startswith("only 3 optimizer steps (1 per epoch x 3 epochs")
    assert any("still falling" in c for c in causes)
    assert str(MIN_STEPS) in causes[0]


def test_likely_causes_names_a_tiny_learning_rate_and_a_flat_loss():
    causes = likely_causes(_history([0.5, 0.5], [0.7, 0.7]), optimizer_steps=1000, lr=1e-9, steps_per_epoch=500,
                           stop_status="completed")
    assert causes == ["learning rate 1e-09 is too small to move the weights: try 1e-4 to 3e-3"]
    flat = likely_causes(_history([0.5, 0.5], [0.7, 0.69]), optimizer_steps=1000, lr=1e-3, steps_per_epoch=500,
                         stop_status="completed")
    assert len(flat) == 1 and flat[0].startswith("the training loss did not fall (0.700 -> 0.690)")
