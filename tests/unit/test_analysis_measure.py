"""`beadseg measure`: known answers of the numbers behind fig6 / fig7, and what it says when it measures nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from beadseg import paths
from beadseg.analysis import measure as m
from beadseg.analysis.gradients import curve_numbers, loss_curves, pixel_classes, pixel_composition
from beadseg.analysis.numbers import DEFAULT_FOREGROUND_FRACTION, foreground_fraction_text, load_numbers, per_size
from beadseg.analysis.report_math import math_text
from beadseg.config import TrainConfig, load_config, validate
from beadseg.errors import DataError
from tests.helpers.fakes import make_project

SQUARE = np.pad(np.ones((3, 3), np.uint8), 2)  # a 3 x 3 bead in a 7 x 7 image


def _tc(**over: object) -> TrainConfig:
    return validate({"data": {}, "train": over, "runs": {"a": {}}, "finetune": {}}).train_defaults


def test_pixel_classes_of_a_square():
    cls = pixel_classes(SQUARE)
    # thick boundaries (4-connectivity): the bead's ring of 8 and the 12 background pixels beside its sides
    assert cls[3, 3] == 1 and int((cls == 1).sum()) == 1
    assert int((cls == 2).sum()) == 8 + 12
    assert int((cls == 0).sum()) == 49 - 9 - 12


def test_pixel_composition_known_shares():
    comp = pixel_composition(np.stack([SQUARE, SQUARE]))
    assert comp["n_tiles"] == 2 and comp["pixels"] == 98
    assert comp["pixel_share"] == pytest.approx({"background": 28 / 49, "foreground_interior": 1 / 49,
                                                 "boundary": 20 / 49})
    assert comp["boundary_pixels_per_tile"] == 20
    assert comp["foreground_fraction"] == pytest.approx(9 / 49)
    assert comp["background_to_foreground_pixels"] == pytest.approx(40 / 9)
    assert comp["background_to_boundary_pixels"] == pytest.approx(28 / 20)


def test_pixel_composition_of_no_tile_is_not_a_number():
    comp = pixel_composition(np.zeros((0, 8, 8), np.uint8))
    assert comp["n_tiles"] == 0 and all(math.isnan(v) for v in comp["pixel_share"].values())
    assert comp["background_to_foreground_pixels"] is None


def test_curve_numbers_match_the_closed_forms():
    tc = _tc(focal_alpha=0.25, focal_gamma=2.0, dice_weight=0.7)
    curves = loss_curves(tc, 0.1)
    f6 = curve_numbers(curves, tc)
    assert f6["modulation_pt_0.9"] == pytest.approx(0.01)
    assert f6["downweight_pct_pt_0.9"] == pytest.approx(99.0)
    assert f6["hard_to_easy_weight_ratio"] == pytest.approx(25.0)
    # |dL/dx| of -(1-p)^g log p with p = sigmoid(x): |g (1-p)^g p log p - (1-p)^(g+1)|
    def focal_grad(p: float, g: float) -> float:
        return abs(g * (1 - p) ** g * p * math.log(p) - (1 - p) ** (g + 1))
    assert f6["focal_grad_ratio_hard_easy_fg"] == pytest.approx(focal_grad(0.5, 2) / focal_grad(0.9, 2), rel=1e-4)
    assert f6["no_focal_grad_ratio_hard_easy_fg"] == pytest.approx(5.0, rel=1e-4)  # (1 - p): 0.5 / 0.1
    # dice at p = 0.5 everywhere on 4096 pixels, 410 of them bead (eps = 1): |dL/dp| ratio fg / bg
    n_fg, s = 410, 4096 * 0.5
    inter = 0.5 * n_fg
    expected = (2 * (s + n_fg + 1) - (2 * inter + 1)) / (2 * inter + 1)
    assert f6["dice_grad_fg_to_bg_pt_0.5"] == pytest.approx(expected, rel=1e-4)


def test_loss_curves_include_the_runs_own_gamma():
    curves = loss_curves(_tc(focal_gamma=3.0), 0.2)
    assert 3.0 in curves["gammas"] and curves["modulation"]["3"][49] == pytest.approx(0.5 ** 3)
    assert len(curves["p_t"]) == len(curves["dice"]) == len(curves["grad"]["focal"]["fg"]) == 99


@pytest.mark.parametrize("fig7, value, measured, note", [
    ({"val_foreground_fraction": 0.23}, 0.23, True, None),
    ({"val_foreground_fraction": 0.0}, DEFAULT_FOREGROUND_FRACTION, False, "the validation masks hold no bead pixel"),
    ({"note": "'data/split/val.npz' not found"}, DEFAULT_FOREGROUND_FRACTION, False,
     "no validation masks: 'data/split/val.npz' not found"),
])
def test_foreground_fraction_is_measured_or_says_it_is_a_default(fig7, value, measured, note):
    assert m.foreground_fraction(fig7) == m.ForegroundFraction(value, measured, note)


def test_foreground_fraction_text():
    measured = {"fig6_foreground_fraction": 0.123, "fig6_foreground_fraction_measured": True}
    assert foreground_fraction_text(measured) == "foreground fraction 12.3 % measured on the validation masks"
    default = {"fig6_foreground_fraction": 0.1, "fig6_foreground_fraction_measured": False,
               "fig6_foreground_fraction_note": "the validation masks hold no bead pixel"}
    assert foreground_fraction_text(default) == ("foreground fraction 10.0 %: a default, not a measurement (the "
                                                 "validation masks hold no bead pixel)")


def test_dice_boundary_gradient_ratio():
    def size(g: float | None) -> dict:
        return {"gradients": {"dice": {"mean_abs_grad": {"boundary": g}}}} if g is not None else {"note": "no model"}
    assert m.dice_boundary_gradient_ratio({"64": size(1.0), "32": size(3.0), "128": size(0.5)}) == \
        {"small": 32, "large": 128, "ratio": 6.0}
    assert m.dice_boundary_gradient_ratio({"32": size(3.0)})["ratio"] is None
    assert m.dice_boundary_gradient_ratio({"32": size(3.0), "64": size(None)}) == {"small": 32, "large": 64, "ratio": None}


def test_rounded_keeps_six_significant_digits():
    out = m.rounded({"a": [1.23456789, 0.000123456789, float("nan")], "b": 2})
    assert out["a"][:2] == [1.23457, 0.000123457] and math.isnan(out["a"][2]) and out["b"] == 2


# --------------------------------------------------------------------------- on a fake project

RUNS = {"a": {"tile_size": 32, "best": 0.6, "final": 0.6, "best_epoch": 4, "epochs_run": 8},
        "b": {"tile_size": 64, "best": 0.5, "final": 0.5, "best_epoch": 4, "epochs_run": 8}}


def _measured(root):
    from beadseg.analysis.aggregate import aggregate

    cfg = load_config(root / "params.yaml")
    aggregate(cfg, root)
    m.measure(cfg, root)
    return load_numbers(root)


def test_measure_reads_the_stored_validation_tiles(tmp_path):
    root = make_project(tmp_path, RUNS)
    numbers = _measured(root)
    assert list(per_size(numbers)) == ["32", "64"] and numbers["fig6_best_run"] == "a"
    for size, p in per_size(numbers).items():
        with np.load(root / paths.tiles_file(int(size), "val")) as z:
            assert p["n_tiles"] == min(len(z["masks"]), 64)
        assert p["model_run"] == ("a" if size == "32" else "b")
    assert numbers["fig6_foreground_fraction_measured"] is True
    assert numbers["fig7"]["dice_boundary_gradient_ratio"]["small"] == 32
    assert "measured on the validation masks" in math_text(numbers, _runs(root))


def _runs(root):
    import pandas as pd

    return pd.read_csv(root / paths.runs_table())


def test_missing_tiles_of_a_size_are_named_not_measured(tmp_path):
    root = make_project(tmp_path, RUNS)
    (root / paths.tiles_file(64, "val")).unlink()
    per = per_size(_measured(root))
    assert per["32"]["gradients"] and per["64"]["model_run"] is None
    assert "beadseg tile --size 64" in per["64"]["note"] and per["64"]["n_tiles"] == 0


def test_without_validation_split_the_foreground_fraction_is_a_default_and_the_report_says_so(tmp_path):
    root = make_project(tmp_path, RUNS)
    (root / paths.split_file("val")).unlink()
    numbers = _measured(root)
    assert numbers["fig6_foreground_fraction_measured"] is False and numbers["fig7"]["per_size"] == {}
    assert "beadseg split" in numbers["fig6_foreground_fraction_note"]
    text = math_text(numbers, _runs(root))
    assert "a default, not a measurement" in text and "measured on the validation masks" not in text


def test_figures_and_report_need_the_numbers_file(tmp_path):
    with pytest.raises(DataError, match="beadseg measure"):
        load_numbers(tmp_path)
