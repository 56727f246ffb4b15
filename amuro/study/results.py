"""The results stage's jobs: each evaluated run summarised into long-format rows, the results table, the summary
tables over it, and the scoring-method comparison."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro import config as study_config
from amuro.study.paths import SUMMARY, fill
from amuro.study.runs import Run

if TYPE_CHECKING:
    from amuro.study.plan import Study


class Results:
    def __init__(self, study: Study):
        self.study = study

    def evaluated_files(self, run: Run) -> list[str]:
        """What a run's summary reads: the indexes of its predictions and of its benchmark scores."""
        return self.study.evaluation.index(run) + self.study.benchmarking.index(run)

    def summary_file(self, run: Run) -> str:
        return fill(SUMMARY, **run.fields)

    def summary_files(self) -> list[str]:
        return [self.summary_file(run) for run in self.study.runs()]

    def summary_settings(self, run: Run) -> dict:
        if run.is_base:
            train_task = None
        elif run.is_instruction_tuned:
            train_task = "instruction"
        else:
            train_task = self.study.dataset(run.train_dataset).task
        metrics = self.study.config["metrics"]
        return {"train_task": train_task, "resamples": metrics["bootstrap_resamples"],
                "confidence": metrics["confidence"], "seed": self.study.seed,
                "point_estimate": metrics["point_estimate"]}

    def table_settings(self) -> dict:
        """The summary tables' settings; `amuro tables --config` reads the same ones."""
        return study_config.analysis_settings(self.study.config)
