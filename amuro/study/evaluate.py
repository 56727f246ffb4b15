"""The evaluation stage's jobs: each model scored on its eval sets, formats and shot counts.

A model's requests (one per eval set x format x shot count: its prompt file and its prediction file) are built in
one place, requests(); a job's outputs, prompt inputs and output patterns are all read off them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro.axes import main_eval_format
from amuro.study.paths import PREDICTION_INDEX, PREDICTIONS, PROMPT_INDEX, PROMPTS, fill
from amuro.study.runs import WILDCARDS, Run

if TYPE_CHECKING:
    from amuro.study.plan import Study


class Evaluation:
    def __init__(self, study: Study):
        self.study = study
        evaluation = study.config["evaluation"]
        self.base_shots = list(evaluation["base_shots"])
        self.finetuned_shots = list(evaluation["finetuned_shots"])
        self.shots_per_task = evaluation["shots_per_task"]
        self.shots_per_dataset = evaluation["shots_per_dataset"]
        self.fewshot_formats = evaluation["fewshot_formats"] or study.formats
        self.other_formats_own_task = evaluation["finetuned_other_formats"] == "own_task"
        # finetuned_jobs per_checkpoint: one job scores every fine-tuned model of a checkpoint, in turn.
        self.per_checkpoint = evaluation["finetuned_jobs"] == "per_checkpoint"
        # One grid per kind of model (pre-trained, or fine-tuned on a task), not one list of requests per run: at
        # 20,000 jobs keeping every run's requests would hold 150 MB for the length of a dry run.
        self._grids: dict[tuple[bool, str | None], list[tuple[str, str, int]]] = {}

    @property
    def main_format(self) -> str:
        """The format the curves, matrices and findings read."""
        return main_eval_format(self.study.formats)

    def shots(self, dataset: str, base: bool) -> list[int]:
        """The shot counts a pre-trained (`base`) or fine-tuned model is scored with on one eval set: the set's own
        list, else its task's, else base_shots / finetuned_shots."""
        if dataset in self.shots_per_dataset:
            return list(self.shots_per_dataset[dataset])
        task = self.study.dataset(dataset).task
        if task in self.shots_per_task:
            return list(self.shots_per_task[task])
        return self.base_shots if base else self.finetuned_shots

    def grid(self, base: bool, train_task: str | None = None) -> list[tuple[str, str, int]]:
        """(eval dataset, format, shots) of one model's evaluation: every shot count in evaluation.fewshot_formats,
        0-shot only in the others; for a fine-tuned model of `train_task` with finetuned_other_formats own_task,
        the other formats only on the sets of its task."""
        return list(self._grid(base, None if base else train_task))

    def _grid(self, base: bool, train_task: str | None) -> list[tuple[str, str, int]]:
        key = (base, train_task)
        if key not in self._grids:
            own_task = not base and self.other_formats_own_task
            self._grids[key] = [
                (d, f, k) for d in self.study.eval_datasets for f in self.study.formats for k in self.shots(d, base)
                if (k == 0 or f in self.fewshot_formats)
                and not (own_task and f != self.main_format and self.study.dataset(d).task != train_task)]
        return self._grids[key]

    def _run_grid(self, run: Run) -> list[tuple[str, str, int]]:
        """The grid of one run: none for an instruction-tuned model (scored on the benchmarks only)."""
        if run.is_instruction_tuned:
            return []
        return self._grid(run.is_base, None if run.is_base else self.study.dataset(run.train_dataset).task)

    def requests(self, run: Run, fields: tuple[tuple[str, str], ...] | None = None) -> list[dict]:
        """What one model's evaluation does: every eval set x format x shot count, its prompt file and output.
        `fields` (for output patterns) replaces the run's own path fields."""
        path_fields = dict(fields) if fields is not None else run.fields
        requests = []
        for dataset, fmt, shots in self._run_grid(run):
            spec = self.study.dataset(dataset)
            requests.append({
                "dataset": dataset, "task": spec.task, "format": fmt, "shots": shots,
                "prompts": fill(PROMPTS, dataset=dataset, format=fmt, split="test"),
                "output": fill(PREDICTIONS, **path_fields, eval_dataset=dataset, eval_format=fmt, shots=shots),
                "labels": spec.labels,
            })
        return requests

    def prompt_index(self) -> list[str]:
        """What an evaluation job depends on for its prompts: the index of every eval set's test prompts (every job
        reads all of them), one input instead of one per set and format."""
        return [PROMPT_INDEX]

    def prompt_index_inputs(self) -> list[str]:
        return [fill(PROMPTS, dataset=d, format=f, split="test") for d in self.study.eval_datasets
                for f in self.study.formats]

    def index(self, run: Run) -> list[str]:
        """The index of what the run's evaluation wrote (none for a run scored on the benchmarks only)."""
        return [fill(PREDICTION_INDEX, **run.fields)] if self._run_grid(run) else []

    def prediction_files(self, run: Run) -> list[str]:
        return [r["output"] for r in self.requests(run)]

    def job(self, run: Run) -> dict:
        """One model's part of an evaluation job: its directory, requests, meta and the index it writes."""
        return {"model_dir": run.dir, "requests": self.requests(run), "meta": run.meta,
                "index": fill(PREDICTION_INDEX, **run.fields)}

    def jobs(self, run: Run) -> list[dict]:
        """A per-model evaluation job: one model."""
        return [self.job(run)]

    def output_patterns(self, base: bool) -> list[str]:
        """The outputs of a per-model evaluation job, with {model}, {checkpoint} and {train} left as wildcards."""
        runs = self.study.base_runs() if base else self.study.finetuned_runs()
        if not runs:
            return []
        return [r["output"] for r in self.requests(runs[0], tuple(WILDCARDS.items()))]

    def index_pattern(self) -> str:
        return PREDICTION_INDEX

    # --- finetuned_jobs per_checkpoint ---

    def finetuned_at(self, model: str, checkpoint: str) -> list[Run]:
        """The fine-tuned models one per-checkpoint evaluation job scores: the checkpoint's cells."""
        return self.study.cells(model, checkpoint)

    def checkpoint_patterns(self) -> list[str]:
        """The predictions of a per-checkpoint evaluation job, with {model} and {checkpoint} left as wildcards."""
        return [r["output"] for cell in self.study.cells("{model}", "{checkpoint}") for r in self.requests(cell)]

    def checkpoint_index_patterns(self) -> list[str]:
        """The index of each cell a per-checkpoint evaluation job scores."""
        return [i for cell in self.study.cells("{model}", "{checkpoint}") for i in self.index(cell)]

    def checkpoint_inputs(self, model: str, checkpoint: str) -> dict[str, list[str]]:
        """The models of a per-checkpoint job (and their checkpoint, if a LoRA cell merges its adapter into it)."""
        runs = self.finetuned_at(model, checkpoint)
        bases = dict.fromkeys(r.base.dir for r in runs if self.study.finetuning.is_lora(r))
        return {"models": [r.dir for r in runs] + list(bases), "prompts": self.prompt_index()}

    def checkpoint_jobs(self, model: str, checkpoint: str) -> list[dict]:
        """What a per-checkpoint evaluation job does: each model's directory, requests and meta, in turn."""
        return [self.job(r) for r in self.finetuned_at(model, checkpoint)]

    # ---

    def settings(self) -> dict:
        evaluation, metrics = self.study.config["evaluation"], self.study.config["metrics"]
        return {
            "classification": evaluation["classification"],
            "max_new_tokens_generation": evaluation["max_new_tokens"]["generation"],
            "max_new_tokens_classification": evaluation["max_new_tokens"]["classification"],
            "batch_size": evaluation["batch_size"],
            "rouge_stemmer": metrics["rouge_stemmer"],
            "generation_stop": evaluation["generation_stop"],
            "label_match": evaluation["label_match"],
            "overlong_prompts": evaluation["overlong_prompts"],
            "tokenprob_candidates": evaluation["tokenprob_candidates"],
        }

    def scores_classification(self) -> bool:
        """Whether the study has classification predictions in the main eval format (Table 3's data)."""
        return any(f == self.main_format and self.study.dataset(d).is_classification
                   for run in self.study.runs() for d, f, _ in self._run_grid(run))

    def indexes(self) -> list[str]:
        """The index of every evaluated run: what the scoring-method comparison (Table 3) reads its files from."""
        return [i for run in self.study.runs() for i in self.index(run)]
