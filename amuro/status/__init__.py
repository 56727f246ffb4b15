"""`amuro status`: the study's state per run and stage, read from the plan and the files on disk, never from
Snakemake's DAG, so that it answers in about a second for 20,000 jobs, also while a run is going on.

A job is what one rule's job writes (its outputs, its log). Its state, in this order:
- running: an output carries Snakemake's incomplete marker (`.snakemake/incomplete/`, written when the job starts
  or, on a cluster, when it is submitted), and a Snakemake process working in this directory on this machine started
  before the marker was written.
- interrupted: an output carries the marker, and no live Snakemake run wrote it: the run was killed (SIGKILL, a lost
  login session, the machine gone), or the marker is older than the run going on now. Not failed: the job did not
  fail, and `--rerun-incomplete` redoes it (after a kill, `snakemake --unlock` first).
- done: every output exists (and none is marked incomplete).
- failed: its log exists and an output is missing: Snakemake removes a failed job's outputs and keeps its log.
- not_started: no output and no log.
"""

from __future__ import annotations

import dataclasses
import html
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from amuro.study import Run, Study
from amuro.study.runs import CELL_AXES

from amuro.status.disk import Disk, SnakemakeRun, classify
from amuro.status.page import CSS, chip, column_label, error_label, iso, legend, runs_label, spans
from amuro.status.jobs import STAGES, STATES, Job, plan_jobs, run_kind

FORMAT = 1  # of the --json document; raised when a key changes meaning or goes away


# --- The study's state ---

