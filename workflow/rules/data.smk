rule synth:
    output:
        images=directory("data/raw/demo/images"),
        masks=directory("data/raw/demo/masks"),
    log:
        "logs/synth/synth.log",
    params:
        settings=CFG.data.synthetic,
    conda:
        ENV
    shell:
        "beadseg synth 2>&1 | tee {log}"


rule split:
    input:
        images=CFG.data.images,
        masks=CFG.data.masks,
    output:
        train="data/split/train.npz",
        val="data/split/val.npz",
        manifest="data/split/split.json",
    log:
        "logs/split/split.log",
    benchmark:
        "benchmarks/split/split.tsv"
    params:
        settings=CFG.data,
    conda:
        ENV
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
    params:
        settings=CFG.tiling,
    conda:
        ENV
    shell:
        "beadseg tile --size {wildcards.size} 2>&1 | tee {log}"
