"""The long-format results table: one row per measured number, read by every matrix and figure.

Per-example prediction files are summarised per evaluated model (mean score with a seeded bootstrap interval),
and the summaries are concatenated into `results/tables/results.parquet`. Columns, types and row order are fixed,
so the same predictions always give the same bytes; tables imported from other studies use the same schema.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from amuro import metrics
from amuro.checkpoints import checkpoint_position
from amuro.io import write_parquet

log = logging.getLogger(__name__)

SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String,
    "checkpoint": pl.String,
    "step": pl.Int64,
    "tokens": pl.Int64,
    "train_dataset": pl.String,
    "train_task": pl.String,
    "train_format": pl.String,
    "train_size": pl.String,
    "train_variant": pl.String,
    "train_seed": pl.Int64,
    "eval_dataset": pl.String,
    "eval_task": pl.String,
    "eval_format": pl.String,
    "shots": pl.Int64,
    "relation": pl.String,
    "metric": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n_examples": pl.Int64,
}
# Columns a table written before the study had variants and seeds lacks: read as null (not recorded).
LATER_COLUMNS = ("train_variant", "train_seed")
# What identifies a row; no two rows of a table may share it.
KEY = [c for c in SCHEMA if c not in ("step", "tokens", "train_task", "eval_task", "relation",
                                       "value", "ci_low", "ci_high", "n_examples")]
# `unknown`: a fine-tuned model on another set whose task (or whose train set's task) is not known, e.g. a set of an
# imported table outside the paper's list; it is neither cross-domain nor cross-task.
RELATIONS = ("base", "in-domain", "cross-domain", "cross-task", "instruction-tuned", "unknown")
# The train task of instruction tuning (a chat mix, not one task): its evaluations are "instruction-tuned".
INSTRUCTION_TASK = "instruction"
# Checkpoints in pre-training order (a name without a step, like `main`, is the final model and sorts last).
SORT = ["model", "step", "checkpoint", "train_dataset", "train_format", "train_size", "train_variant", "train_seed",
        "eval_dataset", "eval_format", "shots", "metric"]


# Prediction columns that say how a score was made (amuro.evaluate, amuro.benchmarks). Numbers of one metric are
# compared across models (tuned vs base), so the whole table must have made them the same way.
SCORING_COLUMNS = ("scoring", "rouge_stemmer", "max_new_tokens", "generation_stop", "label_match", "overlong_prompts",
                   "tokenprob_candidates", "lm_eval_version")


class ResultsError(ValueError):
    pass


def relation(train_dataset: str | None, train_task: str | None, eval_dataset: str, eval_task: str | None) -> str:
    """How an evaluation relates to what the model was fine-tuned on (tasks None: not known)."""
    if train_dataset is None:
        return "base"
    if train_task == INSTRUCTION_TASK:
        return "instruction-tuned"
    if eval_dataset == train_dataset:
        return "in-domain"
    if eval_task is None or train_task is None:
        return "unknown"
    if eval_task == train_task:
        return "cross-domain"
    return "cross-task"


def _bootstrap_seed(seed: int, row: dict) -> int:
    # One seed per measured number, from what it is rather than from file order, so any subset reproduces it.
    key = "/".join(str(row[c]) for c in KEY if c != "metric")
    return zlib.crc32(f"{seed}/{key}".encode())


def prediction_summary(
    files: Sequence[str | Path],
    train_task: str | None,
    resamples: int = 3000,
    confidence: float = 0.95,
    seed: int = 0,
    point_estimate: str = "mean",
    checkpoint_dir: str | Path | None = None,
) -> pl.DataFrame:
    """Long-format rows from prediction files, one per file and metric.

    A file holds one eval set, format and shot count of one model; multiple-choice benchmarks hold one row per
    example and metric (acc and acc_norm), other sets one metric. `value` is the point estimate
    (metrics.POINT_ESTIMATES: the mean, or the paper's midpoint of the bootstrap interval). Step and tokens come from
    the resolved.json of `checkpoint_dir` (the pre-trained checkpoint the model was made from), else from the
    checkpoint's id.
    """
    prediction_settings(files)  # refuses files whose scores of one metric were made differently
    rows = []
    for path in files:
        scores = pl.read_parquet(path)
        if scores.height == 0:
            raise ResultsError(f"{path}: no predictions")
        first = scores.row(0, named=True)
        for column in ("eval_dataset", "eval_format", "shots"):
            if scores[column].n_unique() != 1:
                raise ResultsError(f"{path}: column '{column}' must hold one value, found "
                                   f"{sorted(map(str, scores[column].unique().to_list()))}")
        revision = checkpoint_position(first["checkpoint"], checkpoint_dir)
        for metric in sorted(scores["metric"].unique().to_list()):
            row = {
                "model": first["model"],
                "checkpoint": first["checkpoint"],
                "step": revision["step"],
                "tokens": revision["tokens"],
                "train_dataset": first["train_dataset"],
                "train_task": train_task if first["train_dataset"] is not None else None,
                "train_format": first["train_format"],
                "train_size": first["train_size"],
                "train_variant": first.get("train_variant"),
                "train_seed": None if first.get("train_seed") is None else int(first["train_seed"]),
                "eval_dataset": first["eval_dataset"],
                "eval_task": first["eval_task"],
                "eval_format": first["eval_format"],
                "shots": first["shots"],
                "relation": relation(first["train_dataset"], train_task, first["eval_dataset"], first["eval_task"]),
                "metric": metric,
            }
            values = scores.filter(pl.col("metric") == metric)["score"].to_list()
            summary = metrics.summarize(values, resamples=resamples, confidence=confidence,
                                        seed=_bootstrap_seed(seed, row), point_estimate=point_estimate)
            rows.append({**row, **summary})
            log.info("%s: %s %.3f [%.3f, %.3f] n=%d", path, metric, summary["value"], summary["ci_low"],
                     summary["ci_high"], summary["n_examples"])
    return finalize(pl.DataFrame(rows, schema=SCHEMA), "predictions")


def prediction_settings(files: Sequence[str | Path]) -> dict[str, dict]:
    """Per metric, how the files' scores were made (the SCORING_COLUMNS each file records). Rows of one metric made
    with different settings, in one file or two, are refused with both named."""
    made_by: dict[str, tuple[dict, str | Path]] = {}  # metric -> its settings, and the first file with them
    for path in files:
        names = pq.read_schema(path).names
        scores = pl.read_parquet(path, columns=["metric", *(c for c in SCORING_COLUMNS if c in names)])
        for metric in sorted(scores["metric"].unique().to_list()):
            rows = scores.filter(pl.col("metric") == metric)
            settings = {}
            for column in rows.columns[1:]:
                values = rows[column].unique(maintain_order=True).to_list()
                if len(values) > 1:
                    raise ResultsError(f"{path}: {metric} rows made with different settings: column '{column}' "
                                       f"holds {values}")
                settings[column] = values[0]
            first, first_path = made_by.setdefault(metric, (settings, path))
            if settings != first:
                raise ResultsError(f"{first_path} and {path}: {metric} scores made with different settings "
                                   f"({_differences(first, settings)}); rerun the evaluation that is out of date")
    return {metric: settings for metric, (settings, _) in sorted(made_by.items())}


def _differences(a: dict, b: dict) -> str:
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def finalize(table: pl.DataFrame, source: str) -> pl.DataFrame:
    """The table in the fixed column order, types and sort; errors name the source and the offending row."""
    table = table.with_columns(pl.lit(None).alias(c) for c in LATER_COLUMNS if c not in table.columns)
    missing = [c for c in SCHEMA if c not in table.columns]
    if missing:
        raise ResultsError(f"{source}: missing column(s) {', '.join(missing)}")
    try:
        table = table.select([pl.col(c).cast(t, strict=True) for c, t in SCHEMA.items()])
    except pl.exceptions.PolarsError as exc:
        raise ResultsError(f"{source}: a column has the wrong type: {exc}") from exc
    bad = table.with_row_index("row").filter(~pl.col("relation").is_in(RELATIONS) | pl.col("value").is_null())
    if bad.height:
        row = bad.row(0, named=True)
        raise ResultsError(f"{source}: row {row['row']}: relation must be one of {', '.join(RELATIONS)} and value "
                           f"set; got relation={row['relation']!r}, value={row['value']!r}")
    duplicated = table.filter(table.select(KEY).is_duplicated())
    if duplicated.height:
        row = duplicated.select(KEY).row(0, named=True)
        raise ResultsError(f"{source}: {duplicated.height} rows share a key with another row, e.g. "
                           + ", ".join(f"{k}={v}" for k, v in row.items() if v is not None))
    return table.sort(SORT, nulls_last=True, maintain_order=True)


def combine(tables: Iterable[pl.DataFrame], source: str = "results") -> pl.DataFrame:
    tables = list(tables)
    if not tables:
        return pl.DataFrame(schema=SCHEMA)
    return finalize(pl.concat(tables, how="vertical"), source)


def read_table(path: str | Path) -> pl.DataFrame:
    """A long-format table from disk, checked against the schema."""
    try:
        table = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise ResultsError(f"{path}: cannot read a results table: {exc}") from exc
    return finalize(table, str(path))


def read_tables(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Several long-format tables (per-model summaries, or imported results) as one."""
    return combine((read_table(p) for p in paths), source=", ".join(map(str, paths[:3])) + (" ..." if len(paths) > 3 else ""))


SETTINGS_KEY = b"amuro.settings"


def write_table(table: pl.DataFrame, path: str | Path, settings: dict | None = None) -> None:
    """Write a table; `settings` (how its numbers were made, e.g. the point estimate) go into the file's metadata."""
    arrow = table.to_arrow()
    if settings:
        arrow = arrow.replace_schema_metadata({SETTINGS_KEY: json.dumps(settings, sort_keys=True).encode()})
    write_parquet(arrow, path)


def table_settings(path: str | Path) -> dict:
    """The settings recorded in a table file by write_table ({} if none)."""
    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[SETTINGS_KEY]) if SETTINGS_KEY in metadata else {}


