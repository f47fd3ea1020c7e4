"""Analysis figures, one function per figure, all drawn from runs.csv / histories.csv."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from beadseg import paths  # noqa: E402
from beadseg.analysis.aggregate import load_runs  # noqa: E402
from beadseg.config import Config  # noqa: E402
from beadseg.fsutil import atomic_path  # noqa: E402


def save(fig: plt.Figure, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return target


def fig_learning_curves(runs: pd.DataFrame, histories: pd.DataFrame, target: Path) -> Path:
    """Best and worst run: loss and val Jaccard per epoch, best epoch marked."""
    picks = [("best", runs.iloc[0]), ("worst", runs.iloc[-1])] if len(runs) > 1 else [("only", runs.iloc[0])]
    fig, axes = plt.subplots(len(picks), 2, figsize=(11, 3.6 * len(picks)), squeeze=False)
    for row, (label, run) in zip(axes, picks):
        h = histories[histories["run_id"] == run["run_id"]]
        row[0].plot(h["epoch"], h["train_loss"], label="train loss")
        row[0].plot(h["epoch"], h["val_loss"], label="val loss")
        row[0].set(xlabel="epoch", ylabel="loss", title=f"{label}: {run['run_id']} — loss")
        row[1].plot(h["epoch"], h["val_jaccard"], color="tab:green", label="val Jaccard")
        row[1].axvline(run["best_epoch"], color="grey", ls="--", label=f"best epoch {int(run['best_epoch'])}")
        row[1].set(xlabel="epoch", ylabel="val Jaccard (IoU)", ylim=(0, 1),
                   title=f"{label}: {run['run_id']} — val Jaccard (best {run['best_val_jaccard']:.3f})")
        for ax in row:
            ax.legend(loc="best", fontsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, target)


def make_figures(cfg: Config, root: Path = Path(".")) -> list[Path]:
    runs = load_runs(root)
    histories = pd.read_csv(root / paths.histories_table())
    out = root / paths.REPORT_DIR
    return [fig_learning_curves(runs, histories, out / "fig3_learning_curves.png")]
