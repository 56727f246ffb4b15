"""The study through a real SLURM scheduler: a one-node cluster on this machine (tests/slurm/cluster.sh), the CPU
variant of the SLURM profile (tests/slurm/profile.yaml) installed where Snakemake looks for `--profile slurm`, and
the user's literal command run from the root of a copy of the repository.

One results directory is built up in the order a researcher would: one figure first (on a fresh directory), then
the whole tiny study with one fine-tuning cell cancelled by `scancel` on both attempts, then the same command again,
then cosmetic changes. Which jobs went to the scheduler is read from the scheduler's own record: without accounting
(no sacct) slurmctld keeps finished jobs in memory (MinJobAge one day), and `squeue --states=all` lists them with
the comment the SLURM plugin gives every job (`rule_<rule>_wildcards_<values>`).

The cluster is started once for this module and stopped after it, also when a test fails. Where it cannot start
(no root, no apt, a SLURM installation of its own), the tests fail with the reason.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from amuro.config import finetune_seeds, instruction_tuned_models, load_config, model_checkpoints
from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
PARTITION = "amuro"
STUDY = ROOT / "tests" / "slurm" / "study.yaml"  # the tiny study, cut to the fewest and shortest jobs
# Rules that run on compute nodes; everything else is a local rule (login node).
COMPUTE_RULES = {"miniworld_generate", "miniworld_tokenizer", "miniworld_pretrain", "finetune", "evaluate_base",
                 "evaluate_finetuned", "evaluate_benchmarks"}
# The cell the failure test cancels (model, checkpoint, dataset, train format, size): the middle checkpoint.
FAILED_CELL = ("mini", model_checkpoints(load_config(STUDY), "mini")[1], "people_nli", "default", "all", "full",
               str(finetune_seeds(load_config(STUDY))[0]))
FIGURE = "pretraining_curves"
PROCESS_GROUP_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
RUN_TIMEOUT = 1500


@dataclass(frozen=True)
class Job:
    id: int
    run: str  # the job name: the Snakemake run's id
    comment: str  # rule_<rule>_wildcards_<values joined by _>
    state: str
    mem: str  # e.g. 1500M
    limit: str  # e.g. 15:00

    @property
    def rule(self) -> str:
        return self.comment.removeprefix("rule_").split("_wildcards_")[0]


def comment(rule: str, *wildcards: str) -> str:
    """The comment the SLURM plugin gives a job (wildcard values in the rule's order, joined by _)."""
    return f"rule_{rule}_wildcards_{'_'.join(wildcards)}" if wildcards else f"rule_{rule}"


def scheduler_jobs(after: int = 0) -> list[Job]:
    """Every job slurmctld knows, finished ones included, with an id above `after`."""
    out = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%j|%k|%T|%m|%l"],
                         capture_output=True, text=True, check=True).stdout
    jobs = []
    for line in out.splitlines():
        jid, run, note, state, mem, limit = line.strip().split("|")
        if int(jid) > after:
            jobs.append(Job(int(jid), run, note, state, mem, limit))
    return sorted(jobs, key=lambda j: j.id)


def last_job_id() -> int:
    return max((j.id for j in scheduler_jobs()), default=0)


@pytest.fixture(scope="module")
def cluster():
    start = subprocess.run(["bash", str(CLUSTER), "start"], capture_output=True, text=True, timeout=900,
                           stdin=subprocess.DEVNULL)
    if start.returncode != 0:
        subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=120)
        pytest.fail(f"the SLURM test cluster did not start (tests/slurm/cluster.sh start):\n{start.stdout}\n"
                    f"{start.stderr}", pytrace=False)
    try:
        yield
    finally:
        stop = subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, text=True, timeout=300)
        assert stop.returncode == 0, stop.stderr


