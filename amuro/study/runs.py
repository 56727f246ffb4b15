"""A run: a model the study evaluates, either a pre-trained checkpoint or that checkpoint fine-tuned (a cell)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from amuro.study.paths import CHECKPOINT, FINETUNED, fill

BASE = "base"  # the run id of a pre-trained checkpoint
INSTRUCTION_FORMAT = "chat"  # an instruction-tuned run is the mix, in chat format, all of it
PLAIN_TRAIN_FORMATS = ("default", "io", "instruct", "fticl")
# What tells one cell from another, in the order of its id and its directory's path.
CELL_AXES = ("train_dataset", "train_format", "train_size", "variant", "seed")


class PlanError(ValueError):
    """A request the configured study cannot serve; the message says why."""


@dataclass(frozen=True)
class Run:
    """A model the study evaluates: a pre-trained checkpoint, or that checkpoint fine-tuned on one train set in one
    train format at one train size, with one variant of the fine-tuning settings and one seed (a cell; instruction
    tuning is the cell mix/chat/all, fully fine-tuned with its own seed). Every field is a string, as in paths."""

    model: str
    checkpoint: str
    train_dataset: str | None = None
    train_format: str | None = None
    train_size: str | None = None
    variant: str | None = None
    seed: str | None = None

    @property
    def is_base(self) -> bool:
        return self.train_dataset is None

    @property
    def is_instruction_tuned(self) -> bool:
        return self.train_format == INSTRUCTION_FORMAT

    @property
    def base(self) -> Run:
        """The pre-trained checkpoint this run starts from (itself for a base run)."""
        return Run(self.model, self.checkpoint)

    @property
    def id(self) -> str:
        """The run's name in prediction paths: `base`, or `{train_dataset}-{train_format}-{train_size}-{variant}-{seed}`
        (no part holds a `-`: datasets and variants are identifiers, formats words, sizes and seeds numbers)."""
        return BASE if self.is_base else "-".join(getattr(self, axis) for axis in CELL_AXES)

    @property
    def fields(self) -> dict[str, str]:
        """The run's values of the path templates' fields."""
        fields = {"model": self.model, "checkpoint": self.checkpoint, "train": self.id}
        if not self.is_base:
            fields.update({axis: getattr(self, axis) for axis in CELL_AXES})
        return fields

    @property
    def dir(self) -> str:
        """The model directory: the fetched checkpoint, or the fine-tuned model (or a LoRA cell's adapter)."""
        return fill(CHECKPOINT if self.is_base else FINETUNED, **self.fields)

    @property
    def meta(self) -> dict:
        """What identifies the model in every prediction it writes."""
        return {"model": self.model, "checkpoint": self.checkpoint, "train": self.id,
                "train_dataset": self.train_dataset, "train_format": self.train_format,
                "train_size": self.train_size, "train_variant": self.variant, "train_seed": self.seed}


# The fields of a rule's output pattern: a job's own wildcards.
WILDCARDS = {"model": "{model}", "checkpoint": "{checkpoint}", "train": "{train}"}


def one_of(values) -> str:
    """A regular expression matching exactly one of `values`; (?!) matches nothing."""
    return "|".join(re.escape(str(v)) for v in sorted(set(values))) or "(?!)"
