"""Import the results tables released with Amuro & Char (Sun & Dredze 2024) into our long format.

Two tables: the per-cell table of the fine-tuning arm (`,model_id,eval dataset,Performance,std`) and the benchmark
table of the instruction-tuning arm (`,model_id,eval dataset,Performance`); `table_kind` tells them apart by header.
With them the matrices and figures can be drawn from the paper's published numbers, next to or instead of our own
runs. Every row the file states is imported: an evaluation set outside the paper's list keeps its name (task unknown,
so it stays out of the task-based summaries), a Tulu-tuned model on a supervised set is an `instruction-tuned` row,
and an id without a `_Kshots` suffix is a zero-shot run (UNSUFFIXED_SHOTS). Only a row that cannot be read at all
(an id of no known form, a value that is not a number, a missing field) is an error, reported by file line.
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
from amuro.results import INSTRUCTION_TASK, SCHEMA, finalize, relation, write_table
from amuro.tasks import BENCHMARK_TASK, TASKS

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

# The shot suffix is optional: the table's rows without one come from the paper's first, zero-shot evaluations
# (its fine-tuned models were evaluated zero-shot before v5 moved every model to 4 shots; its zero-shot base models
# score near 0 on NLI, as these rows do: `olmo1b_original_hf,rte` is 0.015, the 4-shot row 0.24).
FINETUNED_ID = re.compile(r"(?P<model>[A-Za-z0-9]+)_hf_(?:ckpt(?P<step>\d+)|main)_(?P<train>[A-Za-z0-9_]+?)"
                          r"_(?P<epochs>\d+)epochs?_(?P<lr>[0-9][0-9.eE+-]*)(?:_(?P<shots>\d+)shots)?")
# `original` without `_hf` names the same checkpoint, evaluated before the paper's HF conversion was redone.
BASE_ID = re.compile(r"(?P<model>[A-Za-z0-9]+)_(?:checkpoint-(?P<step>\d+)_)?original(?:_hf)?(?:_(?P<shots>\d+)shots)?")
# `checkpoint-STEP[_Kshots]` names no model: as in the benchmark table, it is OLMo-1B.
SHORT_BASE_ID = re.compile(r"checkpoint-(?P<step>\d+)(?:_(?P<shots>\d+)shots)?")
ID_FORMS = ("MODEL_hf_ckptSTEP_TRAIN_Nepoch_LR[_Kshots], MODEL_hf_main_TRAIN_Nepoch_LR[_Kshots], "
            "MODEL_checkpoint-STEP_original[_hf][_Kshots], MODEL_original[_hf][_Kshots] or checkpoint-STEP[_Kshots]")
UNSUFFIXED_SHOTS = 0
# The paper's instruction-tuning runs in the per-cell table (Tulu v2, evaluated on supervised sets and LLMBar).
TULU_TRAIN_NAMES = ("tulu",)
# What the per-cell table's Performance is for a set whose task we do not know (the paper's code wrote accuracy or
# ROUGE-L, whichever its scorer returned).
UNKNOWN_METRIC = "performance"
# The learning rates the paper reports (xsum 2e-7, everything else 2e-6, Tulu v2 2e-6): when two runs of one cell
# differ only in their rate, the run at this rate is the paper's number (override with learning_rates).
PAPER_LEARNING_RATES = {"xsum": 2e-7, "*": 2e-6}

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
    named: bool = True  # the id names its model (the table's main form); False for `checkpoint-STEP`


def import_amuro_char(path: str | Path, skip_bad_rows: bool = False,
                      checkpoint_names: dict[int, str] | None = None,
                      learning_rates: dict[str, float] | None = None, instruction_mix: str = INSTRUCTION_MIX,
                      preferred_rates: dict[str, float] | None = None) -> pl.DataFrame:
    """The released table as long-format results rows.

    checkpoint_names maps steps to hub revision names; instruction_mix names the Tulu v2 runs' train_dataset.
    learning_rates keeps, for fine-tuned rows, only the runs at the chosen rate per train dataset (key "*" for every
    other one), for tables that hold a learning-rate sweep. Without it, every row is kept, except that where two
    rows state one cell and the table says which is the paper's number (the run at preferred_rates, default the
    paper's PAPER_LEARNING_RATES; else the row whose id names its model), the other is logged with its line.
    """
    path = Path(path)
    cells, bad = [], []
    for line, record in _records(path):
        try:
            cells.append(_cell(line, record, checkpoint_names or {}, instruction_mix))
        except _BadRow as exc:
            bad.append(f"{path}:{line}: {exc}")
    if bad and not skip_bad_rows:
        raise TableImportError(f"{path}: {len(bad)} bad row(s):\n" + "\n".join(bad))
    for message in bad:
        log.warning("%s", message)
    if learning_rates:
        cells = _at_learning_rates(path, cells, learning_rates)
    cells = _resolve_repeats(path, cells, learning_rates or preferred_rates or PAPER_LEARNING_RATES)
    _check_unique(path, cells)
    unknown = sorted({c.row["eval_dataset"] for c in cells if c.row["eval_task"] is None})
    if unknown:
        log.info("%s: evaluation sets outside the paper's list, imported with task unknown: %s", path,
                 ", ".join(unknown))
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


def _cell(line: int, record: dict[str, str] | None, checkpoint_names: dict[int, str], instruction_mix: str) -> _Cell:
    if record is None:
        raise _BadRow(f"wrong number of fields, expected {', '.join(COLUMNS)}")
    empty = [c for c in COLUMNS if c != "std" and not record[c].strip()]
    if empty:
        raise _BadRow(f"empty field(s) {', '.join(empty)}")
    model_id = record["model_id"].strip()
    run = _parse_model_id(model_id)
    checkpoint = "main" if run["step"] is None else checkpoint_names.get(run["step"], f"step{run['step']}")
    train_dataset = train_task = train_format = train_size = None
    if run["train"] is not None and run["train"].lower() in TULU_TRAIN_NAMES:
        train_dataset, train_task, train_format, train_size = instruction_mix, INSTRUCTION_TASK, "chat", "all"
    elif run["train"] is not None:
        train_dataset, train_task = _dataset(run["train"], TRAIN_ALIASES)
        # The paper sampled 6,000 examples per set, but the id does not say so.
        train_format = "default"
    eval_name, eval_format = _split_format(record["eval dataset"].strip())
    eval_dataset, eval_task = _dataset(eval_name, EVAL_ALIASES)
    value = _number(record["Performance"], "Performance")
    std = _number(record["std"], "std") if record["std"].strip() else 0.0
    if std < 0:
        raise _BadRow(f"std {std} is negative")
    if eval_task is None:
        metric = UNKNOWN_METRIC
    else:
        metric = "rougeL" if TASKS[eval_task].kind == "generation" else "accuracy"
    row = {
        "model": run["model"],
        "checkpoint": checkpoint,
        "step": run["step"],
        "tokens": parse_revision(checkpoint)["tokens"],
        "train_dataset": train_dataset,
        "train_task": train_task,
        "train_format": train_format,
        "train_size": train_size,
        "eval_dataset": eval_dataset,
        "eval_task": eval_task,
        "eval_format": eval_format,
        "shots": run["shots"],
        "relation": relation(train_dataset, train_task, eval_dataset, eval_task),
        "metric": metric,
        "value": value,
        # The table's std is the bootstrap standard error around the interval's midpoint (its Performance).
        "ci_low": value - Z95 * std,
        "ci_high": value + Z95 * std,
        "n_examples": None,
    }
    hyper = {"epochs": run["epochs"], "lr": run["lr"]} if train_dataset else {}
    return _Cell(line, model_id, hyper, row, named=run["named"])


def _parse_model_id(model_id: str) -> dict:
    m = FINETUNED_ID.fullmatch(model_id) or BASE_ID.fullmatch(model_id)
    short = None if m else SHORT_BASE_ID.fullmatch(model_id)
    if short:
        return {"model": BENCHMARK_MODEL, "step": int(short["step"]), "train": None, "epochs": None, "lr": None,
                "shots": int(short["shots"]) if short["shots"] else UNSUFFIXED_SHOTS, "named": False}
    if not m:
        raise _BadRow(f"model_id {model_id!r} is not one of the forms {ID_FORMS}")
    parts = m.groupdict()
    lr = parts.get("lr")
    if lr is not None:
        try:
            if not math.isfinite(float(lr)):
                raise ValueError
        except ValueError:
            raise _BadRow(f"model_id {model_id!r}: learning rate {lr!r} is not a number") from None
    return {
        "model": parts["model"],
        "step": int(parts["step"]) if parts["step"] else None,
        "train": parts.get("train"),
        "epochs": parts.get("epochs"),
        "lr": lr,
        "shots": int(parts["shots"]) if parts["shots"] else UNSUFFIXED_SHOTS,
        "named": True,
    }


def _split_format(name: str) -> tuple[str, str]:
    for suffix, eval_format in EVAL_FORMATS.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix), eval_format
    return name, "default"


def _dataset(name: str, aliases: dict[str, str]) -> tuple[str, str | None]:
    """Our id and task of a dataset the table names; a set outside the paper's list keeps its name, task unknown."""
    dataset = aliases.get(name, name)
    return dataset, PAPER_DATASETS.get(dataset)


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
    name = re.sub(r"[\s-]+", "_", record["eval dataset"].strip().lower())
    # A set outside the paper's benchmarks (the table also holds RTE and QQP through lm-eval) keeps its name, with
    # its task unknown: it is neither one of our benchmarks nor scored like our supervised sets.
    eval_dataset = BENCHMARK_NAMES.get(name, name)
    eval_task = BENCHMARK_TASK if name in BENCHMARK_NAMES else None
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
        "eval_task": eval_task,
        "eval_format": "default",
        "shots": shots,
        "relation": relation(train, train_task, eval_dataset, eval_task),
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


