# report: gathers every registered stage's metrics.json and figures into results/report.md and every number into
# results/summary.csv (and, through report() captions, into `snakemake --report report.html`).


rule report:
    input:
        metrics=list(REPORT_METRICS.values()),
        figures=list(REPORT_FIGURES),
        data_report="results/data/data_report.json",
    output:
        report="results/report.md",
        summary="results/summary.csv",
        overview=report(
            "results/report/overview.png",
            caption="../resources/report/overview.rst",
            category="Overview",
        ),
    params:
        report=config["report"],
        sections=REPORT_METRICS,
        figures=REPORT_FIGURES,
        data_source=config["data"]["source"],
        train_seeds=config["train_seeds"],
        benchmarks="results/benchmarks",
    log:
        "results/logs/report.log",
    benchmark:
        "results/benchmarks/report.tsv"
    conda:
        "../envs/core.yaml"
    script:
        "../workflow_scripts/report.py"
