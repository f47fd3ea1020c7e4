"""The evaluate step: score one run's best model on the full validation and test images.

Every run's model predicts the same full images by stitched sliding-window inference, so models
trained on 256 and 512 tiles are scored on equal pixels. Two splits, two roles:

* **val** chose things: the best epoch of each run (early stopping) and the ranking of runs. Its
  scores are optimistic for the chosen run.
* **test** chose nothing: it is scored for every run so the report can give the chosen run's score on
  images no decision saw.

Pixel scores are pooled over the images of a split (Jaccard / Dice from summed counts). Bead scores
match predicted objects (:func:`beadseg.instances.label_objects`, ``evaluation.objects``) one-to-one
against the true beads: the user's instance labels when the masks carry them, else the connected
components of the 0/1 mask. AP at each IoU threshold is TP / (TP + FP + FN) pooled over images (the
StarDist / Cellpose definition). Outputs: ``metrics.json`` (scores only: what ``dvc metrics diff``
compares), ``evaluation.json`` (status, degenerate reasons, settings, image counts), ``per_image.csv`` and
``predictions.npz`` (each image's predicted beads, :mod:`beadseg.predictions_file`: what the figures draw).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from beadseg import paths
from beadseg.checkpoint import ModelFile, load_model_file
from beadseg.config import Config, EvaluationConfig
from beadseg.errors import DataError
from beadseg.fsutil import json_safe, write_json, write_text
from beadseg.inference import predict_full
from beadseg.metrics import confusion, dice_from_counts, jaccard_from_counts
from beadseg.predictions_file import write_predictions
from beadseg.quality import degenerate_reasons, likely_causes, probability_spread, trivial_scores
from beadseg.scoring import check_threshold, for_evaluation, label_prediction, mask_probability

# Generic score names (what score_images returns) -> the names of the val and the test split in
# metrics.json / runs.csv. Val keeps the names the analysis has always read.
_VAL_NAMES = {"jaccard": "full_val_jaccard", "dice": "full_val_dice", "n_images": "n_val_images"}
_OBJECT_NAMES = {"n_true": "bead_n_true", "n_pred": "bead_n_pred", "count_error": "bead_count_error",
                 "count_error_rel": "bead_count_error_rel", "precision": "bead_precision", "recall": "bead_recall",
                 "f1": "bead_f1", "mean_diameter_error_px": "bead_mean_diameter_error_px",
                 "mean_matched_iou": "bead_mean_matched_iou", "merges": "bead_merges", "splits": "bead_splits"}
#: What evaluate writes to evaluation.json rather than metrics.json: everything that is not a score.
INFO_KEYS = ("run_id", "status", "stop_reason", "degenerate_reasons", "likely_causes", "chosen_on", "evaluation",
             "objects", "objects_chosen", "postprocessing", "eval_seconds", "n_val_images", "n_test_images")
#: The splits the evaluate step scores: val chooses (epochs, post-processing, ranking), test chooses nothing.
SPLITS = ("val", "test")
PER_IMAGE_FIELDS = ("split", "image", "jaccard", "dice", "n_true", "n_pred", "count_error", "precision", "recall",
                    "f1", "mean_matched_iou", "merges", "splits")


def split_outputs(result: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(scores for metrics.json, everything else for evaluation.json) of an evaluation result."""
    return ({k: v for k, v in result.items() if k not in INFO_KEYS},
            {k: v for k, v in result.items() if k in INFO_KEYS})


def ap_key(threshold: float) -> str:
    """``ap_50`` for IoU 0.5 (the key convention of :mod:`beadseg.instances`)."""
    return f"ap_{round(threshold * 100):02d}"


def split_names(scores: Mapping[str, Any], split: str) -> dict[str, Any]:
    """Rename generic scores for one split: ``full_val_jaccard``/``bead_f1`` for val, ``test_jaccard``/
    ``test_bead_f1`` for test (``ap_50`` / ``test_ap_50``)."""
    out = {}
    for key, value in scores.items():
        name = _VAL_NAMES.get(key) or _OBJECT_NAMES.get(key, key)
        if split == "test":
            name = "n_test_images" if key == "n_images" else f"test_{_OBJECT_NAMES.get(key, key)}"
        out[name] = value
    return out


def predict_images(model: torch.nn.Module, images: Mapping[str, np.ndarray], tile: int, overlap: float,
                   batch_size: int, device: torch.device, amp_dtype: torch.dtype | None = None,
                   channels_last: bool = False) -> dict[str, np.ndarray]:
    """Prediction per image stem (images already normalised): the bead probability map (H, W), or every output
    channel (C, H, W) of a network with more outputs than the mask (``train.target``)."""
    out = {}
    for stem, image in images.items():
        maps = predict_full(model, image, tile=tile, overlap=overlap, batch_size=max(1, batch_size), device=device,
                            amp_dtype=amp_dtype, channels_last=channels_last and device.type == "cuda",
                            all_channels=True)
        out[stem] = maps[0] if maps.shape[0] == 1 else maps
    return out


