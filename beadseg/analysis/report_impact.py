"""REPORT.md's ``## Hyperparameter impact``: each varied setting's effect on matched configurations, the
settings the design cannot separate, and fig2's caption.

It only writes the numbers ``beadseg measure`` computed (:mod:`beadseg.analysis.effects`, key ``effects`` of
the analysis numbers file): fig2 draws the same ones and the recommendations use them.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from beadseg.analysis import FIGURES, effects, sections
from beadseg.analysis.text import figure

MAX_PAIRS_NAMED = 3
MAX_TABLE_ROWS = 12  # per setting, matched comparisons in the table (most pairs first)
MAX_LISTED = 4  # per setting, bullets of comparisons that are not drawn (a TPE search has many values)


def _signed(v: Any) -> str:
    return "n/a" if v is None else f"{float(v):+.4f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _runs(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (+{_plural(len(names) - 1, 'seed')})"


def _pairs_text(pairs: list[dict[str, Any]]) -> str:
    named = [f"{_runs(p['runs_b'])} vs {_runs(p['runs_a'])}" for p in pairs[:MAX_PAIRS_NAMED]]
    return "; ".join(named) + (f"; +{len(pairs) - MAX_PAIRS_NAMED} more" if len(pairs) > MAX_PAIRS_NAMED else "")


def _interval(c: dict[str, Any]) -> str:
    if c["ci_low"] is None:
        return "n/a (1 pair)"
    return f"[{_signed(c['ci_low'])}, {_signed(c['ci_high'])}]"


def matched_table(eff: dict[str, Any]) -> list[str]:
    """One row per matched comparison: setting, b − a, pairs, mean difference, interval, the runs."""
    conf = float(eff.get("confidence", 0.95))
    lines = [f"| setting | comparison (b − a) | matched pairs | mean difference | {conf:.0%} CI | pairs (b vs a) |",
             "|---|---|---|---|---|---|"]
    more = []
    for entry in eff["settings"]:
        matched = effects.matched_contrasts(entry)
        shown = matched if len(matched) <= MAX_TABLE_ROWS else \
            sorted(matched, key=lambda c: -c["n_pairs"])[:MAX_TABLE_ROWS]
        for c in shown:
            lines.append(f"| {entry['setting']} | {c['label_b']} − {c['label_a']} | {c['n_pairs']} | "
                         f"{_signed(c['mean'])} | {_interval(c)} | {_pairs_text(c['pairs'])} |")
        if len(matched) > len(shown):
            more.append(f"{entry['setting']}: {len(matched) - len(shown)} more")
    note = [f"Matched comparisons not in the table (fewest pairs; all in analysis_numbers.json, key effects): "
            f"{'; '.join(more)}.", ""] if more else []
    return lines + [""] + note


def aliased_lines(entry: dict[str, Any], seen: set[frozenset[str]] | None = None) -> list[str]:
    """A setting's differences that no run pair and no additive model can separate from other settings
    (``seen``: groups of settings already named, e.g. batch_size's when tile_size's is written)."""
    out, seen = [], set() if seen is None else seen
    for c in entry["contrasts"]:
        if c["status"] != effects.ALIASED:
            continue
        others = c["always_with"]
        group = frozenset([entry["setting"], *others])
        if others and group in seen:
            continue
        seen.add(group)
        name = f"**{entry['setting']}** {c['label_b']} − {c['label_a']}"
        if not others:
            out.append(f"- {name}: **not separable**: it only changed together with other settings "
                       f"({', '.join(c['changes_with'])}) in ways the runs cannot disentangle.")
            continue
        move = f"{entry['setting']} {c['label_a']} → {c['label_b']}"
        joint = "; ".join(f"changing {move} together with {j['with']} moved best val Jaccard by "
                          f"{_signed(j['mean'])} ({_plural(j['n_pairs'], 'pair')})" for j in c["joint"])
        others_text = ", ".join(others)
        text = (f"- {name}: **confounded with {others_text}**: every two configurations that differ in "
                f"{entry['setting']} also differ in {others_text}, so the runs cannot tell the effect of "
                f"{entry['setting']} from that of {others_text} (neither is drawn as an effect).")
        out.append(text + (f" Together: {joint}; which of them did it, these runs cannot tell." if joint else ""))
    return out


def capped(entry: dict[str, Any], lines: list[str]) -> list[str]:
    """At most MAX_LISTED bullets of one setting, then how many more (all are in analysis_numbers.json)."""
    if len(lines) <= MAX_LISTED:
        return lines
    return lines[:MAX_LISTED] + [f"- **{entry['setting']}**: {len(lines) - MAX_LISTED} more comparison(s) not drawn "
                                 "(every one is in analysis_numbers.json, key effects)."]


def unmatched_lines(entry: dict[str, Any]) -> list[str]:
    """Differences with no matched pair that only an additive model separates (stated as that)."""
    out = []
    for c in entry["contrasts"]:
        if c["status"] != effects.UNMATCHED:
            continue
        out.append(f"- **{entry['setting']}** {c['label_b']} − {c['label_a']}: no two configurations differ in "
                   f"{entry['setting']} only (it changed with {', '.join(c['changes_with'])}). Assuming the settings' "
                   f"effects add up, the runs give {_signed(c['additive'])}: a model's number, not a measurement, "
                   "and not drawn.")
    return out


def design_lines(eff: dict[str, Any]) -> list[str]:
    """What the design can separate at all (the additive model's rank against its parameters)."""
    n, p, rank, df = eff["n_configurations"], eff["parameters"], eff["rank"], eff["residual_df"]
    text = (f"Design: {eff['n_results']} results in {n} configuration(s) (seeds averaged); an additive model "
            f"(one term per value of each varied setting) has {p} parameters, of which the configurations "
            f"determine {rank}")
    if rank < p:
        text += f" ({p - rank} cannot be separated)"
    if df == 0:
        text += "; no configuration is left over to check that the effects add up."
    else:
        text += f"; {df} configuration(s) are left over to check that the effects add up."
    if eff.get("mechanics"):
        text += (f" Runs are also matched on {', '.join(eff['mechanics'])} (how a halving rung continued a run), "
                 "whose effects are not estimated.")
    return [text, ""]


def single_pair_note(eff: dict[str, Any]) -> list[str]:
    ones = sum(c["n_pairs"] == 1 for e in eff["settings"] for c in effects.matched_contrasts(e))
    if not ones:
        return []
    return [f"{_plural(ones, 'comparison')} rest on one pair (CI n/a): one configuration against another, and "
            "seed-to-seed noise (see Replicates) can be as large as the difference.", ""]


def caption(eff: dict[str, Any]) -> str:
    matched = [(e["setting"], c) for e in eff["settings"] for c in effects.matched_contrasts(e)]
    blocked = [e for e in eff["settings"] if not effects.matched_contrasts(e)]
    text = ("One panel per varied setting: the difference in best val Jaccard between configurations equal in "
            "every other setting (seeds averaged); grey dots: single pairs, diamond: their mean, bar: "
            f"{float(eff.get('confidence', 0.95)):.0%} t-interval where there are at least 2 pairs. Data: ")
    if matched:
        s, c = max(matched, key=lambda sc: abs(sc[1]["mean"]))
        text += (f"the largest matched difference is {s} {c['label_b']} − {c['label_a']} {_signed(c['mean'])} "
                 f"({_plural(c['n_pairs'], 'pair')})")
    else:
        text += "no setting has a matched pair, so no effect is drawn"
    if blocked:
        text += ("; hatched (not an effect): " + ", ".join(
            f"{e['setting']}" + (f" (confounded with {', '.join(e['aliased_with'])})" if e["aliased_with"] else
                                 f" ({e['status']})") for e in blocked))
    return text + "."


def section_impact(runs: pd.DataFrame, eff: dict[str, Any]) -> list[str]:
    """``## Hyperparameter impact`` from the measured effects (``runs``: every run, for the left-out note)."""
    L = ["## Hyperparameter impact", ""] + sections.left_out_note(runs)
    if not eff["settings"]:
        return L + ["No training setting varies across the runs, so there is no hyperparameter impact to measure.",
                    "", figure(FIGURES[1], "Placeholder panel: no training setting varies across the runs.")]
    L += ["Each setting is compared only between configurations that are equal in every other setting (matched "
          "pairs; the seeds of a configuration are averaged first). A mean per value would mix in whatever else "
          "changed with that value.", ""]
    if any(effects.matched_contrasts(e) for e in eff["settings"]):
        L += matched_table(eff) + single_pair_note(eff)
    else:
        L += ["**No setting can be measured:** no two configurations differ in one setting only.", ""]
    seen: set[frozenset[str]] = set()
    rest = [line for e in eff["settings"] for line in capped(e, aliased_lines(e, seen) + unmatched_lines(e))]
    if rest:
        L += ["What these runs cannot tell:", "", *rest, ""]
    return L + design_lines(eff) + [figure(FIGURES[1], caption(eff))]



def findings_line(eff: dict[str, Any]) -> str:
    """ANALYSIS_COMPLETE.md's one line on the effects: the matched ones, and what cannot be separated."""
    matched = [f"{e['setting']} {c['label_b']} − {c['label_a']} {_signed(c['mean'])} ({_plural(c['n_pairs'], 'pair')})"
               for e in eff.get("settings", []) for c in effects.matched_contrasts(e)]
    if len(matched) > MAX_TABLE_ROWS:
        matched = matched[:MAX_TABLE_ROWS] + [f"{len(matched) - MAX_TABLE_ROWS} more in REPORT.md"]
    text = ("Effects on matched configurations (equal in every other setting): " + "; ".join(matched) if matched else
            "No setting was varied alone (no matched pair), so no effect of a setting is measured")
    seen: list[frozenset[str]] = []
    for e in eff.get("settings", []):
        group = frozenset([e["setting"], *e["aliased_with"]])
        if e["aliased_with"] and group not in seen:
            seen.append(group)
    if seen:
        text += "; not separable (always changed together): " + ", ".join(" & ".join(sorted(g)) for g in seen)
    return text + "."
