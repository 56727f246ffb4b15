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

import html
import json
import os
import re
import socket
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from amuro.study import Run, Study
from amuro.study.paths import fill
from amuro.study.runs import WILDCARDS

STATES = ("done", "running", "interrupted", "failed", "not_started")
# fetch: a pre-trained checkpoint made into a model directory; finetune: a cell or an instruction-tuned run.
STAGES = ("fetch", "finetune", "evaluate", "benchmark", "summary")
RULES = {"fetch": ("fetch_checkpoint",), "finetune": ("finetune",), "evaluate": ("evaluate_base", "evaluate_finetuned"),
         "benchmark": ("evaluate_benchmarks",), "summary": ("summarize_predictions",)}
# Each stage's log as its rule in rules/*.smk names it (tests/test_status.py holds them to a dry run's).
LOGS = {
    "fetch": "logs/fetch_checkpoint/{model}/{checkpoint}.log",
    "finetune": "logs/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}.log",
    "evaluate": "logs/evaluate/{model}/{checkpoint}/{train}.log",
    "benchmark": "logs/evaluate_benchmarks/{model}/{checkpoint}/{train}.log",
    "summary": "logs/summarize_predictions/{model}/{checkpoint}/{train}.log",
}
# evaluation.finetuned_jobs per_checkpoint: one job (and log) for every fine-tuned model of a checkpoint.
CHECKPOINT_EVALUATION_LOG = "logs/evaluate/{model}/{checkpoint}/finetuned.log"
FORMAT = 1  # of the --json document; raised when a key changes meaning or goes away
# A marker written up to this long before a live run's start still counts as that run's (clocks of file servers).
CLOCK_SLACK_S = 1.0
LOG_TAIL_BYTES = 64 * 1024
ERROR_LINE = re.compile(r"\w*(Error|Exception)\b|\bERROR\b|\berror\b|Killed|CANCELLED|Traceback")
LONGEST_LINE = 400


class Outputs:
    """A job's output paths, kept as (directory prefix, names under it) groups and built only when read: a study of
    20,000 jobs has some 300,000 prediction files, and a job not done is told apart by its first missing one."""

    def __init__(self, groups: list[tuple[str, tuple[str, ...]]] = ()):
        self.groups = list(groups)

    @classmethod
    def of(cls, paths: list[str]) -> Outputs:
        return cls([(path, ("",)) for path in paths])

    def __iter__(self):
        return (prefix + suffix for prefix, suffixes in self.groups for suffix in suffixes)

    def __bool__(self) -> bool:
        return any(suffixes for _, suffixes in self.groups)

    def ends(self) -> list[str]:
        """The first and the last output: Snakemake marks a job's outputs incomplete one by one in order, and unmarks
        them in order, so a job with any marked output has one of these marked (even when killed in between)."""
        groups = [(p, s) for p, s in self.groups if s]
        return [groups[0][0] + groups[0][1][0], groups[-1][0] + groups[-1][1][-1]] if groups else []


@dataclass(eq=False)
class Job:
    """One job of the plan: what it writes, where it logs, the runs it serves, and what the files say of it."""

    stage: str
    log: str
    outputs: Outputs
    runs: list[Run]
    state: str = "not_started"
    error: str | None = None  # failed or interrupted: the log's last error line, else its last line
    external_jobid: str | None = None  # running or interrupted on a cluster: the scheduler's job id

    def describe(self) -> dict:
        entry = {"stage": self.stage, "state": self.state, "log": self.log,
                 "runs": [f"{r.model}/{r.checkpoint}/{r.id}" for r in self.runs]}
        if self.error is not None:
            entry["error"] = self.error
        if self.external_jobid is not None:
            entry["external_jobid"] = self.external_jobid
        return entry


def run_kind(run: Run) -> str:
    return "base" if run.is_base else "instruction-tuned" if run.is_instruction_tuned else "finetuned"


# --- The plan ---

