"""Effects of the searched settings that are not confounded (pure functions of runs.csv).

A mean per value of a setting mixes whatever else varied with it: if the only run at a small learning rate
used the combined loss, "combined" looks worse than it is. This module compares like with like instead:

1. Only the runs that are results (:func:`beadseg.analysis.stats.result_mask`) count. Runs that share every
   setting but the seed are one *configuration*; its score is the mean over its seeds (replicates are
   averaged first, so a configuration run with five seeds counts once).
2. For every setting that varies (the seed aside) and every two of its values a and b, a **matched pair** is
   two configurations equal in every other setting, one at a and one at b. The effect "b − a" is the mean of
   the pairs' score differences, with a Student-t interval where there are at least 2 pairs.
3. An **additive model** (score = intercept + one term per value of each setting, fitted by least squares
   on the configurations) says what the design can separate at all: a difference b − a is *estimable* when
   its contrast lies in the row space of the design matrix. When it is not, the setting is **aliased**: the
   runs cannot tell its effect from that of the settings it always changed with (named). Its change is then
   reported only *together* with theirs (pairs that differ in exactly those settings), never as its own.
   A difference that is estimable but has no matched pair is **unmatched**: the additive model gives a
   number that holds only if the settings' effects add up, and it is reported as that, not drawn.

Settings that never vary are left out; so are a halving search's run mechanics (:data:`MECHANICS`:
``init_from``, ``epoch_offset``, ``schedule_epochs``), on which runs are still matched, so a continued rung
is only compared with runs continued the same way. :func:`effects` returns plain JSON-ready data, which
``beadseg measure`` writes into the analysis numbers file (key ``effects``); fig2, REPORT.md's
hyperparameter impact section and the recommendations read it from there.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from beadseg.analysis import stats
from beadseg.search import SEARCH_KEYS

# How a run was made, not what was searched (a halving rung's start model and place in the schedule): runs
# are matched on them, and they are model terms, but no effect of theirs is estimated or drawn.
MECHANICS: tuple[str, ...] = SEARCH_KEYS
MATCHED, UNMATCHED, ALIASED = "matched", "unmatched", "aliased"


def value_key(value: Any) -> str:
    """A spelling of a setting value that is the same for a runs.csv cell and its JSON copy (numpy and
    Python numbers alike; missing as "none")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return repr(float(value))
    return str(value)


def configurations(runs: pd.DataFrame, settings: list[str], score: str = stats.SCORE) -> pd.DataFrame:
    """One row per configuration (equal ``settings``; seeds averaged): its settings, mean score, seeds, runs.

    ``runs`` should hold results only. Rows keep the order in which configurations first appear.
    """
    if runs.empty:
        return pd.DataFrame(columns=[*settings, "score", "n_seeds", "runs"])
    keys = runs[settings].apply(lambda r: tuple(value_key(v) for v in r), axis=1) if settings else \
        pd.Series([()] * len(runs), index=runs.index)
    rows = []
    for _, g in runs.groupby(keys, sort=False):
        first = g.iloc[0]
        rows.append({**{s: first[s] for s in settings}, "score": float(g[score].astype(float).mean()),
                     "n_seeds": int(len(g)), "runs": [str(r) for r in g["run_id"]]})
    return pd.DataFrame(rows)


def setting_values(column: pd.Series) -> list[Any]:
    """The values a setting takes, sorted (missing first, as None)."""
    present = stats.sort_values(list(column.dropna().unique()))
    return ([None] if column.isna().any() else []) + present


def value_labels(setting: str, values: list[Any]) -> list[str]:
    """How each value is written: as everywhere in the report, or with 3 significant digits when that
    would write two values the same (a TPE search's learning rates)."""
    labels = [stats.format_value(setting, v) for v in values]
    if len(set(labels)) == len(labels):
        return labels
    return [f"{float(v):.3g}" if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            else stats.format_value(setting, v) for v in values]


def _keys(configs: pd.DataFrame, settings: list[str]) -> list[tuple[str, ...]]:
    return [tuple(value_key(v) for v in row) for row in configs[settings].itertuples(index=False)]


