# mmemory: multimodal long-term memory for conversational agents, as one Snakemake DAG.
#
#   snakemake --cores 2                      # the whole study on the embedded default (toy data, tiny models)
#   snakemake results/report.md --cores 2    # rebuild one artifact
#   snakemake --profile profiles/slurm --configfile config.yaml config/paper.yaml   # paper scale on SLURM GPUs
#
# Output convention: every output lives under results/<stage>/<variant>/... (results/ is git-ignored);
# every stage writes results/<stage>/.../metrics.json, which the report rule gathers into results/report.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "resources/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/emr.smk"
include: "rules/reminder.smk"
include: "rules/memory.smk"
include: "rules/coref.smk"
include: "rules/counting.smk"
include: "rules/report.smk"
include: "rules/gpu_check.smk"


rule all:
    input:
        "results/gpu_check/passed.txt" if config["gpu_check"] else "results/report.md",