def score_images(probabilities: Mapping[str, np.ndarray], truths: Mapping[str, np.ndarray],
                 evaluation: EvaluationConfig,
                 labels: Mapping[str, np.ndarray] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pooled scores (generic names) and one row per image of one split.

    ``truths`` maps each stem to its ground truth: an instance label image, or a 0/1 mask. ``labels``: the
    predicted beads when the caller has them already (:func:`predicted_labels` of the same predictions and
    settings); else they are labelled here.
    """
    from beadseg.instances import object_scores, pool_scores, true_objects
    from beadseg.scoring import OBJECT_METHODS

    if evaluation.objects not in OBJECT_METHODS:
        raise ValueError(f"score_images needs a resolved object method, got {evaluation.objects!r} "
                         "(resolve 'auto' with beadseg.scoring.for_evaluation first)")
    if labels is None:
        labels = predicted_labels(probabilities, evaluation)
    tp = fp = fn = 0
    per_image: list[dict[str, Any]] = []
    object_rows: list[dict[str, Any]] = []
    for stem in sorted(probabilities):
        prediction, truth = probabilities[stem], truths[stem]  # (H, W), or (C, H, W) with more outputs
        a, b, c = confusion(mask_probability(prediction) > evaluation.threshold, np.asarray(truth) > 0)
        tp, fp, fn = tp + a, fp + b, fn + c
        objects = object_scores(true_objects(truth), labels[stem], evaluation.iou_thresholds)
        object_rows.append(objects)
        per_image.append({"image": stem, "jaccard": jaccard_from_counts(a, b, c), "dice": dice_from_counts(a, b, c),
                          **{k: objects[k] for k in PER_IMAGE_FIELDS[4:]},
                          **{ap_key(t): objects[ap_key(t)] for t in evaluation.iou_thresholds}})
    pooled = pool_scores(object_rows, evaluation.iou_thresholds)
    scores = {"jaccard": jaccard_from_counts(tp, fp, fn) if probabilities else math.nan,
              "dice": dice_from_counts(tp, fp, fn) if probabilities else math.nan,
              **{k: pooled[k] for k in _OBJECT_NAMES if k in pooled},
              **{ap_key(t): pooled[ap_key(t)] for t in evaluation.iou_thresholds},
              "n_images": len(probabilities)}
    return scores, per_image


def predicted_labels(probabilities: Mapping[str, np.ndarray], evaluation: EvaluationConfig) -> dict[str, np.ndarray]:
    """Each image's predicted beads, labelled exactly as :func:`score_images` labels them (same call, same
    settings): what predictions.npz keeps so the figures can draw matched / missed / false beads."""
    return {stem: label_prediction(p, evaluation.threshold, evaluation.objects, evaluation.min_bead_area,
                                   evaluation.seed_distance, evaluation.core) for stem, p in probabilities.items()}


def score_predictions(probabilities: Mapping[str, np.ndarray], truths: Mapping[str, np.ndarray],
                      evaluation: EvaluationConfig | None = None, split: str = "val") -> dict[str, Any]:
    """Pooled scores of one split under that split's names (see :func:`split_names`)."""
    scores, _ = score_images(probabilities, truths, evaluation or EvaluationConfig(objects="components"))
    return split_names(scores, split)


def per_image_csv(rows: list[dict[str, Any]], thresholds: tuple[float, ...]) -> str:
    fields = [*PER_IMAGE_FIELDS, *(ap_key(t) for t in thresholds)]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


# --------------------------------------------------------------------------- the step


