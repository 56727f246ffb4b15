"""What the files on disk say of a job: its outputs, Snakemake's incomplete markers and locks, its log."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from dataclasses import dataclass, field
from pathlib import Path


from amuro.status.jobs import Job

# A marker written up to this long before a live run's start still counts as that run's (clocks of file servers).
CLOCK_SLACK_S = 1.0
LOG_TAIL_BYTES = 64 * 1024
ERROR_LINE = re.compile(r"\w*(Error|Exception)\b|\bERROR\b|\berror\b|Killed|CANCELLED|Traceback")
LONGEST_LINE = 400


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
