"""Transfer and forgetting matrices, and the selections every figure shares: pure functions of the results table.

A fine-tuned model is always compared with its own pre-trained checkpoint, evaluated on the same set, in the same
format and with the same number of shots. The interval of a difference combines the two intervals by the MOVER
method (Zou & Donner 2008): it needs only the table, so it also works for imported numbers, and it treats the two
scores as independent, which for the same test examples makes it conservative.
"""

from __future__ import annotations

import math

import polars as pl

from amuro.axes import main_eval_format, main_train_format, main_train_size, size_order  # noqa: F401 (re-exported)
from amuro.results import SCHEMA
from amuro.tasks import BENCHMARK_TASK, TASKS

PRETRAINING, NOT_PRETRAINING = "learned in pre-training", "not learned in pre-training"
CELL = ["model", "checkpoint", "step", "tokens", "train_dataset", "train_task", "train_format", "train_size",
        "train_variant", "train_seed"]
EVAL = ["eval_dataset", "eval_task", "eval_format", "shots", "metric"]
# What pairs a tuned row with its base row.
PAIR = ["model", "checkpoint", "eval_dataset", "eval_format", "shots", "metric"]
# One base curve: a set as one evaluation scored it. A set can be scored by two evaluations (the paper's own rte, a
# task of the study scored by accuracy, beside lm-eval's rte, task unknown, scored by acc): those are two curves.
CURVE = ["model", "eval_dataset", "eval_task"]

TRANSFER_SCHEMA: dict[str, pl.DataType] = {
    **{c: SCHEMA[c] for c in CELL + EVAL[:4]},
    "relation": pl.String,
    "metric": pl.String,
    "finetuned": pl.Float64,
    "finetuned_ci_low": pl.Float64,
    "finetuned_ci_high": pl.Float64,
    "base": pl.Float64,
    "base_ci_low": pl.Float64,
    "base_ci_high": pl.Float64,
    "delta": pl.Float64,
    "delta_ci_low": pl.Float64,
    "delta_ci_high": pl.Float64,
    "relative_change": pl.Float64,
}
TRANSFER_SORT = ["model", "step", "checkpoint", "train_dataset", "train_format", "train_size", "train_variant",
                 "train_seed", "eval_dataset", "eval_format", "shots", "metric"]

FORGETTING_SCHEMA: dict[str, pl.DataType] = {
    **{c: SCHEMA[c] for c in CELL},
    "eval_format": pl.String,
    "shots": pl.Int64,
    "metric": pl.String,
    "relation": pl.String,
    "eval_task": pl.String,
    "n_eval_datasets": pl.Int64,
    "mean_delta": pl.Float64,
    "worst_delta": pl.Float64,
    "worst_dataset": pl.String,
    "n_below_base": pl.Int64,
    "datasets_below_base": pl.String,
}


def difference_interval(a, a_low, a_high, b, b_low, b_high) -> tuple[pl.Expr, pl.Expr]:
    """MOVER interval of a - b from the intervals of a and b (polars expressions)."""
    d = a - b
    low = d - ((a - a_low) ** 2 + (b_high - b) ** 2).sqrt()
    high = d + ((a_high - a) ** 2 + (b - b_low) ** 2).sqrt()
    return low, high


