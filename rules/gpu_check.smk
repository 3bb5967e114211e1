# The 10-minute GPU check (mmemory/gpu_check.py): every CUDA code path of the paper preset once, at tiny width with
# random weights built offline. config/gpu_check.yaml sets `gpu_check: true`, which makes it the default target:
#   snakemake --cores 4 --configfile config.yaml config/gpu_check.yaml
# Without CUDA the job stops at once; its log says so in one line. Name results/report.md as the target to run the
# whole toy DAG through the same CUDA paths instead. Under --use-conda it runs in the malmm env, which skips (and
# names the env of) the checks whose library it lacks: run `python -m mmemory.gpu_check` in the others too.


rule gpu_check:
    output:
        "results/gpu_check/passed.txt",
    params:
        python=PYTHON,
        workdir="results/gpu_check/work",
    log:
        "results/logs/gpu_check.log",
    benchmark:
        "results/benchmarks/gpu_check.tsv"
    resources:
        gpu=1,
        runtime=15,
    conda:
        "../envs/malmm.yaml"
    shell:
        "{params.python} -m mmemory.gpu_check --timeout 600 --workdir {params.workdir:q} > {log:q} 2>&1 "
        "&& cp {log:q} {output:q}"
