"""The per-cell table of the fine-tuning arm (`,model_id,eval dataset,Performance,std`): one row per fine-tuned or
pre-trained model and evaluation set, the model's id telling checkpoint, train set, epochs, learning rate and shots."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import polars as pl

from amuro.importers.rows import (BENCHMARK_MODEL, CELL_KEY, INSTRUCTION_MIX, BadRow, Cell, Record, cells_table,
                                  check_fields, check_unique, learning_rate, long_row, number, read_cells, records)
from amuro.results import INSTRUCTION_TASK
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
SWEEP_HINT = ("\n(for a learning-rate sweep, choose one rate per train set: --learning-rate xsum=2e-7 "
              "--learning-rate '*=2e-6')")


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
    cells = read_cells(path, records(path, COLUMNS),
                       lambda line, record: _cell(line, record, checkpoint_names or {}, instruction_mix),
                       skip_bad_rows)
    if learning_rates:
        cells = _at_learning_rates(path, cells, learning_rates)
    cells = _resolve_repeats(path, cells, learning_rates or preferred_rates or PAPER_LEARNING_RATES)
    check_unique(path, cells, hint=SWEEP_HINT)
    unknown = sorted({c.row["eval_dataset"] for c in cells if c.row["eval_task"] is None})
    if unknown:
        log.info("%s: evaluation sets outside the paper's list, imported with task unknown: %s", path,
                 ", ".join(unknown))
    return cells_table(path, cells)


def _cell(line: int, record: Record, checkpoint_names: dict[int, str], instruction_mix: str) -> Cell:
    record = check_fields(record, COLUMNS, optional=("std",))
    model_id = record["model_id"].strip()
    run = _parse_model_id(model_id)
    train = (None, None, None, None)
    if run["train"] is not None and run["train"].lower() in TULU_TRAIN_NAMES:
        train = (instruction_mix, INSTRUCTION_TASK, "chat", "all")
    elif run["train"] is not None:
        # The paper sampled 6,000 examples per set, but the id does not say so.
        train = (*_dataset(run["train"], TRAIN_ALIASES), "default", None)
    eval_name, eval_format = _split_format(record["eval dataset"].strip())
    eval_dataset, eval_task = _dataset(eval_name, EVAL_ALIASES)
    value = number(record["Performance"], "Performance")
    std = number(record["std"], "std") if record["std"].strip() else 0.0
    if std < 0:
        raise BadRow(f"std {std} is negative")
    if eval_task is None:
        metric = UNKNOWN_METRIC
    else:
        metric = "rougeL" if TASKS[eval_task].kind == "generation" else "accuracy"
    # The table's std is the bootstrap standard error around the interval's midpoint (its Performance).
    row = long_row(run["model"], run["step"], checkpoint_names, train, eval_dataset, eval_task, eval_format,
                   run["shots"], metric, value, ci=(value - Z95 * std, value + Z95 * std))
    hyper = {"epochs": run["epochs"], "lr": run["lr"]} if train[0] else {}
    return Cell(line, model_id, hyper, row, named=run["named"])


def _parse_model_id(model_id: str) -> dict:
    m = FINETUNED_ID.fullmatch(model_id) or BASE_ID.fullmatch(model_id)
    short = None if m else SHORT_BASE_ID.fullmatch(model_id)
    if short:
        return {"model": BENCHMARK_MODEL, "step": int(short["step"]), "train": None, "epochs": None, "lr": None,
                "shots": int(short["shots"]) if short["shots"] else UNSUFFIXED_SHOTS, "named": False}
    if not m:
        raise BadRow(f"model_id {model_id!r} is not one of the forms {ID_FORMS}")
    parts = m.groupdict()
    lr = parts.get("lr")
    if lr is not None:
        learning_rate(model_id, lr)  # kept as written: duplicates are explained with it
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


def _at_learning_rates(path: Path, cells: list[Cell], learning_rates: dict[str, float]) -> list[Cell]:
    def chosen(cell: Cell) -> bool:
        train = cell.row["train_dataset"]
        if train is None:
            return True
        rate = learning_rates.get(train, learning_rates.get("*"))
        return rate is None or math.isclose(float(cell.hyper["lr"]), rate)

    kept = [c for c in cells if chosen(c)]
    log.info("%s: kept %d of %d rows at the chosen learning rates %s", path, len(kept), len(cells), learning_rates)
    return kept


def _resolve_repeats(path: Path, cells: list[Cell], preferred: dict[str, float]) -> list[Cell]:
    """Where two rows state a number for one cell, keep one when the table says which is the paper's: the run at
    the preferred learning rate, else the row whose id names its model (the table's main form). The others are
    logged with their lines and values; rows that nothing tells apart are left to check_unique."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(tuple(cell.row[c] for c in CELL_KEY), []).append(cell)
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
