"""Typed views of the config, one per thing the stages read: a model, a dataset. Each says which of its keys a job
reads, because a job's params are its rerun triggers: a param holding more than the job reads reruns it (and
everything after it) when an unrelated key changes."""

from __future__ import annotations

from dataclasses import dataclass

from amuro import config as study_config
from amuro.tasks import TASKS


@dataclass(frozen=True)
class ModelConfig:
    name: str
    source: str  # hub | local | miniworld
    repo: str | None
    path: str | None
    gpus: int  # GPUs a fine-tune of this model asks for (evaluation always takes one)
    checkpoints: tuple[str, ...]

    @classmethod
    def from_config(cls, config: dict, name: str) -> ModelConfig:
        spec = config["models"][name]
        return cls(name, spec["source"], spec.get("repo"), spec.get("path"), spec["gpus"],
                   tuple(study_config.model_checkpoints(config, name)))

    @property
    def from_hub(self) -> bool:
        return self.source == "hub"

    @property
    def fetch_spec(self) -> dict:
        """What fetching a checkpoint reads: never its list of checkpoints, GPUs or hyper-parameters, so that
        adding a checkpoint or changing a learning rate refetches (and reruns) nothing."""
        return {"source": self.source, "repo": self.repo, "path": self.path}


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    task: str
    entry: dict  # the config entry, as validated
    seed: int

    @classmethod
    def from_config(cls, config: dict, name: str) -> DatasetConfig:
        entry = config["datasets"][name]
        return cls(name, entry["task"], entry, study_config.dataset_seed(config, name))

    @property
    def source(self) -> dict:
        return self.entry["source"]

    @property
    def source_type(self) -> str:
        return self.source["type"]

    @property
    def templates(self) -> dict:
        """The dataset's own prompt templates per format (the task's built-in ones where none is given)."""
        return self.entry["templates"]

    @property
    def labels(self) -> list[str] | None:
        return self.entry.get("labels")

    @property
    def is_classification(self) -> bool:
        return TASKS[self.task].is_classification

    @property
    def prepare_spec(self) -> dict:
        """What preparing the canonical splits reads: not the prompt templates (nor the seed, passed on its own), nor
        a later key at the default that does what the data job did before it existed."""
        spec = {k: v for k, v in self.entry.items() if k not in ("templates", "seed")}
        return study_config.without_later_defaults(spec, "dataset")
