"""REPORT.md, written from runs.csv / summary.json (every number traceable to them)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from beadseg import paths
from beadseg.analysis.aggregate import load_runs
from beadseg.config import Config
from beadseg.fsutil import write_text

RANK_COLUMNS = ["rank", "run_id", "best_val_jaccard", "final_val_jaccard", "full_val_jaccard", "best_epoch",
                "epochs_run", "status", "tile_size", "loss", "lr", "batch_size", "dropout"]


def markdown_table(frame: pd.DataFrame) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2g}"
        return str(v)

    head = "| " + " | ".join(frame.columns) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body])


def write_report(cfg: Config, root: Path = Path(".")) -> Path:
    runs = load_runs(root)
    summary = json.loads((root / paths.summary_json()).read_text())
    cols = [c for c in RANK_COLUMNS if c in runs]
    best = runs.iloc[0]
    text = "\n".join([
        f"# {cfg.analysis.title}",
        "",
        f"{summary['n_runs']} runs. Best: **{best['run_id']}** with val Jaccard {best['best_val_jaccard']:.4f} "
        f"(epoch {int(best['best_epoch'])}).",
        "",
        "## Ranking",
        "",
        markdown_table(runs[cols]),
        "",
        "## Learning curves",
        "",
        "![Learning curves of the best and worst run](fig3_learning_curves.png)",
        "",
    ])
    target = root / paths.report_file()
    write_text(target, text)
    return target
