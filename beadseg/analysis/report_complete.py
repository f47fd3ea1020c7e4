"""ANALYSIS_COMPLETE.md: the files of the analysis with their sizes, the key findings and the next steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from beadseg import paths
from beadseg.analysis import FIGURES, recommend, sections, splits, stats
from beadseg.analysis.numbers import effect_numbers, per_size
from beadseg.analysis.report_impact import findings_line
from beadseg.analysis.report_math import fig7_sentence
from beadseg.analysis.report_summary import caveats
from beadseg.analysis.text import fmt


def key_findings(runs: pd.DataFrame, numbers: dict[str, Any], baseline: dict[str, Any]) -> list[str]:
    """ANALYSIS_COMPLETE.md's findings: about the runs that are results only (none when the search failed)."""
    if recommend.search_failed(runs):
        return [f"- **{sections.FAILED}**: all {len(runs)} run(s) are degenerate or diverged; no finding about a "
                "configuration, loss or tile size can be drawn. Reasons per run: REPORT.md, Executive summary."]
    valid, bad = stats.valid_runs(runs), stats.invalid_runs(runs)
    L = [f"- {c}" for c in caveats(runs)]
    if not bad.empty:
        L.append(f"- Not results (left out of every finding): "
                 f"{', '.join(f'{r.run_id} ({r.status})' for r in bad.itertuples())}.")
    best = valid.iloc[0]
    test = splits.has_test(runs, baseline)
    on_test = (f"; test (held out, the number to quote) {fmt(best.get('test_jaccard'))} vs baseline "
               f"{fmt(baseline.get('test_jaccard'))}" if test else "; no test set, so every score is optimistic")
    L.append(f"- Best run {best['run_id']} (chosen on val): best val Jaccard {fmt(best['best_val_jaccard'])} (epoch "
             f"{int(best['best_epoch'])}), full-image val {fmt(best.get('full_val_jaccard'))} vs threshold baseline "
             f"({baseline.get('method')}) {fmt(baseline.get('full_val_jaccard'))}{on_test}.")
    L.append(f"- {findings_line(effect_numbers(numbers))}")
    ts = stats.tile_size_stats(valid)
    L.append("- Per tile size (best full-image Jaccard): "
             + ", ".join(f"{r.tile_size} px {fmt(r.best_full)}" for r in ts.itertuples()))
    per = per_size(numbers)
    if per:
        L.append("- Gradient analysis: " + fig7_sentence(per))
    return L


def report_files() -> list[Path]:
    """The files of the analysis, as ANALYSIS_COMPLETE.md lists them (relative to the project)."""
    return [paths.report_file(), paths.math_summary_file(), paths.next_search_file(), paths.analysis_numbers_file(),
            *[paths.figure_file(f) for f in FIGURES], paths.runs_table(), paths.histories_table(),
            paths.summary_json(), paths.baseline_file(), paths.fingerprint_file()]


def files_table(root: Path) -> list[str]:
    """One row per file of the analysis with its size (or 'missing'), and the total."""
    L = ["| file | size |", "|---|---|"]
    total = 0
    for f in report_files():
        p = root / f
        size = p.stat().st_size if p.is_file() else None
        total += size or 0
        L.append(f"| `{f}` | {'missing' if size is None else f'{size / 1024:.1f} KiB'} |")
    return L + [f"| total | {total / 1024:.1f} KiB |"]


def complete_text(root: Path, runs: pd.DataFrame, recs: list[recommend.Recommendation], numbers: dict[str, Any],
                  baseline: dict[str, Any] | None = None) -> str:
    """ANALYSIS_COMPLETE.md: files, key findings, next steps."""
    rdir = root / paths.REPORT_DIR
    folder = rdir.relative_to(root) if rdir.is_relative_to(root) else rdir
    L = ["# Analysis complete", "", f"{len(runs)} run(s) analysed; report folder `{paths.REPORT_DIR}`.", "",
         "## Files", "", *files_table(root), "", "## Key findings", ""]
    L += key_findings(runs, numbers, baseline or {})
    L += ["", "## Next steps", "", *[f"- {r.title}: {r.action}" for r in recs],
          f"- Plan the next search: `beadseg plan {paths.next_search_file()} --write`, then run the pipeline.",
          "", f"Start with [REPORT.md](REPORT.md). Folder: `{folder}`.", ""]
    return "\n".join(L)
