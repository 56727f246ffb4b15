# Running on a SLURM cluster (profiles/slurm; docs/slurm.md): what a GPU job asks the scheduler for, and offline
# compute jobs. None of this changes a local run (the demo): local jobs ignore mem_mb, runtime and gpu unless
# --resources limits them.
import os
import sys

# What one job asks a cluster for, for a model on one GPU: wall time (minutes) and memory (MB). A job is scaled by
# its model's `gpus` (Llama-3-8B on 4 GPUs asks for 4 times OLMo-1B's) and by the attempt, so a job the scheduler
# killed for time or memory comes back with twice, then three times as much (the profile's `retries`). A profile
# overrides any of them per rule (set-resources, e.g. `finetune: {runtime: "720 * attempt"}`).
JOB_SIZE = {
    "finetune": {"runtime": 360, "mem_mb": 64_000},
    "evaluate": {"runtime": 120, "mem_mb": 32_000},
}


def job_size(stage, resource):
    """A resource request of the job's run that grows with the attempt."""

    def request(wildcards, attempt):
        return JOB_SIZE[stage][resource] * STUDY.finetuning.gpus(STUDY.run_for(wildcards)) * attempt

    return known_params(request)


def checkpoint_job_size(stage, resource):
    """A per-checkpoint job's request (evaluate: every fine-tuned model of a checkpoint; finetune: every cell):
    runtime grows with its models, memory holds one at a time."""

    def request(wildcards, attempt):
        size = JOB_SIZE[stage][resource] * STUDY.model(wildcards.model).gpus * attempt
        models = len(STUDY.cells(wildcards.model, wildcards.checkpoint))
        return size * models if resource == "runtime" else size

    return known_params(request)


@known_params
def launcher(wildcards):
    """One process, or on several GPUs the `deepspeed` launcher as one task that sees them all, on a free port."""
    gpus = STUDY.finetuning.gpus(STUDY.run_for(wildcards))
    if gpus == 1:
        return "python -m amuro"
    # --no_local_rank: the rank comes from the environment, and `--local_rank=N` would precede the subcommand.
    return f"deepspeed --num_gpus {gpus} --master_port $(python -m amuro free-port) --no_local_rank --module amuro"


# Inside a SLURM job (a compute node) nothing reaches the hub: loaders fail at once instead of hanging on a node
# without network; `snakemake --profile slurm download` has filled HF_HOME on the login node. Export
# HF_HUB_OFFLINE=0 before submitting to let jobs go online after all (sbatch passes the environment on).
if "SLURM_JOB_ID" in os.environ:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    print(f"amuro: in SLURM job {os.environ['SLURM_JOB_ID']}: HF_HUB_OFFLINE={os.environ['HF_HUB_OFFLINE']}",
          file=sys.stderr)