def _resolve_repeats(path: Path, cells: list[_Cell], preferred: dict[str, float]) -> list[_Cell]:
    """Where two rows state a number for one cell, keep one when the table says which is the paper's: the run at
    the preferred learning rate, else the row whose id names its model (the table's main form). The others are
    logged with their lines and values; rows that nothing tells apart are left to _check_unique."""
    key_columns = ("model", "checkpoint", "train_dataset", "eval_dataset", "eval_format", "shots")
    groups: dict[tuple, list[_Cell]] = {}
    for cell in cells:
        groups.setdefault(tuple(cell.row[c] for c in key_columns), []).append(cell)
    dropped = set()
    for same in groups.values():
        if len(same) < 2:
            continue
        chosen, reason = same, ""
        if all(c.hyper for c in same) and len({c.hyper["epochs"] for c in same}) == 1:
            rate = preferred.get(same[0].row["train_dataset"], preferred.get("*"))
            at_rate = [c for c in same if rate is not None and math.isclose(float(c.hyper["lr"]), rate)]
            if at_rate:
                chosen, reason = at_rate, f"the run at the paper's learning rate {rate:g} (choose another with " \
                                          f"--learning-rate)"
        if len(chosen) > 1 and sum(c.named for c in chosen) == 1:
            chosen, reason = [c for c in chosen if c.named], "the row whose id names its model"
        if len(chosen) != 1:
            continue
        for cell in same:
            if cell is not chosen[0]:
                dropped.add(cell.line)
                log.warning("%s:%d: %r (%g) states the same cell as line %d (%r, %g); kept: %s", path, cell.line,
                            cell.model_id, cell.row["value"], chosen[0].line, chosen[0].model_id,
                            chosen[0].row["value"], reason)
    if dropped:
        log.warning("%s: %d row(s) left out as second numbers of a cell: lines %s", path, len(dropped),
                    ", ".join(map(str, sorted(dropped))))
    return [c for c in cells if c.line not in dropped]


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


