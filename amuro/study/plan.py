"""The configured study: its runs, the wildcards that name them, and what `snakemake` with no target builds. Each
stage's jobs live in a module of their own (downloads, data, finetune, evaluate, benchmarks, results, figures);
Study ties them to one config."""

from __future__ import annotations

from functools import cached_property

from amuro import config as study_config
from amuro.figures.catalog import FIGURES
from amuro.study.benchmarks import Benchmarks
from amuro.study.data import Data
from amuro.study.downloads import Downloads
from amuro.study.evaluate import Evaluation
from amuro.study.figures import Figures
from amuro.study.finetune import Finetuning
from amuro.study.paths import SCORING_TABLES, SUMMARY_TABLES, table
from amuro.study.results import Results
from amuro.study.runs import BASE, CELL_AXES, INSTRUCTION_FORMAT, PLAIN_TRAIN_FORMATS, PlanError, Run, one_of
from amuro.study.settings import DatasetConfig, ModelConfig


class Study:
    """The configured study: its runs, and per stage the files each job reads and writes and its settings."""

    def __init__(self, config: dict):
        self.config = config
        self.seed = config["seed"]
        self.models = sorted(config["models"])
        self.datasets = sorted(config["datasets"])
        self.formats = list(config["formats"])
        self.eval_datasets = study_config.eval_datasets(config)
        self.benchmarks = sorted(config["benchmarks"]["tasks"])
        self.instruction_mix = config["instruction_tuning"]["name"]
        self.instruction_source = config["instruction_tuning"].get("source", {})
        self.instruction_tuned_models = study_config.instruction_tuned_models(config)
        self.variants = study_config.variants(config)
        self._variant_datasets = {v: study_config.variant_datasets(config, v) for v in self.variants}
        self._variant_seeds = {v: study_config.finetune_seeds(config, v) for v in self.variants}
        self._models = {m: ModelConfig.from_config(config, m) for m in self.models}
        self._datasets = {d: DatasetConfig.from_config(config, d) for d in self.datasets}
        # The stages, in the order data flows through them.
        self.downloads = Downloads(self)
        self.data = Data(self)
        self.finetuning = Finetuning(self)
        self.evaluation = Evaluation(self)
        self.benchmarking = Benchmarks(self)
        self.results = Results(self)
        self.figures = Figures(self)

    def model(self, run: Run | str) -> ModelConfig:
        return self._models[run if isinstance(run, str) else run.model]

    def dataset(self, name: str) -> DatasetConfig:
        return self._datasets[name]

    # --- Runs ---

    def checkpoints(self, model: str) -> list[str]:
        return list(self._models[model].checkpoints)

    def base_runs(self) -> list[Run]:
        return [Run(m, c) for m in self.models for c in self.checkpoints(m)]

    def cells(self, model: str, checkpoint: str) -> list[Run]:
        """The fine-tuning cells of one checkpoint: train dataset x train format x train size x variant (those
        fine-tuning on the train set) x seed (the variant's)."""
        ft = self.config["finetune"]
        return [Run(model, checkpoint, d, f, str(s), v, str(seed)) for d in ft["datasets"] for f in ft["formats"]
                for s in ft["sizes"] for v in self.variants if d in self._variant_datasets[v]
                for seed in self._variant_seeds[v]]

    def finetuned_runs(self) -> list[Run]:
        """Every supervised fine-tuning cell: checkpoint x train dataset x train format x train size x variant x
        seed."""
        return [cell for run in self.base_runs() for cell in self.cells(run.model, run.checkpoint)]

    def instruction_tuned_runs(self) -> list[Run]:
        return [self.instruction_tuned(m, c) for m in self.instruction_tuned_models for c in self.checkpoints(m)]

    def instruction_tuned(self, model: str, checkpoint: str) -> Run:
        """The instruction-tuned checkpoint: a cell of its own kind, fully fine-tuned once with its own settings
        (instruction_tuning.hyperparameters, seed included); finetune.variants and finetune.seeds do not apply."""
        return Run(model, checkpoint, self.instruction_mix, INSTRUCTION_FORMAT, "all", study_config.DEFAULT_VARIANT,
                   str(self.config["instruction_tuning"]["hyperparameters"]["seed"]))

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
            run = Run(wildcards["model"], wildcards["checkpoint"], *(wildcards[axis] for axis in CELL_AXES))
            return self.run(run.model, run.checkpoint, run.id)
        return self.run(wildcards["model"], wildcards["checkpoint"])

    @staticmethod
    def model_dir(run: Run) -> str:
        return run.dir

    def model_inputs(self, run: Run) -> dict[str, str]:
        """What a job that loads the run's model reads: its directory and, for a LoRA cell (an adapter), the
        pre-trained checkpoint the adapter is merged into."""
        inputs = {"model": run.dir}
        if self.finetuning.is_lora(run):
            inputs["base"] = run.base.dir
        return inputs

    @staticmethod
    def run_meta(run: Run) -> dict:
        return run.meta

    @staticmethod
    def id_pattern(runs: list[Run]) -> str:
        """A wildcard constraint matching these runs' ids: built from their parts (train sets, formats, sizes,
        variants, seeds), not one alternative per run, which Snakemake would try against every path of a 20,000-job
        study."""
        tuned = [run for run in runs if not run.is_base]
        parts = [BASE] if len(tuned) < len(runs) else []
        if tuned:
            parts.append("-".join("(?:" + one_of(getattr(run, axis) for run in tuned) + ")" for axis in CELL_AXES))
        return "|".join(parts) or "(?!)"

    def wildcard_constraints(self) -> dict[str, str]:
        """Each wildcard matches exactly the values this study uses, so no two rules claim one path."""
        return {
            "model": one_of(self.models),
            "checkpoint": r"[A-Za-z0-9][A-Za-z0-9._-]*",
            "dataset": one_of(self.datasets + [self.instruction_mix]),
            "format": one_of(self.formats),
            "train": self.id_pattern(self.runs()),
            "train_dataset": one_of(self.datasets + [self.instruction_mix]),
            "train_format": one_of(PLAIN_TRAIN_FORMATS + (INSTRUCTION_FORMAT,)),
            "train_size": r"all|\d+",
            "variant": one_of(run.variant for run in self.runs() if not run.is_base),
            "seed": r"\d+",
            "eval_dataset": one_of(self.eval_datasets),
            "eval_format": one_of(self.formats),
            "benchmark": one_of(self.benchmarks),
            "figure": one_of(FIGURES),
        }

    # --- Everything ---

    def final_outputs(self) -> list[str]:
        """What `snakemake` with no target builds: the whole study, its tables and every drawable figure."""
        outputs = self.data.checkpoint_dirs() + self.data.prompt_files()
        outputs += self.data.instruction_files() + [run.dir for run in self.instruction_tuned_runs()]
        # Each summary stands for the predictions it reads (listing those too would add a file per eval set, format
        # and shot count of every run to Snakemake's graph, for nothing).
        outputs += self.results.summary_files()
        outputs += [table(name) for name in SUMMARY_TABLES]
        if self.evaluation.scores_classification():
            outputs += [table(name) for name in SCORING_TABLES]
        return outputs + self.figures.files()
