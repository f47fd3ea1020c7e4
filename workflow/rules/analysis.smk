rule aggregate:
    input:
        metrics=expand("results/runs/{run}/metrics.json", run=RUN_IDS),
        histories=expand("results/runs/{run}/history.csv", run=RUN_IDS),
    output:
        runs="results/summary/runs.csv",
        summary="results/summary/summary.json",
        histories="results/summary/histories.csv",
    log:
        "logs/aggregate/aggregate.log",
    conda:
        ENV
    shell:
        "beadseg aggregate 2>&1 | tee {log}"


rule figures:
    input:
        runs="results/summary/runs.csv",
        histories="results/summary/histories.csv",
        val_images="data/split/val.npz",
        models=expand("results/runs/{run}/model.pt", run=RUN_IDS),
    output:
        [
            report(
                f"results/report/{name}",
                caption="../report/figure.rst",
                category="Analysis",
            )
            for name in FIGURES
        ],
    log:
        "logs/figures/figures.log",
    benchmark:
        "benchmarks/figures/figures.tsv"
    params:
        settings=CFG.analysis,
    conda:
        ENV
    shell:
        "beadseg figures 2>&1 | tee {log}"


rule report:
    input:
        runs="results/summary/runs.csv",
        summary="results/summary/summary.json",
        figures=expand("results/report/{name}", name=FIGURES),
    output:
        report="results/report/REPORT.md",
    log:
        "logs/report/report.log",
    params:
        settings=CFG.analysis,
    conda:
        ENV
    shell:
        "beadseg report 2>&1 | tee {log}"
