"""Builders of small fake search projects for the analysis tests (no tests here).

A fake project has params.yaml, data/split/{train,val,test}.npz (small images of discs; the test split
may be empty), split.json and the tiles of every tile size (data/tiles/t<size>/, cut by ``beadseg tile``'s
own function), per run results/runs/<id>/{train.json, metrics.json, history.csv, model.pt, per_image.csv,
predictions.npz} with made-up but consistent numbers (train.json as ``beadseg train`` writes it, metrics.json
with the val and test scores ``beadseg evaluate`` writes; per_image.csv and predictions.npz scored and
labelled by the evaluate step's own functions from a made-up prediction, :func:`fake_predictions`) and a
real (untrained, seeded) tiny U-Net saved with
:func:`beadseg.checkpoint.save_model_file`, and results/summary/{baseline.json, fingerprint.json}, so
every analysis step runs on it in well under a second.

A run spec with ``"degenerate": True`` gets status ``degenerate`` and the reasons and likely causes
that :mod:`beadseg.quality` gives for its made-up numbers (full-image Jaccard, prob_std, history,
optimizer steps), exactly as ``train_run`` would write them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from beadseg import paths
from beadseg.checkpoint import Normalization, make_model, save_model_file
from beadseg.config import Config, TrainConfig, load_config
from beadseg.data.fingerprint import fingerprint_warnings, image_stats, object_stats, run_budget, tile_count
from beadseg.data.prepare import run_tile
from beadseg.evaluate import ap_key, split_outputs
from beadseg.quality import degenerate_reasons, likely_causes, trivial_scores
from beadseg.train import HISTORY_FIELDS, history_csv

TRAIN_DEFAULTS = {"depth": 3, "base_channels": 4, "lr": 1e-3, "batch_size": 4, "max_epochs": 10, "patience": 4,
                  "loss": "combined", "tile_size": 32, "dropout": 0.1}


def disc_image(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for _ in range(6):
        cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(3, 7)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    image = 0.2 + 0.6 * mask + rng.normal(0, 0.05, mask.shape)
    return image.astype(np.float16), mask.astype(np.uint8)


def history_rows(best: float, final: float, best_epoch: int, epochs_run: int, flat: bool = False,
                 steps_per_epoch: int = 50) -> list[dict[str, Any]]:
    """Made-up epochs: val Jaccard rises to ``best`` at ``best_epoch`` then moves to ``final``; the
    training loss falls as 1 / (1 + epoch), or stays at 0.7 with ``flat``."""
    rows = []
    for e in range(1, epochs_run + 1):
        if e <= best_epoch:
            j = best * e / best_epoch
        else:
            j = best + (final - best) * (e - best_epoch) / max(1, epochs_run - best_epoch)
        rows.append({"epoch": e, "train_loss": 0.7 if flat else 1.0 / (1 + e),
                     "val_loss": 1.1 / (1 + e) + 0.01 * max(0, e - best_epoch),
                     "val_jaccard": float(j), "val_dice": float(2 * j / (1 + j)), "lr": 1e-3, "seconds": 1.5,
                     "optimizer_steps": steps_per_epoch * e})
    return rows


OUTCOME_KEYS = {"best", "final", "best_epoch", "epochs_run", "status", "full", "degenerate", "prob_std", "flat_loss",
                "test", "test_f1", "merges", "splits"}
NORMALIZATION = Normalization(1.0, 99.8)
NO_TEST_NOTE = "data.test_fraction is 0"
STEM_PREFIX = {"train": "t", "val": "v", "test": "x"}


def val_masks(root: Path) -> list[np.ndarray]:
    with np.load(root / paths.split_file("val")) as z:
        return [z[k] for k in z.files if k.startswith("mask__")]


def quality_verdict(spec: dict[str, Any], tc: TrainConfig, full: float | None, rows: list[dict[str, Any]],
                    steps: int, stop: str, masks: list[np.ndarray]) -> tuple[str, list[str], list[str]]:
    """(status, degenerate_reasons, likely_causes) the real quality checks give for a fake run."""
    if stop == "diverged" or not spec.get("degenerate"):
        return stop, [], []
    scores = {"full_val_jaccard": full, "bead_f1": 0.0, "bead_n_true": 6}
    reasons = degenerate_reasons(scores, trivial_scores(masks), float(spec.get("prob_std", 0.001)))
    causes = likely_causes(rows, steps, tc.lr, tc.steps_per_epoch, stop)
    return "degenerate", reasons, causes


def fake_test_scores(jaccard: float | None, f1: float, n_test: int, thresholds: tuple[float, ...],
                merges: int = 2, splits: int = 1) -> dict[str, Any]:
    """The test_* keys of metrics.json / baseline.json (every score null and the counts 0 without test images)."""
    if not n_test:
        jaccard, f1, merges, splits = None, None, 0, 0
    ap = {f"test_{ap_key(t)}": None if f1 is None else f1 * (1 - 0.2 * i) for i, t in enumerate(thresholds)}
    return {"test_jaccard": jaccard, "test_dice": None if jaccard is None else 2 * jaccard / (1 + jaccard),
            "test_bead_n_true": 6 * n_test, "test_bead_n_pred": 6 * n_test, "test_bead_count_error": 0,
            "test_bead_count_error_rel": 0.0 if n_test else None, "test_bead_precision": f1, "test_bead_recall": f1,
            "test_bead_f1": f1, "test_bead_mean_diameter_error_px": None if f1 is None else 0.4,
            "test_bead_mean_matched_iou": None if f1 is None else 0.8, "test_bead_merges": merges,
            "test_bead_splits": splits, **ap, "n_test_images": n_test}


def fake_val_scores(jaccard: float | None, f1: float, thresholds: tuple[float, ...], merges: int = 1,
               splits: int = 2) -> dict[str, Any]:
    """The val keys of metrics.json / baseline.json (two validation images)."""
    return {"full_val_jaccard": jaccard, "full_val_dice": None if jaccard is None else 2 * jaccard / (1 + jaccard),
            "bead_n_true": 12, "bead_n_pred": 12, "bead_count_error": 0, "bead_count_error_rel": 0.0,
            "bead_precision": f1, "bead_recall": f1, "bead_f1": f1, "bead_mean_diameter_error_px": 0.5,
            "bead_mean_matched_iou": 0.75, "bead_merges": merges, "bead_splits": splits,
            **{ap_key(t): f1 * (1 - 0.2 * i) for i, t in enumerate(thresholds)}, "n_val_images": 2}


def write_baseline(root: Path, jaccard: float, method: str = "otsu", test_jaccard: float | None = None,
                   n_test: int = 2, thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)) -> dict[str, Any]:
    """results/summary/baseline.json with the trivial scores of the fake validation masks."""
    trivial = trivial_scores(val_masks(root))
    test_jaccard = jaccard - 0.02 if test_jaccard is None else test_jaccard
    baseline = {"method": method, "chosen_on": "train", "n_train_images": 2,
                **fake_val_scores(jaccard, 0.7, thresholds), **fake_test_scores(test_jaccard, 0.65, n_test, thresholds),
                "train_jaccard_by_method": {method: jaccard + 0.01}, "val_jaccard_by_method": {method: jaccard},
                **trivial}
    target = root / paths.baseline_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(baseline))
    return baseline


def _split_stats(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    masks = [m for _, m in pairs] or [np.zeros((1, 1), np.uint8)]  # an empty split: no pixels, no beads
    pooled = object_stats(np.hstack(masks), instance=False)
    return {"n_images": len(pairs), **pooled}


def fake_test_images(image_size: int, n_test: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [disc_image(image_size, 20 + i) for i in range(n_test)]


def write_fingerprint(root: Path, cfg: Config, image_size: int, n_test: int = 2,
                      instance: bool = False) -> dict[str, Any]:
    """results/summary/fingerprint.json built with the real fingerprint helpers from fake train/val/test images."""
    splits = {"train": [disc_image(image_size, 10 + i) for i in range(2)],
              "val": [disc_image(image_size, i) for i in range(2)], "test": fake_test_images(image_size, n_test)}
    images = {f"{STEM_PREFIX[split]}{i}": {"split": split, "shape": list(img.shape), "intensity": image_stats(img),
                                           "mask_dtype": str(mask.dtype), "instance_labels": instance,
                                           "objects": object_stats(mask, instance=False)}
              for split, pairs in splits.items() for i, (img, mask) in enumerate(pairs)}
    tiles = {str(size): {split: sum(tile_count(img.shape, size, cfg.tiling.stride(size), cfg.tiling.small_images)
                                    for img, _ in pairs) for split, pairs in splits.items() if split != "test"}
             for size in cfg.tiling.sizes}
    fp: dict[str, Any] = {
        "images": images, "splits": {split: _split_stats(pairs) for split, pairs in splits.items()},
        "tiling": {"sizes": list(cfg.tiling.sizes), "stride_fraction": cfg.tiling.stride_fraction,
                   "small_images": cfg.tiling.small_images},
        "tiles_per_size": tiles, "runs": {rid: run_budget(tc) for rid, tc in cfg.runs.items()}, "min_steps": 200,
        "test_note": None if n_test else NO_TEST_NOTE}
    fp["warnings"] = fingerprint_warnings(fp)
    target = root / paths.fingerprint_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(fp))
    return fp


def write_splits(root: Path, image_size: int, n_test: int, mask_kind: str) -> None:
    """data/split/{train,val,test}.npz and split.json (the train images are the fingerprint's)."""
    split_dir = root / paths.SPLIT_DIR
    split_dir.mkdir(parents=True, exist_ok=True)
    pairs = {"train": [disc_image(image_size, 10 + i) for i in range(2)],
             "val": [disc_image(image_size, i) for i in range(2)], "test": fake_test_images(image_size, n_test)}
    stems = {split: [f"{STEM_PREFIX[split]}{i}" for i in range(n)] for split, n in
             (("train", 2), ("val", 2), ("test", n_test))}
    for split, items in pairs.items():
        arrays = {}
        for stem, (img, mask) in zip(stems[split], items):
            arrays[f"img__{stem}"], arrays[f"mask__{stem}"] = img, mask
        np.savez(root / paths.split_file(split), **arrays)
    images = {stem: {"split": split, "shape": [image_size, image_size], "mask_kind": mask_kind}
              for split, names in stems.items() for stem in names}
    manifest = {"splits": stems, "images": images, "val_fraction": 0.4, "test_fraction": 0.3 if n_test else 0.0,
                "seed": 0, "test_note": None if n_test else NO_TEST_NOTE, "mask_kind": mask_kind,
                "normalization": NORMALIZATION.to_dict()}
    (root / paths.split_manifest()).write_text(json.dumps(manifest))


def fake_predictions(root: Path, rid: str, thresholds: tuple[float, ...], scored: bool = True) -> None:
    """per_image.csv and predictions.npz as the evaluate step writes them (its own scoring and labelling), for a
    made-up prediction of every val and test image: the true beads less the first, and a false disc in a
    corner. An unscored run gets a header-only csv and a file without images, as the real step writes."""
    from beadseg.config import EvaluationConfig
    from beadseg.evaluate import per_image_csv, predicted_labels, score_images
    from beadseg.instances import true_objects
    from beadseg.predictions_file import write_predictions

    evaluation = EvaluationConfig(objects="components", iou_thresholds=thresholds)
    rows: list[dict[str, Any]] = []
    labels: dict[str, dict[str, np.ndarray]] = {}
    for split in ("val", "test") if scored else ():
        with np.load(root / paths.split_file(split)) as z:
            truths = {k[len("mask__"):]: z[k] for k in z.files if k.startswith("mask__")}
        probs = {}
        for stem, mask in truths.items():
            pred = (true_objects(mask) > 1).astype(np.float32)
            pred[2:8, 2:8] = 1.0
            probs[stem] = pred
        _, split_rows = score_images(probs, truths, evaluation)
        rows += [{"split": split, **r} for r in split_rows]
        labels[split] = predicted_labels(probs, evaluation)
    (root / paths.per_image_file(rid)).write_text(per_image_csv(rows, thresholds))
    write_predictions(root / paths.predictions_file(rid), labels, thresholds)


def fake_run(root: Path, rid: str, spec: dict[str, Any], tc: TrainConfig, masks: list[np.ndarray], n_test: int,
             thresholds: tuple[float, ...]) -> None:
    """train.json, history.csv, metrics.json and model.pt of one fake run."""
    best, final = spec.get("best", 0.5), spec.get("final", spec.get("best", 0.5))
    epochs_run = spec.get("epochs_run", tc.max_epochs)
    best_epoch = spec.get("best_epoch", min(epochs_run, 5))
    stop = spec.get("status", "completed" if epochs_run >= tc.max_epochs else "early_stopped")
    rows = history_rows(best, final, best_epoch, epochs_run, flat=bool(spec.get("flat_loss")),
                        steps_per_epoch=tc.steps_per_epoch)
    (root / paths.run_dir(rid)).mkdir(parents=True, exist_ok=True)
    (root / paths.history_file(rid)).write_text(history_csv(rows) if rows else ",".join(HISTORY_FIELDS) + "\n")
    steps = tc.steps_per_epoch * epochs_run
    info = {"run_id": rid, "stop_reason": stop, "best_val_jaccard": best, "final_val_jaccard": final,
            "best_val_dice": 2 * best / (1 + best), "best_epoch": best_epoch, "epochs_run": epochs_run,
            "optimizer_steps": steps, "effective_batch_size": tc.effective_batch_size, "resumed": False,
            "device": "cpu", "device_name": "cpu", "gpu_id": None, "threads": 1, "sampler": tc.sampler,
            "steps_per_epoch": tc.steps_per_epoch, "train_images": 2, "train_tiles": None, "val_tiles": 8,
            "train_seconds": 1.5 * epochs_run, "wall_seconds": 1.6 * epochs_run + 1, "peak_memory_mb": None,
            "normalization": NORMALIZATION.to_dict(), "beadseg_version": "test", "params": tc.to_dict()}
    (root / paths.train_info_file(rid)).write_text(json.dumps(info))
    metrics: dict[str, Any] = {"run_id": rid, "status": stop, "stop_reason": stop, "degenerate_reasons": [],
                               "likely_causes": [], "best_val_jaccard": best, "best_epoch": best_epoch,
                               "chosen_on": "val", "evaluation": {"iou_thresholds": list(thresholds)}}
    if stop != "diverged" and best_epoch:  # evaluate scores nothing of a diverged run (as the real step)
        full = spec.get("full", best * 0.95)
        status, reasons, causes = quality_verdict(spec, tc, full, rows, steps, stop, masks)
        f1 = 0.0 if status == "degenerate" else 0.8
        test = spec.get("test", None if full is None else max(0.0, full - 0.03))
        metrics.update(status=status, degenerate_reasons=reasons, likely_causes=causes,
                       prob_std=float(spec.get("prob_std", 0.2)),
                       **fake_val_scores(full, f1, thresholds, spec.get("merges", 1), spec.get("splits", 2)),
                       **fake_test_scores(test, spec.get("test_f1", 0.9 * f1), n_test, thresholds,
                                     spec.get("merges", 1) + 1, spec.get("splits", 2) - 1))
    metrics["eval_seconds"] = 0.5
    scores, run_info = split_outputs(metrics)  # as beadseg evaluate writes them
    (root / paths.metrics_file(rid)).write_text(json.dumps(scores))
    (root / paths.evaluation_info_file(rid)).write_text(json.dumps(run_info))
    fake_predictions(root, rid, thresholds, scored=stop != "diverged" and bool(best_epoch))
    torch.manual_seed(len(rid))
    save_model_file(root / paths.model_file(rid), run_id=rid, config=tc, state_dict=make_model(tc).state_dict(),
                    normalization=NORMALIZATION, epoch=best_epoch, best_val_jaccard=best)


def make_project(root: Path, runs: dict[str, dict[str, Any]], sizes: tuple[int, ...] = (32, 64),
                 analysis: dict[str, Any] | None = None, image_size: int = 96, baseline: float = 0.30,
                 train: dict[str, Any] | None = None, test_images: int = 2, baseline_test: float | None = None,
                 mask_kind: str = "binary") -> Path:
    """``runs``: run id -> {training overrides..., and outcome keys best/final/best_epoch/epochs_run/status/full,
    test (test Jaccard; default full - 0.03), test_f1, merges, splits (val counts; test gets merges + 1,
    splits - 1), degenerate (bool), prob_std, flat_loss (bool: the training loss does not fall)};
    ``baseline`` / ``baseline_test``: the threshold baseline's full-image val / test Jaccard (test default
    baseline - 0.02); ``train``: overrides of the fake train defaults; ``test_images``: size of the test
    split (0: no test set, as with data.test_fraction 0); ``mask_kind``: split.json's mask kind."""
    root.mkdir(parents=True, exist_ok=True)
    table = {rid: {k: v for k, v in spec.items() if k not in OUTCOME_KEYS} for rid, spec in runs.items()}
    params = {"tiling": {"sizes": list(sizes), "stride_fraction": 1.0}, "train": {**TRAIN_DEFAULTS, **(train or {})},
              "runs": table, "finetune": {}, "analysis": {"top_k": 5, **(analysis or {})}, "data": {}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_splits(root, image_size, test_images, mask_kind)
    cfg = load_config(root / "params.yaml")
    for size in cfg.tiling.sizes:
        run_tile(cfg.tiling, size, root, progress=False)
    thresholds = tuple(cfg.evaluation.iou_thresholds)
    write_baseline(root, baseline, test_jaccard=baseline_test, n_test=test_images, thresholds=thresholds)
    write_fingerprint(root, cfg, image_size, test_images, instance=mask_kind == "instance")
    masks = val_masks(root)
    for rid, spec in runs.items():
        fake_run(root, rid, spec, cfg.run(rid), masks, test_images, thresholds)
    return root


def run_analysis(root: Path) -> Path:
    """aggregate -> measure -> figures -> report on a project folder; returns the report folder."""
    from beadseg.analysis.aggregate import aggregate
    from beadseg.analysis.figures import make_figures
    from beadseg.analysis.measure import measure
    from beadseg.analysis.report import write_report

    cfg = load_config(root / "params.yaml")
    aggregate(cfg, root)
    measure(cfg, root)
    make_figures(cfg, root)
    write_report(cfg, root)
    return root / paths.REPORT_DIR


DEMO_RUNS = {
    "t32_combined_lr1e-3": {"tile_size": 32, "loss": "combined", "lr": 1e-3, "best": 0.62, "final": 0.50,
                            "best_epoch": 9, "epochs_run": 10},
    "t32_dice_lr1e-3": {"tile_size": 32, "loss": "dice", "lr": 1e-3, "best": 0.55, "final": 0.54,
                        "best_epoch": 4, "epochs_run": 8},
    "t32_focal_lr1e-3": {"tile_size": 32, "loss": "focal", "lr": 1e-3, "best": 0.48, "final": 0.47,
                         "best_epoch": 5, "epochs_run": 9},
    "t32_combined_lr1e-4": {"tile_size": 32, "loss": "combined", "lr": 1e-4, "best": 0.40, "final": 0.40,
                            "best_epoch": 10, "epochs_run": 10},
    "t64_combined_lr1e-3": {"tile_size": 64, "loss": "combined", "lr": 1e-3, "best": 0.45, "final": 0.44,
                            "best_epoch": 6, "epochs_run": 10, "full": 0.41},
    "t64_dice_lr1e-3": {"tile_size": 64, "loss": "dice", "lr": 1e-3, "best": 0.35, "final": 0.30,
                        "best_epoch": 3, "epochs_run": 7, "full": 0.33},
}


def analysed_project(root: Path, runs: dict[str, dict[str, Any]], **kwargs: Any) -> Path:
    """A fake project under ``root`` with the whole analysis run on it (module-scoped fixtures share it)."""
    project = make_project(root, runs, **kwargs)
    run_analysis(project)
    return project


def report_section(text: str, heading: str) -> str:
    """The body of the '## heading' section of a report ('' when absent)."""
    start = text.find(f"## {heading}")
    if start < 0:
        return ""
    end = text.find("\n## ", start + 3)
    return text[start:] if end < 0 else text[start:end]
