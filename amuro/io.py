"""Writing outputs so that a failed job never leaves a half-written file or directory behind; host helpers."""

import contextlib
import glob
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def current_umask() -> int:
    """The process's umask, left unchanged. Linux reports it in /proc/self/status; elsewhere it can only be read by
    setting it, and for that instant a file another thread creates gets the mask set, so it is set stricter (077)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, directory: bool = False):
    """Yield a temporary sibling of `path`; move it into place only if the block succeeds.

    The sibling's name (`.{name}.XXXXXXXX.tmp`) is never an output's, so a job killed mid-write leaves nothing a later
    run takes as done; that later write of the same path removes what the killed one left. The output gets the mode a
    plain write would under the umask (read per call: a process may change it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.{'?' * 8}.tmp"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp make 0600/0700, which os.replace keeps: others the umask lets read (a lab) could not.
        os.chmod(tmp, (0o777 if directory else 0o666) & ~current_umask())
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write a table atomically with fixed settings, so equal tables give equal bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def free_port() -> int:
    """A TCP port no process on this host listens on now (for a process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def print_free_port() -> None:
    """`amuro free-port`, for the deepspeed launcher's --master_port."""
    print(free_port())
