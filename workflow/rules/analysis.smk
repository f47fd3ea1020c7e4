# aggregate (runs.csv, summary.json) -> measure (analysis_numbers.json: loss mathematics and pixel gradients of the
# best models on the validation tiles) -> figures (draw only) -> report (write only).


rule aggregate:
    input:
        metrics=expand("results/runs/{run}/metrics.json", run=RUN_IDS),
        info=expand("results/runs/{run}/train.json", run=RUN_IDS),
        evaluation=expand("results/runs/{run}/evaluation.json", run=RUN_IDS),
        histories=expand("results/runs/{run}/history.csv", run=RUN_IDS),
        baseline="results/summary/baseline.json",
    output:
        runs="results/summary/runs.csv",
        summary="results/summary/summary.json",
        histories="results/summary/histories.csv",
    log:
        "logs/aggregate/aggregate.log",
    conda:
        ENV
    params:
        settings=ANALYSIS_SETTINGS,  # rank_by (which validation score ranks the runs); as dvc.yaml: the section
    shell:
        "beadseg aggregate 2>&1 | tee {log}"


rule measure:
    input:
        runs="results/summary/runs.csv",
        val_images="data/split/val.npz",
        val_tiles=expand("data/tiles/t{size}/val.npz", size=CFG.tiling.sizes),
        models=expand("results/runs/{run}/model.pt", run=RUN_IDS),
    output:
        "results/report/analysis_numbers.json",
    log:
        "logs/measure/measure.log",
    benchmark:
        "benchmarks/measure/measure.tsv"
    conda:
        ENV
    params:
        settings=ANALYSIS_SETTINGS,  # gradient_max_tiles; as dvc.yaml: the whole section (no file must carry a key)
    shell:
        "beadseg measure 2>&1 | tee {log}"


rule figures:
    input:
        runs="results/summary/runs.csv",
        histories="results/summary/histories.csv",
        baseline="results/summary/baseline.json",
        numbers="results/report/analysis_numbers.json",
        # fig9: the best run's predicted beads and per-image scores (every run's: the best is known only from
        # runs.csv) on its split's images
        predictions=expand("results/runs/{run}/predictions.npz", run=RUN_IDS),
        per_image=expand("results/runs/{run}/per_image.csv", run=RUN_IDS),
        val="data/split/val.npz",
        test="data/split/test.npz",
    output:
        [
            report(
                f"results/report/figures/{name}",
                caption=f"../report/{name.removesuffix('.png')}.rst",
                category="Analysis",
                labels={
                    "figure": name.split("_")[0],
                    "topic": name.removesuffix(".png").split("_", 1)[1],
                },
            )
            for name in FIGURES
        ],
    log:
        "logs/figures/figures.log",
    benchmark:
        "benchmarks/figures/figures.tsv"
    conda:
        ENV
    params:
        settings=ANALYSIS_SETTINGS,
    shell:
        "beadseg figures 2>&1 | tee {log}"


rule report:
    input:
        runs="results/summary/runs.csv",
        summary="results/summary/summary.json",
        histories="results/summary/histories.csv",
        numbers="results/report/analysis_numbers.json",
        fingerprint="results/summary/fingerprint.json",
        baseline="results/summary/baseline.json",
        split="data/split/split.json",
        per_image=expand("results/runs/{run}/per_image.csv", run=RUN_IDS),  # the best run's worst-AP image
        figures=expand("results/report/figures/{name}", name=FIGURES),
    output:
        report=report(
            "results/report/REPORT.md",
            caption="../report/report_md.rst",
            category="Report",
            labels={"file": "REPORT.md"},
        ),
        math=report(
            "results/report/MATHEMATICAL_ANALYSIS_SUMMARY.md",
            caption="../report/report_md.rst",
            category="Report",
            labels={"file": "MATHEMATICAL_ANALYSIS_SUMMARY.md"},
        ),
        complete="results/report/ANALYSIS_COMPLETE.md",
        next_search=report(
            "results/report/next_search.yaml",
            caption="../report/next_search.rst",
            category="Report",
            labels={"file": "next_search.yaml"},
        ),
    log:
        "logs/report/report.log",
    conda:
        ENV
    params:
        settings=ANALYSIS_SETTINGS,
    shell:
        "beadseg report 2>&1 | tee {log}"