class Checkout:
    """A copy of the repository (what a clone holds) with the test profile installed as `slurm`."""

    def __init__(self, root: Path, config_home: Path):
        self.root = root
        env = {k: v for k, v in os.environ.items() if k not in PROCESS_GROUP_ENV and not k.startswith("ACCELERATE_")}
        # As a user on a login node: the environment's bin first on PATH, nothing else set up.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
        env["XDG_CONFIG_HOME"] = str(config_home)
        env.pop("SLURM_CONF", None)
        self.env = env
        self.runs: dict[str, list[Job]] = {}

    def snakemake(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The user's command, `snakemake --profile slurm [args]`, from the repository root."""
        run = subprocess.run(["snakemake", "--profile", "slurm", *args], cwd=self.root, env=self.env,
                             capture_output=True, text=True, timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)
        if check and run.returncode != 0:
            raise AssertionError(f"snakemake --profile slurm {' '.join(args)} failed:\n{run.stdout[-6000:]}\n"
                                 f"{run.stderr[-6000:]}")
        return run

    def files(self, under: str = "results") -> dict[str, tuple[int, str]]:
        """Every file under `under` (Trainer scratch left out): modification time and sha256."""
        found = {}
        for path in sorted((self.root / under).rglob("*")):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not rel.startswith("results/scratch/"):
                found[rel] = (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        return found


@pytest.fixture(scope="module")
def checkout(cluster, tmp_path_factory) -> Checkout:
    base = tmp_path_factory.mktemp("slurm")
    root = base / "repo"
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    # The documented installer, with the test cluster's template, into the config directory Snakemake searches.
    config_home = base / "config"
    install = subprocess.run([sys.executable, "profiles/slurm/install.py", "--template", "tests/slurm/profile.yaml",
                              "--partition", PARTITION], cwd=root, capture_output=True, text=True,
                             env={**os.environ, "XDG_CONFIG_HOME": str(config_home)})
    assert install.returncode == 0, install.stderr
    profile = (config_home / "snakemake" / "slurm" / "profile.yaml").read_text()
    # No accounting on the test cluster: the installer chose squeue and no account.
    assert "\nslurm-status-command: squeue\n" in profile and "\nslurm-no-account: true\n" in profile
    assert f"slurm_partition: \"'{PARTITION}'\"" in profile
    return Checkout(root, config_home)


# --- what the tiny study submits ------------------------------------------------------------------------------------

def study_compute_jobs() -> Counter:
    """The comment of every compute job of the tiny study, each once."""
    config = load_config(STUDY)
    jobs = Counter([comment("miniworld_generate"), comment("miniworld_tokenizer"), comment("miniworld_pretrain")])
    tuned = instruction_tuned_models(config)
    it = config["instruction_tuning"]["name"]
    for model in config["models"]:
        for ckpt in model_checkpoints(config, model):
            jobs[comment("evaluate_base", model, ckpt, "base")] += 1
            jobs[comment("evaluate_benchmarks", model, ckpt, "base")] += 1
            if model in tuned:
                it_seed = str(config["instruction_tuning"]["hyperparameters"]["seed"])
                jobs[comment("finetune", model, ckpt, it, "chat", "all", "full", it_seed)] += 1
                jobs[comment("evaluate_benchmarks", model, ckpt, f"{it}-chat-all-full-{it_seed}")] += 1
            seeds = config["finetune"]["seeds"] or [config["finetune"]["hyperparameters"]["seed"]]
            for dataset in config["finetune"]["datasets"]:
                for fmt in config["finetune"]["formats"]:
                    for size in map(str, config["finetune"]["sizes"]):
                        for variant, spec in config["finetune"]["variants"].items():
                            if dataset not in spec.get("datasets", [dataset]):
                                continue
                            for seed in map(str, seeds):
                                jobs[comment("finetune", model, ckpt, dataset, fmt, size, variant, seed)] += 1
                                jobs[comment("evaluate_finetuned", model, ckpt,
                                             f"{dataset}-{fmt}-{size}-{variant}-{seed}")] += 1
    return jobs


def figure_compute_jobs() -> Counter:
    """What the pre-training curves need from the cluster: the mini-world and every base evaluation."""
    return Counter({c: n for c, n in study_compute_jobs().items()
                    if c.startswith(("rule_miniworld", "rule_evaluate_base_")) or c.endswith("_base")})


# A fine-tuned model's evaluation is named by its run id ({train_dataset}-{train_format}-{train_size}).
FAILED = {comment("finetune", *FAILED_CELL),
          comment("evaluate_finetuned", *FAILED_CELL[:2], "-".join(FAILED_CELL[2:]))}


# --- the tests, in the order a researcher works ---------------------------------------------------------------------

def test_one_figure_on_a_fresh_results_directory_submits_only_its_upstream_jobs(checkout):
    # The download target plans every fetch from the hub: the mini-world has none, so nothing but the target itself.
    # That the fetch rules run on the login node shows below: they run, and the scheduler never sees them.
    planned = checkout.snakemake("download", "--dry-run").stdout
    assert Counter(re.findall(r"^(?:local)?rule (\w+):", planned, re.M)) == Counter(download=1), planned

    before = last_job_id()
    checkout.snakemake(f"results/figures/{FIGURE}.pdf")
    jobs = scheduler_jobs(after=before)
    checkout.runs["figure"] = jobs
    print("\nscheduler record, one figure:\n" + "\n".join(f"  {j.id} {j.comment} {j.state}" for j in jobs))
    assert Counter(j.comment for j in jobs) == figure_compute_jobs()
    assert {j.state for j in jobs} == {"COMPLETED"}
    assert len({j.run for j in jobs}) == 1  # one Snakemake run submitted them all
    assert (checkout.root / f"results/figures/{FIGURE}.pdf").read_bytes().startswith(b"%PDF")
    assert not (checkout.root / "results/finetuned").exists()
    assert not (checkout.root / "results/tables/results.parquet").exists()
    # The checkpoints were fetched, prompts built, predictions summarized: on the login node, unseen by the scheduler.
    for ckpt in model_checkpoints(load_config(STUDY), "mini"):
        assert (checkout.root / f"results/checkpoints/mini/{ckpt}/resolved.json").exists()


def _cancel_cell_attempts(process: subprocess.Popen, target: str, attempts: int, after: int) -> list[int]:
    """scancel the target cell's job each time it runs, `attempts` times; the job ids cancelled."""
    cancelled: list[int] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(cancelled) < attempts and process.poll() is None and time.monotonic() < deadline:
        for job in scheduler_jobs(after=after):
            if job.comment == target and job.state == "RUNNING" and job.id not in cancelled:
                subprocess.run(["scancel", str(job.id)], check=True)
                cancelled.append(job.id)
        time.sleep(0.5)
    return cancelled


def test_a_cancelled_cell_fails_alone_and_the_rerun_submits_exactly_it_and_its_evaluation(checkout):
    if "figure" not in checkout.runs:
        pytest.fail("needs the results of the one-figure test (run the module, not this test alone)")
    # 1. The whole study; the cell is cancelled while it runs, on its first attempt and on its retry.
    before = last_job_id()
    log = checkout.root.parent / "first-run.log"
    with log.open("w") as sink, subprocess.Popen(["snakemake", "--profile", "slurm"], cwd=checkout.root,
                                                 env=checkout.env, stdout=sink, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL) as process:
        cancelled = _cancel_cell_attempts(process, comment("finetune", *FAILED_CELL), attempts=2, after=before)
        process.wait(timeout=RUN_TIMEOUT)
    output = log.read_text()
    first = scheduler_jobs(after=before)
    checkout.runs["failed"] = first
    print("\nscheduler record, first run:\n" + "\n".join(f"  {j.id} {j.comment} {j.state} {j.mem} {j.limit}"
                                                        for j in first))
    assert process.returncode != 0, output[-3000:]
    assert len(cancelled) == 2, f"the cell's job was cancelled {len(cancelled)} times\n{output[-3000:]}"
    attempts = [j for j in first if j.comment == comment("finetune", *FAILED_CELL)]
    assert [j.id for j in attempts] == cancelled and {j.state for j in attempts} == {"CANCELLED"}
    # The retry asked for twice the memory and time (mem_mb and runtime grow with the attempt).
    assert [(j.mem, j.limit) for j in attempts] == [("1500M", "15:00"), ("3000M", "30:00")]
    # keep-going: every other job of the study ran and completed; the cell's evaluation was never submitted.
    others = [j for j in first if j.comment != comment("finetune", *FAILED_CELL)]
    assert {j.state for j in others} == {"COMPLETED"}
    expected = study_compute_jobs() - figure_compute_jobs()
    expected -= Counter(FAILED)
    assert Counter(j.comment for j in others) == expected
    assert not (checkout.root / "results/finetuned" / "/".join(FAILED_CELL)).exists()

    # 2. The same command again: only the failed cell and what depends on it go to the scheduler.
    outputs = checkout.files()
    before = last_job_id()
    checkout.snakemake()
    second = scheduler_jobs(after=before)
    checkout.runs["rerun"] = second
    print("\nscheduler record, rerun:\n" + "\n".join(f"  {j.id} {j.comment} {j.state}" for j in second))
    assert sorted(j.comment for j in second) == sorted(FAILED)
    assert {j.state for j in second} == {"COMPLETED"}
    # The first run's outputs are untouched: same bytes, same modification times.
    after = checkout.files()
    changed = [p for p, stamp in outputs.items() if after.get(p) != stamp]
    assert not changed, changed[:20]
    assert (checkout.root / "results/finetuned" / "/".join(FAILED_CELL) / "model.safetensors").exists()


def test_the_tiny_study_ran_end_to_end_through_the_scheduler(checkout):
    if "rerun" not in checkout.runs:
        pytest.fail("needs the results of the rerun test (run the module, not this test alone)")
    # Every compute job of the study went through sbatch and completed exactly once over the three runs.
    completed = Counter(j.comment for run in checkout.runs.values() for j in run if j.state == "COMPLETED")
    assert completed == study_compute_jobs()
    assert all(j.rule in COMPUTE_RULES for run in checkout.runs.values() for j in run)
    # The study is complete: nothing left to do, the whole table and every figure are there.
    assert "Nothing to be done" in checkout.snakemake("--dry-run").stdout
    import polars as pl

    from amuro.study import Study

    config = load_config(STUDY)
    results = pl.read_parquet(checkout.root / "results/tables/results.parquet")
    # 3 checkpoints x (base: 3 sets + 2 tuned models x 3 sets + base and instruction-tuned: 1 benchmark x 2 metrics)
    assert results.height == 3 * (3 + 2 * 3 + 2 * 2)
    figures = {p.stem for p in (checkout.root / "results/figures").glob("*.pdf")}
    assert figures == set(Study(config).figures.drawable())
    # The SLURM plugin's own per-job logs (kept by the test profile): .snakemake/slurm_logs/rule_<rule>/...
    logs = checkout.root / ".snakemake/slurm_logs"
    assert {p.relative_to(logs).parts[0] for p in logs.rglob("*.log")} == {f"rule_{r}" for r in COMPUTE_RULES}
    # Compute jobs run offline (rules/cluster.smk): every completed job's log says so.
    done = {str(j.id) for run in checkout.runs.values() for j in run if j.state == "COMPLETED"}
    kept = [log for log in logs.rglob("*.log") if log.stem in done]
    assert len(kept) == len(done)
    for log in kept:
        assert f"amuro: in SLURM job {log.stem}: HF_HUB_OFFLINE=1" in log.read_text(), log


def _edit(path: Path, pattern: str, replacement) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, replacement, text, count=1)
    assert n == 1, f"{pattern!r} not found in {path}"
    path.write_text(new)


def test_cosmetic_changes_rerun_no_finetune_and_no_evaluation(checkout):
    if "rerun" not in checkout.runs:
        pytest.fail("needs the finished study of the earlier tests (run the module, not this test alone)")
    from amuro.figures import FIGURES, catalog

    study_outputs = {p: s for p, s in checkout.files().items() if not p.startswith("results/figures/")}
    figure_files = {p: s for p, s in checkout.files("results/figures").items()}
    # The module that holds the figure's caption, in the copy of the repository.
    source = checkout.root / Path(inspect.getsourcefile(catalog)).relative_to(ROOT)

    # 1. A caption: the figure rule tracks it (params), so the plain command redraws that one figure, locally.
    first_words = r"\s+".join(map(re.escape, FIGURES[FIGURE].caption.split()[:3]))
    _edit(source, first_words, lambda m: "Edited caption. " + m.group(0))
    before = last_job_id()
    out = checkout.snakemake().stdout
    assert scheduler_jobs(after=before) == [], "a caption change submitted jobs"
    now = checkout.files("results/figures")
    redrawn = {p for p, s in figure_files.items() if now[p] != s}
    assert redrawn and {Path(p).stem for p in redrawn} == {FIGURE}, (redrawn, out[-3000:])

    # 2. A style: drawing code is not tracked; --forcerun figure redraws every figure, and only figures.
    figure_files = now
    style = r'"font\.size":\s*\d+'
    styled = [p for p in sorted((checkout.root / "amuro").rglob("*.py")) if re.search(style, p.read_text())]
    assert styled, "no figure style (font.size) found in amuro/"
    _edit(styled[0], style, '"font.size": 11')
    before = last_job_id()
    checkout.snakemake("--forcerun", "figure")
    assert scheduler_jobs(after=before) == [], "a style change submitted jobs"
    now = checkout.files("results/figures")
    assert all(now[p] != s for p, s in figure_files.items() if p.endswith(".pdf")), "not every figure was redrawn"
    # Nothing else changed: no fine-tune, no evaluation, no table.
    after = {p: s for p, s in checkout.files().items() if not p.startswith("results/figures/")}
    assert after == study_outputs


def test_a_preempted_finetune_saves_a_checkpoint_and_its_retry_resumes_from_it(checkout):
    """SIGTERM to a running fine-tune (what SLURM sends on preemption or at the time limit, here `scancel
    --signal=TERM`): the job saves a Trainer checkpoint and fails; the profile's retry resumes from that checkpoint and
    ends with a complete model, and the scratch checkpoint is removed once the model is verified."""
    if "rerun" not in checkout.runs:
        pytest.fail("needs the finished study of the earlier tests (run the module, not this test alone)")
    import json

    import yaml

    # The same cell trained for longer (120 optimizer steps instead of 3), so that the signal lands mid-training.
    config = yaml.safe_load(STUDY.read_text())
    config["finetune"]["hyperparameters"]["epochs"] = 40
    longer = checkout.root.parent / "longer.yaml"
    longer.write_text(yaml.safe_dump(config))
    cell = "/".join(FAILED_CELL)
    target, scratch = checkout.root / "results/finetuned" / cell, checkout.root / "results/scratch/finetune" / cell
    rule_log = checkout.root / "logs/finetune" / f"{cell}.log"
    rule_log.unlink()  # the earlier run's log, which shows optimizer steps too
    job_comment = comment("finetune", *FAILED_CELL)

    before = last_job_id()
    run_log = checkout.root.parent / "preempted-run.log"
    signalled: list[int] = []
    with run_log.open("w") as sink, subprocess.Popen(
            ["snakemake", "--profile", "slurm", f"results/finetuned/{cell}", "--configfile", str(longer)],
            cwd=checkout.root, env=checkout.env, stdout=sink, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL) as process:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not signalled and process.poll() is None and time.monotonic() < deadline:
            training = rule_log.exists() and re.search(r"step \d+/120 ", rule_log.read_text())
            running = [j for j in scheduler_jobs(after=before) if j.comment == job_comment and j.state == "RUNNING"]
            if training and running:
                subprocess.run(["scancel", "--signal=TERM", str(running[0].id)], check=True)
                signalled.append(running[0].id)
            time.sleep(0.2)
        process.wait(timeout=RUN_TIMEOUT)
    output = run_log.read_text()
    assert signalled, f"the fine-tune was never seen training\n{output[-3000:]}"
    assert process.returncode == 0, output[-3000:]

    attempts = [j for j in scheduler_jobs(after=before) if j.comment == job_comment]
    print("\nscheduler record, preempted cell:\n" + "\n".join(f"  {j.id} {j.comment} {j.state}" for j in attempts))
    # The signalled attempt failed (exit 143: stopped to be retried), the retry completed; nothing else was submitted.
    assert [(j.id, j.state) for j in attempts] == [(signalled[0], "FAILED"), (attempts[1].id, "COMPLETED")]
    assert len(scheduler_jobs(after=before)) == 2
    meta = json.loads((target / "train_meta.json").read_text())
    assert meta["optimizer_steps"] == 120 and 0 < meta["resumed_from_step"] < 120, meta
    # The final model is whole (every file matches the hashes it records), with no Trainer checkpoint or temp file in
    # it, and the scratch checkpoint it resumed from is gone.
    for name, digest in meta["files"].items():
        assert hashlib.sha256((target / name).read_bytes()).hexdigest() == digest, name
    made = sorted(p.name for p in target.iterdir() if p.name != ".snakemake_timestamp")  # Snakemake's own marker
    assert made == sorted([*meta["files"], "train_meta.json"])
    assert not scratch.exists()
