"""The analysis on a fake 6-run search: report numbers recomputed from runs.csv, figures, next_search.yaml."""

from __future__ import annotations

import json
import math

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import yaml

from beadseg import paths
from beadseg.analysis import FIGURES
from beadseg.config import load_config, validate
from beadseg.plan import expand_grid
from tests.helpers.fakes import DEMO_RUNS, make_project, run_analysis


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("demo"), DEMO_RUNS)
    run_analysis(root)
    return root


def _report(root):
    return (root / paths.report_file()).read_text()


def test_top_table_matches_runs_csv(demo):
    runs = pd.read_csv(demo / paths.runs_table())
    text = _report(demo)
    top_k = load_config(demo / "params.yaml").analysis.top_k
    expected = runs.sort_values("best_val_jaccard", ascending=False).head(top_k)
    for rank, row in enumerate(expected.itertuples(), 1):
        line = (f"| {rank} | {row.run_id} | {row.best_val_jaccard:.4f} | {row.final_val_jaccard:.4f} | "
                f"{100 * (row.best_val_jaccard - row.final_val_jaccard) / row.best_val_jaccard:.1f} % | "
                f"{row.full_val_jaccard:.4f} | {row.best_epoch} | {row.epochs_run} |")
        assert line in text, line
    assert f"## Top {top_k} runs" in text


def test_loss_statistics_match_runs_csv(demo):
    runs = pd.read_csv(demo / paths.runs_table())
    text = _report(demo)
    for loss, g in runs.groupby("loss"):
        s = g["best_val_jaccard"]
        std = f"{s.std(ddof=1):.4f}" if len(s) > 1 else "n/a"
        line = f"| {loss} | {len(s)} | {s.mean():.4f} | {std} | {s.max():.4f} |"
        assert line in text, line
    assert "focal ran only once (std n/a)" in text and "not evidence" in text
    # statistical summary
    s = runs["best_val_jaccard"]
    assert f"mean ± std over runs: {s.mean():.4f} ± {s.std(ddof=1):.4f}" in text
    assert "Mann–Whitney" in text and "| combined | dice | 3 | 2 |" in text


def test_every_section_and_figure_is_in_the_report(demo):
    text = _report(demo)
    for section in ("Executive summary", "Top 5 runs", "Hyperparameter impact", "Learning curves", "Loss comparison",
                    "Convergence and efficiency", "Resolution comparison", "Recommendations", "Statistical summary"):
        assert f"## {section}" in text
    for name in FIGURES:
        assert f"](figures/{name})" in text
    assert text.count("*Best (dark)") == 1


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_a_non_blank_png(demo, name):
    path = demo / paths.FIGURES_DIR / name
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert float(np.std(img[..., :3])) > 0.05


def test_analysis_numbers(demo):
    numbers = json.loads((demo / paths.REPORT_DIR / "analysis_numbers.json").read_text())
    assert numbers["fig6"]["modulation_pt_0.9"] == pytest.approx(0.01)
    per = numbers["fig7"]["per_size"]
    assert set(per) == {"32", "64"}
    for p in per.values():
        assert sum(p["pixel_share"].values()) == pytest.approx(1.0)
        for variant in ("no_focal_term", "focal", "dice", "combined"):
            assert sum(p["gradients"][variant]["share"].values()) == pytest.approx(1.0)
        amp = p["gradients"]["focal"]["share"]["boundary"] / p["gradients"]["no_focal_term"]["share"]["boundary"]
        assert p["boundary_amplification"] == pytest.approx(amp)
        assert math.isfinite(p["imbalance_background_to_boundary_without_focal"])
        assert p["model_run"] == ("t32_combined_lr1e-3" if p["tile_size"] == 32 else "t64_combined_lr1e-3")
    math_md = (demo / paths.REPORT_DIR / "MATHEMATICAL_ANALYSIS_SUMMARY.md").read_text()
    assert "L_dice" in math_md and "L_focal" in math_md and f"{per['32']['boundary_amplification']:.2f}×" in math_md


def test_next_search_is_a_usable_grid(demo):
    spec = yaml.safe_load((demo / paths.REPORT_DIR / "next_search.yaml").read_text())
    table = expand_grid(spec)
    assert 1 <= len(table) <= 30
    params = yaml.safe_load((demo / "params.yaml").read_text())
    params["runs"] = table
    validate(params)
    complete = (demo / paths.REPORT_DIR / "ANALYSIS_COMPLETE.md").read_text()
    assert "KiB" in complete and "## Key findings" in complete and "## Next steps" in complete
