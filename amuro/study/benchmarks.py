"""The second arm's jobs: every pre-trained and every instruction-tuned checkpoint scored on multiple-choice
benchmarks through lm-evaluation-harness. A model's requests are built once; outputs and patterns are read off them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amuro.study.paths import BENCHMARK_INDEX, BENCHMARK_RECORD, BENCHMARK_SCORES, MINIWORLD, fill
from amuro.study.runs import WILDCARDS, Run

if TYPE_CHECKING:
    from amuro.study.plan import Study


class Benchmarks:
    def __init__(self, study: Study):
        self.study = study
        self.tasks = study.config["benchmarks"]["tasks"]
        self.shots = list(study.config["benchmarks"]["shots"])
        self.split = study.config["benchmarks"]["split"]

    def runs(self) -> list[Run]:
        """Models scored on the benchmarks: every pre-trained checkpoint and every instruction-tuned one."""
        return self.study.base_runs() + self.study.instruction_tuned_runs() if self.study.benchmarks else []

    def split_of(self, benchmark: str) -> str:
        """The split a benchmark is scored on: its own `split`, else benchmarks.split."""
        return self.tasks[benchmark].get("split", self.split)

    def requests(self, run: Run, fields: dict | None = None) -> list[dict]:
        if not (run.is_base or run.is_instruction_tuned):
            return []
        fields = run.fields if fields is None else fields
        # lm-eval tasks read their data offline from what the download stage recorded.
        return [{"benchmark": b, "task": self.tasks[b].get("task", f"amuro_{b}"), "shots": shots,
                 "output": fill(BENCHMARK_SCORES, **fields, benchmark=b, shots=shots),
                 "download": fill(BENCHMARK_RECORD, benchmark=b) if "task" in self.tasks[b] else None,
                 "split": self.split_of(b)}
                for b in self.study.benchmarks for shots in self.shots]

    def files(self, run: Run) -> list[str]:
        return [r["output"] for r in self.requests(run)]

    def index(self, run: Run) -> list[str]:
        """The index of what the run's benchmark job wrote (none for a run not scored on the benchmarks)."""
        return [fill(BENCHMARK_INDEX, **run.fields)] if self.requests(run) else []

    def index_pattern(self) -> str:
        return BENCHMARK_INDEX

    def output_patterns(self) -> list[str]:
        """The outputs of a benchmark job, with {model}, {checkpoint} and {train} left as wildcards."""
        return [r["output"] for r in self.requests(self.study.base_runs()[0], WILDCARDS)] if self.runs() else []

    def inputs(self) -> list[str]:
        return [f"{MINIWORLD}/benchmarks"] if any("miniworld" in t for t in self.tasks.values()) else []

    def task_files(self) -> dict:
        """Task YAMLs amuro writes for benchmarks stored as local files (the mini-world's)."""
        return {
            f"amuro_{name}": {"task": f"amuro_{name}",
                              "train": f"{MINIWORLD}/benchmarks/{spec['miniworld']}/train.jsonl",
                              "test": f"{MINIWORLD}/benchmarks/{spec['miniworld']}/test.jsonl"}
            for name, spec in self.tasks.items() if "miniworld" in spec
        }

    def settings(self) -> dict:
        b = self.study.config["benchmarks"]
        return {"batch_size": b["batch_size"], "limit": b["limit"]}
