"""The study as data: from the config, every run, every output path and the settings each job gets.

Pure Python (no Snakemake, no torch): `rules/*.smk` only wire these functions to rules, and the tests call them
directly. Every path is defined once, below, as a template whose fields are the study's axes; a job's inputs and
settings are computed from its `Run`, never by taking a path apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property

from amuro import config as study_config
from amuro.analysis import main_train_format, main_train_size
from amuro.figures.catalog import FIGURES
from amuro.formats import main_format
from amuro.tables import settings_from_config as summary_table_settings
from amuro.tasks import TASKS

MINIWORLD = "results/miniworld"
SPLITS = study_config.SPLITS

# --- Every output path, once -------------------------------------------------------------------------------------
CHECKPOINT = "results/checkpoints/{model}/{checkpoint}"
DATA_DIR = "results/data/{dataset}"
DATA = DATA_DIR + "/{split}.parquet"
PROMPT_DIR = "results/prompts/{dataset}/{format}"
PROMPTS = PROMPT_DIR + "/{split}.parquet"
INSTRUCTIONS = "results/instructions/{dataset}/train.parquet"
FINETUNED = "results/finetuned/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}"
# Trainer checkpoints live outside the output, so a killed job resumes instead of starting over.
SCRATCH = "results/scratch/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}"
PREDICTIONS = "results/predictions/{model}/{checkpoint}/{train}/{eval_dataset}/{eval_format}/{shots}shot.parquet"
BENCHMARK_SCORES = "results/benchmarks/{model}/{checkpoint}/{train}/{benchmark}/{shots}shot.parquet"
SUMMARY = "results/tables/cells/{model}/{checkpoint}/{train}.parquet"
DATA_META = DATA_DIR + "/meta.json"
# The download stage's records: what was fetched from the hub (commit, file hashes); jobs then read it offline.
CHECKPOINT_RECORD = "results/downloads/checkpoints/{model}/{checkpoint}.json"
DATASET_RECORD = "results/downloads/datasets/{dataset}.json"
INSTRUCTIONS_RECORD = "results/downloads/instructions/{dataset}.json"
BENCHMARK_RECORD = "results/downloads/benchmarks/{benchmark}.json"
TABLE = "results/tables/{name}"
FIGURE = "results/figures/{figure}.{ext}"

SUMMARY_TABLES = ("results.parquet", "transfer.parquet", "forgetting.parquet", "mrc.parquet",
                  "group_gain.parquet", "findings.parquet", "overview.html")
SCORING_TABLES = ("scoring_methods.parquet", "table3.parquet")
PLAIN_TRAIN_FORMATS = ("default", "io", "instruct", "fticl")
INSTRUCTION_FORMAT = "chat"  # an instruction-tuned run is the mix, in chat format, all of it
BASE = "base"  # the run id of a pre-trained checkpoint

# What one job asks a cluster for, for a model on one GPU: wall time (minutes) and memory (MB). A job is scaled by
# its model's `gpus` (Llama-3-8B on 4 GPUs asks for 4 times OLMo-1B's) and by the attempt, so a job the scheduler
# killed for time or memory comes back with twice, then three times as much (the profile's `retries`).
JOB_SIZE = {
    "finetune": {"runtime": 360, "mem_mb": 64_000},
    "evaluate": {"runtime": 120, "mem_mb": 32_000},
}


def _one_of(values) -> str:
    """A regular expression matching exactly one of `values`; (?!) matches nothing."""
    return "|".join(re.escape(str(v)) for v in sorted(set(values))) or "(?!)"


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **values) -> str:
    """`template` with the given fields filled in and every other field left as a wildcard."""
    return template.format_map(_KeepMissing(values))


def per_split(template: str) -> list[str]:
    """One path per split (train, validation, test) of a template with a {split} field."""
    return [fill(template, split=split) for split in SPLITS]


def as_json(obj) -> str:
    """A settings object as the JSON argument of an amuro stage (sorted, so Snakemake's params compare stably)."""
    return json.dumps(obj, sort_keys=True)


@dataclass(frozen=True)
class Run:
    """A model the study evaluates: a pre-trained checkpoint, or that checkpoint fine-tuned on one train set in one
    train format at one train size (a cell; instruction tuning is the cell mix/chat/all)."""

    model: str
    checkpoint: str
    train_dataset: str | None = None
    train_format: str | None = None
    train_size: str | None = None

    @property
    def is_base(self) -> bool:
        return self.train_dataset is None

    @property
    def is_instruction_tuned(self) -> bool:
        return self.train_format == INSTRUCTION_FORMAT

    @property
    def id(self) -> str:
        """The run's name in prediction paths: `base`, or `{train_dataset}-{train_format}-{train_size}`."""
        return BASE if self.is_base else f"{self.train_dataset}-{self.train_format}-{self.train_size}"

    @property
    def fields(self) -> dict[str, str]:
        """The run's values of the path templates' fields."""
        fields = {"model": self.model, "checkpoint": self.checkpoint, "train": self.id}
        if not self.is_base:
            fields.update(train_dataset=self.train_dataset, train_format=self.train_format,
                          train_size=self.train_size)
        return fields

    @property
    def dir(self) -> str:
        """The model directory: the fetched checkpoint, or the fine-tuned model."""
        return fill(CHECKPOINT if self.is_base else FINETUNED, **self.fields)

    @property
    def meta(self) -> dict:
        """What identifies the model in every prediction it writes."""
        return {"model": self.model, "checkpoint": self.checkpoint, "train": self.id,
                "train_dataset": self.train_dataset, "train_format": self.train_format,
                "train_size": self.train_size}


class PlanError(ValueError):
    """A request the configured study cannot serve; the message says why."""


class Study:
    """The configured study: its runs, the files each job reads and writes, and each job's settings."""

    def __init__(self, config: dict):
        self.config = config
        self.models = sorted(config["models"])
        self.datasets = sorted(config["datasets"])
        self.formats = list(config["formats"])
        self.eval_datasets = study_config.eval_datasets(config)
        self.benchmarks = sorted(config["benchmarks"]["tasks"])
        self.instruction_mix = config["instruction_tuning"]["name"]
        self.instruction_tuned_models = study_config.instruction_tuned_models(config)
        evaluation = config["evaluation"]
        self.base_shots = list(evaluation["base_shots"])
        self.finetuned_shots = list(evaluation["finetuned_shots"])
        # Prompt files hold every shot count any model is evaluated with.
        self.prompt_shots = sorted(set(self.base_shots) | set(self.finetuned_shots))

    # --- Runs --------------------------------------------------------------------------------------------------

    def checkpoints(self, model: str) -> list[str]:
        return study_config.model_checkpoints(self.config, model)

    def base_runs(self) -> list[Run]:
        return [Run(m, c) for m in self.models for c in self.checkpoints(m)]

    def finetuned_runs(self) -> list[Run]:
        """Every supervised fine-tuning cell: checkpoint x train dataset x train format x train size."""
        ft = self.config["finetune"]
        return [Run(m, c, d, f, str(s)) for m in self.models for c in self.checkpoints(m)
                for d in ft["datasets"] for f in ft["formats"] for s in ft["sizes"]]

    def instruction_tuned_runs(self) -> list[Run]:
        return [self.instruction_tuned(m, c) for m in self.instruction_tuned_models for c in self.checkpoints(m)]

    def instruction_tuned(self, model: str, checkpoint: str) -> Run:
        return Run(model, checkpoint, self.instruction_mix, INSTRUCTION_FORMAT, "all")

    def runs(self) -> list[Run]:
        return self.base_runs() + self.finetuned_runs() + self.instruction_tuned_runs()

    @cached_property
    def _runs_by_key(self) -> dict[tuple[str, str, str], Run]:
        return {(r.model, r.checkpoint, r.id): r for r in self.runs()}

    def run(self, model: str, checkpoint: str, train: str = BASE) -> Run:
        """The run a job's wildcards name (`train`: its id, `base` for a pre-trained checkpoint)."""
        try:
            return self._runs_by_key[(model, checkpoint, train)]
        except KeyError:
            raise PlanError(f"'{model}/{checkpoint}/{train}' is not a run of this study") from None

    def run_for(self, wildcards) -> Run:
        """The run of a job from its wildcards: {train} (an id), or the cell's own fields, or a checkpoint."""
        if "train" in wildcards.keys():
            return self.run(wildcards["model"], wildcards["checkpoint"], wildcards["train"])
        if "train_dataset" in wildcards.keys():
            run = Run(wildcards["model"], wildcards["checkpoint"], wildcards["train_dataset"],
                      wildcards["train_format"], wildcards["train_size"])
            return self.run(run.model, run.checkpoint, run.id)
        return self.run(wildcards["model"], wildcards["checkpoint"])

    @staticmethod
    def model_dir(run: Run) -> str:
        return run.dir

    @staticmethod
    def run_meta(run: Run) -> dict:
        return run.meta

    @staticmethod
    def id_pattern(runs: list[Run]) -> str:
        """A wildcard constraint matching exactly these runs' ids."""
        return _one_of(run.id for run in runs)

    def wildcard_constraints(self) -> dict[str, str]:
        """Each wildcard matches exactly the values this study uses, so no two rules claim one path."""
        one_of = _one_of
        return {
            "model": one_of(self.models),
            "checkpoint": r"[A-Za-z0-9][A-Za-z0-9._-]*",
            "dataset": one_of(self.datasets + [self.instruction_mix]),
            "format": one_of(self.formats),
            "train": self.id_pattern(self.runs()),
            "train_dataset": one_of(self.datasets + [self.instruction_mix]),
            "train_format": one_of(PLAIN_TRAIN_FORMATS + (INSTRUCTION_FORMAT,)),
            "train_size": r"all|\d+",
            "eval_dataset": one_of(self.eval_datasets),
            "eval_format": one_of(self.formats),
            "benchmark": one_of(self.benchmarks),
            "figure": one_of(FIGURES),
        }

    # --- Downloads (the only jobs that reach the network) -------------------------------------------------------

    def checkpoint_record(self, run: Run) -> list[str]:
        """The download record a hub checkpoint is read from (none for local and mini-world checkpoints)."""
        return [fill(CHECKPOINT_RECORD, **run.fields)] if self.model_spec(run)["source"] == "hub" else []

    def dataset_record(self, dataset: str) -> list[str]:
        hub = self.config["datasets"][dataset]["source"]["type"] == "hub"
        return [fill(DATASET_RECORD, dataset=dataset)] if hub else []

    def instruction_records(self) -> list[str]:
        source = self.config["instruction_tuning"].get("source", {})
        hub = self.instruction_tuned_models and source.get("type") == "hub"
        return [fill(INSTRUCTIONS_RECORD, dataset=self.instruction_mix)] if hub else []

    def benchmark_records(self) -> list[str]:
        tasks = self.config["benchmarks"]["tasks"]
        return [fill(BENCHMARK_RECORD, benchmark=b) for b in self.benchmarks if "task" in tasks[b]]

    def download_records(self) -> list[str]:
        """Everything the study fetches: `snakemake download` builds exactly these."""
        return ([r for run in self.base_runs() for r in self.checkpoint_record(run)]
                + [r for d in self.datasets for r in self.dataset_record(d)]
                + self.instruction_records() + self.benchmark_records())

    @staticmethod
    def download_option(records: str | list[str]) -> str:
        """`--download <record>` for a stage that reads a hub source, else nothing."""
        records = [records] if isinstance(records, str) else list(records)
        return f"--download {records[0]}" if records else ""

    def checkpoint_download_spec(self, run: Run) -> dict:
        # Only what decides the files: a model's gpus or hyper-parameters must not refetch (and rerun) anything.
        return {"repo": self.model_spec(run)["repo"]}

    def checkpoint_entry(self, run: Run):
        return study_config.checkpoint_entry(self.config, run.model, run.checkpoint)

    def dataset_download_spec(self, dataset: str) -> dict:
        return {"source": self.config["datasets"][dataset]["source"]}

    def benchmark_download_options(self, benchmark: str) -> str:
        """The lm-eval task and any dataset override (revision, data_dir) of one hub benchmark, as CLI options."""
        spec = self.config["benchmarks"]["tasks"][benchmark]
        return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in spec.items())

    # --- Checkpoints and data ----------------------------------------------------------------------------------

    def checkpoint_dirs(self) -> list[str]:
        return [run.dir for run in self.base_runs()]

    def checkpoint_inputs(self, run: Run) -> list[str]:
        """A mini-world checkpoint needs the pre-training run; hub and local ones need nothing from the workflow."""
        return [f"{MINIWORLD}/pretrain"] if self.config["models"][run.model]["source"] == "miniworld" else []

    def model_spec(self, run: Run) -> dict:
        return self.config["models"][run.model]

    def dataset_inputs(self, dataset: str) -> list[str]:
        source = self.config["datasets"][dataset]["source"]
        if source["type"] == "miniworld":
            return [f"{MINIWORLD}/datasets"]
        if source["type"] == "local":
            return list(source["files"].values())
        return []

    def dataset_spec(self, dataset: str) -> dict:
        return self.config["datasets"][dataset]

    def dataset_seed(self, dataset: str) -> int:
        return study_config.dataset_seed(self.config, dataset)

    def dataset_task(self, dataset: str) -> str:
        return self.config["datasets"][dataset]["task"]

    def dataset_templates(self, dataset: str) -> dict:
        """The dataset's own prompt templates per format (the task's built-in ones where none is given)."""
        return self.config["datasets"][dataset]["templates"]

    def data_outputs(self) -> list[str]:
        """What preparing one dataset writes: its splits and the record of how it was read."""
        return per_split(DATA) + [DATA_META]

    def fticl_shots(self, dataset: str) -> int:
        return study_config.hyperparameters(self.config, dataset)["fticl_shots"]

    def prompt_files(self) -> list[str]:
        return [fill(PROMPTS, dataset=d, format=f, split=s) for d in self.datasets for f in self.formats
                for s in SPLITS]

    def uses_miniworld(self) -> bool:
        return any(m["source"] == "miniworld" for m in self.config["models"].values()) or any(
            d["source"]["type"] == "miniworld" for d in self.config["datasets"].values())

    def miniworld_settings(self, *sections: str) -> dict:
        mw = self.config["miniworld"]
        return {k: mw[k] for k in sections} if sections else mw

    # --- Instruction mix ---------------------------------------------------------------------------------------

    def instruction_files(self) -> list[str]:
        return [fill(INSTRUCTIONS, dataset=self.instruction_mix)] if self.instruction_tuned_models else []

    def instruction_source(self) -> dict:
        return self.config["instruction_tuning"].get("source", {})

    def instruction_inputs(self) -> list[str]:
        source = self.config["instruction_tuning"].get("source", {})  # none: the arm is off
        if source.get("type") == "miniworld":
            return [f"{MINIWORLD}/instructions"]
        return [source["file"]] if source.get("type") == "local" else []

    def instruction_spec(self) -> dict:
        it = self.config["instruction_tuning"]
        return {"name": it["name"], "source": it.get("source"), "sample": it["sample"],
                "seed": it.get("seed", self.config["seed"])}

    # --- Fine-tuning -------------------------------------------------------------------------------------------

    def train_prompts(self, run: Run) -> str:
        if run.is_instruction_tuned:
            return fill(INSTRUCTIONS, dataset=run.train_dataset)
        return fill(PROMPTS, dataset=run.train_dataset, format=run.train_format, split="train")

    def finetune_settings(self, run: Run) -> dict:
        """Hyper-parameters of one run: defaults, the train set's override, the model's own; and its size."""
        if run.is_instruction_tuned:
            return study_config.instruction_hyperparameters(self.config)
        settings = study_config.hyperparameters(self.config, run.train_dataset, run.model)
        settings["size"] = None if run.train_size == "all" else int(run.train_size)
        return settings

    def scratch_dir(self, run: Run) -> str:
        return fill(SCRATCH, **run.fields)

    def gpus(self, run: Run) -> int:
        """GPUs a fine-tuning job of this run's model asks for (evaluation always takes one)."""
        return self.config["models"][run.model]["gpus"]

    def job_size(self, run: Run, stage: str, resource: str, attempt: int = 1) -> int:
        """A `stage` job's request of `resource` (runtime or mem_mb) for this run, at this attempt."""
        return JOB_SIZE[stage][resource] * self.gpus(run) * attempt

    @staticmethod
    def verify_base(run: Run) -> str:
        """The check of the run's pre-trained checkpoint against its resolved.json, to run before a job uses it."""
        return f"python -m amuro verify-checkpoint {Run(run.model, run.checkpoint).dir} &&"

    def verify_evaluated(self, run: Run) -> str:
        """The same check before an evaluation, for a pre-trained checkpoint (a tuned model has no resolved.json)."""
        return self.verify_base(run) if run.is_base else ""

    def launcher(self, run: Run) -> str:
        """One process, or on several GPUs the `deepspeed` launcher as one task that sees them all, on a free port."""
        gpus = self.gpus(run)
        if gpus == 1:
            return "python -m amuro"
        # --no_local_rank: the rank comes from the environment, and `--local_rank=N` would precede the subcommand.
        return f"deepspeed --num_gpus {gpus} --master_port $(python -m amuro free-port) --no_local_rank --module amuro"

    # --- Evaluation --------------------------------------------------------------------------------------------

    @property
    def main_format(self) -> str:
        """The format the curves, matrices and findings read (amuro.formats.main_format)."""
        return main_format(self.formats)

    @property
    def finetuned_per_checkpoint(self) -> bool:
        return self.config["evaluation"]["finetuned_jobs"] == "per_checkpoint"

    def eval_grid(self, base: bool, train_task: str | None = None) -> list[tuple[str, str, int]]:
        """(eval dataset, format, shots) of one model's evaluation: every shot count in evaluation.fewshot_formats
        (every format when it is empty), 0-shot only in the others; for a fine-tuned model of `train_task` with
        finetuned_other_formats own_task, the other formats only on the sets of its task."""
        shots = self.base_shots if base else self.finetuned_shots
        fewshot = self.config["evaluation"]["fewshot_formats"] or self.formats
        own_task = not base and self.config["evaluation"]["finetuned_other_formats"] == "own_task"
        return [(d, f, k) for d in self.eval_datasets for f in self.formats for k in shots
                if (k == 0 or f in fewshot)
                and not (own_task and f != self.main_format and self.dataset_task(d) != train_task)]

    def prediction_patterns(self, base: bool) -> list[str]:
        """The outputs of a per-model evaluation job, with {model}, {checkpoint} and {train} left as wildcards."""
        return [fill(PREDICTIONS, eval_dataset=d, eval_format=f, shots=k) for d, f, k in self.eval_grid(base)]

    def _run_grid(self, run: Run) -> list[tuple[str, str, int]]:
        return self.eval_grid(run.is_base, None if run.is_base else self.dataset_task(run.train_dataset))

    def eval_requests(self, run: Run) -> list[dict]:
        """What one model's evaluation does: every eval set x format x shot count, its prompt file and output."""
        if run.is_instruction_tuned:
            return []  # scored on the benchmarks only
        requests = []
        for dataset, fmt, shots in self._run_grid(run):
            spec = self.config["datasets"][dataset]
            requests.append({
                "dataset": dataset, "task": spec["task"], "format": fmt, "shots": shots,
                "prompts": fill(PROMPTS, dataset=dataset, format=fmt, split="test"),
                "output": fill(PREDICTIONS, **run.fields, eval_dataset=dataset, eval_format=fmt, shots=shots),
                "labels": spec.get("labels"),
            })
        return requests

    # finetuned_jobs per_checkpoint: one job scores every fine-tuned model of a checkpoint.

    def finetuned_at(self, model: str, checkpoint: str) -> list[Run]:
        """The fine-tuned models one per-checkpoint evaluation job scores."""
        return [r for r in self.finetuned_runs() if (r.model, r.checkpoint) == (model, checkpoint)]

    def checkpoint_prediction_patterns(self) -> list[str]:
        """The outputs of a per-checkpoint evaluation job, with {model} and {checkpoint} left as wildcards."""
        ft = self.config["finetune"]
        patterns = []
        for d, f, s in ((d, f, s) for d in ft["datasets"] for f in ft["formats"] for s in ft["sizes"]):
            cell = Run("{model}", "{checkpoint}", d, f, str(s))
            patterns += [fill(PREDICTIONS, train=cell.id, eval_dataset=e, eval_format=fmt, shots=k)
                         for e, fmt, k in self._run_grid(cell)]
        return patterns

    def checkpoint_eval_inputs(self, model: str, checkpoint: str) -> dict[str, list[str]]:
        runs = self.finetuned_at(model, checkpoint)
        return {"models": [r.dir for r in runs],
                "prompts": list(dict.fromkeys(p for r in runs for p in self.eval_prompts(r)))}

    def checkpoint_job_size(self, model: str, checkpoint: str, resource: str, attempt: int = 1) -> int:
        """A per-checkpoint evaluation job's request: runtime grows with its models, memory holds one at a time."""
        size = self.job_size(Run(model, checkpoint), "evaluate", resource, attempt)
        return size * len(self.finetuned_at(model, checkpoint)) if resource == "runtime" else size

    def checkpoint_eval_jobs(self, model: str, checkpoint: str) -> list[dict]:
        """What a per-checkpoint evaluation job does: each model's directory, requests and meta, in turn."""
        return [{"model_dir": r.dir, "requests": self.eval_requests(r), "meta": r.meta}
                for r in self.finetuned_at(model, checkpoint)]

    def eval_prompts(self, run: Run) -> list[str]:
        """The prompt files one evaluation job reads, and nothing else."""
        return list(dict.fromkeys(r["prompts"] for r in self.eval_requests(run)))

    def prediction_files(self, run: Run) -> list[str]:
        return [r["output"] for r in self.eval_requests(run)]

    def eval_settings(self) -> dict:
        evaluation = self.config["evaluation"]
        return {
            "classification": evaluation["classification"],
            "max_new_tokens_generation": evaluation["max_new_tokens"]["generation"],
            "max_new_tokens_classification": evaluation["max_new_tokens"]["classification"],
            "batch_size": evaluation["batch_size"],
            "rouge_stemmer": self.config["metrics"]["rouge_stemmer"],
            "generation_stop": evaluation["generation_stop"],
            "label_match": evaluation["label_match"],
        }

    # --- Benchmarks (the instruction-tuning arm) ---------------------------------------------------------------

    def benchmark_runs(self) -> list[Run]:
        """Models scored on the benchmarks: every pre-trained checkpoint and every instruction-tuned one."""
        return self.base_runs() + self.instruction_tuned_runs() if self.benchmarks else []

    def benchmark_requests(self, run: Run) -> list[dict]:
        if not (run.is_base or run.is_instruction_tuned):
            return []
        tasks = self.config["benchmarks"]["tasks"]
        # lm-eval tasks read their data offline from what the download stage recorded.
        return [{"benchmark": b, "task": tasks[b].get("task", f"amuro_{b}"), "shots": shots,
                 "output": fill(BENCHMARK_SCORES, **run.fields, benchmark=b, shots=shots),
                 "download": fill(BENCHMARK_RECORD, benchmark=b) if "task" in tasks[b] else None}
                for b in self.benchmarks for shots in self.config["benchmarks"]["shots"]]

    def benchmark_files(self, run: Run) -> list[str]:
        return [r["output"] for r in self.benchmark_requests(run)]

    def benchmark_patterns(self) -> list[str]:
        """The outputs of a benchmark job, with {model}, {checkpoint} and {train} left as wildcards."""
        return [fill(BENCHMARK_SCORES, benchmark=b, shots=k) for b in self.benchmarks
                for k in self.config["benchmarks"]["shots"]]

    def benchmark_inputs(self) -> list[str]:
        tasks = self.config["benchmarks"]["tasks"].values()
        return [f"{MINIWORLD}/benchmarks"] if any("miniworld" in t for t in tasks) else []

    def benchmark_task_files(self) -> dict:
        """Task YAMLs amuro writes for benchmarks stored as local files (the mini-world's)."""
        return {
            f"amuro_{name}": {"task": f"amuro_{name}",
                              "train": f"{MINIWORLD}/benchmarks/{spec['miniworld']}/train.jsonl",
                              "test": f"{MINIWORLD}/benchmarks/{spec['miniworld']}/test.jsonl"}
            for name, spec in self.config["benchmarks"]["tasks"].items() if "miniworld" in spec
        }

    def benchmark_settings(self) -> dict:
        b = self.config["benchmarks"]
        return {"batch_size": b["batch_size"], "limit": b["limit"]}

    # --- Results, tables and figures ---------------------------------------------------------------------------

    def evaluated_files(self, run: Run) -> list[str]:
        """Everything one run was scored into: its predictions and its benchmark scores."""
        return self.prediction_files(run) + self.benchmark_files(run)

    def summary_file(self, run: Run) -> str:
        return fill(SUMMARY, **run.fields)

    def summary_files(self) -> list[str]:
        return [self.summary_file(run) for run in self.runs()]

    def summary_settings(self, run: Run) -> dict:
        if run.is_base:
            train_task = None
        elif run.is_instruction_tuned:
            train_task = "instruction"
        else:
            train_task = self.dataset_task(run.train_dataset)
        metrics = self.config["metrics"]
        return {"train_task": train_task, "resamples": metrics["bootstrap_resamples"],
                "confidence": metrics["confidence"], "seed": self.config["seed"],
                "point_estimate": metrics["point_estimate"]}

    def table(self, name: str) -> str:
        return fill(TABLE, name=name)

    def analysis_settings(self) -> dict:
        """The summary tables' settings; `amuro tables --config` reads the same ones."""
        return summary_table_settings(self.config)

    def classification_prediction_files(self) -> list[str]:
        """Classification predictions in the main eval format: the data of the scoring-method comparison (Table 3)."""
        main = self.main_format
        classification = {d for d in self.eval_datasets if study_config.is_classification(self.config, d)}
        return [r["output"] for run in self.runs() for r in self.eval_requests(run)
                if r["format"] == main and r["dataset"] in classification]

    def figure_problem(self, figure_id: str) -> str | None:
        """Why this study cannot draw the figure, or None if it can."""
        if figure_id not in FIGURES:
            return f"unknown figure '{figure_id}' (figures: {', '.join(FIGURES)})"
        needs = FIGURES[figure_id].needs
        ft = self.config["finetune"]
        task = {name: spec["task"] for name, spec in self.config["datasets"].items()}
        if needs and not ft["datasets"]:
            return "it needs fine-tuned models; finetune.datasets is empty"
        if needs & {"finetuned", "cross_domain", "cross_task", "sizes", "fticl"} and not (
                set(self.base_shots) & set(self.finetuned_shots)):
            return ("it compares fine-tuned models with their base checkpoints at the same number of shots; "
                    "evaluation.base_shots and evaluation.finetuned_shots have none in common")
        if "cross_domain" in needs and not any(
                task[e] == task[t] and e != t for t in ft["datasets"] for e in self.eval_datasets):
            return "it needs an eval set of a fine-tuned task other than the fine-tuning set itself (cross-domain)"
        if "cross_task" in needs and not any(task[e] != task[t] for t in ft["datasets"] for e in self.eval_datasets):
            return "it needs an eval set of a task other than a fine-tuned one (cross-task)"
        if "sizes" in needs and len(ft["sizes"]) < 2:
            return "it needs at least two train sizes in finetune.sizes"
        if "fticl" in needs and not ("fticl" in ft["formats"] and main_train_format(ft["formats"])):
            return "it needs finetune.formats to hold fticl and a plain format (default, io or instruct)"
        if "instruction" in needs and not (self.instruction_tuned_models and self.benchmarks):
            return "it needs instruction tuning (instruction_tuning.source) and benchmarks (benchmarks.tasks)"
        return None

    def drawable_figures(self) -> list[str]:
        """Figures the configured study can fill; `all` leaves the others out (asked for by name, they fail)."""
        return [f for f in FIGURES if self.figure_problem(f) is None]

    def figure_runs(self, figure_id: str) -> list[Run]:
        """The runs whose evaluations a figure reads: every checkpoint, and the tuned runs it shows."""
        problem = self.figure_problem(figure_id)
        if problem:
            raise PlanError(f"figure '{figure_id}' cannot be drawn from this study: {problem}")
        needs = FIGURES[figure_id].needs
        runs = self.base_runs()
        if needs & {"finetuned", "sizes", "fticl", "cross_domain", "cross_task"}:
            ft = self.config["finetune"]
            formats = [main_train_format(ft["formats"])] + (["fticl"] if "fticl" in needs else [])
            sizes = [str(s) for s in ft["sizes"]] if "sizes" in needs else [main_train_size(ft["sizes"])]
            shown = {(d, f, s) for d in ft["datasets"] for f in formats for s in sizes}
            runs += [r for r in self.finetuned_runs() if (r.train_dataset, r.train_format, r.train_size) in shown]
        if needs & {"instruction", "with_instruction"}:
            runs += self.instruction_tuned_runs()
        return runs

    def figure_inputs(self, figure_id: str) -> list[str]:
        return [self.summary_file(run) for run in self.figure_runs(figure_id)]

    def figure_settings(self) -> dict:
        """What a figure needs besides the table: the interval level, the benchmark metric, configured groups."""
        return {"confidence": self.config["metrics"]["confidence"],
                "benchmark_metric": self.config["benchmarks"]["metric"], "groups": self.config["analysis"]["groups"]}

    def figure_files(self) -> list[str]:
        return [fill(FIGURE, figure=f, ext=ext) for f in self.drawable_figures() for ext in ("pdf", "png")]

    # --- Everything --------------------------------------------------------------------------------------------

    def final_outputs(self) -> list[str]:
        """What `snakemake` with no target builds: the whole study, its tables and every drawable figure."""
        outputs = self.checkpoint_dirs() + self.prompt_files()
        outputs += self.instruction_files() + [run.dir for run in self.instruction_tuned_runs()]
        outputs += [f for run in self.runs() for f in self.evaluated_files(run)]
        outputs += [self.table(name) for name in SUMMARY_TABLES]
        if self.classification_prediction_files():
            outputs += [self.table(name) for name in SCORING_TABLES]
        return outputs + self.figure_files()
