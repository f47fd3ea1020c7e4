"""``## Search rounds``: how a successive-halving search spent its budget (or one line for a plain grid)."""

from __future__ import annotations

from typing import Any

from beadseg.analysis import FIGURES
from beadseg.analysis.text import figure, fmt, pct

GRID_CAPTION = ("Each run's full-image val Jaccard against the optimizer steps it took (a grid: every configuration "
                "trained to its own end).")


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f} min"


def _rung_cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return "—"
    if point["score"] is None:
        return point["status"]
    text = fmt(point["score"])
    return text if "not a result" not in point["status"] else f"{text} ({point['status']})"


def ladder_table(ladder: dict[str, Any]) -> list[str]:
    """One row per configuration: its score after each rung, and where it stopped."""
    budgets = ladder["budgets"]
    last = len(budgets) - 1
    head = ["configuration", *[f"rung {k} ({b} ep)" for k, b in enumerate(budgets)], "outcome"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    order = sorted(ladder["configs"], key=lambda c: (-ladder["reached"][c],
                                                     -(ladder["ladders"][c][-1]["score"] or -1.0)))
    for cid in order:
        points = {p["rung"]: p for p in ladder["ladders"][cid]}
        reached = ladder["reached"][cid]
        if ladder["winner"] == points[reached]["run_id"]:
            outcome = "**winner**"
        elif reached < len(ladder["budgets"]) - 1 and (ladder["finished"] or reached < ladder["rungs_planned"] - 1):
            outcome = f"stopped after rung {reached}"
        else:
            outcome = "reached the full budget" if reached == last else "running"
        rows.append("| " + " | ".join([f"`{cid}`", *[_rung_cell(points.get(k)) for k in range(len(budgets))],
                                        outcome]) + " |")
    return rows


def compute_lines(ladder: dict[str, Any]) -> list[str]:
    """The compute the search used against the full grid at the full budget."""
    full_epochs = ladder["budgets"][-1]
    return [f"The search used **{ladder['steps_used']} optimizer steps, {pct(ladder['steps_fraction'])} of the "
            f"{ladder['steps_full_grid']}** that training all {len(ladder['configs'])} configurations for "
            f"{full_epochs} epochs would take (an upper bound for the grid: early stopping can end its runs sooner). "
            f"Training time summed over its runs (parallel runs overlap in wall time): "
            f"{_minutes(ladder['wall_used_s'])}, against an estimated {_minutes(ladder['wall_full_grid_est_s'])} for "
            "the full grid at the search's own seconds per step."]


def section_search(numbers: dict[str, Any]) -> list[str]:
    """The section for a halving search; a short pointer for a plain grid."""
    ladder = numbers.get("search")
    if not ladder:
        return ["## Budget", "", "A plain grid: every run trained to its own end. `beadseg search run` "
                "(successive halving, docs/search.md) would stop weak configurations after a short rung and spend "
                "the steps on the strong ones.", "", figure(FIGURES[7], GRID_CAPTION), ""]
    budgets = " → ".join(str(b) for b in ladder["budgets"])
    state = ("" if ladder["finished"] else
             f" **The search is not finished** ({ladder['rungs_planned']} of {len(ladder['budgets'])} rungs planned): "
             "the table shows the rungs so far, and no winner is named.")
    winner = (f" The winner, `{ladder['winner']}`, reached full-image val Jaccard {fmt(ladder['winner_score'])}."
              if ladder["winner"] else "")
    return (["## Search rounds (successive halving)", "",
             f"Search `{ladder['name']}`: {len(ladder['configs'])} configurations, η = {ladder['eta']}, rungs of "
             f"{budgets} epochs (cumulative). After each rung the best 1/η by full-image val Jaccard continued from "
             f"their best weights; degenerate and diverged runs never continue, replicates go together.{state}"
             f"{winner}", ""]
            + ladder_table(ladder) + [""] + compute_lines(ladder)
            + ["", "A configuration stopped at an early rung was judged on a short training: a slow starter can be "
               "dropped. The rung-0 budget (`halving.min_epochs`) sets how short.", "",
               figure(FIGURES[7], "Left: each configuration's score at each rung it reached (cross: stopped there; "
                      "thick: the winner). Right: optimizer steps of the search vs the full grid."), ""])
