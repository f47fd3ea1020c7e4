"""The analysis steps: aggregate (runs.csv, summary.json) -> figures -> report.

``FIGURES`` is the list of figure files ``beadseg figures`` writes into results/report/; the Snakefile
and dvc.yaml declare the same names (a test checks they agree).
"""

FIGURES: tuple[str, ...] = ("fig3_learning_curves.png",)
