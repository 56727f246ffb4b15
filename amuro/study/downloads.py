"""The download stage's jobs: the only ones that reach the network. Each records what it fetched; the jobs that read
a hub source depend on that record and run offline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro import config as study_config
from amuro.study.paths import BENCHMARK_RECORD, CHECKPOINT_RECORD, DATASET_RECORD, INSTRUCTIONS_RECORD, fill
from amuro.study.runs import Run

if TYPE_CHECKING:
    from amuro.study.plan import Study


class Downloads:
    def __init__(self, study: Study):
        self.study = study

    def checkpoint_record(self, run: Run) -> list[str]:
        """The download record a hub checkpoint is read from (none for local and mini-world checkpoints)."""
        return [fill(CHECKPOINT_RECORD, **run.base.fields)] if self.study.model(run).from_hub else []

    def dataset_record(self, dataset: str) -> list[str]:
        hub = self.study.dataset(dataset).source_type == "hub"
        return [fill(DATASET_RECORD, dataset=dataset)] if hub else []

    def instruction_records(self) -> list[str]:
        hub = self.study.instruction_tuned_models and self.study.instruction_source.get("type") == "hub"
        return [fill(INSTRUCTIONS_RECORD, dataset=self.study.instruction_mix)] if hub else []

    def benchmark_records(self) -> list[str]:
        tasks = self.study.config["benchmarks"]["tasks"]
        return [fill(BENCHMARK_RECORD, benchmark=b) for b in self.study.benchmarks if "task" in tasks[b]]

    def records(self) -> list[str]:
        """Everything the study fetches: `snakemake download` builds exactly these."""
        return ([r for run in self.study.base_runs() for r in self.checkpoint_record(run)]
                + [r for d in self.study.datasets for r in self.dataset_record(d)]
                + self.instruction_records() + self.benchmark_records())

    def checkpoint_spec(self, run: Run) -> dict:
        # Only what decides the files: a model's gpus or hyper-parameters must not refetch (and rerun) anything.
        return {"repo": self.study.model(run).repo}

    def checkpoint_entry(self, run: Run):
        """The config entry behind the checkpoint id: a revision name, or {step: N}."""
        return study_config.checkpoint_entry(self.study.config, run.model, run.checkpoint)

    def dataset_spec(self, dataset: str) -> dict:
        return {"source": self.study.dataset(dataset).source}

    def benchmark_options(self, benchmark: str) -> str:
        """The lm-eval task and any dataset override (revision, data_dir) of one hub benchmark, as CLI options."""
        spec = self.study.config["benchmarks"]["tasks"][benchmark]
        return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in spec.items())
