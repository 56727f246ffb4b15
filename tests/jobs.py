"""How many jobs of each rule a study runs: counted here by hand from its config's axes, never from the workflow's
own code, so that the plan (tests/test_plan.py), the dry runs (tests/test_workflow.py) and the real studies
(tests/test_real_configs.py) are all checked against one count."""

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from amuro.config import instruction_tuned_models, model_checkpoints
from amuro.figures import FIGURES as FIGURES_REGISTRY
from amuro.tasks import TASKS
from conftest import DEMO_CONFIG, ROOT

TINY = ROOT / "tests" / "configs" / "tiny.yaml"
PAPER = ROOT / "workflow_config.yaml"
YANG = ROOT / "profiles" / "generalization" / "study.yaml"
PROCESS_GROUP_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# Figures each study cannot draw: the demo lacks train sizes and FTICL; tiny also has no second set of a tuned task;
# only the demo has a LoRA variant beside full fine-tuning.
ALL_BUT = {"train_size", "fticl"}
FIGURES_LEFT_OUT = {DEMO_CONFIG: ALL_BUT, TINY: ALL_BUT | {"cross_domain", "full_vs_lora"},
                    PAPER: ALL_BUT | {"full_vs_lora"}, YANG: {"instruction_tuned", "full_vs_lora"}}


def expected_jobs(config: dict, figures_left_out: set[str]) -> Counter:
    """Jobs per rule of the whole study (`snakemake` with no target), `all` included."""
    checkpoints = sum(len(model_checkpoints(config, m)) for m in config["models"])
    datasets, formats = len(config["datasets"]), len(config["formats"])
    ft = config["finetune"]
    # Per variant, the train sets it trains on (all of them unless it lists some) at each of its seeds (its own, or
    # finetune.seeds, or one).
    default_seeds = len(ft["seeds"]) if ft["seeds"] is not None else 1
    trained = sum(len(v.get("datasets", ft["datasets"])) * len(v.get("seeds", [None] * default_seeds))
                  for v in ft["variants"].values())
    cells = checkpoints * trained * len(ft["formats"]) * len(ft["sizes"])
    jobs = Counter(miniworld_generate=1, miniworld_tokenizer=1, miniworld_pretrain=1, fetch_checkpoint=checkpoints,
                   prepare_dataset=datasets, build_prompts=datasets * formats, build_test_prompts=datasets * formats,
                   index_prompts=1, evaluate_base=checkpoints,
                   finetune=cells, summarize_predictions=checkpoints + cells,
                   results_table=1, tables=1, figure=len(set(FIGURES_REGISTRY) - figures_left_out), all=1)
    # One evaluation job per fine-tuned model, or one per checkpoint for all of its models.
    per_checkpoint = config["evaluation"]["finetuned_jobs"] == "per_checkpoint"
    jobs["evaluate_finetuned"] = (checkpoints if per_checkpoint else cells) if cells else 0
    # One fine-tune job per cell, or one per checkpoint for all of its cells.
    if ft["jobs"] == "per_checkpoint":
        jobs["finetune"], jobs["finetune_checkpoint"] = 0, checkpoints if cells else 0
    if "fticl" in ft["formats"]:
        jobs["build_fticl_prompts"] = len(ft["datasets"])
    if all(m["source"] != "miniworld" for m in config["models"].values()):
        for rule in ("miniworld_generate", "miniworld_tokenizer", "miniworld_pretrain"):
            del jobs[rule]
    tuned = sum(len(model_checkpoints(config, m)) for m in instruction_tuned_models(config))
    if tuned:
        jobs.update(prepare_instructions=1, finetune=tuned, summarize_predictions=tuned)
    if config["benchmarks"]["tasks"]:
        jobs["evaluate_benchmarks"] = checkpoints + tuned
    if any(TASKS[d["task"]].is_classification for d in config["datasets"].values()):
        jobs["scoring_methods"] = 1
    # The download stage: one job per hub checkpoint, hub dataset, hub instruction mix and lm-eval benchmark.
    jobs["download_checkpoint"] = sum(len(model_checkpoints(config, m)) for m, spec in config["models"].items()
                                      if spec["source"] == "hub")
    jobs["download_dataset"] = sum(d["source"]["type"] == "hub" for d in config["datasets"].values())
    jobs["download_instructions"] = int(bool(tuned) and config["instruction_tuning"]["source"]["type"] == "hub")
    jobs["download_benchmark"] = sum("task" in b for b in config["benchmarks"]["tasks"].values())
    return +jobs


def snakemake_command(workdir, configfile, *args) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
            "--configfile", str(configfile), "--cores", "2", *args]


def snakemake_env() -> dict:
    # Each job forms its own world and decides itself whether it uses DeepSpeed.
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_GROUP_ENV and not k.startswith("ACCELERATE_")}
    # PATH as a user has it, without the venv: the workflow must find its own interpreter.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != Path(sys.executable).parent)
    return env


def snakemake(workdir, configfile, *args, check=True):
    run = subprocess.run(snakemake_command(workdir, configfile, *args), capture_output=True, text=True,
                         env=snakemake_env())
    if check and run.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{run.stdout[-5000:]}\n{run.stderr[-5000:]}")
    return run


def planned_jobs(workdir, configfile, *targets) -> Counter:
    out = snakemake(workdir, configfile, *targets, "--dry-run", "--quiet", "rules").stdout
    return Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M) if m[1] != "total"})