@dataclass
class Status:
    study: Study
    directory: Path
    jobs: list[Job]
    by_run: dict[Run, dict[str, Job]]
    snakemake: SnakemakeRun
    checked: float

    @classmethod
    def read(cls, study: Study, directory: str | Path = ".") -> Status:
        directory = Path(directory).resolve()
        jobs, by_run = plan_jobs(study)
        snakemake = SnakemakeRun.read(directory)
        disk = Disk(directory)
        for job in jobs:
            classify(job, disk, snakemake)
        return cls(study, directory, jobs, by_run, snakemake, time.time())

    def totals(self) -> dict[str, dict[str, int]]:
        """Jobs per stage and state (a per-checkpoint evaluation job counts once, as Snakemake counts it)."""
        counts = Counter((job.stage, job.state) for job in self.jobs)
        stages = [s for s in STAGES if any(job.stage == s for job in self.jobs)]
        return {s: {"jobs": sum(counts[(s, state)] for state in STATES), **{state: counts[(s, state)]
                                                                            for state in STATES}} for s in stages}

    def jobs_in(self, state: str) -> list[Job]:
        return [job for job in self.jobs if job.state == state]

    def outside_grid(self) -> dict[str, list[str]]:
        """Outputs Snakemake marks incomplete that no job of the grid writes (the mini-world, data, tables,
        figures), as running or interrupted."""
        in_grid = {o for job in self.jobs if job.state in ("running", "interrupted") for o in job.outputs}
        outside: dict[str, list[str]] = {"running": [], "interrupted": []}
        for output in sorted(self.snakemake.markers):
            if output not in in_grid:
                for _, written in self.snakemake.marks([output]):
                    outside["running" if self.snakemake.live(written) else "interrupted"].append(output)
        return outside

    def columns(self, model: str) -> list[Run]:
        """A model's runs at its first checkpoint: base, every cell, the instruction-tuned run."""
        first = self.study.checkpoints(model)[0]
        return [run for run in self.by_run if (run.model, run.checkpoint) == (model, first)]

    def run_entry(self, run: Run) -> dict:
        stages = {}
        for stage, job in self.by_run[run].items():
            stages[stage] = {"state": job.state}
            if job.state in ("running", "interrupted", "failed"):
                stages[stage]["log"] = job.log
            if job.error is not None:
                stages[stage]["error"] = job.error
        entry = {"model": run.model, "checkpoint": run.checkpoint, "run": run.id, "kind": run_kind(run)}
        if not run.is_base:
            entry.update({axis: getattr(run, axis) for axis in CELL_AXES})
        return {**entry, "stages": stages}

    def to_json(self) -> dict:
        """The --json document (docs/running.md describes it)."""
        return {
            "format": FORMAT,
            "directory": str(self.directory),
            "checked": iso(self.checked),
            "snakemake": {"run": self.run_state(), "summary": self.snakemake.summary(), "host": self.snakemake.host,
                          "locked": self.snakemake.locked, "processes": sorted(self.snakemake.processes)},
            "states": list(STATES),
            "stages": list(self.totals()),
            "totals": self.totals(),
            "models": {m: {"checkpoints": self.study.checkpoints(m), "runs": [r.id for r in self.columns(m)]}
                       for m in self.study.models},
            "runs": [self.run_entry(run) for run in self.by_run],
            "jobs": {state: [job.describe() for job in self.jobs_in(state)]
                     for state in ("running", "interrupted", "failed")},
            "outside_grid": self.outside_grid(),
        }

    def run_state(self) -> str:
        return self.snakemake.state()

    # --- As text ---

    def text(self, listed: int = 20) -> str:
        lines = [f"amuro status of {self.directory} at {iso(self.checked)}", self.snakemake.summary(), ""]
        header = ["stage", "jobs", *(s.replace("_", " ") for s in STATES)]
        rows = [[stage, *map(str, counts.values())] for stage, counts in self.totals().items()]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
        for state in ("failed", "interrupted", "running"):
            jobs = self.jobs_in(state)
            if jobs:
                lines += ["", f"{state} ({len(jobs)}):"]
            for job in jobs[:listed]:
                lines.append(f"  {job.stage} {runs_label(job)}"
                             + (f" (cluster job {job.external_jobid})" if job.external_jobid else ""))
                lines.append(f"    log: {job.log}")
                if job.error:
                    lines.append(f"    {error_label(job)}{job.error}")
            if len(jobs) > listed:
                lines.append(f"  ... and {len(jobs) - listed} more (all of them: --json or --html)")
        for state, outputs in self.outside_grid().items():
            if outputs:
                lines += ["", f"{state} outside the grid: {', '.join(outputs[:listed])}"
                          + (f" and {len(outputs) - listed} more" if len(outputs) > listed else "")]
        return "\n".join(lines)

    # --- As HTML ---

    def html(self) -> str:
        e = html.escape
        parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>amuro status</title>"
                 f"<style>{CSS}</style></head><body>",
                 f"<h1>amuro status</h1><p>{e(str(self.directory))}, checked {e(iso(self.checked))}.<br>"
                 f"{e(self.snakemake.summary())}.</p>", legend(), self._totals_html()]
        for model in self.study.models:
            parts.append(self._grid_html(model))
        parts.append(self._jobs_html())
        parts.append("</body></html>\n")
        return "\n".join(parts)

    def _totals_html(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(s.replace('_', ' '))}</th>" for s in STATES)
        rows = "".join(f"<tr><th>{e(stage)}</th><td>{c['jobs']}</td>"
                       + "".join(f"<td class='{s if c[s] else ''}'>{c[s]}</td>" for s in STATES) + "</tr>"
                       for stage, c in self.totals().items())
        return f"<table class='totals'><tr><th>stage</th><th>jobs</th>{head}</tr>{rows}</table>"

    def _grid_html(self, model: str) -> str:
        e = html.escape
        columns = self.columns(model)
        cells = [r for r in columns if not (r.is_base or r.is_instruction_tuned)]
        single = [r for r in columns if r.is_base or r.is_instruction_tuned]
        # A header row per axis of the cell (train set, format, size, variant, seed); base and instruction-tuned
        # span them.
        depth = len(CELL_AXES)
        levels = [[tuple(getattr(r, axis) for axis in CELL_AXES[:i + 1]) for r in cells] for i in range(depth)]
        head = []
        for i, level in enumerate(levels):
            row = "<tr>"
            if i == 0:
                row += f"<th rowspan='{depth}'>checkpoint</th>" + "".join(
                    f"<th rowspan='{depth}'>{e(column_label(r))}</th>" for r in single if r.is_base)
            for value, span in spans(level):
                row += f"<th colspan='{span}'>{e(value[-1])}</th>"
            if i == 0:
                row += "".join(f"<th rowspan='{depth}'>{e(column_label(r))}</th>"
                               for r in single if r.is_instruction_tuned)
            head.append(row + "</tr>")
        if not cells:
            head = ["<tr><th>checkpoint</th>" + "".join(f"<th>{e(column_label(r))}</th>" for r in single) + "</tr>"]
        order = [r for r in columns if r.is_base] + cells + [r for r in columns if r.is_instruction_tuned]
        body = []
        for checkpoint in self.study.checkpoints(model):
            row = f"<tr><th>{e(checkpoint)}</th>"
            for column in order:
                run = dataclasses.replace(column, checkpoint=checkpoint)
                row += "<td>" + "".join(chip(stage, job) for stage, job in self.by_run[run].items()) + "</td>"
            body.append(row + "</tr>")
        return f"<h2>{e(model)}</h2><table class='grid'>{''.join(head)}{''.join(body)}</table>"

    def _jobs_html(self) -> str:
        e = html.escape
        parts = []
        for state in ("failed", "interrupted", "running"):
            jobs = self.jobs_in(state)
            if not jobs:
                continue
            items = "".join(
                f"<li><b>{e(job.stage)}</b> {e(runs_label(job))}"
                + (f" (cluster job {e(job.external_jobid)})" if job.external_jobid else "")
                + f"<br>log: <code>{e(job.log)}</code>"
                + (f"<br>{error_label(job)}<code class='error'>{e(job.error)}</code>" if job.error else "") + "</li>"
                for job in jobs)
            parts.append(f"<h2>{state} ({len(jobs)})</h2><ul class='jobs'>{items}</ul>")
        for state, outputs in self.outside_grid().items():
            if outputs:
                items = "".join(f"<li><code>{e(output)}</code></li>" for output in outputs)
                parts.append(f"<h2>{state} outside the grid ({len(outputs)})</h2><ul class='jobs'>{items}</ul>")
        return "\n".join(parts) or "<p>No job failed, none was interrupted and none is running.</p>"


def show_status(config_file: str | None = None, config_json: dict | None = None, directory: str = ".",
                as_json: bool = False, html_out: str | None = None) -> None:
    """`amuro status`: print the study's state (text, or JSON for scripts); --html also writes it as a page."""
    from amuro.config import load_config, validate_config

    if (config_file is None) == (config_json is None):
        raise SystemExit("amuro status: give the study's config: --config FILE (or --config-json, as the rule does)")
    config = load_config(config_file) if config_file else validate_config(config_json, "--config-json")
    status = Status.read(Study(config), directory)
    if html_out:
        from amuro.io import write_text  # pyarrow comes with it: only when a page is asked for

        write_text(status.html(), html_out)
    # Not indented: json's indenting encoder is pure Python, seconds for a large study.
    print(json.dumps(status.to_json()) if as_json else status.text())