def prediction_files(study: Study):
    """A function run -> its prediction files (Outputs), the files study.evaluation.prediction_files gives, only
    faster: building every request of every run takes seconds at 20,000 jobs, and a run's files differ from those of
    another run with the same grid (base or not, train task) only in the run's own path fields. So each grid's file
    patterns come from the plan once, cut where the run's fields end (results/predictions/{model}/{checkpoint}/{train}
    and the rest), and only that prefix is filled per run. tests/test_status.py checks both give the same files."""
    wildcards = tuple(WILDCARDS.items())
    grids: dict[tuple, list[tuple[str, tuple[str, ...]]]] = {}

    def files(run: Run, fields: dict[str, str]) -> Outputs:
        task = None if run.is_base or run.is_instruction_tuned else study.dataset(run.train_dataset).task
        key = (run.is_base, run.is_instruction_tuned, task)
        if key not in grids:
            by_prefix: dict[str, list[str]] = {}
            for request in study.evaluation.requests(run, wildcards):
                cut = request["output"].rfind("}") + 1
                by_prefix.setdefault(request["output"][:cut], []).append(request["output"][cut:])
            grids[key] = [(prefix, tuple(suffixes)) for prefix, suffixes in by_prefix.items()]
        return Outputs([(fill(prefix, **fields), suffixes) for prefix, suffixes in grids[key]])

    return files


def plan_jobs(study: Study) -> tuple[list[Job], dict[Run, dict[str, Job]]]:
    """Every job that makes or scores a run, and for each run the job of each of its stages."""
    jobs: list[Job] = []
    by_run: dict[Run, dict[str, Job]] = {}
    predictions = prediction_files(study)
    per_checkpoint: dict[tuple[str, str], Job] = {}

    for run in study.runs():
        fields = run.fields
        stages = by_run[run] = {}

        def add(stage: str, outputs: Outputs) -> None:
            if outputs:
                stages[stage] = Job(stage, fill(LOGS[stage], **fields), outputs, [run])
                jobs.append(stages[stage])

        add("fetch" if run.is_base else "finetune", Outputs.of([run.dir]))
        files = predictions(run, fields)
        if files and not run.is_base and study.evaluation.per_checkpoint:
            job = per_checkpoint.get((run.model, run.checkpoint))
            if job is None:
                log = fill(CHECKPOINT_EVALUATION_LOG, model=run.model, checkpoint=run.checkpoint)
                job = per_checkpoint[(run.model, run.checkpoint)] = Job("evaluate", log, Outputs(), [])
                jobs.append(job)
            job.outputs.groups += files.groups
            job.runs.append(run)
            stages["evaluate"] = job
        else:
            add("evaluate", files)
        add("benchmark", Outputs.of(study.benchmarking.files(run)))
        add("summary", Outputs.of([study.results.summary_file(run)]))
    return jobs, by_run


# --- The files on disk ---

class Disk:
    """Which of the plan's paths exist under the study's directory: one access() per path. Reading each directory
    once (os.scandir) is six times slower on a finished study, where most prediction directories hold one file;
    access() needs no file size, which on Lustre would ask the object servers. A job not done is told apart at its
    first missing output."""

    def __init__(self, root: Path):
        self.root = root
        self._prefix = f"{root}/"

    def exists(self, path: str) -> bool:
        return os.access(self._prefix + path, os.F_OK)


