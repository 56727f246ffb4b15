"""The jobs whose state amuro status reports: each one's stage, outputs and log, read off the plan."""

from __future__ import annotations

from dataclasses import dataclass

from amuro.study import Run, Study
from amuro.study.paths import BENCHMARK_INDEX, PREDICTION_INDEX, fill
from amuro.study.runs import WILDCARDS

STATES = ("done", "running", "interrupted", "failed", "not_started")
# fetch: a pre-trained checkpoint made into a model directory; finetune: a cell or an instruction-tuned run.
STAGES = ("fetch", "finetune", "evaluate", "benchmark", "summary")
RULES = {"fetch": ("fetch_checkpoint",), "finetune": ("finetune", "finetune_checkpoint"),
         "evaluate": ("evaluate_base", "evaluate_finetuned"),
         "benchmark": ("evaluate_benchmarks",), "summary": ("summarize_predictions",)}
# Each stage's log as its rule in rules/*.smk names it (tests/test_status.py holds them to a dry run's).
LOGS = {
    "fetch": "logs/fetch_checkpoint/{model}/{checkpoint}.log",
    "finetune": "logs/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}/{variant}/{seed}.log",
    "evaluate": "logs/evaluate/{model}/{checkpoint}/{train}.log",
    "benchmark": "logs/evaluate_benchmarks/{model}/{checkpoint}/{train}.log",
    "summary": "logs/summarize_predictions/{model}/{checkpoint}/{train}.log",
}
# evaluation.finetuned_jobs and finetune.jobs per_checkpoint: one job (and log) for every fine-tuned model (cell)
# of a checkpoint.
CHECKPOINT_EVALUATION_LOG = "logs/evaluate/{model}/{checkpoint}/finetuned.log"
CHECKPOINT_FINETUNE_LOG = "logs/finetune/{model}/{checkpoint}/cells.log"


class Outputs:
    """A job's output paths, kept as (directory prefix, names under it) groups and built only when read: a study of
    20,000 jobs has some 300,000 prediction files, and a job not done is told apart by its first missing one."""

    def __init__(self, groups: list[tuple[str, tuple[str, ...]]] = ()):
        self.groups = list(groups)

    @classmethod
    def of(cls, paths: list[str]) -> Outputs:
        return cls([(path, ("",)) for path in paths])

    def __iter__(self):
        return (prefix + suffix for prefix, suffixes in self.groups for suffix in suffixes)

    def __bool__(self) -> bool:
        return any(suffixes for _, suffixes in self.groups)

    def ends(self) -> list[str]:
        """The first and the last output: Snakemake marks a job's outputs incomplete one by one in order, and unmarks
        them in order, so a job with any marked output has one of these marked (even when killed in between)."""
        groups = [(p, s) for p, s in self.groups if s]
        return [groups[0][0] + groups[0][1][0], groups[-1][0] + groups[-1][1][-1]] if groups else []


@dataclass(eq=False)
class Job:
    """One job of the plan: what it writes, where it logs, the runs it serves, and what the files say of it."""

    stage: str
    log: str
    outputs: Outputs
    runs: list[Run]
    state: str = "not_started"
    error: str | None = None  # failed or interrupted: the log's last error line, else its last line
    external_jobid: str | None = None  # running or interrupted on a cluster: the scheduler's job id

    def describe(self) -> dict:
        entry = {"stage": self.stage, "state": self.state, "log": self.log,
                 "runs": [f"{r.model}/{r.checkpoint}/{r.id}" for r in self.runs]}
        if self.error is not None:
            entry["error"] = self.error
        if self.external_jobid is not None:
            entry["external_jobid"] = self.external_jobid
        return entry


def run_kind(run: Run) -> str:
    return "base" if run.is_base else "instruction-tuned" if run.is_instruction_tuned else "finetuned"


# --- The plan ---

def prediction_files(study: Study):
    """A function run -> its prediction files (Outputs), the files study.evaluation.prediction_files gives, only
    faster: building every request of every run takes seconds at 20,000 jobs, and a run's files differ from those of
    another run with the same grid (base or not, train task) only in the run's own path fields. So each grid's file
    patterns come from the plan once, cut where the run's fields end (results/predictions/{model}/{checkpoint}/{train}
    and the rest), and only that prefix is filled per run. tests/test_status.py checks both give the same files."""
    wildcards = tuple(WILDCARDS.items())
    grids: dict[tuple, list[tuple[str, tuple[str, ...]]]] = {}

    def files(run: Run, fields: dict[str, str]) -> Outputs:
        task = None if run.is_base or run.is_instruction_tuned else study.dataset(run.train_dataset).task
        key = (run.is_base, run.is_instruction_tuned, task)
        if key not in grids:
            by_prefix: dict[str, list[str]] = {}
            for request in study.evaluation.requests(run, wildcards):
                cut = request["output"].rfind("}") + 1
                by_prefix.setdefault(request["output"][:cut], []).append(request["output"][cut:])
            grids[key] = [(prefix, tuple(suffixes)) for prefix, suffixes in by_prefix.items()]
        if not grids[key]:
            return Outputs([])
        # The job also writes the run's index of them (what the summary reads).
        index = [(fill(PREDICTION_INDEX, **fields), ("",))]
        return Outputs([(fill(prefix, **fields), suffixes) for prefix, suffixes in grids[key]] + index)

    return files


def plan_jobs(study: Study) -> tuple[list[Job], dict[Run, dict[str, Job]]]:
    """Every job that makes or scores a run, and for each run the job of each of its stages."""
    jobs: list[Job] = []
    by_run: dict[Run, dict[str, Job]] = {}
    predictions = prediction_files(study)
    per_checkpoint: dict[tuple[str, str, str], Job] = {}

    for run in study.runs():
        fields = run.fields
        stages = by_run[run] = {}

        def add(stage: str, outputs: Outputs) -> None:
            if outputs:
                stages[stage] = Job(stage, fill(LOGS[stage], **fields), outputs, [run])
                jobs.append(stages[stage])

        def add_to_checkpoint(stage: str, log: str, outputs: Outputs) -> None:
            job = per_checkpoint.get((stage, run.model, run.checkpoint))
            if job is None:
                log = fill(log, model=run.model, checkpoint=run.checkpoint)
                job = per_checkpoint[(stage, run.model, run.checkpoint)] = Job(stage, log, Outputs(), [])
                jobs.append(job)
            job.outputs.groups += outputs.groups
            job.runs.append(run)
            stages[stage] = job

        cell = not run.is_base and not run.is_instruction_tuned
        if cell and study.finetuning.per_checkpoint:
            add_to_checkpoint("finetune", CHECKPOINT_FINETUNE_LOG, Outputs.of([run.dir]))
        else:
            add("fetch" if run.is_base else "finetune", Outputs.of([run.dir]))
        files = predictions(run, fields)
        if files and not run.is_base and study.evaluation.per_checkpoint:
            add_to_checkpoint("evaluate", CHECKPOINT_EVALUATION_LOG, files)
        else:
            add("evaluate", files)
        benchmark = study.benchmarking.files(run)
        add("benchmark", Outputs.of(benchmark + ([fill(BENCHMARK_INDEX, **fields)] if benchmark else [])))
        add("summary", Outputs.of([study.results.summary_file(run)]))
    return jobs, by_run
