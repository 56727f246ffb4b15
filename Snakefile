# amuro: how pre-training checkpoints shape fine-tuning (Sun & Dredze 2024; Yang et al. 2024).
# Wiring only: the work is in the `amuro` package, one module per stage.
from snakemake.utils import min_version

min_version("9.19")

# The paper's study unless a profile or --configfile names another (a given config replaces it, not merges).
if not config:

    configfile: f"{workflow.basedir}/workflow_config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/downloads.smk"
include: "rules/cluster.smk"
include: "rules/miniworld.smk"
include: "rules/checkpoints.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/benchmarks.smk"
include: "rules/results.smk"


rule all:
    input:
        STUDY.final_outputs(),
