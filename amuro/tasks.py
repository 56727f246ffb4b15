"""The task types the study covers: their canonical input fields and whether they are scored as generation
or as classification. Every dataset maps its raw columns onto these fields plus `target`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str
    fields: tuple[str, ...]
    kind: str  # "generation" (ROUGE-L) or "classification" (accuracy)

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("summarization", ("document",), "generation"),
        Task("question_generation", ("context", "answer"), "generation"),
        Task("nli", ("premise", "hypothesis"), "classification"),
        Task("paraphrase", ("sentence1", "sentence2"), "classification"),
        Task("sentiment", ("text",), "classification"),
    )
}
# The eval_task of every multiple-choice benchmark row (lm-eval scores them all alike, whatever the benchmark).
BENCHMARK_TASK = "multiple_choice"
