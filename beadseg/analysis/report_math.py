"""The loss mathematics: REPORT.md's ``## Loss mathematics and pixel-level gradients`` (fig6, fig7) and
MATHEMATICAL_ANALYSIS_SUMMARY.md, both written from the numbers ``beadseg measure`` wrote
(results/report/analysis_numbers.json); nothing is computed here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from beadseg.analysis import FIGURES, recommend, sections, stats
from beadseg.analysis.numbers import VARIANTS, foreground_fraction_text, per_size
from beadseg.analysis.text import MATH_SUMMARY, figure, fmt, pct


def fig7_sentence(per: dict[str, Any]) -> str:
    """fig7's findings per tile size in one sentence (what is missing, where nothing was measured)."""
    parts = []
    for size, p in per.items():
        if p.get("boundary_amplification") is None:
            parts.append(f"{size} px: {p.get('note', 'no model')}")
            continue
        parts.append(
            f"{size} px (model {p['model_run']}): boundary pixels are {pct(p['pixel_share']['boundary'])} of pixels "
            f"and receive {pct(p['gradients']['no_focal_term']['share']['boundary'])} of |∂L/∂logit| without the "
            f"focal term vs {pct(p['gradients']['focal']['share']['boundary'])} with it "
            f"(amplification {p['boundary_amplification']:.2f}×; background:boundary "
            f"{p['imbalance_background_to_boundary_without_focal']:.3g}:1 → "
            f"{p['imbalance_background_to_boundary_with_focal']:.3g}:1)")
    return "; ".join(parts) + "."


def section_math(numbers: dict[str, Any]) -> list[str]:
    """REPORT.md's section on the loss mathematics: fig6 and fig7 with their captions."""
    f6 = numbers.get("fig6", {})
    per = per_size(numbers)
    L = ["## Loss mathematics and pixel-level gradients", "",
         f"Details and equations: [{MATH_SUMMARY}]({MATH_SUMMARY}).", ""]
    L += [figure(FIGURES[5], f"Per-pixel loss, focusing term (1 − p_t)^γ and per-pixel |∂L/∂logit| against the "
                 f"probability of the true class, computed with beadseg.losses (α={f6.get('focal_alpha')}, "
                 f"γ={f6.get('focal_gamma')}, dice weight {f6.get('dice_weight')} of the best run). Data: at p_t = 0.9 "
                 f"the focal term weighs a pixel {fmt(f6.get('modulation_pt_0.9'))} "
                 f"(down-weighted {fmt(f6.get('downweight_pct_pt_0.9'), 1)} %), "
                 f"{fmt(f6.get('hard_to_easy_weight_ratio'), 1)}× less than at p_t = 0.5.")]
    return L + [figure(FIGURES[6], "Validation pixels by class (background / foreground interior / boundary from "
                       "skimage.segmentation.find_boundaries) per tile size, and each class's share of the total "
                       "gradient of the real predictions of the best model of that size (runs that are results "
                       "only), without (γ = 0) and with the focal term, and for dice and combined. Data: "
                       + fig7_sentence(per))]


def math_scope(numbers: dict[str, Any], runs: pd.DataFrame) -> str:
    """Whose parameters and models the loss analysis uses; degenerate / diverged runs are never used."""
    best = numbers.get("fig6_best_run")
    if best is None or recommend.search_failed(runs):
        return (f"**{sections.FAILED}**, so nothing below is a finding about a trained model: the curves use the "
                "train defaults and the pixel-gradient table has no model (n/a). Parameters (train defaults):")
    bad = stats.invalid_runs(runs)
    left = (f" Runs that are not results ({', '.join(f'{r.run_id} ({r.status})' for r in bad.itertuples())}) are "
            "not analysed: the pixel-gradient table uses only models of runs that are results."
            if not bad.empty else "")
    return f"Parameters of the best run ({best}).{left} Parameters:"


EQUATIONS = [
    "Dice:      L_dice  = 1 − (2 Σ p·y + ε) / (Σ p + Σ y + ε)            (ε = 1)",
    "Focal:     L_focal = mean( −α_t (1 − p_t)^γ log p_t )",
]
TVERSKY = ("Tversky:   L_tv    = 1 − (TP + ε/2) / (TP + α_tv FP + β_tv FN + ε/2),  TP = Σ p·y, FP = Σ p(1−y), "
           "FN = Σ (1−p) y")
READING = ("Reading: amplification = boundary share of the gradient with the focal term / without it (γ = 0, same α). "
           "A value above 1 means the focal term moves gradient towards boundary pixels; below 1 means the model "
           "already fits boundaries as well as the rest, or worse where the focal term favours other hard pixels. "
           "mean p_t shows which class is actually hard for the trained model.")