@dataclass
class SnakemakeRun:
    """What Snakemake leaves in `.snakemake/` of a run, and the Snakemake processes working in the directory."""

    incomplete: Path  # .snakemake/incomplete
    markers: dict[str, Path]  # output path -> its incomplete marker, as read at the start
    locked: bool  # .snakemake/locks holds a lock: a run is going on, or a killed one left it
    processes: dict[int, float]  # pid -> start time of each Snakemake process working in this directory
    inside_run: bool  # this process is a job of a Snakemake run in this directory (the status rule)
    host: str = field(default_factory=socket.gethostname)

    @classmethod
    def read(cls, root: Path) -> SnakemakeRun:
        incomplete = root / ".snakemake" / "incomplete"
        processes, inside_run = snakemake_processes(root)
        return cls(incomplete, incomplete_markers(incomplete), locks_held(root / ".snakemake" / "locks"),
                   processes, inside_run)

    def marks(self, outputs: list[str], on_disk: bool = False) -> list[tuple[Path, float]]:
        """(marker, when it was written) of each of `outputs` Snakemake marks incomplete: from the markers read at the
        start, or looked up again (on_disk), for a job that started since."""
        marks = []
        for output in outputs:
            marker = marker_path(self.incomplete, output) if on_disk else self.markers.get(output)
            if marker is None:
                continue
            try:
                marks.append((marker, marker.stat().st_mtime))
            except FileNotFoundError:  # the job ended since
                continue
        return marks

    def live(self, written: float) -> bool:
        """Whether a marker written then belongs to a run going on now: written after a live process started."""
        started = min(self.processes.values(), default=None)
        return started is not None and written >= started - CLOCK_SLACK_S

    def state(self) -> str:
        """going_on: a Snakemake process works in the directory; lock_left: none does, but a lock is held; none."""
        if self.processes:
            return "going_on"
        # Inside a run (the status rule), the lock is that run's own.
        return "lock_left" if self.locked and not self.inside_run else "none"

    def summary(self) -> str:
        state = self.state()
        if state == "going_on":
            pids = ", ".join(map(str, sorted(self.processes)))
            return f"a Snakemake run is going on in this directory (pid {pids})"
        if state == "lock_left":
            return (f"no Snakemake process works in this directory on {self.host}, but .snakemake/locks holds a lock: "
                    "a killed run left it (free it with `snakemake --unlock`), or the run goes on on another machine "
                    "(run amuro status there)")
        return "no Snakemake run is going on in this directory"


def marker_path(directory: Path, output: str) -> Path:
    """Where Snakemake's file persistence puts the incomplete marker of `output`: the urlsafe base64 of its path, cut
    into parts of at most NAME_MAX - 1 characters, each part but the last a directory named with a leading @
    (snakemake/persistence/file.py, _record_path)."""
    try:
        longest = os.pathconf(directory, "PC_NAME_MAX") or 255
    except OSError:
        longest = 255
    encoded = urlsafe_b64encode(output.encode()).decode()
    parts = [encoded[i:i + longest - 1] for i in range(0, len(encoded), longest - 1)]
    return directory.joinpath(*("@" + part for part in parts[:-1]), parts[-1])


def incomplete_markers(directory: Path) -> dict[str, Path]:
    """Output path -> marker, for every output Snakemake marks incomplete (named as marker_path says)."""
    markers = {}
    for dirpath, _, filenames in os.walk(directory):
        parts = Path(dirpath).relative_to(directory).parts
        prefix = "".join(part.removeprefix("@") for part in parts)
        for name in filenames:
            try:
                output = urlsafe_b64decode(prefix + name).decode()
            except ValueError:  # not a marker (migration_underway)
                continue
            markers[os.path.normpath(output)] = Path(dirpath) / name
    return markers


def locks_held(directory: Path) -> bool:
    try:
        with os.scandir(directory) as entries:
            return any(entry.name.endswith(".lock") for entry in entries)
    except FileNotFoundError:
        return False


def snakemake_processes(root: Path) -> tuple[dict[int, float], bool]:
    """Snakemake processes on this machine whose working directory is `root` (Snakemake works in its --directory),
    with their start times, but for this process's own ancestors; and whether one of those ancestors is one (this
    process is then a job of that run: the status rule)."""
    import psutil  # Snakemake's own dependency; imported here so that planning alone does not need it

    ancestors = {p.pid for p in psutil.Process().parents()}
    root = os.path.realpath(root)
    found, inside_run = {}, False
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.pid == os.getpid() or "snakemake" not in (os.path.basename(arg) for arg in cmdline[:3]):
            continue
        try:
            if os.path.realpath(process.cwd()) != root:
                continue
            start = process_start(process)
        except psutil.Error:  # gone, or another user's
            continue
        if process.pid in ancestors:
            inside_run = True
        else:
            found[process.pid] = start
    return found, inside_run


