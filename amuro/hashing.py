"""sha256 of files, and a directory's files as a record ({relative path: sha256}) to check the directory against
later: how downloads, resolved checkpoints and fine-tuned models show they still are what was made."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_under(root: str | Path) -> list[str]:
    """The files under `root` as sorted relative paths, hidden ones (.cache, .git, in hidden folders) left out."""
    root = Path(root)
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)]


def hash_files(root: str | Path, names: Iterable[str] | None = None) -> dict[str, str]:
    """{relative path: sha256} of `names` under `root` (default: every file `files_under` lists)."""
    root = Path(root)
    return {name: sha256(root / name) for name in (files_under(root) if names is None else names)}


def check_hashes(actual: dict[str, str], expected: dict[str, str], what: str, record: str,
                 error: type[Exception] = ValueError, where: str = "") -> None:
    """Every file of `expected` in `actual` with the same sha256; else `error` naming the first that is not.

    what: the message's subject (the model, dataset, directory); record: what holds `expected` (a file name);
    where: said after the file's name (" in the HF cache").
    """
    for name, digest in sorted(expected.items()):
        if name not in actual:
            raise error(f"{what}: file {name}{where}, recorded in {record}, is missing")
        if actual[name] != digest:
            raise error(f"{what}: file {name}{where} has sha256 {actual[name]}, but {record} records {digest}; the "
                        f"file changed after it was recorded")


def verify_files(root: str | Path, expected: dict[str, str], what: str, record: str,
                 error: type[Exception] = ValueError, where: str = "") -> None:
    """The files under `root` against a record of their hashes (`check_hashes` says how a difference is named)."""
    root = Path(root)
    check_hashes(hash_files(root, [name for name in expected if (root / name).is_file()]), expected, what, record,
                 error, where)


def write_file_index(path: str | Path, entries: list[dict]) -> None:
    """An index of the files a job wrote (`entries`: {path, ...} each), with each file's sha256: what the jobs after
    it read instead of depending on every file (one edge in Snakemake's graph instead of dozens)."""
    from amuro.io import write_json

    write_json({"files": [{**entry, "sha256": sha256(entry["path"])} for entry in entries]}, path)


def read_file_index(path: str | Path) -> list[dict]:
    """The entries of a file index, each file checked against the sha256 it had when the index was written."""
    import json

    entries = json.loads(Path(path).read_text())["files"]
    for entry in entries:
        if not Path(entry["path"]).is_file():
            raise FileNotFoundError(f"{path} lists {entry['path']}, which is missing: rerun the job that wrote it")
        if sha256(entry["path"]) != entry["sha256"]:
            raise ValueError(f"{entry['path']} changed after {path} recorded it: rerun the job that wrote it")
    return entries
