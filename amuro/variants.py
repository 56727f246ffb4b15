"""Fine-tuning variants and seeds in the analysis: a results table split by variant, its seeds summarised, averaged
or taken one replicate at a time.

A cell trained with several seeds (finetune.seeds, or a variant's own) has one row per seed and eval row. The paper's
tables and figures read one number per cell: the seed mean. How far that number can be trusted is the spread over
seeds (seed_summary), and a finding's margin is weighed against the spread of that margin over seed replicates.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from amuro.axes import main_variant
from amuro.results import SCHEMA, SORT

# A cell without its seed, and the eval row: what the seeds of one cell share.
CELL_WITHOUT_SEED = [c for c in SCHEMA if c not in ("train_seed", "value", "ci_low", "ci_high", "n_examples")]
CELL_ONLY = ["model", "checkpoint", "train_dataset", "train_format", "train_size", "train_variant"]

SEED_SUMMARY_SCHEMA: dict[str, pl.DataType] = {
    **{c: SCHEMA[c] for c in CELL_WITHOUT_SEED},
    "mean": pl.Float64, "sd": pl.Float64, "min": pl.Float64, "max": pl.Float64, "n_seeds": pl.Int64,
    "seeds": pl.String,
}
BANDS = ("interval", "range")


def _tuned(results: pl.DataFrame) -> pl.DataFrame:
    return results.filter(pl.col("relation") != "base")


def seed_summary(results: pl.DataFrame) -> pl.DataFrame:
    """Per tuned cell and eval row: the mean, standard deviation (n - 1; null for one seed), min and max of the
    score over the cell's seeds, how many seeds, and which."""
    table = _tuned(results).sort("train_seed", nulls_last=True).group_by(CELL_WITHOUT_SEED, maintain_order=True).agg(
        pl.col("value").mean().alias("mean"), pl.col("value").std(ddof=1).alias("sd"),
        pl.col("value").min().alias("min"), pl.col("value").max().alias("max"), pl.len().alias("n_seeds"),
        pl.col("train_seed").cast(pl.String).str.join(",").alias("seeds"))
    sort = [c for c in SORT if c != "train_seed"]
    return (table.select([pl.col(c).cast(t) for c, t in SEED_SUMMARY_SCHEMA.items()])
            .sort(sort, nulls_last=True, maintain_order=True))


def seed_means(results: pl.DataFrame, band: str = "interval") -> pl.DataFrame:
    """The results table with each tuned cell's seeds replaced by one row: their mean score.

    band: what ci_low and ci_high of a cell with two seeds or more become: `interval`, the mean of its seeds'
    bootstrap bounds (the tables: a finding's interval stays a test-set interval); `range`, the lowest and highest
    seed (the figures' seed band). A cell with one seed keeps its row as it is, seed included; a mean has no seed."""
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, not {band!r}")
    tuned = _tuned(results)
    if tuned.is_empty() or tuned.group_by(CELL_WITHOUT_SEED).len()["len"].max() == 1:
        return results
    several = pl.len() > 1
    low, high = ((pl.col("ci_low").mean(), pl.col("ci_high").mean()) if band == "interval"
                 else (pl.col("value").min(), pl.col("value").max()))
    means = tuned.group_by(CELL_WITHOUT_SEED, maintain_order=True).agg(
        pl.when(several).then(None).otherwise(pl.col("train_seed").first()).alias("train_seed"),
        pl.col("value").mean(),
        pl.when(several).then(low).otherwise(pl.col("ci_low").first()).alias("ci_low"),
        pl.when(several).then(high).otherwise(pl.col("ci_high").first()).alias("ci_high"),
        pl.col("n_examples").first())
    base = results.filter(pl.col("relation") == "base")
    return (pl.concat([base, means.select([pl.col(c).cast(t) for c, t in SCHEMA.items()])])
            .sort(SORT, nulls_last=True, maintain_order=True))


def by_variant(results: pl.DataFrame) -> Iterator[tuple[str | None, pl.DataFrame]]:
    """(variant, the base rows and that variant's fine-tuned rows), the main variant first (axes.main_variant), the
    others in sorted order, null last (an imported table, or one written before variants, records none).
    Instruction-tuned rows, one full fine-tune per checkpoint whatever the variants, go with the main variant."""
    base = results.filter(pl.col("relation") == "base")
    instruction = results.filter(pl.col("relation") == "instruction-tuned")
    finetuned = results.filter(~pl.col("relation").is_in(["base", "instruction-tuned"]))
    names = finetuned["train_variant"].unique().to_list() or instruction["train_variant"].unique().to_list()
    main = main_variant(names)
    for name in sorted(names, key=lambda v: (v is None, v != main, v or "")):
        rows = finetuned.filter(pl.col("train_variant").eq_missing(name))
        yield name, pl.concat([base, rows, instruction] if name == main else [base, rows])


def main_variant_rows(results: pl.DataFrame) -> pl.DataFrame:
    """The base rows, the main variant's fine-tuned rows and the instruction-tuned rows: what the paper's figures
    show (the first of by_variant)."""
    return next(by_variant(results), (None, results))[1]


def replicates(results: pl.DataFrame) -> list[pl.DataFrame]:
    """The table once per seed position: replicate r holds the base rows and each tuned cell at its r-th seed (in
    increasing order; a cell with fewer seeds at its last). Fewer than two replicates: no cell has two seeds."""
    tuned = _tuned(results)
    if tuned.is_empty():
        return [results]
    tuned = tuned.with_columns(
        (pl.col("train_seed").rank("dense").over(CELL_ONLY) - 1)
        .fill_null(0).cast(pl.Int64).alias("_position"))
    tuned = tuned.with_columns(pl.col("_position").max().over(CELL_ONLY).alias("_last"))
    base = results.filter(pl.col("relation") == "base")
    count = int(tuned["_last"].max()) + 1
    return [pl.concat([base, tuned.filter(pl.min_horizontal(pl.lit(r), pl.col("_last")) == pl.col("_position"))
                       .drop("_position", "_last")]) for r in range(count)]


def with_variant(table: pl.DataFrame, variant: str | None) -> pl.DataFrame:
    """`table` with a train_variant column after model (the per-variant tables)."""
    table = table.with_columns(pl.lit(variant, pl.String).alias("train_variant"))
    columns = table.columns
    order = [columns[0], "train_variant", *[c for c in columns[1:] if c != "train_variant"]]
    return table.select(order)
