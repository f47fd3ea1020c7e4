"""beadseg: hyperparameter searches for microbead segmentation, driven by Snakemake and DVC."""

__version__ = "0.1.0"
