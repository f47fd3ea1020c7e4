# One training job and one evaluate job per run id (runs and finetune tables of params.yaml).
#
# Re-run triggers (Snakemake's defaults: mtime, params, input, code, software-env) are kept on purpose:
#   params  = every setting of this run (defaults merged with its overrides): editing one run's lr
#             re-runs that run only; editing a `train:` default re-runs every run that inherits it;
#             evaluation.threshold too (validation picks the best epoch at it; the model file records it).
#   code    = the shell command template below, not the beadseg package: editing Python modules does not
#             retrain anything (force it with `snakemake --forcerun train` or `dvc repro -f -s ...`).
#   input   = the set of input files (its tile sizes, its init_from model).
#   mtime   = a newer input; after DVC rewrote files (dvc commit / checkout / pull) run `beadseg sync
#             from-dvc`, which checks `dvc status` is clean and then runs `snakemake --touch`.


rule train:
    input:
        tiles=train_tiles,
        val_images="data/split/val.npz",
        init=init_model,
    output:
        model="results/runs/{run}/model.pt",
        history="results/runs/{run}/history.csv",
        info="results/runs/{run}/train.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    retries: 1
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    params:
        settings=run_settings,
        threshold=CFG.evaluation.threshold,  # chooses the best epoch; the model file records it
    shell:
        "beadseg train --run {wildcards.run} --threads {threads} 2>&1 | tee {log}"


# Scores the run's best model on the full val and test images. Its params are the evaluation settings
# only: changing one re-runs every evaluate job (and the analysis) and no train job.
rule evaluate:
    input:
        model="results/runs/{run}/model.pt",
        history="results/runs/{run}/history.csv",
        info="results/runs/{run}/train.json",
        val="data/split/val.npz",
        test="data/split/test.npz",
        manifest="data/split/split.json",
    output:
        metrics="results/runs/{run}/metrics.json",
        info="results/runs/{run}/evaluation.json",
        per_image="results/runs/{run}/per_image.csv",
        predictions="results/runs/{run}/predictions.npz",
    log:
        "logs/evaluate/{run}.log",
    benchmark:
        "benchmarks/evaluate/{run}.tsv"
    retries: 1
    conda:
        ENV
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 60 * attempt,
    params:
        settings=EVALUATION_SETTINGS,
    shell:
        "beadseg evaluate --run {wildcards.run} --threads {threads} 2>&1 | tee {log}"
