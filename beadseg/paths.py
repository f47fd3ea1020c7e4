"""Every output path of the pipeline, in one place (the Snakefile and dvc.yaml spell the same paths;
tests/unit/test_workflow_paths.py checks they agree)."""

from __future__ import annotations

from pathlib import Path

SPLIT_DIR = Path("data/split")
TILES_DIR = Path("data/tiles")
RUNS_DIR = Path("results/runs")
SUMMARY_DIR = Path("results/summary")
REPORT_DIR = Path("results/report")
FIGURES_DIR = REPORT_DIR / "figures"


def split_file(split: str) -> Path:
    """Normalised full images + masks of one split (``train``, ``val`` or ``test``)."""
    return SPLIT_DIR / f"{split}.npz"


def split_manifest() -> Path:
    return SPLIT_DIR / "split.json"


def fingerprint_file() -> Path:
    """The data set fingerprint (sizes, intensities, objects, tiles, per-run steps, warnings)."""
    return SUMMARY_DIR / "fingerprint.json"


def baseline_file() -> Path:
    """Scores of the classical threshold baseline on the full validation images."""
    return SUMMARY_DIR / "baseline.json"


def tiles_dir(size: int) -> Path:
    return TILES_DIR / f"t{size}"


def tiles_file(size: int, split: str) -> Path:
    return tiles_dir(size) / f"{split}.npz"


def tiles_manifest(size: int) -> Path:
    return tiles_dir(size) / "manifest.csv"


def run_dir(run_id: str) -> Path:
    return RUNS_DIR / run_id


def model_file(run_id: str) -> Path:
    return run_dir(run_id) / "model.pt"


def history_file(run_id: str) -> Path:
    return run_dir(run_id) / "history.csv"


def train_info_file(run_id: str) -> Path:
    """How training went (stop reason, epochs, steps, device, timings, settings): written by train."""
    return run_dir(run_id) / "train.json"


def metrics_file(run_id: str) -> Path:
    """The run's scores on the full val and test images: written by evaluate."""
    return run_dir(run_id) / "metrics.json"


def evaluation_info_file(run_id: str) -> Path:
    """How the run was scored (status, degenerate reasons, settings, object method, image counts): written by
    evaluate beside metrics.json, which holds the scores only (what `dvc metrics diff` compares)."""
    return run_dir(run_id) / "evaluation.json"


def per_image_file(run_id: str) -> Path:
    """One row per evaluated image (split, pixel and bead scores): written by evaluate."""
    return run_dir(run_id) / "per_image.csv"


def predictions_file(run_id: str) -> Path:
    """Each val and test image's predicted beads (instance labels, :mod:`beadseg.predictions_file`): written by
    evaluate, drawn by the figures step (fig9)."""
    return run_dir(run_id) / "predictions.npz"


def checkpoint_file(run_id: str) -> Path:
    """Last finished epoch, for resuming; not a pipeline output, removed when the run completes."""
    return run_dir(run_id) / "resume" / "last.pt"


def runs_table() -> Path:
    return SUMMARY_DIR / "runs.csv"


def summary_json() -> Path:
    return SUMMARY_DIR / "summary.json"


def histories_table() -> Path:
    return SUMMARY_DIR / "histories.csv"


def report_file() -> Path:
    return REPORT_DIR / "REPORT.md"


def math_summary_file() -> Path:
    return REPORT_DIR / "MATHEMATICAL_ANALYSIS_SUMMARY.md"


def complete_file() -> Path:
    return REPORT_DIR / "ANALYSIS_COMPLETE.md"


def next_search_file() -> Path:
    """The proposed next search, a grid file for ``beadseg plan``."""
    return REPORT_DIR / "next_search.yaml"


def analysis_numbers_file() -> Path:
    """Numbers the figures step measures (validation data and models) for the report."""
    return REPORT_DIR / "analysis_numbers.json"


def figure_file(name: str) -> Path:
    return FIGURES_DIR / name