def merged_settings(paths: Sequence[str | Path]) -> dict:
    """The settings of several tables: a value all of them share, else the sorted list of their values."""
    values: dict[str, list] = {}
    for path in paths:
        for key, value in table_settings(path).items():
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return {k: v[0] if len(v) == 1 else sorted(v, key=json.dumps) for k, v in sorted(values.items())}


def listed_files(paths: Sequence[str | Path]) -> list[str]:
    """Prediction files, with each index.json among `paths` (what an evaluation job wrote, amuro.hashing's file
    index) replaced by the files it lists, in order."""
    from amuro.hashing import read_file_index

    files = []
    for path in paths:
        files += [e["path"] for e in read_file_index(path)] if Path(path).name == "index.json" else [str(path)]
    return files


def summarize_predictions(predictions: Sequence[str | Path], settings: dict, out: str | Path,
                          checkpoint_dir: str | Path | None = None) -> None:
    """`amuro summarize-predictions`: one evaluated model's prediction files (or the indexes its evaluation jobs
    wrote) as long-format rows, with how they were made.

    settings: train_task, resamples, confidence, seed and point_estimate (default mean), as summary_settings() in
    the rules passes them; checkpoint_dir: the checkpoint the model was made from (its step and tokens)."""
    predictions = listed_files(predictions)
    point_estimate = settings.get("point_estimate", "mean")
    table = prediction_summary(predictions, settings["train_task"], resamples=settings["resamples"],
                                  confidence=settings["confidence"], seed=settings["seed"],
                                  point_estimate=point_estimate, checkpoint_dir=checkpoint_dir)
    # The study seed decided the demonstrations, the fine-tune and the bootstrap: a results table joins one seed only.
    write_table(table, out, settings={"point_estimate": point_estimate, "interval": "percentile bootstrap",
                                      "resamples": settings["resamples"], "confidence": settings["confidence"],
                                      "seed": settings["seed"], "scoring": prediction_settings(predictions)})


def agreed_settings(paths: Sequence[str | Path]) -> dict:
    """The settings of tables that one results table joins: each setting (and each metric's scoring settings) must
    be the same in every table that records it; two that differ are refused, both named."""
    agreed: dict[tuple, tuple] = {}  # (key, metric or None) -> (value, first table recording it)
    for path in paths:
        for key, value in table_settings(path).items():
            for metric, v in (value.items() if key == "scoring" else [(None, value)]):
                first, first_path = agreed.setdefault((key, metric), (v, path))
                if v != first:
                    what = _differences(first, v) if metric else f"{key} {first!r} vs {v!r}"
                    raise ResultsError(f"{first_path} and {path} were made with different settings"
                                       f"{f' for {metric}' if metric else ''} ({what}); rerun what is out of date")
    out: dict = {}
    for (key, metric), (value, _) in sorted(agreed.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        if metric is None:
            out[key] = value
        else:
            out.setdefault(key, {})[metric] = value
    return out


def results_table(tables: Sequence[str | Path], out: str | Path) -> None:
    """`amuro results-table`: the study's summaries as one table, refused unless all were made with the same
    settings (agreed_settings), which the table then records."""
    settings = agreed_settings(tables)
    write_table(read_tables(tables), out, settings=settings)
