"""The long-format results table: relation labels, values and intervals, schema, and byte-determinism."""

import json

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amuro.checkpoints import CheckpointError
from amuro.io import write_json, write_parquet
from amuro.results import KEY, SCHEMA, ResultsError, finalize, read_tables, relation, prediction_summary, write_table


def write_predictions(path, scores, train=None, eval_dataset="people_nli", eval_task="nli", fmt="default", shots=0,
                      checkpoint="step150-tokens307K", metric="accuracy"):
    """A prediction file as the evaluate stage writes it (only the columns the summary reads)."""
    train_dataset, train_format, train_size = train or (None, None, None)
    rows = [{"model": "mini", "checkpoint": checkpoint, "train_dataset": train_dataset, "train_format": train_format,
             "train_size": train_size, "id": str(i), "score": s, "metric": metric, "eval_dataset": eval_dataset,
             "eval_task": eval_task, "eval_format": fmt, "shots": shots} for i, s in enumerate(scores)]
    write_parquet(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize(
    ("train_dataset", "train_task", "eval_dataset", "eval_task", "expected"),
    [
        (None, None, "people_nli", "nli", "base"),
        ("people_nli", "nli", "people_nli", "nli", "in-domain"),
        ("people_nli", "nli", "product_nli", "nli", "cross-domain"),
        ("people_nli", "nli", "diary_summary", "summarization", "cross-task"),
        ("product_sentiment", "sentiment", "people_nli", "nli", "cross-task"),
        ("people_nli", "nli", "llmbar_Natural", None, "unknown"),  # an imported set whose task is not known
        ("tulu_v2", "instruction", "llmbar_Natural", None, "instruction-tuned"),
    ],
)
def test_relation_says_how_the_eval_set_relates_to_the_fine_tuning_set(train_dataset, train_task, eval_dataset,
                                                                        eval_task, expected):
    assert relation(train_dataset, train_task, eval_dataset, eval_task) == expected


def test_summary_rows_carry_the_cell_the_mean_and_its_interval(tmp_path):
    scores = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    cell = ("people_nli", "default", "all")
    files = [
        write_predictions(tmp_path / "a.parquet", scores, train=cell),
        write_predictions(tmp_path / "b.parquet", [0.5, 0.25], train=cell, eval_dataset="diary_summary",
                          eval_task="summarization", metric="rougeL"),
        write_predictions(tmp_path / "c.parquet", scores, train=cell, eval_dataset="product_nli"),
    ]
    table = prediction_summary(files, "nli", resamples=500, seed=3)
    assert list(table.schema) == list(SCHEMA)
    rows = {r["eval_dataset"]: r for r in table.iter_rows(named=True)}
    nli = rows["people_nli"]
    assert (nli["relation"], nli["train_task"], nli["step"], nli["tokens"]) == ("in-domain", "nli", 150, 307_000)
    assert nli["value"] == pytest.approx(0.7) and nli["n_examples"] == 10
    assert nli["ci_low"] < 0.7 < nli["ci_high"]
    assert rows["product_nli"]["relation"] == "cross-domain"
    assert rows["diary_summary"]["relation"] == "cross-task" and rows["diary_summary"]["metric"] == "rougeL"
    assert rows["diary_summary"]["value"] == pytest.approx(0.375)


def test_a_summary_takes_step_and_tokens_from_the_checkpoints_record(tmp_path):
    """A {step: N} checkpoint's id (stepN) has no token count; the branch it resolved to had, and resolved.json
    keeps both."""
    from amuro.cli import main

    checkpoint = tmp_path / "checkpoints" / "mini" / "step150"
    write_json({"checkpoint": "step150", "revision": "step150-tokens307K", "step": 150, "tokens": 307_000},
               checkpoint / "resolved.json")
    path = write_predictions(tmp_path / "a.parquet", [1, 0, 1], checkpoint="step150")
    settings = json.dumps({"train_task": None, "resamples": 100, "confidence": 0.95, "seed": 1})
    assert main(["summarize-predictions", "--settings", settings, "--checkpoint", str(checkpoint),
                 "--out", str(tmp_path / "summary.parquet"), str(path)]) == 0
    row = read_tables([tmp_path / "summary.parquet"]).row(0, named=True)
    assert (row["step"], row["tokens"]) == (150, 307_000)


def test_a_summary_refuses_the_record_of_another_checkpoint(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "mini" / "step300"
    write_json({"checkpoint": "step300", "step": 300, "tokens": None}, checkpoint / "resolved.json")
    path = write_predictions(tmp_path / "a.parquet", [1, 0, 1], checkpoint="step150")
    with pytest.raises(CheckpointError, match=r"step300/resolved.json records checkpoint step300, not step150"):
        prediction_summary([path], None, checkpoint_dir=checkpoint)


def test_the_table_is_byte_identical_whatever_order_the_files_come_in(tmp_path):
    files = [write_predictions(tmp_path / f"{d}.parquet", [i % 2 for i in range(20 + k)], eval_dataset=d)
             for k, d in enumerate(["people_nli", "product_nli", "restaurant_nli"])]
    write_table(prediction_summary(files, None, seed=1), tmp_path / "one.parquet")
    write_table(prediction_summary(files[::-1], None, seed=1), tmp_path / "two.parquet")
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    # A summary on its own gives the same interval as inside a larger batch: seeds come from the cell, not the order.
    alone = prediction_summary(files[1:2], None, seed=1)
    together = read_tables([tmp_path / "one.parquet"]).filter(pl.col("eval_dataset") == "product_nli")
    assert alone.select("ci_low", "ci_high").rows() == together.select("ci_low", "ci_high").rows()


def test_a_prediction_file_mixing_eval_sets_is_refused(tmp_path):
    path = tmp_path / "mixed.parquet"
    rows = [{"model": "m", "checkpoint": "step1", "train_dataset": None, "train_format": None, "train_size": None,
             "score": 1.0, "metric": "accuracy", "eval_dataset": d, "eval_task": "nli", "eval_format": "default",
             "shots": 0} for d in ("a", "b")]
    write_parquet(pa.Table.from_pylist(rows), path)
    with pytest.raises(ResultsError, match=r"mixed.parquet: column 'eval_dataset' must hold one value"):
        prediction_summary([path], None)


def _row(**overrides):
    row = {c: None for c in SCHEMA} | {"model": "m", "checkpoint": "step1", "step": 1, "eval_dataset": "a",
                                       "eval_task": "nli", "eval_format": "default", "shots": 0, "relation": "base",
                                       "metric": "accuracy", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    return row | overrides


def test_two_rows_for_one_measurement_are_refused_with_the_key():
    table = pl.DataFrame([_row(), _row(value=0.7)], schema=SCHEMA)
    with pytest.raises(ResultsError, match=r"imported.parquet: 2 rows share a key .*eval_dataset=a"):
        finalize(table, "imported.parquet")


def test_an_unknown_relation_is_refused_with_its_row():
    table = pl.DataFrame([_row(), _row(eval_dataset="b", relation="sideways")], schema=SCHEMA)
    with pytest.raises(ResultsError, match=r"t.parquet: row 1: relation must be one of .*'sideways'"):
        finalize(table, "t.parquet")


def test_a_missing_column_is_named():
    with pytest.raises(ResultsError, match=r"t.parquet: missing column\(s\) relation"):
        finalize(pl.DataFrame([_row()], schema=SCHEMA).drop("relation"), "t.parquet")


def test_checkpoints_sort_in_pre_training_order_with_the_final_model_last():
    rows = [_row(checkpoint=c, step=s) for c, s in [("main", None), ("step1000", 1000), ("step20", 20)]]
    table = finalize(pl.DataFrame(rows, schema=SCHEMA), "t")
    assert table["checkpoint"].to_list() == ["step20", "step1000", "main"]
    assert set(KEY) <= set(SCHEMA)


def test_the_faithful_point_estimate_is_the_midpoint_of_the_bootstrap_interval(tmp_path):
    from amuro.metrics import bootstrap_ci

    scores = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1]
    path = write_predictions(tmp_path / "a.parquet", scores)
    mean = prediction_summary([path], None, resamples=500, seed=3).row(0, named=True)
    mid = prediction_summary([path], None, resamples=500, seed=3, point_estimate="interval_midpoint").row(0, named=True)
    # Hand computation: the same seeded interval, its midpoint instead of the mean 9/12.
    assert mean["value"] == pytest.approx(0.75)
    assert (mid["ci_low"], mid["ci_high"]) == (mean["ci_low"], mean["ci_high"])
    assert mid["value"] == pytest.approx((mean["ci_low"] + mean["ci_high"]) / 2)
    low, high = bootstrap_ci(scores, resamples=500, seed=mean_seed(mean))
    assert (low, high) == pytest.approx((mean["ci_low"], mean["ci_high"]))


def mean_seed(row):
    from amuro.results import _bootstrap_seed

    return _bootstrap_seed(3, row)


def test_summaries_record_how_their_values_were_made_and_the_results_table_merges_it(tmp_path):
    from amuro.cli import main
    from amuro.results import table_settings

    path = write_predictions(tmp_path / "a.parquet", [1, 0, 1])
    for name, estimate in (("mean.parquet", "mean"), ("mid.parquet", "interval_midpoint")):
        settings = ('{"train_task": null, "resamples": 200, "confidence": 0.95, "seed": 1, '
                    f'"point_estimate": "{estimate}"}}')
        assert main(["summarize-predictions", "--settings", settings, "--out", str(tmp_path / name), str(path)]) == 0
    assert table_settings(tmp_path / "mid.parquet")["point_estimate"] == "interval_midpoint"
    assert main(["results-table", "--out", str(tmp_path / "all.parquet"), str(tmp_path / "mean.parquet")]) == 0
    assert table_settings(tmp_path / "all.parquet") == table_settings(tmp_path / "mean.parquet")
    assert table_settings(tmp_path / "all.parquet")["point_estimate"] == "mean"


def test_predictions_scored_with_other_settings_are_refused_at_aggregation_naming_both_files(tmp_path):
    """A base model's NLI scored by tokenprob and its tuned copy's by loglik (an evaluation left over from before a
    config change) would make every tuned - base change meaningless."""
    from amuro.cli import main

    def scored(path, scoring, **kwargs):
        write_predictions(path, [1, 0, 1], **kwargs)
        table = pq.read_table(path)
        write_parquet(table.append_column("scoring", pa.array([scoring] * table.num_rows)), path)
        return path

    base = scored(tmp_path / "base.parquet", "tokenprob")
    tuned = scored(tmp_path / "tuned.parquet", "loglik", train=("people_nli", "default", "all"))
    with pytest.raises(ResultsError, match=r"base.parquet and .*tuned.parquet: accuracy scores made with different "
                                           r"settings \(scoring 'tokenprob' vs 'loglik'\)"):
        prediction_summary([base, tuned], None)

    for name, path, task in (("base", base, None), ("tuned", tuned, "nli")):  # each model's summary on its own
        settings = json.dumps({"train_task": task, "resamples": 100, "confidence": 0.95, "seed": 1})
        assert main(["summarize-predictions", "--settings", settings, "--out", str(tmp_path / f"{name}.summary.parquet"),
                     str(path)]) == 0
    with pytest.raises(ResultsError, match=r"base.summary.parquet and .*tuned.summary.parquet were made with different "
                                           r"settings for accuracy \(scoring 'tokenprob' vs 'loglik'\)"):
        main(["results-table", "--out", str(tmp_path / "results.parquet"), str(tmp_path / "base.summary.parquet"),
              str(tmp_path / "tuned.summary.parquet")])
    assert not (tmp_path / "results.parquet").exists()
    assert base.exists() and tuned.exists()  # nothing computed is deleted


def test_a_prediction_file_whose_rows_were_scored_differently_is_refused(tmp_path):
    path = write_predictions(tmp_path / "mixed.parquet", [1, 0])
    table = pq.read_table(path)
    write_parquet(table.append_column("max_new_tokens", pa.array([5, 8])), path)
    with pytest.raises(ResultsError, match=r"mixed.parquet: accuracy rows made with different settings: column "
                                           r"'max_new_tokens' holds \[5, 8\]"):
        prediction_summary([path], None)


def test_a_summary_reads_the_files_its_evaluation_listed_and_refuses_one_changed_since(tmp_path):
    from amuro.cli import main
    from amuro.hashing import write_file_index

    files = [write_predictions(tmp_path / f"{name}.parquet", [1, 0, 1, 1], eval_dataset=name) for name in ("x", "y")]
    write_file_index(tmp_path / "index.json", [{"path": str(f)} for f in files])
    settings = json.dumps({"train_task": None, "resamples": 100, "confidence": 0.95, "seed": 1})
    assert main(["summarize-predictions", "--settings", settings, "--out", str(tmp_path / "s.parquet"),
                 str(tmp_path / "index.json")]) == 0
    assert sorted(pl.read_parquet(tmp_path / "s.parquet")["eval_dataset"]) == ["x", "y"]
    write_predictions(files[1], [0, 0, 0, 0], eval_dataset="y")
    with pytest.raises(ValueError, match=r"y.parquet changed after .*index.json recorded it"):
        main(["summarize-predictions", "--settings", settings, "--out", str(tmp_path / "s.parquet"),
              str(tmp_path / "index.json")])
