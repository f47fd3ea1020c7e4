"""Effects on matched configurations (beadseg.analysis.effects): known answers, aliasing named, and fig2 /
the impact section / the recommendations drawing the matched numbers instead of confounded means."""

from __future__ import annotations

import itertools
import json

import pandas as pd
import pytest

from beadseg.analysis import effects, recommend, stats
from beadseg.analysis.figures import fig_hyperparameter_impact, impact_panels
from beadseg.analysis.report_impact import section_impact
from beadseg.config import validate
from beadseg.fsutil import json_safe


def _runs(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["status"] = frame.get("status", pd.Series(["completed"] * len(frame))).fillna("completed")
    if "seed" not in frame:
        frame["seed"] = 0
    return frame


def _contrast(eff: dict, setting: str, a: object, b: object) -> dict:
    entry = effects.setting(eff, setting)
    assert entry is not None, setting
    key = (effects.value_key(a), effects.value_key(b))
    return next(c for c in entry["contrasts"] if (effects.value_key(c["a"]), effects.value_key(c["b"])) == key)


# The demo's design (issue 20): the one lr-3e-4 run is a combined run; batch_size 1 and tile_size 512 only
# occur together. Scores: combined is the best loss at every matched configuration, yet its mean is lowest.
CONFOUND = [
    {"run_id": "t256_combined_lr3e-3", "tile_size": 256, "loss": "combined", "lr": 3e-3, "batch_size": 4,
     "best_val_jaccard": 0.90},
    {"run_id": "t256_dice_lr3e-3", "tile_size": 256, "loss": "dice", "lr": 3e-3, "batch_size": 4,
     "best_val_jaccard": 0.88},
    {"run_id": "t256_focal_lr3e-3", "tile_size": 256, "loss": "focal", "lr": 3e-3, "batch_size": 4,
     "best_val_jaccard": 0.86},
    {"run_id": "t256_combined_lr3e-4", "tile_size": 256, "loss": "combined", "lr": 3e-4, "batch_size": 4,
     "best_val_jaccard": 0.40},
    {"run_id": "t512_combined_lr3e-3_bs1", "tile_size": 512, "loss": "combined", "lr": 3e-3, "batch_size": 1,
     "best_val_jaccard": 0.93},
    {"run_id": "t512_dice_lr3e-3_bs1", "tile_size": 512, "loss": "dice", "lr": 3e-3, "batch_size": 1,
     "best_val_jaccard": 0.91},
]


def _cfg():
    return validate({"data": {}, "train": {}, "runs": {"a": {}}, "finetune": {}})


# --------------------------------------------------------------------------- known answers


def test_additive_table_gives_the_effects_exactly_with_replicates_averaged_first():
    lr_effect = {1e-4: 0.0, 1e-3: 0.10}
    loss_effect = {"combined": 0.0, "dice": -0.03, "focal": -0.08}
    rows = []
    for (lr, le), (loss, ce) in itertools.product(lr_effect.items(), loss_effect.items()):
        # three seeds scattered symmetrically around the configuration's value: their mean is exact
        for seed, noise in enumerate((-0.02, 0.0, 0.02)):
            rows.append({"run_id": f"{loss}_{lr}_s{seed}", "lr": lr, "loss": loss, "seed": seed,
                         "best_val_jaccard": 0.5 + le + ce + noise})
    eff = effects.effects(_runs(rows))
    assert eff["n_results"] == 18 and eff["n_configurations"] == 6
    assert [s["setting"] for s in eff["settings"]] == ["lr", "loss"]  # the seed is not a setting
    c = _contrast(eff, "lr", 1e-4, 1e-3)
    assert c["status"] == effects.MATCHED and c["n_pairs"] == 3
    assert c["mean"] == pytest.approx(0.10) and c["additive"] == pytest.approx(0.10)
    assert c["ci_low"] == pytest.approx(0.10) and c["ci_high"] == pytest.approx(0.10)  # no interaction: no spread
    for (a, b), want in {("combined", "dice"): -0.03, ("combined", "focal"): -0.08, ("dice", "focal"): -0.05}.items():
        c = _contrast(eff, "loss", a, b)
        assert c["n_pairs"] == 2 and c["mean"] == pytest.approx(want) and c["additive"] == pytest.approx(want)
        assert [len(p["runs_a"]) for p in c["pairs"]] == [3, 3]
    assert eff["rank"] == eff["parameters"] == 4 and eff["residual_df"] == 2


def test_interval_of_several_pairs_is_the_t_interval_of_their_differences():
    rows = [{"run_id": f"{loss}{i}", "loss": loss, "dropout": d, "best_val_jaccard": s}
            for i, (d, sa, sb) in enumerate([(0.0, 0.5, 0.6), (0.1, 0.5, 0.7), (0.2, 0.5, 0.5)])
            for loss, s in (("dice", sa), ("focal", sb))]
    c = _contrast(effects.effects(_runs(rows)), "loss", "dice", "focal")
    mean, low, high = stats.t_interval(pd.Series([0.1, 0.2, 0.0]).to_numpy())
    assert (c["n_pairs"], c["mean"], c["ci_low"], c["ci_high"]) == pytest.approx((3, mean, low, high))


def test_the_confounded_design_gives_matched_estimates_and_names_the_alias():
    eff = effects.effects(_runs(CONFOUND))
    assert stats.group_stats(_runs(CONFOUND), "loss").sort_values("mean")["loss"].iloc[0] == "combined"  # the trap
    dice = _contrast(eff, "loss", "combined", "dice")
    assert dice["status"] == effects.MATCHED and dice["n_pairs"] == 2
    assert dice["mean"] == pytest.approx(-0.02) and dice["ci_low"] is not None  # (−0.02, −0.02): zero spread
    focal = _contrast(eff, "loss", "combined", "focal")
    assert focal["n_pairs"] == 1 and focal["mean"] == pytest.approx(-0.04) and focal["ci_low"] is None
    lr = _contrast(eff, "lr", 3e-4, 3e-3)
    assert lr["n_pairs"] == 1 and lr["mean"] == pytest.approx(0.50)
    for setting, other in (("tile_size", "batch_size"), ("batch_size", "tile_size")):
        entry = effects.setting(eff, setting)
        assert entry["status"] == effects.ALIASED and entry["aliased_with"] == [other]
        (c,) = entry["contrasts"]
        assert c["n_pairs"] == 0 and c["mean"] is None and c["additive"] is None and not c["estimable"]
    joint = _contrast(eff, "tile_size", 256, 512)["joint"]
    assert [(j["with"], j["n_pairs"]) for j in joint] == [("batch_size 4 → 1", 2)]
    assert joint[0]["mean"] == pytest.approx(0.03)  # (0.93 - 0.90 + 0.91 - 0.88) / 2: both changes together
    assert eff["parameters"] == 6 and eff["rank"] == 5


def test_estimable_without_a_matched_pair_is_unmatched_with_the_additive_number():
    # loss changes only together with lr or dropout, but lr and dropout each vary alone: an additive model
    # separates loss (dice - combined = -0.05 exactly), no run pair does.
    def score(lr: float, loss: str, dropout: float) -> float:
        return 0.6 + (0.1 if lr == 1e-3 else 0.0) + (-0.05 if loss == "dice" else 0.0) + (0.02 if dropout else 0.0)
    design = [(1e-4, "combined", 0.0), (1e-3, "combined", 0.0), (1e-4, "combined", 0.1), (1e-3, "dice", 0.1)]
    rows = [{"run_id": f"r{i}", "lr": lr, "loss": loss, "dropout": d, "best_val_jaccard": score(lr, loss, d)}
            for i, (lr, loss, d) in enumerate(design)]
    eff = effects.effects(_runs(rows))
    loss = effects.setting(eff, "loss")
    assert loss["status"] == effects.UNMATCHED and loss["aliased_with"] == []
    (c,) = loss["contrasts"]
    assert c["n_pairs"] == 0 and c["mean"] is None and c["estimable"]
    assert c["additive"] == pytest.approx(-0.05) and c["changes_with"] == ["lr", "dropout"]
    assert _contrast(eff, "lr", 1e-4, 1e-3)["mean"] == pytest.approx(0.10)
    assert impact_panels(eff)[[p.setting for p in impact_panels(eff)].index("loss")].rows == ()  # not drawn


def test_results_only_and_constant_settings_left_out():
    rows = [{"run_id": "a", "lr": 1e-3, "dropout": 0.1, "best_val_jaccard": 0.6},
            {"run_id": "b", "lr": 1e-4, "dropout": 0.1, "best_val_jaccard": 0.5},
            {"run_id": "boom", "lr": 1e-2, "dropout": 0.3, "best_val_jaccard": 0.0, "status": "diverged"},
            {"run_id": "flat", "lr": 1e-4, "dropout": 0.1, "best_val_jaccard": 0.05, "status": "degenerate"}]
    eff = effects.effects(_runs(rows))
    assert [s["setting"] for s in eff["settings"]] == ["lr"]  # dropout only varied through a diverged run
    (c,) = effects.setting(eff, "lr")["contrasts"]
    assert c["n_pairs"] == 1 and c["mean"] == pytest.approx(0.1)  # the degenerate run is no replicate of b
    assert eff["left_out"] == ["boom (diverged)", "flat (degenerate)"]


def test_nothing_varies():
    eff = effects.effects(_runs([{"run_id": "a", "lr": 1e-3, "best_val_jaccard": 0.6, "seed": s} for s in (0, 1)]))
    assert eff["settings"] == [] and eff["n_configurations"] == 1


def test_value_keys_survive_the_numbers_file():
    eff = json.loads(json.dumps(json_safe(effects.effects(_runs(CONFOUND)))))
    entry = effects.setting(eff, "loss")
    assert effects.value_wins(entry, "combined") == (2, 2)
    assert effects.best_other_value(entry, "combined") == "dice"
    lr = effects.setting(eff, "lr")
    assert effects.value_wins(lr, pd.Series([3e-3]).iloc[0]) == (1, 1)  # a numpy float from runs.csv


# --------------------------------------------------------------------------- fig2, report, recommendations


def test_fig2_no_longer_draws_combined_as_the_worst_loss(tmp_path):
    runs = _runs(CONFOUND)
    eff = json.loads(json.dumps(json_safe(effects.effects(runs))))  # as the numbers file holds it
    panels = {p.setting: p for p in impact_panels(eff)}
    loss = panels["loss"]
    drawn = {r.label: r.mean for r in loss.rows}
    assert drawn == pytest.approx({"dice − combined": -0.02, "focal − combined": -0.04, "focal − dice": -0.02})
    # combined wins every matched comparison it is in: the figure cannot show it as the worst loss
    assert all(mean < 0 for label, mean in drawn.items() if label.endswith("− combined"))
    for setting, other in (("tile_size", "batch_size"), ("batch_size", "tile_size")):
        panel = panels[setting]
        assert panel.rows == () and panel.aliased_with == (other,)
        assert "confounded with " + other in panel.title and any(other in n for n in panel.notes)
    target = fig_hyperparameter_impact(runs, eff, tmp_path / "fig2.png")
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_impact_section_writes_the_matched_numbers_and_the_confound():
    runs = _runs(CONFOUND)
    text = "\n".join(section_impact(runs, effects.effects(runs)))
    assert "| loss | dice − combined | 2 | -0.0200 |" in text
    assert "| loss | focal − combined | 1 | -0.0400 | n/a (1 pair) |" in text
    assert "**confounded with tile_size**" in text or "**confounded with batch_size**" in text
    assert text.count("**confounded with") == 1  # the aliased pair is named once, not once per setting
    assert "+0.0300 (2 pairs)" in text or "-0.0300 (2 pairs)" in text
    assert "| tile_size |" not in text and "| batch_size |" not in text  # never a row of effects
    assert "mean ± std" not in text.lower()


def test_recommendations_use_the_matched_estimates():
    runs = _runs(CONFOUND).assign(overfit_drop=0.0, best_epoch=3, max_epochs=10, epochs_run=8, patience=4,
                                  dropout=0.1, final_val_jaccard=lambda f: f["best_val_jaccard"])
    runs = runs.sort_values("best_val_jaccard", ascending=False).reset_index(drop=True)
    cfg = _cfg()
    eff = effects.effects(runs)
    recs = {r.rule: r for r in recommend.recommendations(runs, cfg, eff)}
    rec = recs["confounded"]
    assert "batch_size and tile_size always changed together" in rec.evidence
    assert rec.changes == {"aliased": [["batch_size", "tile_size"]]}
    # the loss kept beside the best run's (combined) is the one that did best against it in matched pairs
    assert recommend.second_loss(runs, runs.iloc[0], eff) == "dice"
    flipped = runs.assign(best_val_jaccard=runs["best_val_jaccard"].where(runs["loss"] != "focal", 0.895))
    assert recommend.second_loss(flipped, flipped.iloc[0], effects.effects(flipped)) == "focal"


def test_a_search_with_many_values_stays_readable():
    # a TPE-like search: 12 learning rates that one significant digit would write alike, random other settings
    lrs = [1e-4 * 1.2 ** i for i in range(12)]
    rows = [{"run_id": f"tpe_{i}", "lr": lrs[i % 12], "dropout": (0.0, 0.1, 0.2)[i % 3], "loss": ("dice", "focal")[i % 2],
             "best_val_jaccard": 0.5 + 0.01 * ((7 * i) % 11)} for i in range(36)]
    eff = effects.effects(_runs(rows))
    lr = effects.setting(eff, "lr")
    assert len(set(lr["labels"])) == 12 and len(lr["contrasts"]) == 66
    for panel in impact_panels(eff):
        assert len(panel.rows) <= 10 and len(panel.notes) <= 5
    text = section_impact(_runs(rows), eff)
    assert sum(line.startswith("- **lr**") for line in text) <= 5


def test_halving_rungs_are_matched_on_how_they_continued_but_not_estimated():
    # rung 0: both losses at 4 epochs; rung 1: only combined continued (init_from its rung-0 run) to 8 epochs
    rows = [{"run_id": "r0_c", "loss": "combined", "max_epochs": 4, "best_val_jaccard": 0.60},
            {"run_id": "r0_d", "loss": "dice", "max_epochs": 4, "best_val_jaccard": 0.55},
            {"run_id": "r1_c", "loss": "combined", "max_epochs": 8, "init_from": "r0_c", "epoch_offset": 4,
             "best_val_jaccard": 0.70}]
    eff = effects.effects(_runs(rows))
    assert [s["setting"] for s in eff["settings"]] == ["loss", "max_epochs"]
    assert eff["mechanics"] == ["init_from", "epoch_offset"]
    (c,) = effects.setting(eff, "loss")["contrasts"]
    assert c["n_pairs"] == 1 and c["mean"] == pytest.approx(-0.05)  # rung 0 only: same budget, same start
    budget = effects.setting(eff, "max_epochs")
    assert budget["status"] == effects.ALIASED and budget["aliased_with"] == ["init_from", "epoch_offset"]
