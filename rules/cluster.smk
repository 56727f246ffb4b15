# Running on a SLURM cluster (profiles/slurm; docs/slurm.md): which jobs stay on the login
# node and offline compute jobs (what a GPU job asks the scheduler for is plan.JOB_SIZE). None of this changes a
# local run (the demo): local jobs ignore mem_mb, runtime and gpu unless --resources limits them.
import os
import sys

# Light jobs run where Snakemake runs, on the login node; so do the download rules (rules/downloads.smk), which need
# its network, and the analysis rules (rules/results.smk).
localrules:
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