def transfer_matrix(results: pl.DataFrame) -> pl.DataFrame:
    """Every fine-tuned score next to the base score of the same checkpoint, eval set, format and shots."""
    base = results.filter(pl.col("relation") == "base").select(
        "model", "checkpoint", "eval_dataset", "eval_format", "shots", "metric",
        pl.col("value").alias("base"), pl.col("ci_low").alias("base_ci_low"),
        pl.col("ci_high").alias("base_ci_high"),
    )
    tuned = results.filter(pl.col("relation") != "base").rename(
        {"value": "finetuned", "ci_low": "finetuned_ci_low", "ci_high": "finetuned_ci_high"}
    )
    joined = tuned.join(base, on=["model", "checkpoint", "eval_dataset", "eval_format", "shots", "metric"],
                        how="inner", nulls_equal=True)
    low, high = difference_interval(pl.col("finetuned"), pl.col("finetuned_ci_low"), pl.col("finetuned_ci_high"),
                                    pl.col("base"), pl.col("base_ci_low"), pl.col("base_ci_high"))
    joined = joined.with_columns(
        (pl.col("finetuned") - pl.col("base")).alias("delta"),
        low.alias("delta_ci_low"),
        high.alias("delta_ci_high"),
        # Relative to the base score (the paper's ratio of change); undefined where the base scores 0.
        pl.when(pl.col("base") != 0).then((pl.col("finetuned") - pl.col("base")) / pl.col("base"))
        .otherwise(None).alias("relative_change"),
    )
    return (joined.select([pl.col(c).cast(t) for c, t in TRANSFER_SCHEMA.items()])
            .sort(TRANSFER_SORT, nulls_last=True, maintain_order=True))


def forgetting_matrix(transfer: pl.DataFrame) -> pl.DataFrame:
    """Per fine-tuned model and eval task outside its own dataset: how far it fell below its pre-trained checkpoint.

    A set counts as below base when the whole interval of the change is below zero.
    """
    outside = transfer.filter(pl.col("relation").is_in(["cross-domain", "cross-task"])).with_columns(
        (pl.col("delta_ci_high") < 0).alias("below")
    )
    group = CELL + ["eval_format", "shots", "metric", "relation", "eval_task"]
    table = outside.group_by(group, maintain_order=True).agg(
        pl.len().alias("n_eval_datasets"),
        pl.col("delta").mean().alias("mean_delta"),
        pl.col("delta").min().alias("worst_delta"),
        pl.col("eval_dataset").sort_by("delta").first().alias("worst_dataset"),
        pl.col("below").sum().alias("n_below_base"),
        pl.col("eval_dataset").filter(pl.col("below")).sort().str.join(",").alias("datasets_below_base"),
    )
    return (table.select([pl.col(c).cast(t) for c, t in FORGETTING_SCHEMA.items()])
            .sort(["model", "step", "checkpoint", "train_dataset", "train_format", "train_size", "train_variant",
                   "train_seed", "eval_format", "shots", "metric", "relation", "eval_task"], nulls_last=True,
                  maintain_order=True))


# --- Selections shared by the figures --------------------------------------------------------------------------

def checkpoint_order(table: pl.DataFrame) -> list[tuple[str, str]]:
    """(model, checkpoint) pairs in pre-training order, model by model; a checkpoint without a step comes last."""
    pairs = table.select("model", "checkpoint", "step").unique().sort(
        ["model", "step", "checkpoint"], nulls_last=True)
    return [(r["model"], r["checkpoint"]) for r in pairs.iter_rows(named=True)]


def base_curves(results: pl.DataFrame) -> pl.DataFrame:
    """The base rows the pre-training curves show: main eval format, and for each set its largest shot count
    (benchmarks may be run with other shots than the prompt-format sets)."""
    base = results.filter(pl.col("relation") == "base")
    base = base.filter(pl.col("eval_format") == main_eval_format(base["eval_format"].unique().to_list()))
    return base.filter(pl.col("shots") == pl.col("shots").max().over("eval_dataset"))


# A change in a base curve counts (learned in pre-training, or not flat) only when it clears its interval and covers
# at least this share of the way from the first checkpoint's score to a perfect one (to zero, for a fall), on the
# metrics' 0-1 scale. A checkpoint that repeats one output for every prompt has an interval of almost nothing, and
# base ROUGE-L creeping from 0 to .15 as a model learns to imitate its demonstrations' form would otherwise count as
# having learned to summarise; sentiment rising from chance (.5) to .95 covers 90 % of its way.
MIN_SHARE_OF_HEADROOM = 0.25