def design_matrix(configs: pd.DataFrame, settings: list[str]) -> tuple[np.ndarray, dict[tuple[str, str], int]]:
    """The additive model's design matrix over the configurations: an intercept column and one indicator
    column per value of each setting except its first (sorted) value; and the column of each (setting, value)."""
    columns: dict[tuple[str, str], int] = {}
    for s in settings:
        for v in setting_values(configs[s])[1:]:
            columns[(s, value_key(v))] = len(columns) + 1
    x = np.zeros((len(configs), len(columns) + 1))
    x[:, 0] = 1.0
    for i, row in enumerate(configs[settings].itertuples(index=False)):
        for s, v in zip(settings, row):
            col = columns.get((s, value_key(v)))
            if col is not None:
                x[i, col] = 1.0
    return x, columns


def _contrast(columns: dict[tuple[str, str], int], width: int, setting: str, a: Any, b: Any) -> np.ndarray:
    c = np.zeros(width)
    for value, sign in ((b, 1.0), (a, -1.0)):
        col = columns.get((setting, value_key(value)))
        if col is not None:  # the first value is the reference: no column
            c[col] += sign
    return c


def estimable(x: np.ndarray, c: np.ndarray) -> bool:
    """True when the linear contrast ``c`` of the model's parameters lies in the row space of ``x``."""
    return bool(np.linalg.matrix_rank(np.vstack([x, c])) == np.linalg.matrix_rank(x))


def _interval(diffs: list[float], confidence: float) -> dict[str, Any]:
    values = np.asarray(diffs, float)
    mean, low, high = stats.t_interval(values, confidence)
    return {"n_pairs": len(diffs), "mean": mean, "std": float(values.std(ddof=1)) if len(diffs) > 1 else None,
            "ci_low": None if math.isnan(low) else low, "ci_high": None if math.isnan(high) else high}


