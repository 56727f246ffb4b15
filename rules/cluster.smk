# Running on a SLURM cluster (profiles/slurm; README, "Running on a SLURM cluster"): which jobs stay on the login
# node, the download target, offline compute jobs, and what a GPU job asks the scheduler for. None of this changes a
# local run (the demo): local jobs ignore mem_mb, runtime and gpu unless --resources limits them.
import os
import sys

# Jobs that need the network (hub checkpoints, hub datasets, the instruction mix) or are light run where Snakemake
# runs: on the login node, which has the network. The analysis rules are local too (rules/results.smk).
localrules:
    download,
    fetch_checkpoint,
    prepare_dataset,
    prepare_instructions,
    build_prompts,
    build_fticl_prompts,


# Inside a SLURM job (a compute node) nothing reaches the hub: loaders fail at once instead of hanging on a node
# without network; `snakemake --profile slurm download` has filled HF_HOME on the login node. Export
# HF_HUB_OFFLINE=0 before submitting to let jobs go online after all (sbatch passes the environment on).
if "SLURM_JOB_ID" in os.environ:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    print(f"amuro: in SLURM job {os.environ['SLURM_JOB_ID']}: HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}",
          file=sys.stderr)


# Everything the study fetches from the network, fetched here: every checkpoint, every dataset, the instruction mix
# and the data of lm-eval's benchmarks (into HF_HOME's datasets cache). For the mini-world it generates the world and
# pre-trains the model instead (a compute job).
rule download:
    input:
        STUDY.checkpoint_dirs(),
        STUDY.data_files(),
        STUDY.instruction_files(),
    params:
        tasks=" ".join(STUDY.hub_benchmark_tasks()),
    log:
        "logs/download.log",
    shell:
        "if [ -n '{params.tasks}' ]; then python -c 'import sys; from lm_eval.tasks import TaskManager;"
        " TaskManager().load(sys.argv[1:])' {params.tasks} > {log} 2>&1; else : > {log}; fi"