def process_start(process) -> float:
    """When a process started, on the clock file times are read on. psutil's create_time adds Linux's boot time,
    given in whole seconds (up to a second early); the uptime and the process's start tick in /proc are exact."""
    try:
        with open(f"/proc/{process.pid}/stat") as f:
            ticks = int(f.read().rpartition(")")[2].split()[19])  # field 22, starttime, after the command's name
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux
        return process.create_time()
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")


def last_error_line(log: Path) -> str:
    """The last line of the log's tail that names an error (a traceback's exception, ERROR, error:, Killed,
    CANCELLED), else its last non-empty line."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines()]
    except OSError as exc:
        return f"(the log cannot be read: {exc.strerror})"
    lines = [line for line in lines if line]
    line = next((line for line in reversed(lines) if ERROR_LINE.search(line)), lines[-1] if lines else "(empty log)")
    return line if len(line) <= LONGEST_LINE else line[:LONGEST_LINE] + " ..."


def external_jobid(marker: Path) -> str | None:
    try:
        jobid = json.loads(marker.read_text()).get("external_jobid")
    except (OSError, ValueError, AttributeError):
        return None
    return None if jobid is None else str(jobid)


def classify(job: Job, disk: Disk, snakemake: SnakemakeRun) -> None:
    ends = job.outputs.ends()
    marks = snakemake.marks(ends) if snakemake.markers else []
    if not marks:
        if all(disk.exists(output) for output in job.outputs):
            job.state = "done"
            return
        if not disk.exists(job.log):
            job.state = "not_started"
            return
        # A starting job's log appears just before its marker: look for one written since the markers were read.
        marks = snakemake.marks(ends, on_disk=True)
        if not marks:
            job.state = "failed"
            job.error = last_error_line(disk.root / job.log)
            return
    job.state = "running" if any(snakemake.live(written) for _, written in marks) else "interrupted"
    job.external_jobid = external_jobid(marks[0][0])
    if job.state == "interrupted" and disk.exists(job.log):
        job.error = last_error_line(disk.root / job.log)


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
            entry.update(train_dataset=run.train_dataset, train_format=run.train_format, train_size=run.train_size)
        return {**entry, "stages": stages}

    def to_json(self) -> dict:
        """The --json document (docs/running.md describes it)."""
        return {
            "format": FORMAT,
            "directory": str(self.directory),
            "checked": _iso(self.checked),
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
        lines = [f"amuro status of {self.directory} at {_iso(self.checked)}", self.snakemake.summary(), ""]
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
                lines.append(f"  {job.stage} {_runs_label(job)}"
                             + (f" (cluster job {job.external_jobid})" if job.external_jobid else ""))
                lines.append(f"    log: {job.log}")
                if job.error:
                    lines.append(f"    {_error_label(job)}{job.error}")
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
                 f"<style>{_CSS}</style></head><body>",
                 f"<h1>amuro status</h1><p>{e(str(self.directory))}, checked {e(_iso(self.checked))}.<br>"
                 f"{e(self.snakemake.summary())}.</p>", _legend(), self._totals_html()]
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
        # Three header rows for the cells (train dataset, format, size); base and instruction-tuned span them.
        levels = [[r.train_dataset for r in cells], [(r.train_dataset, r.train_format) for r in cells], cells]
        labels = [lambda v: v, lambda v: v[1], lambda r: r.train_size]
        head = []
        for i, (level, label) in enumerate(zip(levels, labels)):
            row = "<tr>"
            if i == 0:
                row += "<th rowspan='3'>checkpoint</th>" + "".join(
                    f"<th rowspan='3'>{e(_column_label(r))}</th>" for r in single if r.is_base)
            for value, span in _spans(level):
                row += f"<th colspan='{span}'>{e(str(label(value)))}</th>"
            if i == 0:
                row += "".join(f"<th rowspan='3'>{e(_column_label(r))}</th>" for r in single if r.is_instruction_tuned)
            head.append(row + "</tr>")
        if not cells:
            head = ["<tr><th>checkpoint</th>" + "".join(f"<th>{e(_column_label(r))}</th>" for r in single) + "</tr>"]
        order = [r for r in columns if r.is_base] + cells + [r for r in columns if r.is_instruction_tuned]
        body = []
        for checkpoint in self.study.checkpoints(model):
            row = f"<tr><th>{e(checkpoint)}</th>"
            for column in order:
                run = Run(model, checkpoint, column.train_dataset, column.train_format, column.train_size)
                row += "<td>" + "".join(_chip(stage, job) for stage, job in self.by_run[run].items()) + "</td>"
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
                f"<li><b>{e(job.stage)}</b> {e(_runs_label(job))}"
                + (f" (cluster job {e(job.external_jobid)})" if job.external_jobid else "")
                + f"<br>log: <code>{e(job.log)}</code>"
                + (f"<br>{_error_label(job)}<code class='error'>{e(job.error)}</code>" if job.error else "") + "</li>"
                for job in jobs)
            parts.append(f"<h2>{state} ({len(jobs)})</h2><ul class='jobs'>{items}</ul>")
        for state, outputs in self.outside_grid().items():
            if outputs:
                items = "".join(f"<li><code>{e(output)}</code></li>" for output in outputs)
                parts.append(f"<h2>{state} outside the grid ({len(outputs)})</h2><ul class='jobs'>{items}</ul>")
        return "\n".join(parts) or "<p>No job failed, none was interrupted and none is running.</p>"


COLOURS = {"done": "#43a047", "running": "#1e88e5", "interrupted": "#fb8c00", "failed": "#e53935",
           "not_started": "#e0e0e0"}
LETTERS = {"fetch": "c", "finetune": "f", "evaluate": "e", "benchmark": "b", "summary": "s"}
_CSS = ("body{font-family:sans-serif;font-size:13px;margin:1em}table{border-collapse:collapse;margin-bottom:1em}"
        "th,td{border:1px solid #ccc;padding:2px 4px;text-align:center;white-space:nowrap}"
        "th{background:#f5f5f5;font-weight:normal}.totals td{text-align:right}"
        ".chip{display:inline-block;width:12px;margin:0 1px;border-radius:2px;font-size:10px;color:#fff}"
        ".chip.not_started{color:#777}.error{color:#b71c1c}ul.jobs li{margin-bottom:.5em}"
        + "".join(f".{state}{{background:{colour}}}" for state, colour in COLOURS.items())
        + ".totals td.not_started,.totals td.done,.totals td.running,.totals td.interrupted,.totals td.failed"
          "{color:#fff}.totals td.not_started{color:#333}")


def _legend() -> str:
    states = " ".join(f"<span class='chip {s}' style='width:auto;padding:0 4px'>{s.replace('_', ' ')}</span>"
                      for s in STATES)
    stages = ", ".join(f"{letter} {stage}" for stage, letter in LETTERS.items())
    return f"<p>{states}<br>Each run shows one box per stage: {stages} (fetch: the pre-trained checkpoint). " \
           "Hover over a box for its log and error line.</p>"


def _chip(stage: str, job: Job) -> str:
    title = f"{stage}: {job.state.replace('_', ' ')}"
    if job.state in ("running", "interrupted", "failed"):
        title += f"\n{job.log}"
    if job.error:
        title += f"\n{job.error}"
    return f"<span class='chip {job.state}' title='{html.escape(title)}'>{LETTERS[stage]}</span>"


def _error_label(job: Job) -> str:
    # An interrupted job's log was cut off, not ended by an error: its line says where it stopped.
    return "stopped at: " if job.state == "interrupted" else ""


def _spans(values: list) -> list[tuple[object, int]]:
    spans: list[list] = []
    for value in values:
        if spans and spans[-1][0] == value:
            spans[-1][1] += 1
        else:
            spans.append([value, 1])
    return [(v, n) for v, n in spans]


def _column_label(run: Run) -> str:
    return "base" if run.is_base else f"{run.train_dataset} (instruction-tuned)"


def _runs_label(job: Job) -> str:
    first = job.runs[0]
    label = f"{first.model}/{first.checkpoint}/{first.id}"
    return label if len(job.runs) == 1 else f"{first.model}/{first.checkpoint}: {len(job.runs)} fine-tuned models"


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


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
