"""The analysis steps: aggregate (runs.csv, summary.json) -> measure (analysis_numbers.json) -> figures -> report.

``FIGURES`` is the list of figure files ``beadseg figures`` writes into results/report/figures/ (in
this order); the Snakefile expands the same names, and dvc.yaml declares the whole folder.
"""

FIGURES: tuple[str, ...] = (
    "fig1_top5_configurations.png",
    "fig2_hyperparameter_impact.png",
    "fig3_learning_curves.png",
    "fig4_loss_comparison.png",
    "fig5_convergence_analysis.png",
    "fig6_loss_function_mathematics.png",
    "fig7_pixel_gradient_analysis.png",
    "fig8_budget_vs_score.png",
    "fig9_predictions.png",
)