def curve_change(first: dict, last: dict) -> tuple[float, float]:
    """A base curve's change from its first to its last row, and the half-width of the change's interval (MOVER on
    the two rows' intervals; 0 where a table has none)."""
    change = last["value"] - first["value"]
    if None in (first["ci_low"], first["ci_high"], last["ci_low"], last["ci_high"]):  # imported tables may have none
        return change, 0.0
    near_last = last["value"] - last["ci_low"] if change >= 0 else last["ci_high"] - last["value"]
    near_first = first["ci_high"] - first["value"] if change >= 0 else first["value"] - first["ci_low"]
    return change, math.hypot(near_last, near_first)


def _large(change: float, first: float) -> bool:
    headroom = 1 - first if change >= 0 else first
    return abs(change) >= MIN_SHARE_OF_HEADROOM * headroom


def rises(first: dict, last: dict) -> bool:
    """The curve ends clearly above where it began: beyond its interval, and a quarter of the way to a perfect score
    or more (MIN_SHARE_OF_HEADROOM)."""
    change, margin = curve_change(first, last)
    return change - margin > 0 and _large(change, first["value"])


def is_flat(first: dict, last: dict) -> bool:
    """The curve ends where it began: within its interval, or less than a quarter of the way to a perfect score (or,
    falling, to zero)."""
    change, margin = curve_change(first, last)
    return abs(change) <= margin or not _large(change, first["value"])


def require_one_metric_per_curve(base: pl.DataFrame) -> None:
    """A curve's first and last rows must be one metric: with benchmarks' acc and acc_norm side by side, a set would
    be "learned" because acc_norm sits above acc."""
    mixed = base.group_by(CURVE).agg(pl.col("metric").unique().sort())
    mixed = mixed.filter(pl.col("metric").list.len() > 1).sort(CURVE, nulls_last=True)
    if not mixed.is_empty():
        which = "; ".join(f"{r['model']} {r['eval_dataset']} ({', '.join(r['metric'])})" for r in mixed.iter_rows(named=True))
        raise ValueError(f"pre-training groups need one metric per eval set, got several for {which}: "
                         f"pass analysis.headline(table, benchmark_metric)")


def pretraining_groups(results: pl.DataFrame, eval_format: str | None = None,
                       shots: int | None = None) -> dict[str, str]:
    """Eval set -> "learned in pre-training" or "not learned in pre-training", from the base checkpoints' curves.

    A set is learned in pre-training when the last checkpoint scores clearly above the first one (rises(): beyond
    the interval of the difference and a quarter of the way to a perfect score or more; a curve that rises and falls
    back was not learned).
    Uses base_curves() unless a format or shot count is given. Pass a headline() table (one metric per set).
    """
    base = results.filter(pl.col("relation") == "base")
    if base.is_empty():
        return {}
    if eval_format is None and shots is None:
        base = base_curves(base)
    else:
        eval_format = eval_format or main_eval_format(base["eval_format"].unique().to_list())
        shots = shots if shots is not None else base["shots"].max()
        base = base.filter((pl.col("eval_format") == eval_format) & (pl.col("shots") == shots))
    require_one_metric_per_curve(base)
    order = pl.DataFrame(checkpoint_order(base), schema=["model", "checkpoint"], orient="row").with_row_index("order")
    base = base.join(order, on=["model", "checkpoint"]).sort("order")
    groups = {}
    for (model, dataset, _), rows in base.group_by(CURVE, maintain_order=True):
        learned = rises(rows.row(0, named=True), rows.row(-1, named=True))
        # A set that any model learns in pre-training counts as learned in pre-training.
        if groups.get(dataset) != PRETRAINING:
            groups[dataset] = PRETRAINING if learned else NOT_PRETRAINING
    return dict(sorted(groups.items()))


def comparison_shots(results: pl.DataFrame, instruction_tuned: bool = False, shots: int | None = None) -> int | None:
    """The shot count at which tuned models are compared with their base.

    `shots` (the setting analysis.shots) decides when given. Otherwise the count that pairs the most tuned rows
    with a base row of the same checkpoint, set, format and metric (ties: the larger count), so that a stray pair
    at some other count never decides. Supervised fine-tuning and instruction tuning are evaluated on different
    sets with their own shot counts, so each has its own comparison.
    """
    if shots is not None:
        return shots
    tuned = results.filter((pl.col("relation") == "instruction-tuned") if instruction_tuned
                           else ~pl.col("relation").is_in(["base", "instruction-tuned"]))
    base = results.filter(pl.col("relation") == "base").select(PAIR).unique()
    pairs = tuned.select(PAIR).join(base, on=PAIR, how="inner", nulls_equal=True)
    if pairs.is_empty():
        return None
    counts = pairs.group_by("shots").len().sort(["len", "shots"], descending=True)
    return counts["shots"][0]


