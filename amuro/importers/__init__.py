"""Import the results tables released with Amuro & Char (Sun & Dredze 2024) into our long format.

Two tables: the per-cell table of the fine-tuning arm (`,model_id,eval dataset,Performance,std`) and the benchmark
table of the instruction-tuning arm (`,model_id,eval dataset,Performance`); `table_kind` tells them apart by header.
With them the matrices and figures can be drawn from the paper's published numbers, next to or instead of our own
runs. Every row the file states is imported: an evaluation set outside the paper's list keeps its name (task unknown,
so it stays out of the task-based summaries), a Tulu-tuned model on a supervised set is an `instruction-tuned` row,
and an id without a `_Kshots` suffix is a zero-shot run (UNSUFFIXED_SHOTS). Only a row that cannot be read at all
(an id of no known form, a value that is not a number, a missing field) is an error, reported by file line.

Here: the command (either table, by its header, into a Parquet file); `per_cell` and `benchmark_table` read one
table each; `rows` holds what both share.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import polars as pl

from amuro.checkpoints import parse_revision
from amuro.importers.benchmark_table import BENCHMARK_COLUMNS, import_benchmark_table
from amuro.importers.per_cell import COLUMNS, import_amuro_char
from amuro.importers.rows import INSTRUCTION_MIX, TableImportError, column_names
from amuro.results import write_table

log = logging.getLogger(__name__)

PER_CELL, BENCHMARKS = "per-cell", "benchmarks"
HEADERS = {PER_CELL: COLUMNS, BENCHMARKS: BENCHMARK_COLUMNS}


def table_kind(path: str | Path) -> str:
    """PER_CELL or BENCHMARKS, from the CSV's header; any other header is an error naming both expected ones."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    names = column_names(header or [], COLUMNS + BENCHMARK_COLUMNS)
    for kind, columns in HEADERS.items():
        if tuple(names) == columns:
            return kind
    expected = " or ".join(f"{kind} table ',{','.join(columns)}'" for kind, columns in HEADERS.items())
    found = f"header {','.join(header)!r}" if header else "an empty file"
    raise TableImportError(f"{path}: expected the header of the {expected} (the first column a pandas index, "
                           f"optional); found {found}")


# How the released numbers were made, recorded with the imported table (amuro.results.table_settings).
IMPORTED_SETTINGS = {
    PER_CELL: {"source": "Amuro & Char per-cell table", "point_estimate": "interval_midpoint",
               "interval": "Performance +- 1.96 std (std: the bootstrap standard error)"},
    BENCHMARKS: {"source": "Amuro & Char benchmark table", "point_estimate": "reported (lm-eval)",
                 "interval": "none"},
}


def import_table(source: str | Path, out: str | Path, config: str | Path | None = None, skip_bad_rows: bool = False,
                 learning_rates: dict[str, float] | list[tuple[str, float]] | None = None, shots: int | None = None,
                 metric: str | None = None) -> pl.DataFrame:
    """Import a released table (per-cell or benchmark, by its header) and write it to `out`.

    config: a workflow config whose revision names the steps map to, whose learning rates decide between runs of
    one cell at several rates, and whose instruction_tuning.name names the Tulu v2 rows (when that arm is on).
    shots and metric apply to the benchmark table only, learning_rates to the per-cell table only.
    """
    learning_rates = dict(learning_rates or {})  # the command line gives (dataset, rate) pairs
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
