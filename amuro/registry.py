"""Datasets: load a configured source (hub, local files, or the mini-world) with `datasets`, map its raw columns
onto the task's canonical fields, verbalise labels, sample with a fixed seed, and write canonical Parquet.

Canonical rows are `id`, the task's fields (amuro.tasks) and `target` (the reference output, or the label word
of a classification example), all strings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from amuro.config import SPLITS
from amuro.io import write_parquet
from amuro.tasks import TASKS

log = logging.getLogger(__name__)

LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetError(ValueError):
    """A dataset does not match its configuration; the message names the dataset, split, column or row."""


def miniworld_files(miniworld_dir: str | Path, name: str) -> dict[str, str]:
    return {split: str(Path(miniworld_dir) / "datasets" / name / f"{split}.jsonl") for split in SPLITS}


def load_split(name: str, source: dict, split: str, miniworld_dir: str | Path | None = None):
    """The raw split as a `datasets.Dataset`, or None if the source has no such split."""
    from datasets import load_dataset

    if source["type"] == "hub":
        hub_split = source["splits"].get(split)
        if hub_split is None:
            return None
        return load_dataset(source["path"], source["name"], revision=source["revision"], split=hub_split)
    files = source["files"] if source["type"] == "local" else miniworld_files(miniworld_dir, source["name"])
    path = files.get(split)
    if path is None:
        return None
    suffix = Path(path).suffix
    if suffix not in LOCAL_BUILDERS:
        raise DatasetError(f"dataset {name}: {path}: unsupported file type '{suffix}' "
                           f"(use one of {', '.join(LOCAL_BUILDERS)})")
    if not Path(path).exists():
        raise DatasetError(f"dataset {name}: split {split}: file {path} does not exist")
    return load_dataset(LOCAL_BUILDERS[suffix], data_files=path, split="train")


def _label_word(value, spec: dict, where: str) -> str | None:
    """Raw label -> label word; None for rows without a label (e.g. GLUE's -1 on hidden test sets)."""
    labels, label_map = spec["labels"], spec["label_map"]
    if value is None or value == -1:
        return None
    if str(value) in label_map:
        return label_map[str(value)]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= value < len(labels):
            return labels[value]
        raise DatasetError(f"{where}: label {value} is out of range for labels {labels}")
    if isinstance(value, str) and value in labels:
        return value
    raise DatasetError(f"{where}: label {value!r} is neither one of {labels} nor a key of label_map")


def canonical_rows(name: str, spec: dict, split: str, raw) -> list[dict]:
    """Map a raw split onto canonical rows; rows without a label are dropped (and counted in the log)."""
    task = TASKS[spec["task"]]
    columns = {field: spec["fields"].get(field, field) for field in (*task.fields, "target")}
    missing = {f: c for f, c in columns.items() if c not in raw.column_names}
    if missing:
        raise DatasetError(
            f"dataset {name}, split {split}: column(s) {', '.join(repr(c) for c in missing.values())} for "
            f"field(s) {', '.join(missing)} not found; the raw columns are {raw.column_names}. "
            f"Map them under datasets.{name}.fields."
        )
    id_column = spec["fields"].get("id", "id")
    has_id = id_column in raw.column_names
    rows, dropped = [], 0
    for i, ex in enumerate(raw):
        where = f"dataset {name}, split {split}, row {i}"
        target = ex[columns["target"]]
        if task.is_classification:
            target = _label_word(target, spec, where)
        if target is None or any(ex[columns[f]] is None for f in task.fields):
            dropped += 1
            continue
        row = {"id": str(ex[id_column]) if has_id else f"{name}-{split}-{i:06d}"}
        row.update({f: str(ex[columns[f]]) for f in task.fields})
        row["target"] = str(target)
        rows.append(row)
    if dropped:
        log.info("dataset %s, split %s: dropped %d rows without a label or input", name, split, dropped)
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"dataset {name}, split {split}: column {id_column!r} has duplicate ids")
    return rows


def sample_rows(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    """At most `n` rows drawn with `seed`, kept in their original order."""
    if n is None or len(rows) <= n:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), size=n, replace=False))
    return [rows[i] for i in keep]


def prepare_dataset(name: str, spec: dict, seed: int, out_dir: str | Path,
                    miniworld_dir: str | Path | None = None) -> None:
    """Write {out_dir}/{train,validation,test}.parquet for one configured dataset.

    A source without a validation split gets one held out of its train split, so every dataset has all three.
    """
    splits = {}
    for split in SPLITS:
        raw = load_split(name, spec["source"], split, miniworld_dir)
        if raw is None and split != "validation":
            raise DatasetError(f"dataset {name}: the source has no {split} split")
        splits[split] = canonical_rows(name, spec, split, raw) if raw is not None else None
    if splits["validation"] is None:
        n_val = spec["sample"]["validation"] or max(1, len(splits["train"]) // 20)
        held = {r["id"] for r in sample_rows(splits["train"], n_val, seed + 1)}
        splits["validation"] = [r for r in splits["train"] if r["id"] in held]
        splits["train"] = [r for r in splits["train"] if r["id"] not in held]
    fields = ["id", *TASKS[spec["task"]].fields, "target"]
    schema = pa.schema([(f, pa.string()) for f in fields])
    for split, rows in splits.items():
        rows = sample_rows(rows, spec["sample"][split], seed)
        if not rows:
            raise DatasetError(f"dataset {name}, split {split}: no examples left")
        write_parquet(pa.Table.from_pylist(rows, schema=schema), Path(out_dir) / f"{split}.parquet")
        log.info("dataset %s, split %s: %d examples", name, split, len(rows))
