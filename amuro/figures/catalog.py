"""The study's figures as data: each one's stable id, title, caption and what the study must contain to fill it.

This is what planning needs (`amuro.study` decides which runs a figure reads, and whether the configured study can
draw it at all); how each figure is drawn lives in `amuro.figures.drawing`, which imports matplotlib only when it draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figure:
    id: str
    title: str
    caption: str
    # What the configured study must contain: "finetuned", "cross_domain", "cross_task", "sizes", "fticl",
    # "instruction" (instruction-tuned runs and benchmarks), "with_instruction" (reads them when there are some),
    # "lora" (a full and a LoRA variant: the figure shows every variant; the others show the main one).
    needs: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self):
        caption = " ".join(self.caption.split())
        if "finetuned" in self.needs and "lora" not in self.needs:
            caption += " " + MAIN_VARIANT_NOTE
        object.__setattr__(self, "caption", caption)
        object.__setattr__(self, "needs", frozenset(self.needs))

    @property
    def every_variant(self) -> bool:
        """Whether the figure compares the fine-tuning variants (else it shows the main one, amuro.axes)."""
        return "lora" in self.needs


MAIN_VARIANT_NOTE = ("Fine-tuned models of the main variant (full, if the study has it); a cell fine-tuned with "
                     "several seeds is drawn at their mean, its band the range of its seeds.")


FIGURES: dict[str, Figure] = {f.id: f for f in (
    Figure(
        "pretraining_curves",
        "Pre-trained checkpoints without fine-tuning",
        """The paper's Figure 6. Few-shot score of every pre-trained checkpoint on every eval set and benchmark (main
        prompt format, each set's largest shot count), in pre-training order, with the bootstrap interval as a band.
        Sets are split by whether the last checkpoint scores reliably above the first (learned during pre-training, or
        not), unless analysis.groups names their group.""",
    ),
    Figure(
        "finetuned_vs_base",
        "In-domain: pre-trained vs fine-tuned",
        """For each fine-tuning set, the in-domain score of the fine-tuned model (solid) and of the pre-trained
        checkpoint it started from (dashed) across checkpoints, at the shot count both were evaluated with, main prompt
        format; bands are bootstrap intervals.""",
        needs=("finetuned",),
    ),
    Figure(
        "finetuning_gain",
        "What fine-tuning adds, by whether pre-training learned the set",
        """In-domain change from fine-tuning (fine-tuned minus pre-trained score) per fine-tuning set and checkpoint,
        with 90 % intervals (rescaled from the table's bootstrap intervals). Sets are grouped as in pretraining_curves:
        learned in fine-tuning (the base checkpoints do not improve on them) or learned in pre-training.""",
        needs=("finetuned",),
    ),
    Figure(
        "format_sensitivity",
        "Sensitivity to the evaluation prompt format",
        """In-domain score per evaluation prompt format (default, input-output, instruct) across checkpoints, for the
        fine-tuned model (solid) and its pre-trained checkpoint (dashed); one panel per fine-tuning set. The model was
        fine-tuned in the main format only, so a gap between formats is what it failed to carry over.""",
        needs=("finetuned",),
    ),
    Figure(
        "cross_task",
        "Cross-task generalisation",
        """Change from fine-tuning (fine-tuned minus pre-trained) on eval sets of other tasks, averaged over the sets of
        each task kind, per fine-tuning set and checkpoint; one panel per direction (for example classification ->
        generation). Bands combine the sets' intervals.""",
        needs=("finetuned", "cross_task"),
    ),
    Figure(
        "cross_domain",
        "Cross-domain generalisation",
        """Change from fine-tuning (fine-tuned minus pre-trained) on the other eval sets of the fine-tuned task, per
        (fine-tuning set -> eval set) pair across checkpoints; one panel per task. Bands are intervals of the change.""",
        needs=("finetuned", "cross_domain"),
    ),
    Figure(
        "transfer_heatmap",
        "Transfer matrix per checkpoint",
        """Fine-tuned minus pre-trained score for every fine-tuning set (rows) and eval set (columns, grouped by task),
        one panel per checkpoint, main prompt format. Red is a loss, blue a gain; numbers are the change.""",
        needs=("finetuned",),
    ),
    Figure(
        "forgetting_heatmap",
        "Forgetting per checkpoint",
        """Outside the fine-tuning set: mean change from fine-tuning on the eval sets of each task, split into the
        fine-tuned task's other sets (cross-domain) and other tasks (cross-task), one panel per checkpoint. Only losses
        are coloured; each cell notes how many of its sets fall reliably below the pre-trained checkpoint.""",
        needs=("finetuned",),
    ),
    Figure(
        "train_size",
        "Change from fine-tuning by train size (Yang et al.)",
        """Mean change from fine-tuning (fine-tuned minus pre-trained) by number of training examples, for in-domain,
        cross-domain and cross-task eval sets, averaged over fine-tuning sets; one line per checkpoint.""",
        needs=("finetuned", "sizes"),
    ),
    Figure(
        "fticl",
        "Fine-tuning with in-context examples (FTICL) vs plain fine-tuning (Yang et al.)",
        """Mean change from fine-tuning (fine-tuned minus pre-trained) for plain fine-tuning and for FTICL (fixed
        demonstrations in every training prompt), for in-domain, cross-domain and cross-task eval sets across
        checkpoints, averaged over fine-tuning sets.""",
        needs=("finetuned", "fticl"),
    ),
    Figure(
        "group_gain",
        "What tuning adds: sets learned in pre-training vs not",
        """The paper's Figure 8 (and Table 6 as the black line). Per checkpoint, tuned minus pre-trained score on every
        eval set and benchmark, for the models tuned for it: fine-tuned on the set or on another set of its task, or
        instruction-tuned (benchmarks). Panels split the sets as in pretraining_curves. Sets not learned in pre-training
        gain most.""",
        needs=("finetuned", "with_instruction"),
    ),
    Figure(
        "full_vs_lora",
        "Full fine-tuning vs LoRA",
        """Per checkpoint, each fine-tuning variant's mean in-domain change from fine-tuning (fine-tuned minus
        pre-trained) and its mean cross-task change (forgetting, below zero), over the train sets that every variant
        fine-tunes on, main train format and size, main eval format. The line is the mean over seeds; the band the
        range of the seeds' means, where a variant has two seeds or more.""",
        needs=("finetuned", "cross_task", "lora"),
    ),
    Figure(
        "instruction_tuned",
        "Instruction tuning on the multiple-choice benchmarks",
        """The paper's Figure 9. Per benchmark, the few-shot score of every pre-trained checkpoint (dashed) and of the
        same checkpoint instruction-tuned on the instruction mix (solid), with bootstrap bands; the panel title says
        whether the base curve rises (learned in pre-training).""",
        needs=("instruction",),
    ),
)}
