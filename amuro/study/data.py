"""The data stage's jobs: checkpoints fetched into HF directories, datasets as canonical splits, each dataset in
each prompt format, the instruction mix, and the mini-world that stands in for the hub."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro.study.paths import DATA, DATA_META, INSTRUCTIONS, MINIWORLD, PROMPTS, SPLITS, fill, per_split
from amuro.study.runs import Run

if TYPE_CHECKING:
    from amuro.study.plan import Study


class Data:
    def __init__(self, study: Study):
        self.study = study

    # --- Checkpoints ---

    def checkpoint_dirs(self) -> list[str]:
        return [run.dir for run in self.study.base_runs()]

    def checkpoint_inputs(self, run: Run) -> list[str]:
        """A mini-world checkpoint needs the pre-training run; hub and local ones need nothing from the workflow."""
        return [f"{MINIWORLD}/pretrain"] if self.study.model(run).source == "miniworld" else []

    def fetch_spec(self, run: Run) -> dict:
        return self.study.model(run).fetch_spec

    # --- Datasets and prompts ---

    def dataset_inputs(self, dataset: str) -> list[str]:
        source = self.study.dataset(dataset).source
        if source["type"] == "miniworld":
            return [f"{MINIWORLD}/datasets"]
        if source["type"] == "local":
            return list(source["files"].values())
        return []

    def prepare_spec(self, dataset: str) -> dict:
        return self.study.dataset(dataset).prepare_spec

    def dataset_seed(self, dataset: str) -> int:
        return self.study.dataset(dataset).seed

    def dataset_task(self, dataset: str) -> str:
        return self.study.dataset(dataset).task

    def dataset_templates(self, dataset: str) -> dict:
        return self.study.dataset(dataset).templates

    def prompt_shots(self, dataset: str) -> str:
        """The shot counts of a dataset's prompt files, every one any model is scored with on it, comma-separated as
        build-prompts takes them."""
        evaluation = self.study.evaluation
        return ",".join(map(str, sorted(set(evaluation.shots(dataset, True)) | set(evaluation.shots(dataset, False)))))

    def demonstrations(self) -> dict:
        """How the prompt files choose and join their demonstrations (evaluation.demonstrations)."""
        return dict(self.study.config["evaluation"]["demonstrations"])

    def dataset_outputs(self) -> list[str]:
        """What preparing one dataset writes: its splits and the record of how it was read."""
        return per_split(DATA) + [DATA_META]

    def prompt_files(self) -> list[str]:
        return [fill(PROMPTS, dataset=d, format=f, split=s) for d in self.study.datasets
                for f in self.study.formats for s in SPLITS]

    # --- The instruction mix ---

    def instruction_files(self) -> list[str]:
        return [fill(INSTRUCTIONS, dataset=self.study.instruction_mix)] if self.study.instruction_tuned_models else []

    def instruction_inputs(self) -> list[str]:
        source = self.study.instruction_source  # none: the arm is off
        if source.get("type") == "miniworld":
            return [f"{MINIWORLD}/instructions"]
        return [source["file"]] if source.get("type") == "local" else []

    def instruction_spec(self) -> dict:
        it = self.study.config["instruction_tuning"]
        return {"name": it["name"], "source": it.get("source"), "sample": it["sample"],
                "seed": it.get("seed", self.study.seed)}

    # --- The mini-world ---

    def miniworld_settings(self, *sections: str) -> dict:
        mw = self.study.config["miniworld"]
        return {k: mw[k] for k in sections}

    @property
    def miniworld_tokenizer(self) -> dict:
        return self.study.config["miniworld"]["tokenizer"]