def equation_lines(numbers: dict[str, Any], runs: pd.DataFrame) -> list[str]:
    """Title, whose parameters, and the equations of the losses the runs used."""
    f6 = numbers.get("fig6", {})
    a, g, w = f6.get("focal_alpha"), f6.get("focal_gamma"), f6.get("dice_weight")
    L = ["# Mathematical analysis of the losses", "", math_scope(numbers, runs) + f" α = {a}, γ = {g}, dice weight "
         f"w = {w}. Numbers computed by `beadseg measure` with the project's loss functions and torch autograd "
         "(results/report/analysis_numbers.json).", "",
         "## Equations", "",
         "With p = σ(x) (x: logit), y ∈ {0, 1}, p_t = p if y = 1 else 1 − p, α_t = α if y = 1 else 1 − α, sums over all "
         "pixels of a batch:", "", "```", *EQUATIONS,
         f"Combined:  L       = w · L_dice + (1 − w) · L_focal                  (w = {w})"]
    if "tversky" in set(runs["loss"]):
        L.append(TVERSKY)
    return L + ["```", ""]


def focusing_lines(numbers: dict[str, Any]) -> list[str]:
    """``## Focusing term (fig6)``: the scalar facts of the curves."""
    f6 = numbers.get("fig6", {})
    return ["## Focusing term (fig6)", "",
            f"- (1 − p_t)^γ at p_t = 0.5: {fmt(f6.get('modulation_pt_0.5'))}; at p_t = 0.9: "
            f"{fmt(f6.get('modulation_pt_0.9'))} (an easy pixel is down-weighted "
            f"{fmt(f6.get('downweight_pct_pt_0.9'), 1)} %); at p_t = 0.99: {fmt(f6.get('modulation_pt_0.99'))}.",
            f"- A hard pixel (p_t = 0.5) weighs {fmt(f6.get('hard_to_easy_weight_ratio'), 1)}× an easy one (p_t = 0.9).",
            f"- Gradient ratio hard/easy for a bead pixel: focal {fmt(f6.get('focal_grad_ratio_hard_easy_fg'), 1)}×, "
            f"without focal term (γ = 0) {fmt(f6.get('no_focal_grad_ratio_hard_easy_fg'), 1)}×, dice "
            f"{fmt(f6.get('dice_grad_ratio_hard_easy_fg'), 2)}×.",
            f"- Dice: at p_t = 0.5 a bead pixel gets {fmt(f6.get('dice_grad_fg_to_bg_pt_0.5'), 2)}× the gradient of a "
            f"background pixel ({foreground_fraction_text(numbers)}).", ""]


def _size_row(size: str, p: dict[str, Any]) -> str:
    ps = p["pixel_share"]
    shares = f"{pct(ps['background'])} | {pct(ps['foreground_interior'])} | {pct(ps['boundary'])}"
    if not p.get("gradients"):
        return f"| {size} | n/a | {p['n_tiles']} | {shares} | n/a | n/a | n/a | n/a |"
    gr, mp = p["gradients"], p["mean_p_t"]
    return (f"| {size} | {p['model_run']} | {p['n_tiles']} | {shares} | "
            f"{fmt(mp['background'], 3)} / {fmt(mp['foreground_interior'], 3)} / {fmt(mp['boundary'], 3)} | "
            + " / ".join(pct(gr[v]["share"]["boundary"]) for v in VARIANTS)
            + f" | {fmt(p['boundary_amplification'], 2)}× | "
            f"{p['imbalance_background_to_boundary_without_focal']:.3g}:1 → "
            f"{p['imbalance_background_to_boundary_with_focal']:.3g}:1 |")


def pixel_lines(numbers: dict[str, Any]) -> list[str]:
    """``## Pixel classes and gradient shares ...``: full images, then one table row per tile size."""
    f7 = numbers.get("fig7", {})
    L = ["## Pixel classes and gradient shares on the real validation data (fig7)", ""]
    if f7.get("full_image_pixel_share"):
        s = f7["full_image_pixel_share"]
        L += [f"Full validation images ({f7.get('val_images')}): background {pct(s['background'])}, foreground interior "
              f"{pct(s['foreground_interior'])}, boundary {pct(s['boundary'])} (foreground "
              f"{pct(f7.get('val_foreground_fraction'))}).", ""]
    L += ["| tile size | model | tiles | background | fg interior | boundary | mean p_t (bg / fg / boundary) | "
          "boundary share of |∂L/∂x|: γ=0 / focal / dice / combined | amplification | bg:boundary γ=0 → focal |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    L += [_size_row(size, p) for size, p in per_size(numbers).items()]
    return L + ["", READING, ""]


def math_text(numbers: dict[str, Any], runs: pd.DataFrame) -> str:
    """MATHEMATICAL_ANALYSIS_SUMMARY.md."""
    return "\n".join(equation_lines(numbers, runs) + focusing_lines(numbers) + pixel_lines(numbers))
