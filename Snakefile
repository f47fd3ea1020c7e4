# beadseg: one hyperparameter search = synth/ingest -> split -> tile -> train (one job per run) -> analysis.
# Every rule only declares its files and calls the `beadseg` command-line interface.
#   CPU:      snakemake --cores 2            (or --profile workflow/profiles/default)
#   GPU box:  snakemake --cores 8 --resources gpu=2
#   cluster:  snakemake --profile workflow/profiles/slurm
#   then:     beadseg sync to-dvc            (record the outputs in dvc.lock; see docs/workflow.md)
from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"


# Cheap steps run in the Snakemake process itself under a cluster executor (no queueing).
localrules:
    all,
    aggregate,
    report,


rule all:
    default_target: True
    input:
        "results/report/REPORT.md",
