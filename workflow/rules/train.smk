rule train:
    input:
        tiles=train_tiles,
        val_images="data/split/val.npz",
        init=init_model,
    output:
        model="results/runs/{run}/model.pt",
        history="results/runs/{run}/history.csv",
        metrics="results/runs/{run}/metrics.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    params:
        settings=run_settings,
    threads: 1
    resources:
        gpu=1,
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
        runtime=lambda wildcards, attempt: 120 * attempt,
    retries: 1
    conda:
        ENV
    shell:
        "beadseg train --run {wildcards.run} --threads {threads} 2>&1 | tee {log}"