# --- The paper's summary tables --------------------------------------------------------------------------------

def headline(results: pl.DataFrame, benchmark_metric: str = "acc") -> pl.DataFrame:
    """One metric per eval set: benchmarks carry acc and acc_norm, tables and figures show one of them."""
    return results.filter(pl.col("eval_task").ne_missing(BENCHMARK_TASK) | (pl.col("metric") == benchmark_metric))


def dataset_groups(results: pl.DataFrame, configured: dict[str, str] | None = None) -> dict[str, str]:
    """Eval set -> learned in pre-training or not, for the figures that show every set: as configured, the other
    sets from the base curves (pretraining_groups)."""
    return dict(sorted({**pretraining_groups(results), **(configured or {})}.items()))


def table_groups(results: pl.DataFrame, configured: dict[str, str] | None = None) -> dict[str, str]:
    """The groups of Table 6: exactly the configured ones; only when none is configured, every set of a known task
    grouped from the base curves (pretraining_groups)."""
    if configured:
        return dict(sorted(configured.items()))
    known = set(results.filter(pl.col("eval_task").is_not_null())["eval_dataset"].to_list())
    return {d: g for d, g in pretraining_groups(results).items() if d in known}


GROUP_GAIN_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String, "checkpoint": pl.String, "step": pl.Int64, "tokens": pl.Int64, "group": pl.String,
    "mean_delta": pl.Float64, "n_datasets": pl.Int64, "datasets": pl.String,
}


def tuned_vs_base(results: pl.DataFrame, shots: int | None = None) -> pl.DataFrame:
    """Transfer rows of every tuned model (main train format and size, main eval format, the comparison shots:
    `shots` if given, else each arm's comparison_shots)."""
    transfer = transfer_matrix(results)
    fmt = main_eval_format(transfer["eval_format"].unique().to_list())
    sft = transfer.filter(pl.col("relation") != "instruction-tuned")
    sft = sft.filter(pl.col("train_format").eq_missing(main_train_format(sft["train_format"].unique().to_list()))
                     & pl.col("train_size").eq_missing(main_train_size(sft["train_size"].to_list()))
                     & pl.col("shots").eq_missing(comparison_shots(results, shots=shots)))
    tuned = transfer.filter((pl.col("relation") == "instruction-tuned")
                            & pl.col("shots").eq_missing(comparison_shots(results, instruction_tuned=True, shots=shots)))
    return pl.concat([sft, tuned]).filter(pl.col("eval_format") == fmt)


def group_gains(results: pl.DataFrame, groups: dict[str, str], shots: int | None = None) -> pl.DataFrame:
    """The paper's Table 6: per checkpoint and group, the mean over the group's sets of Perf(tuned) - Perf(base).

    A set's change is the mean over the tuned models that were trained for it: fine-tuned on it (in-domain) or on
    another set of its task (cross-domain), or instruction-tuned. Cross-task rows measure forgetting, not learning,
    and are left out. Only the sets `groups` names count (table_groups). Pass a headline() table, so that every
    set has one metric.
    """
    rows = tuned_vs_base(results, shots).filter(pl.col("relation").is_in(["in-domain", "cross-domain", "instruction-tuned"]))
    rows = rows.with_columns(pl.col("eval_dataset").replace_strict(groups, default=None).alias("group"))
    # Groups in the order rows come (maintain_order), so each mean sums its values in one order on every run: a
    # mean whose sum followed the threads' order differed in its last bit between two demo runs.
    per_set = rows.filter(pl.col("group").is_not_null()).group_by(
        ["model", "checkpoint", "step", "tokens", "group", "eval_dataset"], maintain_order=True).agg(pl.col("delta").mean())
    table = per_set.group_by(["model", "checkpoint", "step", "tokens", "group"], maintain_order=True).agg(
        pl.col("delta").mean().alias("mean_delta"), pl.len().alias("n_datasets"),
        pl.col("eval_dataset").sort().str.join(",").alias("datasets"))
    return (table.select([pl.col(c).cast(t) for c, t in GROUP_GAIN_SCHEMA.items()])
            .sort(["model", "step", "checkpoint", "group"], nulls_last=True))