def _pairs(configs: pd.DataFrame, settings: list[str], setting: str, a: Any, b: Any,
           free: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Configuration pairs with ``setting`` at a and b and every other setting but ``free`` equal."""
    keys = _keys(configs, settings)
    ka, kb, i = value_key(a), value_key(b), settings.index(setting)
    fixed = [j for j, s in enumerate(settings) if s != setting and s not in free]
    out = []
    for p, q in itertools.permutations(range(len(configs)), 2):
        if keys[p][i] != ka or keys[q][i] != kb or any(keys[p][j] != keys[q][j] for j in fixed):
            continue
        ra, rb = configs.iloc[p], configs.iloc[q]
        out.append({"runs_a": ra["runs"], "runs_b": rb["runs"], "score_a": float(ra["score"]),
                    "score_b": float(rb["score"]), "diff": float(rb["score"] - ra["score"]),
                    "with": {s: [ra[s], rb[s]] for s in free if keys[p][settings.index(s)] != keys[q][settings.index(s)]}})
    return out


def changes_with(configs: pd.DataFrame, settings: list[str], setting: str, a: Any, b: Any) -> tuple[list[str],
                                                                                                        list[str]]:
    """(always, ever): the other settings that differ in every / in some configuration pair whose
    ``setting`` is a in one and b in the other."""
    keys = _keys(configs, settings)
    ka, kb, i = value_key(a), value_key(b), settings.index(setting)
    always: set[str] | None = None
    ever: set[str] = set()
    for p, q in itertools.product(range(len(configs)), repeat=2):
        if keys[p][i] != ka or keys[q][i] != kb:
            continue
        differ = {s for j, s in enumerate(settings) if j != i and keys[p][j] != keys[q][j]}
        ever |= differ
        always = differ if always is None else always & differ
    order = {s: n for n, s in enumerate(settings)}
    return sorted(always or set(), key=order.__getitem__), sorted(ever, key=order.__getitem__)


def _joint(configs: pd.DataFrame, settings: list[str], setting: str, a: Any, b: Any, together: list[str],
           confidence: float) -> list[dict[str, Any]]:
    """The change of ``setting`` from a to b *together with* ``together``, grouped by what those changed to."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for pair in _pairs(configs, settings, setting, a, b, free=tuple(together)):
        if set(pair["with"]) != set(together):
            continue
        label = " & ".join(f"{s} {stats.format_value(s, v[0])} → {stats.format_value(s, v[1])}"
                           for s, v in pair["with"].items())
        groups.setdefault(label, []).append(pair)
    return [{"with": label, **_interval([p["diff"] for p in pairs], confidence), "pairs": pairs}
            for label, pairs in groups.items()]


def contrast(configs: pd.DataFrame, settings: list[str], x: np.ndarray, beta: np.ndarray,
             columns: dict[tuple[str, str], int], setting: str, a: Any, b: Any, confidence: float,
             labels: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything the design says about "``setting`` at b minus at a" (``labels``: value key -> spelling)."""
    labels = labels or {}
    c = _contrast(columns, x.shape[1], setting, a, b)
    can = estimable(x, c)
    pairs = _pairs(configs, settings, setting, a, b)
    always, ever = changes_with(configs, settings, setting, a, b)
    status = MATCHED if pairs else (UNMATCHED if can else ALIASED)
    out: dict[str, Any] = {
        "a": a, "b": b, "label_a": labels.get(value_key(a), stats.format_value(setting, a)),
        "label_b": labels.get(value_key(b), stats.format_value(setting, b)),
        "status": status, "estimable": can, "additive": float(c @ beta) if can else None,
        "always_with": always, "changes_with": ever, "pairs": pairs,
        **(_interval([p["diff"] for p in pairs], confidence) if pairs else
           {"n_pairs": 0, "mean": None, "std": None, "ci_low": None, "ci_high": None}),
        "joint": _joint(configs, settings, setting, a, b, always, confidence) if status == ALIASED and always else [],
    }
    return out


def setting_status(contrasts: list[dict[str, Any]]) -> str:
    """matched when any two values were compared in matched pairs; else aliased when any difference cannot
    be separated at all; else unmatched."""
    found = {c["status"] for c in contrasts}
    return MATCHED if MATCHED in found else (ALIASED if ALIASED in found else UNMATCHED)


def effects(runs: pd.DataFrame, confidence: float = 0.95, score: str = stats.SCORE) -> dict[str, Any]:
    """The matched effect of every varied setting over the results of ``runs`` (JSON-ready: see the module)."""
    valid = stats.valid_runs(runs)
    left_out = [f"{r.run_id} ({r.status})" for r in stats.invalid_runs(runs).itertuples()]
    axes = stats.varied_axes(valid)
    settings = [a for a in axes if a not in MECHANICS]
    configs = configurations(valid, axes, score)
    base: dict[str, Any] = {"score": score, "confidence": confidence, "n_results": int(len(valid)),
                            "n_configurations": int(len(configs)), "left_out": left_out, "settings": [],
                            "mechanics": [a for a in axes if a in MECHANICS]}
    if not settings:
        return {**base, "parameters": 1, "rank": int(len(configs) > 0), "residual_df": max(0, len(configs) - 1)}
    x, columns = design_matrix(configs, axes)
    y = configs["score"].to_numpy(float)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    rank = int(np.linalg.matrix_rank(x))
    out = []
    for s in settings:
        values = setting_values(configs[s])
        labels = value_labels(s, values)
        by_key = {value_key(v): label for v, label in zip(values, labels)}
        cs = [contrast(configs, axes, x, beta, columns, s, a, b, confidence, by_key)
              for a, b in itertools.combinations(values, 2)]
        always = sorted({w for c in cs if c["status"] == ALIASED for w in c["always_with"]}, key=axes.index)
        out.append({"setting": s, "values": values, "labels": labels,
                    "status": setting_status(cs), "aliased_with": always, "contrasts": cs})
    return {**base, "settings": out, "parameters": int(x.shape[1]), "rank": rank,
            "residual_df": int(len(configs) - rank)}


# --------------------------------------------------------------------------- reading the numbers back


def setting(effect_numbers: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The entry of one setting (None when it did not vary)."""
    return next((s for s in effect_numbers.get("settings", []) if s["setting"] == name), None)


def matched_contrasts(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in entry["contrasts"] if c["status"] == MATCHED]


def value_wins(entry: dict[str, Any], value: Any) -> tuple[int, int]:
    """(won, compared): in how many of its matched contrasts ``value`` scored higher than the other value."""
    key, won, compared = value_key(value), 0, 0
    for c in matched_contrasts(entry):
        if key not in (value_key(c["a"]), value_key(c["b"])) or c["mean"] == 0:
            continue
        compared += 1
        won += int((c["mean"] > 0) == (value_key(c["b"]) == key))
    return won, compared


def best_other_value(entry: dict[str, Any], reference: Any) -> Any | None:
    """The value that did best against ``reference`` in matched pairs (highest mean of value − reference);
    None when no other value was matched against it."""
    key, best, best_gain = value_key(reference), None, -math.inf
    for c in matched_contrasts(entry):
        if value_key(c["a"]) == key:
            other, gain = c["b"], c["mean"]
        elif value_key(c["b"]) == key:
            other, gain = c["a"], -c["mean"]
        else:
            continue
        if gain > best_gain:
            best, best_gain = other, gain
    return best
