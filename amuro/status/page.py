"""The pieces of the status page (amuro status --html)."""

from __future__ import annotations

import html
import time

from amuro.study import Run

from amuro.status.jobs import STATES, Job


COLOURS = {"done": "#43a047", "running": "#1e88e5", "interrupted": "#fb8c00", "failed": "#e53935",
           "not_started": "#e0e0e0"}
LETTERS = {"fetch": "c", "finetune": "f", "evaluate": "e", "benchmark": "b", "summary": "s"}
CSS = ("body{font-family:sans-serif;font-size:13px;margin:1em}table{border-collapse:collapse;margin-bottom:1em}"
        "th,td{border:1px solid #ccc;padding:2px 4px;text-align:center;white-space:nowrap}"
        "th{background:#f5f5f5;font-weight:normal}.totals td{text-align:right}"
        ".chip{display:inline-block;width:12px;margin:0 1px;border-radius:2px;font-size:10px;color:#fff}"
        ".chip.not_started{color:#777}.error{color:#b71c1c}ul.jobs li{margin-bottom:.5em}"
        + "".join(f".{state}{{background:{colour}}}" for state, colour in COLOURS.items())
        + ".totals td.not_started,.totals td.done,.totals td.running,.totals td.interrupted,.totals td.failed"
          "{color:#fff}.totals td.not_started{color:#333}")


def legend() -> str:
    states = " ".join(f"<span class='chip {s}' style='width:auto;padding:0 4px'>{s.replace('_', ' ')}</span>"
                      for s in STATES)
    stages = ", ".join(f"{letter} {stage}" for stage, letter in LETTERS.items())
    return f"<p>{states}<br>Each run shows one box per stage: {stages} (fetch: the pre-trained checkpoint). " \
           "Hover over a box for its log and error line.</p>"


def chip(stage: str, job: Job) -> str:
    title = f"{stage}: {job.state.replace('_', ' ')}"
    if job.state in ("running", "interrupted", "failed"):
        title += f"\n{job.log}"
    if job.error:
        title += f"\n{job.error}"
    return f"<span class='chip {job.state}' title='{html.escape(title)}'>{LETTERS[stage]}</span>"


def error_label(job: Job) -> str:
    # An interrupted job's log was cut off, not ended by an error: its line says where it stopped.
    return "stopped at: " if job.state == "interrupted" else ""


def spans(values: list) -> list[tuple[object, int]]:
    spans: list[list] = []
    for value in values:
        if spans and spans[-1][0] == value:
            spans[-1][1] += 1
        else:
            spans.append([value, 1])
    return [(v, n) for v, n in spans]


def column_label(run: Run) -> str:
    return "base" if run.is_base else f"{run.train_dataset} (instruction-tuned)"


def runs_label(job: Job) -> str:
    first = job.runs[0]
    label = f"{first.model}/{first.checkpoint}/{first.id}"
    return label if len(job.runs) == 1 else f"{first.model}/{first.checkpoint}: {len(job.runs)} fine-tuned models"


def iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
