"""Is a trained run a result at all? Degenerate-run detection and the likely reason (pure functions).

A run is **degenerate** when its best model, on the full validation images, is no better than a
trivial prediction, or produces maps that carry no information:

* its pixel Jaccard is within ``margin`` of predicting every pixel background or every pixel bead;
* its probability map is nearly constant (standard deviation over all pixels below ``min_prob_std``);
* it finds no bead at all correctly (bead F1 = 0) although the validation images contain beads.

Such a run is still written (metrics, model, history) but gets status ``degenerate``, is never named
best, and the report says why. :func:`likely_causes` turns the run's history and settings into the
plain reason a user can act on ("only 5 optimizer steps", "early stopping while val loss still fell").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from beadseg.metrics import jaccard_from_counts

JACCARD_MARGIN = 0.02  # absolute Jaccard a run must gain over the better trivial prediction
MIN_PROB_STD = 0.02  # below this the probability map is "nearly constant"
MIN_STEPS = 200  # fewer optimizer steps than this rarely trains a U-Net from scratch
TINY_LR = 1e-5


def trivial_scores(masks: Iterable[np.ndarray]) -> dict[str, float]:
    """Pooled pixel Jaccard of predicting all background and all bead, and the pooled bead fraction."""
    fg = total = 0
    for mask in masks:
        m = np.asarray(mask) > 0
        fg += int(np.count_nonzero(m))
        total += int(m.size)
    return {
        "all_background_jaccard": jaccard_from_counts(0, 0, fg),
        "all_foreground_jaccard": jaccard_from_counts(fg, total - fg, 0),
        "foreground_fraction": fg / total if total else 0.0,
    }


def probability_spread(probabilities: Iterable[np.ndarray]) -> float:
    """Standard deviation of the predicted probabilities over all pixels of all images."""
    n, s, s2 = 0, 0.0, 0.0
    for prob in probabilities:
        p = np.asarray(prob, dtype=np.float64)
        n += p.size
        s += float(p.sum())
        s2 += float(np.square(p).sum())
    if n == 0:
        return 0.0
    mean = s / n
    return math.sqrt(max(0.0, s2 / n - mean * mean))


def degenerate_reasons(scores: Mapping[str, Any], trivial: Mapping[str, float], prob_std: float,
                       margin: float = JACCARD_MARGIN, min_prob_std: float = MIN_PROB_STD) -> list[str]:
    """Why a run's full-image scores are no result ([] when they are one).

    ``scores`` holds ``full_val_jaccard``, ``bead_f1`` and ``bead_n_true`` (from
    :func:`beadseg.evaluate.score_predictions`); ``trivial`` is :func:`trivial_scores` of the same masks.
    """
    reasons = []
    jac = float(scores.get("full_val_jaccard") or 0.0)
    bg, fg = float(trivial["all_background_jaccard"]), float(trivial["all_foreground_jaccard"])
    best_trivial, name = (fg, "every pixel bead") if fg >= bg else (bg, "every pixel background")
    if bg < 1.0 and jac <= best_trivial + margin:  # bg == 1: no beads to find, Jaccard cannot judge (fingerprint warns)
        reasons.append(f"full-image Jaccard {jac:.3f} is no better than predicting {name} ({best_trivial:.3f})")
    if prob_std < min_prob_std:
        reasons.append(f"the probability map is nearly constant (std {prob_std:.3f} over all pixels)")
    if int(scores.get("bead_n_true") or 0) > 0 and float(scores.get("bead_f1") or 0.0) == 0.0:
        reasons.append("no bead was found correctly (bead F1 0)")
    return reasons


def likely_causes(history: Sequence[Mapping[str, Any]], optimizer_steps: int, lr: float, steps_per_epoch: int,
                  stop_status: str, min_steps: int = MIN_STEPS) -> list[str]:
    """What in a run's training most likely made it learn nothing, as actionable phrases."""
    causes = []
    if optimizer_steps < min_steps:
        causes.append(f"only {optimizer_steps} optimizer steps ({steps_per_epoch} per epoch x {len(history)} "
                      f"epochs, where a U-Net usually needs {min_steps}+): raise steps_per_epoch, max_epochs or patience")
    val = [float(h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if stop_status == "early_stopped" and len(val) >= 2 and val[-1] <= min(val[:-1]):
        causes.append("early stopping ended it while the validation loss was still falling: raise patience")
    if lr < TINY_LR:
        causes.append(f"learning rate {lr:g} is too small to move the weights: try 1e-4 to 3e-3")
    train = [float(h["train_loss"]) for h in history if h.get("train_loss") is not None]
    if len(train) >= 2 and train[-1] >= 0.95 * train[0] and lr >= TINY_LR:
        causes.append(f"the training loss did not fall ({train[0]:.3f} -> {train[-1]:.3f}): check the masks "
                      "match the images, or lower the learning rate")
    return causes
