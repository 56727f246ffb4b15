"""The benchmark table of the instruction-tuning arm (`,model_id,eval dataset,Performance`): OLMo-1B checkpoints
before and after Tulu v2 tuning, on multiple-choice benchmarks through lm-eval."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from amuro.importers.rows import (BENCHMARK_MODEL, INSTRUCTION_MIX, BadRow, Cell, Record, TableImportError,
                                  cells_table, check_fields, check_unique, learning_rate, long_row, number, read_cells,
                                  records)
from amuro.results import INSTRUCTION_TASK
from amuro.tasks import BENCHMARK_TASK

log = logging.getLogger(__name__)

BENCHMARK_COLUMNS = ("model_id", "eval dataset", "Performance")
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
    rows = list(records(path, BENCHMARK_COLUMNS))
    _refuse_percentages(path, rows)
    cells = read_cells(path, rows,
                       lambda line, record: _benchmark_cell(line, record, checkpoint_names or {}, train_dataset,
                                                            shots, metric),
                       skip_bad_rows)
    _check_one_tuning(path, cells)
    check_unique(path, cells)
    return cells_table(path, cells)


def _refuse_percentages(path: Path, rows: list[tuple[int, Record]]) -> None:
    """A table in percent would be a wrong scale in every row: one clear error, not a bad row per line."""
    values = []
    for line, record in rows:
        try:
            values.append((line, number(record["Performance"], "Performance")))
        except (BadRow, TypeError):  # TypeError: a row with the wrong number of fields, reported later
            pass
    if values and all(v > 1 for _, v in values):
        line, value = values[0]
        raise TableImportError(f"{path}: every Performance value is above 1 (e.g. line {line}: {value:g}), so the "
                               f"table looks like percentages; amuro imports accuracies as fractions in [0, 1] and "
                               f"does not guess the scale: divide the column by 100 first")


def _benchmark_cell(line: int, record: Record, checkpoint_names: dict[int, str], train_dataset: str,
                    shots: int, metric: str) -> Cell:
    record = check_fields(record, BENCHMARK_COLUMNS)
    model_id = record["model_id"].strip()
    run = _parse_benchmark_id(model_id)
    tuned = run["epochs"] is not None
    # Tulu v2 was used whole.
    train = (train_dataset, INSTRUCTION_TASK, "chat", "all") if tuned else (None, None, None, None)
    name = re.sub(r"[\s-]+", "_", record["eval dataset"].strip().lower())
    # A set outside the paper's benchmarks (the table also holds RTE and QQP through lm-eval) keeps its name, with
    # its task unknown: it is neither one of our benchmarks nor scored like our supervised sets.
    eval_dataset = BENCHMARK_NAMES.get(name, name)
    eval_task = BENCHMARK_TASK if name in BENCHMARK_NAMES else None
    value = number(record["Performance"], "Performance")
    if not 0 <= value <= 1:
        raise BadRow(f"Performance {value:g} is not a fraction in [0, 1]")
    row = long_row(run["model"], run["step"], checkpoint_names, train, eval_dataset, eval_task, "default", shots,
                   metric, value)
    hyper = {"epochs": run["epochs"], "lr": run["lr"]} if tuned else {}
    return Cell(line, model_id, hyper, row)


def _parse_benchmark_id(model_id: str) -> dict:
    if m := TUNED_ID.fullmatch(model_id):
        return {"model": m["model"].lower(), "step": int(m["step"]) if m["step"] else None,
                "epochs": int(m["epochs"]), "lr": learning_rate(model_id, m["lr"])}
    if m := PRETRAINED_ID.fullmatch(model_id):
        return {"model": (m["model"] or BENCHMARK_MODEL).lower(), "step": int(m["step"]) if m["step"] else None,
                "epochs": None, "lr": None}
    raise BadRow(f"model_id {model_id!r} is not one of the forms {BENCHMARK_ID_FORMS}")


def _check_one_tuning(path: Path, cells: list[Cell]) -> None:
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
