"""The fine-tuning stage's jobs: every cell (a checkpoint fine-tuned on one train set, in one train format, at one
train size, with one variant of the settings and one seed) and every instruction-tuned checkpoint, with the settings
and cluster size of each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro import config as study_config
from amuro.study.paths import INSTRUCTIONS, PROMPTS, SCRATCH, fill
from amuro.study.runs import Run

if TYPE_CHECKING:
    from amuro.study.plan import Study


class Finetuning:
    def __init__(self, study: Study):
        self.study = study
        # finetune.jobs per_checkpoint: one job trains every supervised cell of a checkpoint, in turn.
        self.per_checkpoint = study.config["finetune"]["jobs"] == "per_checkpoint"

    def train_prompts(self, run: Run) -> str:
        if run.is_instruction_tuned:
            return fill(INSTRUCTIONS, dataset=run.train_dataset)
        return fill(PROMPTS, dataset=run.train_dataset, format=run.train_format, split="train")

    def settings(self, run: Run) -> dict:
        """What one fine-tune job trains with, and nothing else (its params, so its rerun trigger): the
        hyper-parameters (defaults, the train set's override, the model's own, the variant's), the variant's method
        (and LoRA settings), the cell's seed, and its size, sampled with the train set's seed (the study's unless the
        dataset has its own) so that every seed of a cell trains on the same examples. A key added later stays out
        at the default that does what the job did before it (config.LATER_DEFAULTS)."""
        config = self.study.config
        if run.is_instruction_tuned:
            settings = study_config.instruction_hyperparameters(config)
        else:
            settings = study_config.hyperparameters(config, run.train_dataset, run.model, run.variant)
            settings.update(study_config.variant_method(config, run.variant))
            settings["seed"] = int(run.seed)
            settings["sample_seed"] = study_config.dataset_seed(config, run.train_dataset)
            settings["size"] = None if run.train_size == "all" else int(run.train_size)
        return study_config.without_later_defaults(settings, "hyperparameters")

    def is_lora(self, run: Run) -> bool:
        """Whether the run's directory holds a LoRA adapter (which needs its base checkpoint to be used)."""
        return (not run.is_base and not run.is_instruction_tuned
                and study_config.variant_method(self.study.config, run.variant)["method"] == "lora")

    def fticl_shots(self, dataset: str) -> int:
        return study_config.hyperparameters(self.study.config, dataset)["fticl_shots"]

    def fticl_demonstrations(self, dataset: str) -> str:
        """Where the FTICL demonstrations come from (sampled from train, or the validation split's first rows)."""
        return study_config.hyperparameters(self.study.config, dataset)["fticl_demonstrations"]

    def scratch_dir(self, run: Run) -> str:
        return fill(SCRATCH, **run.fields)

    def gpus(self, run: Run) -> int:
        """GPUs a fine-tuning job of this run's model asks for (evaluation always takes one)."""
        return self.study.model(run).gpus

    # --- finetune.jobs per_checkpoint ---

    def checkpoint_patterns(self) -> list[str]:
        """The cell directories of a per-checkpoint fine-tune job, with {model} and {checkpoint} left as wildcards."""
        return [cell.dir for cell in self.study.cells("{model}", "{checkpoint}")]

    def checkpoint_inputs(self, model: str, checkpoint: str) -> dict[str, list[str] | str]:
        """The checkpoint a per-checkpoint job fine-tunes and the train prompts of its cells."""
        cells = self.study.cells(model, checkpoint)
        return {"base": Run(model, checkpoint).dir, "train": list(dict.fromkeys(map(self.train_prompts, cells)))}

    def checkpoint_jobs(self, model: str, checkpoint: str) -> list[dict]:
        """What a per-checkpoint job trains: each cell's train prompts, directory, settings, meta and scratch."""
        return [{"train_prompts": self.train_prompts(cell), "out_dir": cell.dir, "settings": self.settings(cell),
                 "run": cell.meta, "scratch_dir": self.scratch_dir(cell)}
                for cell in self.study.cells(model, checkpoint)]
