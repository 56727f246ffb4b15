"""The paper's four findings, checked on a results table: does this study show what Amuro & Char report?

Each finding is a yes/no test with its numbers, per model and fine-tuning variant, read only from the table (so it
works as well for the mini-world, a real study or an imported table), on the mean over each cell's seeds; a study with
several seeds also gets each finding's margin per seed replicate and whether it holds beyond that spread:

(i)   Pre-training helps in ways only fine-tuning shows: some set whose base few-shot curve is flat (last and first
      checkpoint within their combined interval, or less than a quarter of the way to a perfect score apart) gains clearly more from
      in-domain fine-tuning at the last checkpoint than at the first (the difference of the two gains above its
      interval).
(ii)  Fine-tuning helps most where pre-training did not teach the task: with the groups read from the base curves
      (analysis.pretraining_groups), the not-learned group gains more than the learned group at 80 % of the
      checkpoints or more (Table 6; four of five in the paper's terms).
(iii) Fine-tuning on classification makes a model forget generation: the mean ratio of change (MRC) of
      classification -> generation is negative and below generation -> classification. Whether the loss is partial
      (MRC above -1, as in the paper) or total (-100 % once rounded) is reported, not required.
(iv)  Format sensitivity shrinks with pre-training: the share of the in-domain gain that a model keeps when asked in
      another prompt format than it was trained in (input-output left out: it has no task header) is larger at the
      last checkpoint than at the first, on the sets that gain clearly (interval above zero) at both.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from amuro import analysis
from amuro.variants import by_variant, replicates, seed_means

SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String, "train_variant": pl.String, "finding": pl.String, "claim": pl.String, "holds": pl.Boolean,
    "value": pl.Float64, "margin": pl.Float64, "n_seeds": pl.Int64, "seed_margins": pl.String, "seed_sd": pl.Float64,
    "beyond_seed_noise": pl.Boolean, "evidence": pl.String,
}
CLAIMS = {
    "i": "a set flat in the base curve gains clearly more from fine-tuning late than early",
    "ii": "the not-learned group gains more from tuning than the learned group at >= 80% of checkpoints",
    "iii": "classification -> generation MRC is negative and below generation -> classification",
    "iv": "the share of the in-domain gain kept in another (non-io) format grows with pre-training",
}
SHARE_OF_CHECKPOINTS = 0.8  # (ii): four of five checkpoints
OTHER_FORMAT_EXCLUDED = "io"  # (iv): a format without task header, not a rephrasing of the task
# (iii): a loss that prints as -100 % is total: a stray example still right (MRC just above -1) does not make it partial.
TOTAL_LOSS = -0.995


@dataclass(frozen=True)
class Finding:
    model: str
    finding: str
    holds: bool
    value: float | None  # the statistic the verdict rests on (see each check)
    evidence: str
    # How far the value is on the holding side of its threshold (negative: it does not hold); the number weighed
    # against the spread over seeds.
    margin: float | None = None


def _half_width(value, low, high) -> float:
    if None in (value, low, high):  # imported tables may have no intervals
        return 0.0
    return (high - low) / 2


def _ordered(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.sort(["step", "checkpoint"], nulls_last=True)


def flat_sets(results: pl.DataFrame, model: str) -> dict[str, tuple[float, float]]:
    """Eval sets whose base curve (base_curves: main format, most shots) ends where it began (analysis.is_flat:
    within the interval of the difference, or less than analysis.MIN_SHARE_OF_HEADROOM of the way to a perfect
    score): set -> (first, last) score. A set scored by two evaluations is flat when both of its curves are."""
    base = analysis.base_curves(results.filter(pl.col("model") == model))
    analysis.require_one_metric_per_curve(base)
    flat, moving = {}, set()
    for (_, dataset, _), rows in base.group_by(analysis.CURVE, maintain_order=True):
        if rows.height < 2:
            continue
        rows = _ordered(rows)
        first, last = rows.row(0, named=True), rows.row(-1, named=True)
        if analysis.is_flat(first, last):
            flat.setdefault(dataset, (first["value"], last["value"]))
        else:
            moving.add(dataset)
    return {d: ends for d, ends in flat.items() if d not in moving}


def hidden_gain(results: pl.DataFrame, model: str, shots: int | None = None) -> Finding:
    """(i). Value: the largest late-minus-early in-domain gain among flat sets, less its interval (> 0 holds)."""
    flat = flat_sets(results, model)
    tuned = analysis.tuned_vs_base(results.filter(pl.col("model") == model), shots)
    tuned = tuned.filter((pl.col("relation") == "in-domain") & pl.col("eval_dataset").is_in(list(flat)))
    best: tuple[float, str] | None = None
    for (dataset,), rows in tuned.group_by(["eval_dataset"], maintain_order=True):
        rows = _ordered(rows.group_by(["step", "checkpoint"], maintain_order=True).agg(
            pl.col("delta").mean(), pl.col("delta_ci_low").mean(), pl.col("delta_ci_high").mean()))
        if rows.height < 2:
            continue
        early, late = rows.row(0, named=True), rows.row(-1, named=True)
        margin = math.hypot(_half_width(early["delta"], early["delta_ci_low"], early["delta_ci_high"]),
                            _half_width(late["delta"], late["delta_ci_low"], late["delta_ci_high"]))
        clear = late["delta"] - early["delta"] - margin
        first, last = flat[dataset]
        text = (f"{dataset}: base {first:.2f} -> {last:.2f} (flat); fine-tuning gain {early['delta']:+.2f} at "
                f"{early['checkpoint']}, {late['delta']:+.2f} at {late['checkpoint']} (interval {margin:.2f})")
        if best is None or clear > best[0]:
            best = (clear, text)
    if best is None:
        return Finding(model, "i", False, None, f"no flat set with in-domain fine-tuning at two checkpoints "
                                                f"(flat sets: {', '.join(sorted(flat)) or 'none'})")
    return Finding(model, "i", best[0] > 0, best[0], best[1], margin=best[0])


def group_contrast(results: pl.DataFrame, model: str, shots: int | None = None) -> Finding:
    """(ii). Value: the share of checkpoints where the not-learned group gains more."""
    results = results.filter(pl.col("model") == model)
    groups = analysis.pretraining_groups(results)
    gains = analysis.group_gains(results, groups, shots)
    per_checkpoint = gains.pivot(on="group", index=["step", "checkpoint"], values="mean_delta")
    per_checkpoint = _ordered(per_checkpoint)
    learned, not_learned = analysis.PRETRAINING, analysis.NOT_PRETRAINING
    if per_checkpoint.is_empty() or not {learned, not_learned} <= set(per_checkpoint.columns):
        present = sorted(set(groups.values()))
        return Finding(model, "ii", False, None, f"Table 6 needs both groups with tuned models; groups from the "
                                                 f"base curves: {', '.join(present) or 'none'}")
    wins, parts = 0, []
    for row in per_checkpoint.iter_rows(named=True):
        a, b = row[not_learned], row[learned]
        won = a is not None and b is not None and a > b
        wins += won
        parts.append(f"{row['checkpoint']} {_fmt(a)} vs {_fmt(b)}")
    share = wins / per_checkpoint.height
    learned_sets = ", ".join(d for d, g in groups.items() if g == learned) or "none"
    return Finding(model, "ii", share >= SHARE_OF_CHECKPOINTS, share,
                   f"not learned vs learned ({learned_sets}) gain: " + "; ".join(parts),
                   margin=share - SHARE_OF_CHECKPOINTS)


def forgetting_direction(results: pl.DataFrame, model: str, eval_sets: str = "cross_task",
                         shots: int | None = None) -> Finding:
    """(iii). Value: the classification -> generation MRC (mean over checkpoints)."""
    mrc = analysis.mean_ratio_of_change(results.filter(pl.col("model") == model), eval_sets, shots)
    mean = {r["direction"]: r for r in mrc.filter(pl.col("aggregate") == analysis.MEAN_OVER_CHECKPOINTS)
            .iter_rows(named=True)}
    c2g, g2c = (mean.get(d, {}).get("mrc") for d in ("classification -> generation",
                                                     "generation -> classification"))
    if c2g is None or g2c is None:
        undefined = sum(r["n_undefined"] for r in mean.values())
        return Finding(model, "iii", False, c2g, f"MRC undefined (classification -> generation {_fmt(c2g)}, "
                                                 f"generation -> classification {_fmt(g2c)}; {undefined} pairs whose "
                                                 f"base scores 0)")
    loss = "total" if c2g <= TOTAL_LOSS else "partial"
    return Finding(model, "iii", c2g < 0 and c2g < g2c, c2g,
                   f"MRC classification -> generation {c2g:+.0%} ({loss} loss), generation -> classification "
                   f"{g2c:+.0%}", margin=min(-c2g, g2c - c2g))


EMPTY_SERIES = {"step": pl.Int64, "checkpoint": pl.String, "share": pl.Float64, "n_sets": pl.Int64,
                "sets": pl.String}


def kept_share(results: pl.DataFrame, model: str, shots: int | None = None) -> pl.DataFrame:
    """(iv)'s series: per checkpoint, the mean over fine-tuned sets and other formats of
    gain(eval in another format) / gain(eval in the training format).

    The same sets at every checkpoint: those whose gain in the training format is clearly positive (its interval
    above zero) at the first and at the last checkpoint. A share of a gain within noise of nothing is noise itself, and
    a set that only gains at one end (one learned in pre-training gains nothing late) would change what is averaged
    from one checkpoint to the next."""
    transfer = analysis.transfer_matrix(results.filter(pl.col("model") == model))
    transfer = transfer.filter(pl.col("relation") == "in-domain")
    if transfer.is_empty():
        return pl.DataFrame(schema=EMPTY_SERIES)
    train_format = analysis.main_train_format(transfer["train_format"].unique().to_list())
    transfer = transfer.filter(pl.col("train_format").eq_missing(train_format)
                               & pl.col("train_size").eq_missing(analysis.main_train_size(transfer["train_size"]))
                               & pl.col("shots").eq_missing(analysis.comparison_shots(results, shots=shots)))
    key = ["step", "checkpoint", "train_dataset", "train_variant", "train_seed", "eval_dataset"]
    same = _ordered(transfer.filter(pl.col("eval_format") == pl.col("train_format")).select(
        *key, pl.col("delta").alias("own"), pl.col("delta_ci_low").fill_null(pl.col("delta")).alias("own_low")))
    if same.is_empty():
        return pl.DataFrame(schema=EMPTY_SERIES)
    ends = [same["checkpoint"][0], same["checkpoint"][-1]]
    clear = same.filter(pl.col("checkpoint").is_in(ends) & (pl.col("own_low") > 0))
    kept_sets = clear.group_by("eval_dataset").agg(pl.col("checkpoint").n_unique().alias("ends")).filter(
        pl.col("ends") == len(set(ends)))["eval_dataset"].to_list()
    other = transfer.filter((pl.col("eval_format") != pl.col("train_format"))
                            & (pl.col("eval_format") != OTHER_FORMAT_EXCLUDED))
    # Each cell (variant and seed included) against its own gain; imported tables record no variant or seed (null).
    shares = other.join(same, on=key, nulls_equal=True).filter(pl.col("eval_dataset").is_in(kept_sets)
                                                               & (pl.col("own") > 0))
    shares = shares.with_columns((pl.col("delta") / pl.col("own")).alias("share"))
    return _ordered(shares.group_by(["step", "checkpoint"], maintain_order=True).agg(
        pl.col("share").mean(), pl.col("eval_dataset").n_unique().alias("n_sets"),
        pl.col("eval_dataset").unique().sort().str.join(",").alias("sets"))).select(list(EMPTY_SERIES))


def format_robustness(results: pl.DataFrame, model: str, shots: int | None = None) -> Finding:
    """(iv). Value: the kept share at the last checkpoint minus at the first (> 0 holds)."""
    series = kept_share(results, model, shots)
    if series.height < 2:
        return Finding(model, "iv", False, None, "needs in-domain gains in the training format and another (non-io) "
                                                 "format at two checkpoints or more")
    first, last = series["share"][0], series["share"][-1]
    text = ("kept share " + ", ".join(f"{r['checkpoint']} {r['share']:.2f}" for r in series.iter_rows(named=True))
            + f" (on {series['sets'][-1]})")
    return Finding(model, "iv", last > first, last - first, text, margin=last - first)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def check(results: pl.DataFrame, mrc_eval_sets: str = "cross_task", shots: int | None = None) -> Iterator[Finding]:
    """Every finding for every model of a headline() table (one metric per set)."""
    for model in sorted(results["model"].unique().to_list()):
        yield hidden_gain(results, model, shots)
        yield group_contrast(results, model, shots)
        yield forgetting_direction(results, model, mrc_eval_sets, shots)
        yield format_robustness(results, model, shots)


def findings_table(results: pl.DataFrame, mrc_eval_sets: str = "cross_task", shots: int | None = None) -> pl.DataFrame:
    """Every finding per model and fine-tuning variant, on the seed mean of each cell; where a cell has two seeds
    or more, also on each seed replicate (variants.replicates): the margins over replicates, their spread (sd), and
    whether the finding holds beyond seed noise (it holds on the seed mean by more than that spread)."""
    rows = []
    for variant, table in by_variant(results):
        on_mean = list(check(seed_means(table), mrc_eval_sets, shots))
        replicate_tables = replicates(table)
        margins: dict[tuple[str, str], list[float | None]] = {}
        if len(replicate_tables) > 1:
            for replicate in replicate_tables:
                for f in check(replicate, mrc_eval_sets, shots):
                    margins.setdefault((f.model, f.finding), []).append(f.margin)
        for f in on_mean:
            spread = [m for m in margins.get((f.model, f.finding), []) if m is not None]
            sd = statistics.stdev(spread) if len(spread) > 1 else None
            beyond = None if sd is None or f.margin is None else f.holds and f.margin > sd
            rows.append({"model": f.model, "train_variant": variant, "finding": f.finding, "claim": CLAIMS[f.finding],
                         "holds": f.holds, "value": f.value, "margin": f.margin, "n_seeds": len(replicate_tables),
                         "seed_margins": ", ".join(f"{m:+.3f}" for m in spread) or None, "seed_sd": sd,
                         "beyond_seed_noise": beyond, "evidence": f.evidence})
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def render(table: pl.DataFrame) -> str:
    """The findings as text: one line per finding, then its numbers (and its spread over seeds, if any)."""
    lines = []
    for row in table.iter_rows(named=True):
        verdict = "yes" if row["holds"] else "NO "
        variant = f" [{row['train_variant']}]" if row["train_variant"] is not None else ""
        lines.append(f"[{verdict}] {row['model']}{variant} ({row['finding']}) {row['claim']}\n      {row['evidence']}")
        if row["seed_sd"] is not None:
            noise = "beyond seed noise" if row["beyond_seed_noise"] else "NOT beyond seed noise"
            lines.append(f"      margin {row['margin']:+.3f} on the mean of {row['n_seeds']} seed replicates "
                         f"({row['seed_margins']}; sd {row['seed_sd']:.3f}): {noise}")
    return "\n".join(lines)


def print_findings(tables: list[str], benchmark_metric: str = "acc", mrc_eval_sets: str = "cross_task",
                   shots: int | None = None, strict: bool = False) -> int:
    """`amuro findings`: the four findings of long-format tables, printed; with `strict`, exit status 1 unless
    every one holds."""
    import sys

    from amuro.results import read_tables

    table = findings_table(analysis.headline(read_tables(tables), benchmark_metric), mrc_eval_sets, shots)
    print(render(table))
    if strict and not table["holds"].all():
        missing = table.filter(~pl.col("holds"))
        print(f"{missing.height} finding(s) not shown: " + ", ".join(missing["finding"]), file=sys.stderr)
        return 1
    return 0
