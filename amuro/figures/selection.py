"""The rows a figure shows, picked from the long-format table; a figure without them fails naming what is missing."""

from __future__ import annotations

import polars as pl

from amuro import analysis
from amuro.tasks import TASKS


class FigureDataError(ValueError):
    pass


def require_rows(table: pl.DataFrame, figure_id: str, what: str) -> pl.DataFrame:
    if table.is_empty():
        raise FigureDataError(f"figure '{figure_id}': the results table has no {what}")
    return table


def rows_at(rows: pl.DataFrame, pair: tuple[str, str]) -> pl.DataFrame:
    """The rows of one (model, checkpoint)."""
    return rows.filter((pl.col("model") == pair[0]) & (pl.col("checkpoint") == pair[1]))


def main_transfer(table: pl.DataFrame, figure_id: str, relation: str | None = None,
                  all_sizes: bool = False, train_formats: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Fine-tuned vs base rows in the main train format and size, main eval format, at the comparison shots."""
    transfer = require_rows(analysis.transfer_matrix(table), figure_id,
                            "fine-tuned rows with a base row of the same checkpoint, eval set, format and shots")
    main_format = analysis.main_train_format(transfer["train_format"].unique().to_list())
    formats = train_formats or (main_format,)
    transfer = transfer.filter(pl.col("train_format").is_in(formats))
    if not all_sizes:
        main_size = analysis.main_train_size(transfer["train_size"].to_list())
        transfer = transfer.filter(pl.col("train_size").eq_missing(main_size))  # imported tables have no size
    transfer = transfer.filter(
        (pl.col("eval_format") == analysis.main_eval_format(transfer["eval_format"].unique().to_list()))
        & (pl.col("shots") == analysis.comparison_shots(table))
    )
    if relation is not None:
        transfer = transfer.filter(pl.col("relation") == relation)
    return require_rows(transfer, figure_id,
                        f"{relation or 'fine-tuned'} rows in train format(s) {', '.join(map(str, formats))}")


def mean_with_interval(rows: pl.DataFrame, by: list[str], value: str = "delta") -> pl.DataFrame:
    """Mean of `value` per group; its interval (low, high) treats the sets' intervals as independent."""
    means = rows.group_by(by, maintain_order=True).agg(
        pl.col(value).mean().alias("mean"),
        ((pl.col(value) - pl.col(f"{value}_ci_low")) ** 2).sum().sqrt().truediv(pl.len()).alias("err_low"),
        ((pl.col(f"{value}_ci_high") - pl.col(value)) ** 2).sum().sqrt().truediv(pl.len()).alias("err_high"),
        pl.len().alias("n"),
    )
    return means.with_columns((pl.col("mean") - pl.col("err_low")).alias("low"),
                              (pl.col("mean") + pl.col("err_high")).alias("high"))


def task_kind(task: str | None) -> str:
    return TASKS[task].kind if task in TASKS else "unknown"
