"""Import the results tables released with Amuro & Char (Sun & Dredze 2024) into our long format.

Two tables: the per-cell table of the fine-tuning arm (`,model_id,eval dataset,Performance,std`) and the benchmark
table of the instruction-tuning arm (`,model_id,eval dataset,Performance`); `table_kind` tells them apart by header.
With them the matrices and figures can be drawn from the paper's published numbers, next to or instead of our own
runs. Every row is checked; rows that cannot be read are reported by file line, never dropped silently.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from amuro.checkpoints import parse_revision
from amuro.results import INSTRUCTION_TASK, SCHEMA, finalize, relation
from amuro.tasks import TASKS

log = logging.getLogger(__name__)

COLUMNS = ("model_id", "eval dataset", "Performance", "std")
# The released table reports the midpoint of a 95 % bootstrap interval and its standard error.
Z95 = 1.959963984540054

PAPER_DATASETS: dict[str, str] = {
    "xsum": "summarization", "xlsum": "summarization", "cnn_dailymail": "summarization",
    "socialiqa": "question_generation", "sciq": "question_generation", "tweetqa": "question_generation",
    "mnli_matched": "nli", "mnli_mismatched": "nli", "rte": "nli", "gpt3nli": "nli",
    "paws": "paraphrase", "qqp": "paraphrase", "stsb": "paraphrase",
}
EVAL_ALIASES = {"cnn": "cnn_dailymail"}
# The paper fine-tuned on MNLI train, which our config holds as the train split of mnli_matched.
TRAIN_ALIASES = {**EVAL_ALIASES, "mnli": "mnli_matched"}
EVAL_FORMATS = {"_instruct": "instruct", "_inputoutput": "io"}

FINETUNED_ID = re.compile(r"(?P<model>[A-Za-z0-9]+)_hf_(?:ckpt(?P<step>\d+)|main)_(?P<train>[A-Za-z0-9_]+?)"
                          r"_(?P<epochs>\d+)epoch_(?P<lr>[0-9][0-9.eE+-]*)_(?P<shots>\d+)shots")
BASE_ID = re.compile(r"(?P<model>[A-Za-z0-9]+)_(?:checkpoint-(?P<step>\d+)_)?original_hf_(?P<shots>\d+)shots")
ID_FORMS = ("MODEL_hf_ckptSTEP_TRAIN_Nepoch_LR_Kshots, MODEL_hf_main_TRAIN_Nepoch_LR_Kshots, "
            "MODEL_checkpoint-STEP_original_hf_Kshots or MODEL_original_hf_Kshots")

# The benchmark table of the instruction-tuning arm: OLMo-1B checkpoints before and after Tulu v2 tuning.
BENCHMARK_COLUMNS = ("model_id", "eval dataset", "Performance")
PER_CELL, BENCHMARKS = "per-cell", "benchmarks"
HEADERS = {PER_CELL: COLUMNS, BENCHMARKS: BENCHMARK_COLUMNS}
BENCHMARK_MODEL = "olmo1b"  # `checkpoint-STEP` ids do not name the model; the table holds OLMo-1B only
TUNED_ID = re.compile(r"(?P<model>[A-Za-z0-9]+)_hf_(?:ckpt(?P<step>\d+)|main)_tulu"
                      r"_(?P<epochs>\d+)epochs?_(?P<lr>[0-9][0-9.eE+-]*)", re.IGNORECASE)
PRETRAINED_ID = re.compile(r"checkpoint-(?P<step>\d+)|(?P<model>[A-Za-z0-9]+)_original_hf", re.IGNORECASE)
BENCHMARK_ID_FORMS = ("checkpoint-STEP, MODEL_original_hf, MODEL_hf_ckptSTEP_tulu_Nepoch_LR or "
                      "MODEL_hf_main_tulu_Nepoch_LR")
# Benchmark names as the table may spell them (lower-cased, spaces and hyphens as underscores) -> our benchmark ids.
# SciQ is `sciq_mc`: `sciq` is the paper's question-generation set in our config.
BENCHMARK_NAMES: dict[str, str] = {
    "arc_easy": "arc_easy", "arc_e": "arc_easy",
    "arc_challenge": "arc_challenge", "arc_c": "arc_challenge",
    "hellaswag": "hellaswag",
    "openbookqa": "openbookqa", "openbook_qa": "openbookqa", "obqa": "openbookqa",
    "boolq": "boolq",
    "sciq": "sciq_mc", "sciq_mc": "sciq_mc",
}
BENCHMARK_TASK = "multiple_choice"
INSTRUCTION_MIX = "tulu_v2"


class TableImportError(ValueError):
    pass


class _BadRow(ValueError):
    pass


@dataclass(frozen=True)
class _Cell:
    line: int
    model_id: str
    hyper: dict[str, str]  # epochs and learning rate: not in our schema, kept to explain duplicates
    row: dict


def import_amuro_char(path: str | Path, skip_bad_rows: bool = False,
                      checkpoint_names: dict[int, str] | None = None,
                      learning_rates: dict[str, float] | None = None) -> pl.DataFrame:
    """The released table as long-format results rows.

    checkpoint_names maps steps to hub revision names. learning_rates keeps, for fine-tuned rows, only the runs at
    the chosen rate per train dataset (key "*" for every other one), for tables that hold a learning-rate sweep.
    """
    path = Path(path)
    cells, bad = [], []
    for line, record in _records(path):
        try:
            cells.append(_cell(line, record, checkpoint_names or {}))
        except _BadRow as exc:
            bad.append(f"{path}:{line}: {exc}")
    if bad and not skip_bad_rows:
        raise TableImportError(f"{path}: {len(bad)} bad row(s):\n" + "\n".join(bad))
    for message in bad:
        log.warning("%s", message)
    if learning_rates:
        cells = _at_learning_rates(path, cells, learning_rates)
    _check_unique(path, cells)
    return finalize(pl.DataFrame([c.row for c in cells], schema=SCHEMA), str(path))


def table_kind(path: str | Path) -> str:
    """PER_CELL or BENCHMARKS, from the CSV's header; any other header is an error naming both expected ones."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    names = _column_names(header or [], COLUMNS + BENCHMARK_COLUMNS)
    for kind, columns in HEADERS.items():
        if tuple(names) == columns:
            return kind
    expected = " or ".join(f"{kind} table ',{','.join(columns)}'" for kind, columns in HEADERS.items())
    found = f"header {','.join(header)!r}" if header else "an empty file"
    raise TableImportError(f"{path}: expected the header of the {expected} (the first column a pandas index, "
                           f"optional); found {found}")


