"""Datasets: load a configured source (hub, local files, or the mini-world) with `datasets`, map its raw columns
onto the task's canonical fields, verbalise labels, sample with a fixed seed, and write canonical Parquet.

Canonical rows are `id`, the task's fields (amuro.tasks) and `target` (the reference output, or the label word
of a classification example), all strings.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from amuro.config import SPLITS, template_fields
from amuro.hashing import sha256
from amuro.io import write_json, write_parquet
from amuro.tasks import TASKS

log = logging.getLogger(__name__)

LOCAL_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}


class DatasetError(ValueError):
    """A dataset does not match its configuration; the message names the dataset, split, column or row."""


def miniworld_files(miniworld_dir: str | Path, name: str) -> dict[str, str]:
    return {split: str(Path(miniworld_dir) / "datasets" / name / f"{split}.jsonl") for split in SPLITS}


def hub_load_kwargs(source: dict) -> dict:
    """The `datasets.load_dataset` arguments of a hub source besides path, revision and split."""
    kwargs = {"name": source["name"]}
    for key in ("data_dir", "data_files"):
        if source.get(key) is not None:
            kwargs[key] = source[key]
    return kwargs


def load_split(name: str, source: dict, split: str, miniworld_dir: str | Path | None = None,
               hub_dir: str | Path | None = None):
    """The raw split as a `datasets.Dataset`, or None if the source has no such split.

    hub_dir: for a hub source, the local snapshot of the repository at its recorded commit (amuro.downloads); the
    data is then read from it with the same config, data_dir and data_files as from the hub. Without it the hub is
    asked (a network access; only the download stage does that).
    """
    from datasets import load_dataset

    if source["type"] == "hub":
        hub_split = source["splits"].get(split)
        if hub_split is None:
            return None
        if hub_dir is not None:
            return load_dataset(str(hub_dir), split=hub_split, **hub_load_kwargs(source))
        return load_dataset(source["path"], revision=source["revision"], split=hub_split, **hub_load_kwargs(source))
    files = source["files"] if source["type"] == "local" else miniworld_files(miniworld_dir, source["name"])
    path = files.get(split)
    if path is None:
        return None
    expected = source.get("sha256", {}).get(split) if source["type"] == "local" else None
    if expected is not None and Path(path).exists():
        actual = sha256(path)
        if actual != expected:
            raise DatasetError(f"dataset {name}: split {split}: file {path} has sha256 {actual}, but the config "
                               f"expects {expected} (datasets.{name}.source.sha256.{split})")
    return load_local_file(name, split, path)


def load_local_file(name: str, split: str, path: str | Path):
    """One local file as a `datasets.Dataset`: JSON (a top-level list of objects, or JSON lines), CSV or Parquet."""
    from datasets import Dataset, load_dataset

    suffix = Path(path).suffix
    if suffix not in LOCAL_BUILDERS:
        raise DatasetError(f"dataset {name}: {path}: unsupported file type '{suffix}' "
                           f"(use one of {', '.join(LOCAL_BUILDERS)})")
    if not Path(path).exists():
        raise DatasetError(f"dataset {name}: split {split}: file {path} does not exist")
    if suffix == ".json":
        text = Path(path).read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"dataset {name}: {path}: not valid JSON: {exc}") from exc
            bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
            if bad is not None:
                raise DatasetError(f"dataset {name}: {path}: item {bad} of the top-level list is not an object")
            return Dataset.from_list(rows)
    return load_dataset(LOCAL_BUILDERS[suffix], data_files=str(path), split="train")


def field_columns(rule) -> list[str]:
    """The raw columns one field rule reads."""
    if isinstance(rule, str):
        return [rule]
    if "template" in rule:
        return list(dict.fromkeys(template_fields(rule["template"])))
    if "by" in rule:
        return [rule["by"], *rule["columns"].values()]
    return [rule["column"]]


def field_value(ex: dict, rule, where: str):
    """The raw value of one canonical field in one row.

    A rule is a column name, or {column, index | join} for list columns (an element, or the items joined), or
    {by, columns} to read, per row, the column that another column's value names (socialiqa: the answer column
    by `label`), optionally with index / join too, or {template} to write several columns into one text (the
    paper's socialiqa answer: "Answer A: {answerA} Answer B: {answerB}..."); a null in any of them is a null.
    """
    if isinstance(rule, str):
        value = ex[rule]
    elif "template" in rule:
        values = {column: ex[column] for column in field_columns(rule)}
        for column, v in values.items():
            if isinstance(v, (list, dict)):
                raise DatasetError(f"{where}: column {column!r} of the template is a {type(v).__name__} "
                                   f"({v!r:.80}); a template takes text and number columns")
        return None if any(v is None for v in values.values()) else rule["template"].format(**values)
    elif "by" in rule:
        key = ex[rule["by"]]
        column = rule["columns"].get(str(key))
        if column is None:
            raise DatasetError(f"{where}: column {rule['by']!r} is {key!r}, which names none of the columns "
                               f"{rule['columns']} (keys: {', '.join(rule['columns'])})")
        value = ex[column]
    else:
        value = ex[rule["column"]]
    rule = rule if isinstance(rule, dict) else {}
    if "index" in rule:
        if not isinstance(value, list):
            raise DatasetError(f"{where}: `index` needs a list, the value is {value!r:.80}")
        if not -len(value) <= rule["index"] < len(value):
            return None
        value = value[rule["index"]]
    elif "join" in rule:
        if not isinstance(value, list):
            raise DatasetError(f"{where}: `join` needs a list, the value is {value!r:.80}")
        value = rule["join"].join(str(v) for v in value) if value else None
    if isinstance(value, (list, dict)):
        raise DatasetError(f"{where}: the value is a {type(value).__name__} ({value!r:.80}); give the field "
                           f"{{column: ..., index: 0}} or {{column: ..., join: ' '}} to make it text")
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _label_word(value, spec: dict, where: str) -> tuple[str | None, str | None]:
    """Raw label -> (label word, None), or (None, why) for a row a listed rule drops (`drop_labels`)."""
    labels, label_map = spec["labels"], spec["label_map"]
    for dropped in spec["drop_labels"]:
        if value == dropped or (dropped is not None and value is not None and str(value) == str(dropped)):
            return None, f"label {dropped!r} (drop_labels)"
    if value is None:
        raise DatasetError(f"{where}: the row has no label (null); list null under drop_labels to drop such rows")
    threshold = spec.get("label_threshold")
    if threshold is not None:
        if not _is_number(value):
            raise DatasetError(f"{where}: label {value!r} is not a number, which label_threshold needs")
        return (threshold["above"] if value > threshold["value"] else threshold["at_or_below"]), None
    if str(value) in label_map:
        return label_map[str(value)], None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= value < len(labels):
            return labels[value], None
        raise DatasetError(f"{where}: label {value} is out of range for labels {labels} "
                           f"(list it under drop_labels to drop such rows)")
    if isinstance(value, str) and value in labels:
        return value, None
    raise DatasetError(f"{where}: label {value!r} is neither one of {labels} nor a key of label_map "
                       f"(list it under drop_labels to drop such rows)")


def canonical_rows(name: str, spec: dict, split: str, raw, counts: dict | None = None) -> list[dict]:
    """Map a raw split onto canonical rows.

    Rows are dropped only by a listed rule (a raw label in `drop_labels`) or for a missing input (null); each drop
    is counted by reason in `counts` and in the log. Any other label outside the label set stops with the row named.
    """
    task = TASKS[spec["task"]]
    rules = {field: spec["fields"].get(field, field) for field in (*task.fields, "target")}
    missing = {f: [c for c in field_columns(r) if c not in raw.column_names] for f, r in rules.items()}
    missing = {f: cs for f, cs in missing.items() if cs}
    if missing:
        raise DatasetError(
            f"dataset {name}, split {split}: column(s) "
            f"{', '.join(repr(c) for cs in missing.values() for c in cs)} for "
            f"field(s) {', '.join(missing)} not found; the raw columns are {raw.column_names}. "
            f"Map them under datasets.{name}.fields."
        )
    id_column = spec["fields"].get("id", "id")
    has_id = id_column in raw.column_names
    rows, dropped = [], {}
    for i, ex in enumerate(raw):
        where = f"dataset {name}, split {split}, row {i}"
        target = field_value(ex, rules["target"], where)
        reason = None
        if task.is_classification:
            target, reason = _label_word(target, spec, where)
        values = {f: field_value(ex, rules[f], where) for f in task.fields}
        if reason is None and (target is None or any(v is None for v in values.values())):
            reason = "missing input or target (null)"
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        row = {"id": str(ex[id_column]) if has_id else f"{name}-{split}-{i:06d}"}
        row.update({f: str(v) for f, v in values.items()})
        row["target"] = str(target)
        rows.append(row)
    for reason, n in sorted(dropped.items()):
        log.info("dataset %s, split %s: dropped %d of %d rows: %s", name, split, n, len(raw), reason)
    if counts is not None:
        counts.update({"raw_rows": len(raw), "dropped": dict(sorted(dropped.items())), "kept": len(rows)})
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


def source_record(name: str, source: dict, download: dict | None) -> dict:
    """What exactly was read: the hub repo at its recorded commit, or each local file with its sha256."""
    if source["type"] == "hub":
        if download is None:
            return {"type": "hub", "path": source["path"], "revision": source["revision"], "commit": None}
        return {"type": "hub", "path": source["path"], "revision": download["revision"],
                "commit": download["commit"], **hub_load_kwargs(source)}
    if source["type"] == "local":
        return {"type": "local", "files": {split: {"path": path, "sha256": sha256(path)}
                                           for split, path in sorted(source["files"].items())
                                           if Path(path).exists()}}
    return {"type": source["type"], "name": source.get("name")}


def prepare_dataset(name: str, spec: dict, seed: int, out_dir: str | Path,
                    miniworld_dir: str | Path | None = None, download: str | Path | None = None) -> None:
    """Write {out_dir}/{train,validation,test}.parquet and meta.json for one configured dataset.

    A source without a validation split gets one held out of its train split, so every dataset has all three.
    `sample` caps each split: with `sampling` random, that many of the rows kept, drawn with `seed` (original order
    kept); with first, the split's first rows as the source orders them, cut before any row is dropped.
    download: the download stage's record of a hub source (amuro.downloads); the data is then read offline from the
    HF cache at the recorded commit. meta.json records the source as read (commit or file hashes) and, per split,
    the raw rows, the rows dropped by each rule and the rows kept.
    """
    record, hub_dir = None, None
    if download is not None:
        from amuro.downloads import local_dataset_snapshot

        record = json.loads(Path(download).read_text())
        hub_dir = local_dataset_snapshot(name, record)
    elif spec["source"]["type"] == "hub":
        raise DatasetError(f"dataset {name}: a hub dataset is read from its download record "
                           f"(results/downloads/datasets/{name}.json, written by the download stage)")
    sampling = spec.get("sampling", "random")
    splits, counts = {}, {}
    for split in SPLITS:
        raw = load_split(name, spec["source"], split, miniworld_dir, hub_dir=hub_dir)
        if raw is None and split != "validation":
            raise DatasetError(f"dataset {name}: the source has no {split} split")
        counts[split] = {}
        first = spec["sample"][split]
        if sampling == "first" and raw is not None and first is not None and len(raw) > first:
            # The source's first rows, before any is dropped: the rows a study that sliced the file scored.
            counts[split]["source_rows"] = len(raw)
            raw = raw.select(range(first))
        splits[split] = canonical_rows(name, spec, split, raw, counts[split]) if raw is not None else None
    if splits["validation"] is None:
        n_val = spec["sample"]["validation"] or max(1, len(splits["train"]) // 20)
        held = {r["id"] for r in sample_rows(splits["train"], n_val, seed + 1)}
        splits["validation"] = [r for r in splits["train"] if r["id"] in held]
        splits["train"] = [r for r in splits["train"] if r["id"] not in held]
        counts["validation"] = {"held_out_of_train": len(splits["validation"])}
    fields = ["id", *TASKS[spec["task"]].fields, "target"]
    schema = pa.schema([(f, pa.string()) for f in fields])
    for split, rows in splits.items():
        if sampling == "random":
            rows = sample_rows(rows, spec["sample"][split], seed)
        if not rows:
            raise DatasetError(f"dataset {name}, split {split}: no examples left")
        counts[split]["written"] = len(rows)
        write_parquet(pa.Table.from_pylist(rows, schema=schema), Path(out_dir) / f"{split}.parquet")
        log.info("dataset %s, split %s: %d examples", name, split, len(rows))
    write_json({"dataset": name, "task": spec["task"], "seed": seed, "source": source_record(name, spec["source"], record),
                "fields": spec["fields"], "sampling": sampling, "splits": counts}, Path(out_dir) / "meta.json")
