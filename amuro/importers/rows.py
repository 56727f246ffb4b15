"""What both released tables share: reading the CSV (its header, one record per row, the record's fields), one
table row as a row of our long format, and the rows that cannot be read, reported by file line."""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from amuro.checkpoints import parse_revision
from amuro.results import SCHEMA, finalize, relation

log = logging.getLogger(__name__)

# The columns that say which cell a number is for: two rows with the same values state one cell twice.
CELL_KEY = ("model", "checkpoint", "train_dataset", "eval_dataset", "eval_format", "shots")
BENCHMARK_MODEL = "olmo1b"  # `checkpoint-STEP` ids do not name the model; the tables hold OLMo-1B's only
INSTRUCTION_MIX = "tulu_v2"

Record = dict[str, str] | None  # a row's fields by column; None: the row has the wrong number of fields


class TableImportError(ValueError):
    pass


class BadRow(ValueError):
    """One row that cannot be read; the importer names it with its file line."""


@dataclass(frozen=True)
class Cell:
    line: int
    model_id: str
    hyper: dict  # epochs and learning rate: not in our schema, kept to explain duplicates
    row: dict
    named: bool = True  # the id names its model (the table's main form); False for `checkpoint-STEP`


def column_names(header: list[str], columns: tuple[str, ...]) -> list[str]:
    # The first column is the index pandas wrote; a table saved without one starts at model_id.
    return header if header and header[0] in columns else header[1:]


def records(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, Record]]:
    """(first file line, fields by column, None if the row has the wrong number of fields) for each row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TableImportError(f"{path}: empty file, expected the columns {', '.join(columns)}")
        names = column_names(header, columns)
        _check_header(path, names, columns)
        end = reader.line_num
        for fields in reader:
            start, end = end + 1, reader.line_num
            if fields:
                yield start, (dict(zip(names, fields[-len(names):])) if len(fields) == len(header) else None)


def _check_header(path: Path, names: list[str], columns: tuple[str, ...]) -> None:
    missing = [c for c in columns if c not in names]
    extra = [c for c in names if c not in columns]
    if missing or extra:
        raise TableImportError(f"{path}: expected the columns {', '.join(columns)}; "
                               f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}")


def check_fields(record: Record, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, str]:
    """The record, if it has every column and a value in each that is not `optional`."""
    if record is None:
        raise BadRow(f"wrong number of fields, expected {', '.join(columns)}")
    empty = [c for c in columns if c not in optional and not record[c].strip()]
    if empty:
        raise BadRow(f"empty field(s) {', '.join(empty)}")
    return record


def number(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BadRow(f"{column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise BadRow(f"{column} {text.strip()!r} is not a finite number")
    return value


def learning_rate(model_id: str, text: str) -> float:
    """The learning rate an id states (its `_LR` part)."""
    try:
        rate = float(text)
        if not math.isfinite(rate):
            raise ValueError
    except ValueError:
        raise BadRow(f"model_id {model_id!r}: learning rate {text!r} is not a number") from None
    return rate


def long_row(model: str, step: int | None, checkpoint_names: dict[int, str], train: tuple, eval_dataset: str,
             eval_task: str | None, eval_format: str, shots: int, metric: str, value: float,
             ci: tuple[float | None, float | None] = (None, None)) -> dict:
    """One row of the long-format table. train: (dataset, task, format, size), all None for a pre-trained model.
    The checkpoint is the step's revision name (`main` without a step), which also tells the tokens."""
    checkpoint = "main" if step is None else checkpoint_names.get(step, f"step{step}")
    train_dataset, train_task, train_format, train_size = train
    return {
        "model": model,
        "checkpoint": checkpoint,
        "step": step,
        "tokens": parse_revision(checkpoint)["tokens"],
        "train_dataset": train_dataset,
        "train_task": train_task,
        "train_format": train_format,
        "train_size": train_size,
        "train_variant": None,  # not recorded in the released tables (the paper's full fine-tuning, one seed)
        "train_seed": None,
        "eval_dataset": eval_dataset,
        "eval_task": eval_task,
        "eval_format": eval_format,
        "shots": shots,
        "relation": relation(train_dataset, train_task, eval_dataset, eval_task),
        "metric": metric,
        "value": value,
        "ci_low": ci[0],
        "ci_high": ci[1],
        "n_examples": None,
    }


def read_cells(path: Path, rows: Iterable[tuple[int, Record]], cell: Callable[[int, Record], Cell],
               skip_bad_rows: bool) -> list[Cell]:
    """`cell` of every row; the rows it cannot read are one error listing each by line, or (skip_bad_rows) logged."""
    cells, bad = [], []
    for line, record in rows:
        try:
            cells.append(cell(line, record))
        except BadRow as exc:
            bad.append(f"{path}:{line}: {exc}")
    if bad and not skip_bad_rows:
        raise TableImportError(f"{path}: {len(bad)} bad row(s):\n" + "\n".join(bad))
    for message in bad:
        log.warning("%s", message)
    return cells


def check_unique(path: Path, cells: list[Cell], hint: str = "") -> None:
    """Two rows for one cell (e.g. one run at two learning rates) cannot both be the paper's number."""
    first: dict[tuple, Cell] = {}
    clashes = []
    for cell in cells:
        key = tuple(cell.row[c] for c in CELL_KEY)
        if key not in first:
            first[key] = cell
            continue
        other = first[key]
        differs = [f"{k} {other.hyper[k]} vs {cell.hyper[k]}" for k in cell.hyper if cell.hyper[k] != other.hyper[k]]
        clashes.append(f"{path}:{cell.line}: same cell as line {other.line} ({other.model_id!r} vs {cell.model_id!r}, "
                       f"eval {cell.row['eval_dataset']} {cell.row['eval_format']}); they differ in "
                       f"{', '.join(differs) or 'no hyper-parameter (a repeated row)'}")
    if clashes:
        raise TableImportError(f"{path}: {len(clashes)} row(s) repeat a cell:\n" + "\n".join(clashes) + hint)


def cells_table(path: Path, cells: list[Cell]) -> pl.DataFrame:
    return finalize(pl.DataFrame([c.row for c in cells], schema=SCHEMA), str(path))