MRC_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String, "checkpoint": pl.String, "step": pl.Int64, "tokens": pl.Int64, "direction": pl.String,
    "aggregate": pl.String, "mrc": pl.Float64, "n_checkpoints": pl.Int64, "n_pairs": pl.Int64,
    "n_undefined": pl.Int64,
}
PER_CHECKPOINT, MEAN_OVER_CHECKPOINTS = "checkpoint", "mean over checkpoints"


def mean_ratio_of_change(results: pl.DataFrame, eval_sets: str = "cross_task", shots: int | None = None) -> pl.DataFrame:
    """The paper's transfer summary: MRC = mean over eval sets d of the other task kind of
    (Perf_t(d) - Perf_base(d)) / Perf_base(d), per checkpoint and direction (classification -> generation and
    generation -> classification), over every fine-tuned model t of the first kind.

    eval_sets: `cross_task` takes every eval set of the other kind; `train_sets` only the other kind's fine-tuning
    sets (what the paper's released numbers use). Pairs whose base scores 0 have no ratio; they are counted in
    n_undefined, not averaged. Besides the rows per checkpoint (aggregate "checkpoint"), one row per model and
    direction (aggregate "mean over checkpoints", checkpoint null) holds the mean of the checkpoints' MRCs: the
    number the paper reports.
    """
    rows = tuned_vs_base(results, shots).filter(pl.col("relation") == "cross-task")
    kind = {name: task.kind for name, task in TASKS.items()}
    rows = rows.with_columns(pl.col("train_task").replace_strict(kind, default=None).alias("from"),
                             pl.col("eval_task").replace_strict(kind, default=None).alias("to"))
    rows = rows.filter(pl.col("from").is_not_null() & pl.col("to").is_not_null() & (pl.col("from") != pl.col("to")))
    if eval_sets == "train_sets":
        rows = rows.filter(pl.col("eval_dataset").is_in(rows["train_dataset"].unique().to_list()))
    elif eval_sets != "cross_task":
        raise ValueError(f"eval_sets must be cross_task or train_sets, not {eval_sets!r}")
    rows = rows.with_columns((pl.col("from") + " -> " + pl.col("to")).alias("direction"))
    table = rows.group_by(["model", "checkpoint", "step", "tokens", "direction"], maintain_order=True).agg(
        pl.col("relative_change").mean().alias("mrc"),
        pl.col("relative_change").is_not_null().sum().alias("n_pairs"),
        pl.col("relative_change").is_null().sum().alias("n_undefined")).with_columns(
        pl.lit(PER_CHECKPOINT).alias("aggregate"), pl.lit(1).alias("n_checkpoints"))
    mean = table.group_by(["model", "direction"], maintain_order=True).agg(
        pl.col("mrc").mean(), pl.col("mrc").is_not_null().sum().alias("n_checkpoints"),
        pl.col("n_pairs").sum(), pl.col("n_undefined").sum()).with_columns(
        pl.lit(None, pl.String).alias("checkpoint"), pl.lit(None, pl.Int64).alias("step"),
        pl.lit(None, pl.Int64).alias("tokens"), pl.lit(MEAN_OVER_CHECKPOINTS).alias("aggregate"))
    columns = [pl.col(c).cast(t) for c, t in MRC_SCHEMA.items()]
    return (pl.concat([table.select(columns), mean.select(columns)])
            .sort(["model", "aggregate", "step", "checkpoint", "direction"], nulls_last=True))