def read_train_info(run_id: str, root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``train.json`` and the history rows of a trained run."""
    info_path, history_path = root / paths.train_info_file(run_id), root / paths.history_file(run_id)
    for p in (info_path, history_path):
        if not p.is_file():
            raise DataError(f"'{p}' not found: train run '{run_id}' first (beadseg train --run {run_id})")
    info = json.loads(info_path.read_text())
    with open(history_path, newline="") as fh:
        history = [{k: (float(v) if v not in ("", None) else None) for k, v in row.items()} for row in csv.DictReader(fh)]
    return info, history


def _check_normalization(model: ModelFile, root: Path) -> None:
    from beadseg.data.prepare import split_normalization

    split = split_normalization(root)
    recorded = model.normalization.to_dict()
    if any(abs(float(split[k]) - float(recorded[k])) > 1e-9 for k in ("low_pct", "high_pct")):
        raise DataError(f"'{model.path}' was trained on images normalised to percentiles "
                        f"{recorded['low_pct']}-{recorded['high_pct']}, but the split now uses "
                        f"{split['low_pct']}-{split['high_pct']}: retrain run '{model.run_id}' "
                        f"(beadseg train --run {model.run_id})")


def evaluate_run(config: Config, run_id: str, threads: int = 1, root: Path = Path("."),
                 progress: bool = True) -> dict[str, Any]:
    """Score run ``run_id``'s best model on the full val and test images; write metrics.json and per_image.csv."""
    from beadseg.runlock import run_lock

    config.run(run_id)  # an unknown id is a ConfigError naming the valid ones
    with run_lock(run_id, f"beadseg evaluate --run {run_id}", root):
        return _evaluate_run(config, run_id, threads, root, progress)


def _evaluate_run(config: Config, run_id: str, threads: int, root: Path, progress: bool) -> dict[str, Any]:
    from beadseg.data.prepare import load_split, load_split_objects
    from beadseg.data.provenance import check_split
    from beadseg.devices import amp_dtype, lease_device, set_threads

    evaluation = config.evaluation
    t0 = time.perf_counter()
    info, history = read_train_info(run_id, root)
    check_split(config.data, root, step=f"evaluate[{run_id}]")
    stop_reason = str(info.get("stop_reason") or "completed")
    metrics: dict[str, Any] = {
        "run_id": run_id, "status": stop_reason, "stop_reason": stop_reason, "degenerate_reasons": [],
        "likely_causes": [], "best_val_jaccard": info.get("best_val_jaccard"), "best_epoch": info.get("best_epoch"),
        "chosen_on": "val", "evaluation": evaluation.to_dict(),
    }
    rows: list[dict[str, Any]] = []
    labels: dict[str, dict[str, np.ndarray]] = {}  # predictions.npz: none for a run that was not scored
    if stop_reason != "diverged" and info.get("best_epoch"):
        model_file = load_model_file(root / paths.model_file(run_id))
        _check_normalization(model_file, root)
        set_threads(threads)
        check_threshold(evaluation, model_file)  # before any inference: the threshold the best epoch was picked at
        pairs = {split: load_split(split, root) for split in SPLITS}
        probs: dict[str, dict[str, np.ndarray]] = {}
        with lease_device() as lease:  # the card is held for inference only, not for the object scoring below
            model = model_file.build().to(lease.device)
            cfg = model_file.config
            amp = amp_dtype(lease.device) if cfg.amp else None
            for split in SPLITS:
                probs[split] = predict_images(model, {s: im for s, (im, _) in pairs[split].items()},
                                              model_file.tile_size, evaluation.overlap, cfg.batch_size, lease.device,
                                              amp, cfg.channels_last)
            del model
        truths = {split: load_split_objects(split, root) for split in SPLITS}
        post, tried = for_evaluation(config.evaluation, model_file, probs["val"], truths["val"])  # val only
        evaluation = post.scoring(evaluation)
        metrics["postprocessing"] = {**post.to_dict(), "chosen": post.source, "candidates": tried}
        metrics["objects"] = evaluation.objects
        metrics["objects_chosen"] = ("auto: on this run's validation predictions" if config.evaluation.objects == "auto"
                                     else "set")
        labels = {split: predicted_labels(probs[split], evaluation) for split in SPLITS}  # once: scored and kept
        for split in SPLITS:
            scores, split_rows = score_images(probs[split], truths[split], evaluation, labels[split])
            rows += [{"split": split, **r} for r in split_rows]
            metrics.update(split_names(scores, split))
        metrics["prob_std"] = probability_spread(mask_probability(p) for p in probs["val"].values())
        metrics["degenerate_reasons"] = degenerate_reasons(
            metrics, trivial_scores(m for _, m in pairs["val"].values()), metrics["prob_std"])
        if metrics["degenerate_reasons"]:
            metrics["status"] = "degenerate"
            metrics["likely_causes"] = likely_causes(history, int(info.get("optimizer_steps") or 0),
                                                     float(model_file.config.lr), model_file.config.steps_per_epoch,
                                                     stop_reason)
    metrics["eval_seconds"] = time.perf_counter() - t0
    metrics = json_safe(metrics)
    write_text(root / paths.per_image_file(run_id), per_image_csv(rows, evaluation.iou_thresholds))
    write_predictions(root / paths.predictions_file(run_id), labels, evaluation.iou_thresholds)
    scores, run_info = split_outputs(metrics)
    write_json(root / paths.evaluation_info_file(run_id), run_info)
    write_json(root / paths.metrics_file(run_id), scores)
    if progress:
        _report(run_id, metrics)
    return metrics


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def _report(run_id: str, m: Mapping[str, Any]) -> None:
    if m["degenerate_reasons"]:
        print(f"evaluate[{run_id}]: warning: degenerate run: {'; '.join(m['degenerate_reasons'])}"
              + (f" (likely: {'; '.join(m['likely_causes'])})" if m["likely_causes"] else ""), file=sys.stderr)
    test = (f"test Jaccard {_fmt(m.get('test_jaccard'))}, bead F1 {_fmt(m.get('test_bead_f1'))} "
            f"on {m.get('n_test_images')} image(s)" if m.get("n_test_images") else "no test images")
    print(f"evaluate[{run_id}]: {m['status']}; val Jaccard {_fmt(m.get('full_val_jaccard'))}, bead F1 "
          f"{_fmt(m.get('bead_f1'))}, AP50 {_fmt(m.get('ap_50'))} on {m.get('n_val_images', 0)} image(s); {test}",
          file=sys.stderr)