def _column_names(header: list[str], columns: tuple[str, ...]) -> list[str]:
    # The first column is the index pandas wrote; a table saved without one starts at model_id.
    return header if header and header[0] in columns else header[1:]


def _records(path: Path, columns: tuple[str, ...] = COLUMNS) -> Iterator[tuple[int, dict[str, str] | None]]:
    """(first file line, fields by column, None if the row has the wrong number of fields) for each row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TableImportError(f"{path}: empty file, expected the columns {', '.join(columns)}")
        names = _column_names(header, columns)
        _check_header(path, names, columns)
        end = reader.line_num
        for fields in reader:
            start, end = end + 1, reader.line_num
            if fields:
                yield start, (dict(zip(names, fields[-len(names):])) if len(fields) == len(header) else None)


def _check_header(path: Path, names: list[str], columns: tuple[str, ...] = COLUMNS) -> None:
    missing = [c for c in columns if c not in names]
    extra = [c for c in names if c not in columns]
    if missing or extra:
        raise TableImportError(f"{path}: expected the columns {', '.join(columns)}; "
                               f"missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(extra) or 'none'}")


def _cell(line: int, record: dict[str, str] | None, checkpoint_names: dict[int, str]) -> _Cell:
    if record is None:
        raise _BadRow(f"wrong number of fields, expected {', '.join(COLUMNS)}")
    empty = [c for c in COLUMNS if c != "std" and not record[c].strip()]
    if empty:
        raise _BadRow(f"empty field(s) {', '.join(empty)}")
    model_id = record["model_id"].strip()
    run = _parse_model_id(model_id)
    checkpoint = "main" if run["step"] is None else checkpoint_names.get(run["step"], f"step{run['step']}")
    train_dataset, train_task = (None, None) if run["train"] is None else _dataset(run["train"], TRAIN_ALIASES, "train")
    eval_name, eval_format = _split_format(record["eval dataset"].strip())
    eval_dataset, eval_task = _dataset(eval_name, EVAL_ALIASES, "eval")
    value = _number(record["Performance"], "Performance")
    std = _number(record["std"], "std") if record["std"].strip() else 0.0
    if std < 0:
        raise _BadRow(f"std {std} is negative")
    row = {
        "model": run["model"],
        "checkpoint": checkpoint,
        "step": run["step"],
        "tokens": parse_revision(checkpoint)["tokens"],
        "train_dataset": train_dataset,
        "train_task": train_task,
        "train_format": None if train_dataset is None else "default",
        "train_size": None,  # the paper sampled 6,000 examples per set, but the id does not say so
        "eval_dataset": eval_dataset,
        "eval_task": eval_task,
        "eval_format": eval_format,
        "shots": run["shots"],
        "relation": relation(train_dataset, train_task, eval_dataset, eval_task),
        "metric": "rougeL" if TASKS[eval_task].kind == "generation" else "accuracy",
        "value": value,
        "ci_low": value - Z95 * std,
        "ci_high": value + Z95 * std,
        "n_examples": None,
    }
    hyper = {"epochs": run["epochs"], "lr": run["lr"]} if train_dataset else {}
    return _Cell(line, model_id, hyper, row)


def _parse_model_id(model_id: str) -> dict:
    m = FINETUNED_ID.fullmatch(model_id) or BASE_ID.fullmatch(model_id)
    if not m:
        raise _BadRow(f"model_id {model_id!r} is not one of the forms {ID_FORMS}")
    parts = m.groupdict()
    return {
        "model": parts["model"],
        "step": int(parts["step"]) if parts["step"] else None,
        "train": parts.get("train"),
        "epochs": parts.get("epochs"),
        "lr": parts.get("lr"),
        "shots": int(parts["shots"]),
    }


def _split_format(name: str) -> tuple[str, str]:
    for suffix, eval_format in EVAL_FORMATS.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix), eval_format
    return name, "default"


def _dataset(name: str, aliases: dict[str, str], role: str) -> tuple[str, str]:
    dataset = aliases.get(name, name)
    if dataset not in PAPER_DATASETS:
        known = ", ".join(sorted({*PAPER_DATASETS, *aliases}))
        raise _BadRow(f"{role} dataset {name!r} is not one of the paper's datasets ({known})")
    return dataset, PAPER_DATASETS[dataset]


def _number(text: str, column: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise _BadRow(f"{column} {text.strip()!r} is not a number") from None
    if not math.isfinite(number):
        raise _BadRow(f"{column} {text.strip()!r} is not a finite number")
    return number


def import_benchmark_table(path: str | Path, skip_bad_rows: bool = False,
                           checkpoint_names: dict[int, str] | None = None, train_dataset: str = INSTRUCTION_MIX,
                           shots: int = 4, metric: str = "acc") -> pl.DataFrame:
    """The released benchmark table (base and Tulu-v2-tuned checkpoints on multiple-choice sets) as long-format rows.

    checkpoint_names maps steps to hub revision names; train_dataset names the instruction mix in our rows. The table
    says neither the shot count nor whether Performance is acc or acc_norm, so both are given (default: 4-shot acc).
    Every tuned row must come from one tuning run setting (epochs, learning rate); Performance must be a fraction.
    """
    if metric not in ("acc", "acc_norm"):
        raise ValueError(f"metric must be acc or acc_norm, not {metric!r}")
    if shots < 0:
        raise ValueError(f"shots must be >= 0, not {shots}")
    path = Path(path)
    records = list(_records(path, BENCHMARK_COLUMNS))
    _refuse_percentages(path, records)
    cells, bad = [], []
    for line, record in records:
        try:
            cells.append(_benchmark_cell(line, record, checkpoint_names or {}, train_dataset, shots, metric))
        except _BadRow as exc:
            bad.append(f"{path}:{line}: {exc}")
    if bad and not skip_bad_rows:
        raise TableImportError(f"{path}: {len(bad)} bad row(s):\n" + "\n".join(bad))
    for message in bad:
        log.warning("%s", message)
    _check_one_tuning(path, cells)
    _check_unique(path, cells, hint="")
    return finalize(pl.DataFrame([c.row for c in cells], schema=SCHEMA), str(path))


def _refuse_percentages(path: Path, records: list[tuple[int, dict[str, str] | None]]) -> None:
    """A table in percent would be a wrong scale in every row: one clear error, not a bad row per line."""
    values = []
    for line, record in records:
        try:
            values.append((line, _number(record["Performance"], "Performance")))
        except (_BadRow, TypeError):  # TypeError: a row with the wrong number of fields, reported later
            pass
    if values and all(v > 1 for _, v in values):
        line, value = values[0]
        raise TableImportError(f"{path}: every Performance value is above 1 (e.g. line {line}: {value:g}), so the "
                               f"table looks like percentages; amuro imports accuracies as fractions in [0, 1] and "
                               f"does not guess the scale: divide the column by 100 first")


def _benchmark_cell(line: int, record: dict[str, str] | None, checkpoint_names: dict[int, str], train_dataset: str,
                    shots: int, metric: str) -> _Cell:
    if record is None:
        raise _BadRow(f"wrong number of fields, expected {', '.join(BENCHMARK_COLUMNS)}")
    empty = [c for c in BENCHMARK_COLUMNS if not record[c].strip()]
    if empty:
        raise _BadRow(f"empty field(s) {', '.join(empty)}")
    model_id = record["model_id"].strip()
    run = _parse_benchmark_id(model_id)
    checkpoint = "main" if run["step"] is None else checkpoint_names.get(run["step"], f"step{run['step']}")
    train, train_task = (train_dataset, INSTRUCTION_TASK) if run["epochs"] is not None else (None, None)
    name = record["eval dataset"].strip()
    eval_dataset = BENCHMARK_NAMES.get(re.sub(r"[\s-]+", "_", name.lower()))
    if eval_dataset is None:
        known = ", ".join(sorted(set(BENCHMARK_NAMES.values())))
        raise _BadRow(f"eval dataset {name!r} is not one of the paper's benchmarks ({known}; capitals, hyphens and "
                      f"spaces allowed, sciq is imported as sciq_mc)")
    value = _number(record["Performance"], "Performance")
    if not 0 <= value <= 1:
        raise _BadRow(f"Performance {value:g} is not a fraction in [0, 1]")
    row = {
        "model": run["model"],
        "checkpoint": checkpoint,
        "step": run["step"],
        "tokens": parse_revision(checkpoint)["tokens"],
        "train_dataset": train,
        "train_task": train_task,
        "train_format": "chat" if train else None,
        "train_size": "all" if train else None,  # Tulu v2 was used whole
        "eval_dataset": eval_dataset,
        "eval_task": BENCHMARK_TASK,
        "eval_format": "default",
        "shots": shots,
        "relation": relation(train, train_task, eval_dataset, BENCHMARK_TASK),
        "metric": metric,
        "value": value,
        "ci_low": None,
        "ci_high": None,
        "n_examples": None,
    }
    hyper = {"epochs": run["epochs"], "lr": run["lr"]} if train else {}
    return _Cell(line, model_id, hyper, row)


def _parse_benchmark_id(model_id: str) -> dict:
    if m := TUNED_ID.fullmatch(model_id):
        lr = m["lr"]
        try:
            if not math.isfinite(float(lr)):
                raise ValueError
        except ValueError:
            raise _BadRow(f"model_id {model_id!r}: learning rate {lr!r} is not a number") from None
        return {"model": m["model"].lower(), "step": int(m["step"]) if m["step"] else None,
                "epochs": int(m["epochs"]), "lr": float(lr)}
    if m := PRETRAINED_ID.fullmatch(model_id):
        return {"model": (m["model"] or BENCHMARK_MODEL).lower(), "step": int(m["step"]) if m["step"] else None,
                "epochs": None, "lr": None}
    raise _BadRow(f"model_id {model_id!r} is not one of the forms {BENCHMARK_ID_FORMS}")


def _check_one_tuning(path: Path, cells: list[_Cell]) -> None:
    """Tuned rows from two settings (epochs, lr) would be mixed into one train_dataset: refuse, naming both lines."""
    tuned = [c for c in cells if c.hyper]
    if not tuned:
        return
    first = tuned[0]
    clashes = [f"{path}:{c.line}: {c.model_id!r} was tuned {c.hyper['epochs']} epochs at lr {c.hyper['lr']:g}, "
               f"but line {first.line} ({first.model_id!r}) {first.hyper['epochs']} epochs at lr {first.hyper['lr']:g}"
               for c in tuned if c.hyper != first.hyper]
    if clashes:
        raise TableImportError(f"{path}: the instruction-tuned rows come from more than one tuning setting; one "
                               f"import holds one (split the file):\n" + "\n".join(clashes))
    log.info("%s: %d instruction-tuned row(s) as train_dataset %s: tuned %d epochs at lr %g", path, len(tuned),
             first.row["train_dataset"], first.hyper["epochs"], first.hyper["lr"])


def _at_learning_rates(path: Path, cells: list[_Cell], learning_rates: dict[str, float]) -> list[_Cell]:
    def chosen(cell: _Cell) -> bool:
        train = cell.row["train_dataset"]
        if train is None:
            return True
        rate = learning_rates.get(train, learning_rates.get("*"))
        return rate is None or math.isclose(float(cell.hyper["lr"]), rate)

    kept = [c for c in cells if chosen(c)]
    log.info("%s: kept %d of %d rows at the chosen learning rates %s", path, len(kept), len(cells), learning_rates)
    return kept


SWEEP_HINT = ("\n(for a learning-rate sweep, choose one rate per train set: --learning-rate xsum=2e-7 "
              "--learning-rate '*=2e-6')")


def _check_unique(path: Path, cells: list[_Cell], hint: str = SWEEP_HINT) -> None:
    """Two rows for one cell (e.g. one run at two learning rates) cannot both be the paper's number."""
    key_columns = ("model", "checkpoint", "train_dataset", "eval_dataset", "eval_format", "shots")
    first: dict[tuple, _Cell] = {}
    clashes = []
    for cell in cells:
        key = tuple(cell.row[c] for c in key_columns)
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
