# synth (embedded demo) -> split (train/val/test by source image) -> tile (one job per tile size); after the split,
# fingerprint (what the data look like, steps per run, warnings) and baseline (a classical threshold).
# Each rule's params hold exactly the settings its step reads, so Snakemake's params trigger re-runs
# a step only when one of *its* settings changed (adding a tile size adds one tile job, re-tiles nothing).


rule synth:
    output:
        images=directory("data/raw/demo/images"),
        masks=directory("data/raw/demo/masks"),
    log:
        "logs/synth/synth.log",
    benchmark:
        "benchmarks/synth/synth.tsv"
    conda:
        ENV
    params:
        settings=SYNTH_SETTINGS,
    shell:
        "beadseg synth 2>&1 | tee {log}"


rule split:
    input:
        images=CFG.data.images,
        masks=CFG.data.masks,
    output:
        train="data/split/train.npz",
        val="data/split/val.npz",
        test="data/split/test.npz",
        manifest="data/split/split.json",
    log:
        "logs/split/split.log",
    benchmark:
        "benchmarks/split/split.tsv"
    retries: 1
    conda:
        ENV
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    params:
        settings=DATA_SETTINGS,
    shell:
        "beadseg split 2>&1 | tee {log}"


rule tile:
    input:
        train="data/split/train.npz",
        val="data/split/val.npz",
    output:
        train="data/tiles/t{size}/train.npz",
        val="data/tiles/t{size}/val.npz",
        manifest="data/tiles/t{size}/manifest.csv",
    log:
        "logs/tile/t{size}.log",
    benchmark:
        "benchmarks/tile/t{size}.tsv"
    retries: 1
    conda:
        ENV
    resources:
        mem_mb=lambda wildcards, attempt: 4000 * attempt,
    params:
        stride=tile_stride,
        small_images=CFG.tiling.small_images,
    shell:
        "beadseg tile --size {wildcards.size} 2>&1 | tee {log}"


rule fingerprint:
    input:
        manifest="data/split/split.json",
        images=CFG.data.images,
        masks=CFG.data.masks,
    output:
        "results/summary/fingerprint.json",
    log:
        "logs/fingerprint/fingerprint.log",
    benchmark:
        "benchmarks/fingerprint/fingerprint.tsv"
    conda:
        ENV
    params:
        tiling=TILING_SETTINGS,
        runs=RUN_SETTINGS,  # as dvc.yaml (params train, runs, finetune): any run change
    shell:
        "beadseg fingerprint 2>&1 | tee {log}"


rule baseline:
    input:
        train="data/split/train.npz",
        val="data/split/val.npz",
        test="data/split/test.npz",
    output:
        "results/summary/baseline.json",
    log:
        "logs/baseline/baseline.log",
    benchmark:
        "benchmarks/baseline/baseline.tsv"
    conda:
        ENV
    params:
        evaluation=EVALUATION_SETTINGS,  # scored like the runs
    shell:
        "beadseg baseline 2>&1 | tee {log}"
