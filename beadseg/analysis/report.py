"""``beadseg report``: REPORT.md, MATHEMATICAL_ANALYSIS_SUMMARY.md, ANALYSIS_COMPLETE.md and next_search.yaml.

This module reads the inputs and puts the documents together; each section is written by its own module,
which only formats numbers it reads:

* runs.csv / histories.csv (statistics through :mod:`beadseg.analysis.stats`, recommendations through
  :mod:`beadseg.analysis.recommend`): :mod:`~beadseg.analysis.report_summary` (executive summary),
  :mod:`~beadseg.analysis.report_runs` (top runs, curves, convergence, statistics, recommendations),
  :mod:`~beadseg.analysis.report_loss`, :mod:`~beadseg.analysis.report_resolution`;
* baseline.json and fingerprint.json: :mod:`~beadseg.analysis.sections` (failure, baseline, data);
* data/split/split.json: :mod:`~beadseg.analysis.splits` (which images chose and which are held out);
* results/report/analysis_numbers.json, which ``beadseg measure`` wrote from the validation data and the
  models: :mod:`~beadseg.analysis.report_math` (loss mathematics), the resolution section and
  :mod:`~beadseg.analysis.report_impact` (hyperparameter effects on matched configurations, which the
  recommendations use too);
* ANALYSIS_COMPLETE.md: :mod:`~beadseg.analysis.report_complete`.

The best run is chosen on val; its test scores are shown next to the val ones, never used to rank.
Only runs that are results are ranked, named best or counted in a statistic; degenerate and diverged
runs are named with their reasons and likely causes. When no run is a result, REPORT.md says that the
search failed, names no best configuration and keeps only the failure, the data, the baseline and
what to change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from beadseg import paths
from beadseg.analysis import FIGURES, predictions, recommend, sections, splits, stats
from beadseg.analysis.aggregate import load_runs
from beadseg.analysis.inputs import load_baseline, load_fingerprint
from beadseg.analysis.numbers import effect_numbers, load_numbers
from beadseg.analysis.report_complete import complete_text
from beadseg.analysis.report_impact import section_impact
from beadseg.analysis.report_loss import section_loss_doc
from beadseg.analysis.report_math import math_text, section_math
from beadseg.analysis.report_resolution import resolution_section
from beadseg.analysis.report_runs import (
    fig1_caption,
    section_convergence,
    section_curves,
    section_recommendations,
    section_statistics,
    section_top,
)
from beadseg.analysis.report_search import section_search
from beadseg.analysis.report_summary import executive_summary, intro
from beadseg.analysis.text import COMPLETE, MATH_SUMMARY, NEXT_SEARCH, figure
from beadseg.config import Config
from beadseg.fsutil import write_text


def failed_body(runs: pd.DataFrame, cfg: Config, baseline: dict[str, Any], recs: list[recommend.Recommendation],
                next_runs: int) -> list[str]:
    """What follows the Data section when no run is a result: the reference figure and what to change."""
    return (["## Runs", "", "No ranking, hyperparameter impact, learning curves, loss comparison, convergence, "
             "resolution or statistics: none of the runs is a result, so each would compare noise.", "",
             figure(FIGURES[0], fig1_caption(runs, cfg, baseline))]
            + section_recommendations(recs, next_runs, failed=True))


def results_body(runs: pd.DataFrame, histories: pd.DataFrame, numbers: dict[str, Any], cfg: Config,
                 baseline: dict[str, Any], recs: list[recommend.Recommendation], next_runs: int,
                 mask_kind: str | None = None, prediction_lines: list[str] | None = None) -> list[str]:
    """Every section about the runs that are results (each says which runs it left out). ``prediction_lines``:
    fig9 and the best run's worst-AP image (:func:`beadseg.analysis.predictions.report_lines`)."""
    test = splits.has_test(runs, baseline)
    return (section_top(runs, cfg, baseline) + splits.split_scores_section(runs, cfg, test)
            + splits.object_section(runs, mask_kind, test) + (prediction_lines or [])
            + section_impact(runs, effect_numbers(numbers))
            + section_curves(runs, histories)
            + section_loss_doc(runs, cfg) + section_math(numbers) + section_convergence(runs, cfg)
            + section_search(numbers)
            + resolution_section(runs, numbers)
            + section_recommendations(recs, next_runs, failed=False) + section_statistics(runs, cfg))


def report_text(runs: pd.DataFrame, histories: pd.DataFrame, numbers: dict[str, Any], cfg: Config,
                recs: list[recommend.Recommendation], next_runs: int, baseline: dict[str, Any] | None = None,
                fingerprint: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None,
                prediction_lines: list[str] | None = None) -> str:
    """REPORT.md: the opening, which numbers are which, the data, then the results (or the failure)."""
    baseline, fingerprint, manifest = baseline or {}, fingerprint or {}, manifest or {}
    L = intro(cfg) + executive_summary(runs, cfg, baseline, fingerprint, manifest)
    L += splits.which_numbers_section(runs, baseline, manifest, fingerprint)
    L += sections.data_section(fingerprint, runs)
    if recommend.search_failed(runs):
        L += failed_body(runs, cfg, baseline, recs, next_runs)
    else:
        L += results_body(runs, histories, numbers, cfg, baseline, recs, next_runs,
                          splits.mask_kind(manifest, fingerprint), prediction_lines)
    return "\n".join(L) + "\n"


def write_report(cfg: Config, root: Path = Path(".")) -> Path:
    """Read every input, write the four documents of the report folder; returns REPORT.md's path."""
    runs = load_runs(root)
    histories = pd.read_csv(root / paths.histories_table())
    numbers = load_numbers(root)
    baseline, fingerprint, manifest = load_baseline(root), load_fingerprint(root), splits.load_manifest(root)
    recs = recommend.recommendations(runs, cfg, effect_numbers(numbers))
    spec = recommend.next_search(runs, cfg, recs, effect_numbers(numbers))
    table = recommend.check_next_search(spec, root)
    rdir = root / paths.REPORT_DIR
    failed = recommend.search_failed(runs)
    write_text(rdir / NEXT_SEARCH, recommend.render_next_search(spec, recs, len(table), failed=failed))
    write_text(rdir / MATH_SUMMARY, math_text(numbers, runs))
    target = root / paths.report_file()
    shown = None if failed else predictions.report_lines(
        predictions.worst_image(str(stats.valid_runs(runs).iloc[0]["run_id"]), root), FIGURES[8])
    write_text(target, report_text(runs, histories, numbers, cfg, recs, len(table), baseline, fingerprint, manifest,
                                   shown))
    write_text(rdir / COMPLETE, complete_text(root, runs, recs, numbers, baseline))
    return target