# --- The command: either table, told apart by its header, into a long-format Parquet file ----------------------

# How the released numbers were made, recorded with the imported table (amuro.results.table_settings).
IMPORTED_SETTINGS = {
    PER_CELL: {"source": "Amuro & Char per-cell table", "point_estimate": "interval_midpoint",
               "interval": "Performance +- 1.96 std (std: the bootstrap standard error)"},
    BENCHMARKS: {"source": "Amuro & Char benchmark table", "point_estimate": "reported (lm-eval)",
                 "interval": "none"},
}


def import_table(source: str | Path, out: str | Path, config: str | Path | None = None, skip_bad_rows: bool = False,
                 learning_rates: dict[str, float] | None = None, shots: int | None = None,
                 metric: str | None = None) -> pl.DataFrame:
    """Import a released table (per-cell or benchmark, by its header) and write it to `out`.

    config: a workflow config whose revision names the steps map to, whose learning rates decide between runs of
    one cell at several rates, and whose instruction_tuning.name names the Tulu v2 rows (when that arm is on).
    shots and metric apply to the benchmark table only, learning_rates to the per-cell table only.
    """
    kind = table_kind(source)
    # An option of the other table would silently do nothing: refuse it instead.
    other = {PER_CELL: [("--shots", shots), ("--metric", metric)],
             BENCHMARKS: [("--learning-rate", learning_rates)]}[kind]
    given = [name for name, value in other if value not in (None, [], {})]
    if given:
        raise TableImportError(f"{source} is a {kind} table, which {' and '.join(given)} cannot apply to "
                               f"(--learning-rate is for the per-cell table only; --shots and --metric for the "
                               f"benchmark table only)")
    names, mix, rates = {}, INSTRUCTION_MIX, None
    if config:
        from amuro.config import load_config

        study = load_config(config)
        names = checkpoint_names(study)
        rates = config_learning_rates(study)
        # Our own instruction-tuned rows carry the arm's name; imported ones must match to be compared.
        arm = study.get("instruction_tuning") or {}
        if arm.get("source") and arm.get("name"):
            mix = arm["name"]
    if kind == PER_CELL:
        table = import_amuro_char(source, skip_bad_rows=skip_bad_rows, checkpoint_names=names,
                                  learning_rates=dict(learning_rates or {}), instruction_mix=mix,
                                  preferred_rates=rates)
    else:
        table = import_benchmark_table(source, skip_bad_rows=skip_bad_rows, checkpoint_names=names,
                                       train_dataset=mix, shots=4 if shots is None else shots, metric=metric or "acc")
    write_table(table, out, settings=IMPORTED_SETTINGS[kind])
    log.info("%s (%s table): %d rows -> %s", source, kind, table.height, out)
    return table


def checkpoint_names(config: dict) -> dict[int, str]:
    """Step -> the config's revision name (stepN-tokensM) over every model."""
    from amuro.config import model_checkpoints

    names = {}
    for model in config["models"]:
        for name in model_checkpoints(config, model):
            step = parse_revision(name)["step"]
            if step is not None:
                names[step] = name
    return names


def config_learning_rates(config: dict) -> dict[str, float]:
    """The learning rate the config fine-tunes each train set at ("*": the rest), in the imported rows' names."""
    tuning = config["finetune"]
    rates = {"*": tuning["hyperparameters"]["learning_rate"]}
    rates.update({name: o["learning_rate"] for name, o in tuning["overrides"].items() if "learning_rate" in o})
    arm = config.get("instruction_tuning") or {}
    if arm.get("source"):
        rates[arm["name"]] = arm["hyperparameters"]["learning_rate"]
    return rates
