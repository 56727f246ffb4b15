"""The figures' jobs: which figures the configured study can draw, and which runs each one reads, so that asking for
one figure schedules only the runs behind it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro import config as study_config
from amuro.axes import main_train_format, main_train_size, main_variant
from amuro.figures.catalog import FIGURES
from amuro.study.paths import FIGURE, fill
from amuro.study.runs import PlanError, Run

if TYPE_CHECKING:
    from amuro.study.plan import Study

FINETUNED_NEEDS = {"finetuned", "sizes", "fticl", "cross_domain", "cross_task"}


class Figures:
    def __init__(self, study: Study):
        self.study = study
        self.finetune = study.config["finetune"]

    def problem(self, figure_id: str) -> str | None:
        """Why this study cannot draw the figure, or None if it can."""
        if figure_id not in FIGURES:
            return f"unknown figure '{figure_id}' (figures: {', '.join(FIGURES)})"
        needs, ft, study = FIGURES[figure_id].needs, self.finetune, self.study
        task = {name: study.dataset(name).task for name in study.datasets}
        evaluation = study.evaluation
        if needs and not ft["datasets"]:
            return "it needs fine-tuned models; finetune.datasets is empty"
        if needs & FINETUNED_NEEDS and not any(
                set(evaluation.shots(d, True)) & set(evaluation.shots(d, False)) for d in study.eval_datasets):
            return ("it compares fine-tuned models with their base checkpoints at the same number of shots; "
                    "evaluation.base_shots and evaluation.finetuned_shots (or a set's shots_per_task / "
                    "shots_per_dataset list) have none in common")
        if "cross_domain" in needs and not any(
                task[e] == task[t] and e != t for t in ft["datasets"] for e in study.eval_datasets):
            return "it needs an eval set of a fine-tuned task other than the fine-tuning set itself (cross-domain)"
        if "cross_task" in needs and not any(task[e] != task[t] for t in ft["datasets"] for e in study.eval_datasets):
            return "it needs an eval set of a task other than a fine-tuned one (cross-task)"
        if "sizes" in needs and len(ft["sizes"]) < 2:
            return "it needs at least two train sizes in finetune.sizes"
        if "fticl" in needs and not ("fticl" in ft["formats"] and main_train_format(ft["formats"])):
            return "it needs finetune.formats to hold fticl and a plain format (default, io or instruct)"
        if "lora" in needs and not {"full", "lora"} <= {study_config.variant_method(study.config, v)["method"]
                                                         for v in study.variants}:
            return "it needs a variant with method full and one with method lora (finetune.variants)"
        if "instruction" in needs and not (study.instruction_tuned_models and study.benchmarks):
            return "it needs instruction tuning (instruction_tuning.source) and benchmarks (benchmarks.tasks)"
        return None

    def drawable(self) -> list[str]:
        """Figures the configured study can fill; `all` leaves the others out (asked for by name, they fail)."""
        return [f for f in FIGURES if self.problem(f) is None]

    def runs(self, figure_id: str) -> list[Run]:
        """The runs whose evaluations a figure reads: every checkpoint, and the tuned runs it shows."""
        problem = self.problem(figure_id)
        if problem:
            raise PlanError(f"figure '{figure_id}' cannot be drawn from this study: {problem}")
        needs = FIGURES[figure_id].needs
        runs = self.study.base_runs()
        if needs & FINETUNED_NEEDS:
            ft = self.finetune
            formats = [main_train_format(ft["formats"])] + (["fticl"] if "fticl" in needs else [])
            sizes = [str(s) for s in ft["sizes"]] if "sizes" in needs else [main_train_size(ft["sizes"])]
            shown = {(d, f, s) for d in ft["datasets"] for f in formats for s in sizes}
            variants = self.study.variants if FIGURES[figure_id].every_variant else [main_variant(self.study.variants)]
            runs += [r for r in self.study.finetuned_runs()
                     if (r.train_dataset, r.train_format, r.train_size) in shown and r.variant in variants]
        if needs & {"instruction", "with_instruction"}:
            runs += self.study.instruction_tuned_runs()
        return runs

    def inputs(self, figure_id: str) -> list[str]:
        return [self.study.results.summary_file(run) for run in self.runs(figure_id)]

    def settings(self) -> dict:
        """What a figure needs besides the table: the interval level, the benchmark metric, configured groups."""
        config = self.study.config
        return {"confidence": config["metrics"]["confidence"],
                "benchmark_metric": config["benchmarks"]["metric"], "groups": config["analysis"]["groups"]}

    def files(self) -> list[str]:
        return [fill(FIGURE, figure=f, ext=ext) for f in self.drawable() for ext in ("pdf", "png")]
