"""Transfer and forgetting matrices and the pre-training groups, against hand computations on a small table."""

import math

import polars as pl
import pytest

from amuro.analysis import (
    MIN_SHARE_OF_HEADROOM,
    NOT_PRETRAINING,
    PRETRAINING,
    comparison_shots,
    dataset_groups,
    forgetting_matrix,
    group_gains,
    headline,
    mean_ratio_of_change,
    main_train_size,
    pretraining_groups,
    table_groups,
    transfer_matrix,
)
from amuro.findings import flat_sets
from amuro.results import SCHEMA, finalize

TASK = {"nli_a": "nli", "nli_b": "nli", "summ": "summarization"}


def row(checkpoint, step, eval_dataset, value, low, high, train=None, fmt="default", shots=0):
    train_task = TASK[train] if train else None
    relation = ("base" if train is None else "in-domain" if train == eval_dataset
                else "cross-domain" if train_task == TASK[eval_dataset] else "cross-task")
    return {"model": "m", "checkpoint": checkpoint, "step": step, "tokens": None, "train_dataset": train,
            "train_task": train_task, "train_format": "default" if train else None, "train_size": "all" if train else None,
            "eval_dataset": eval_dataset, "eval_task": TASK[eval_dataset], "eval_format": fmt, "shots": shots,
            "relation": relation, "metric": "rougeL" if eval_dataset == "summ" else "accuracy", "value": value,
            "ci_low": low, "ci_high": high, "n_examples": 100}


@pytest.fixture
def table():
    rows = [
        # base checkpoint at step 10, at 0 and 4 shots
        row("s10", 10, "nli_a", 0.30, 0.20, 0.40), row("s10", 10, "nli_b", 0.50, 0.45, 0.55),
        row("s10", 10, "summ", 0.20, 0.18, 0.22), row("s10", 10, "nli_a", 0.35, 0.25, 0.45, shots=4),
        # the model fine-tuned on nli_a from it, evaluated at 0 shots
        row("s10", 10, "nli_a", 0.80, 0.72, 0.88, train="nli_a"),
        row("s10", 10, "nli_b", 0.40, 0.30, 0.50, train="nli_a"),
        row("s10", 10, "summ", 0.05, 0.04, 0.06, train="nli_a"),
        # a later base checkpoint
        row("s20", 20, "nli_a", 0.32, 0.22, 0.42), row("s20", 20, "nli_b", 0.70, 0.65, 0.75),
        row("s20", 20, "summ", 0.21, 0.19, 0.23),
    ]
    return finalize(pl.DataFrame(rows, schema=SCHEMA), "hand-made")


def test_transfer_pairs_each_fine_tuned_score_with_its_own_base_at_the_same_shots(table):
    transfer = transfer_matrix(table)
    assert transfer.height == 3  # the 4-shot base row and the other checkpoint have no fine-tuned partner
    nli_a = transfer.filter(pl.col("eval_dataset") == "nli_a").row(0, named=True)
    assert (nli_a["base"], nli_a["finetuned"], nli_a["relation"]) == (0.30, 0.80, "in-domain")
    assert nli_a["delta"] == pytest.approx(0.50)
    # MOVER: 0.5 - sqrt((0.80-0.72)^2 + (0.40-0.30)^2) and 0.5 + sqrt((0.88-0.80)^2 + (0.30-0.20)^2)
    assert nli_a["delta_ci_low"] == pytest.approx(0.5 - math.hypot(0.08, 0.10))
    assert nli_a["delta_ci_high"] == pytest.approx(0.5 + math.hypot(0.08, 0.10))
    assert nli_a["relative_change"] == pytest.approx(0.5 / 0.3)
    summ = transfer.filter(pl.col("eval_dataset") == "summ").row(0, named=True)
    assert summ["relation"] == "cross-task" and summ["delta"] == pytest.approx(-0.15)
    assert summ["delta_ci_high"] == pytest.approx(-0.15 + math.hypot(0.01, 0.02))


def test_forgetting_counts_the_sets_reliably_below_the_base(table):
    forgetting = forgetting_matrix(transfer_matrix(table))
    rows = {r["relation"]: r for r in forgetting.iter_rows(named=True)}
    assert set(rows) == {"cross-domain", "cross-task"}  # in-domain is not forgetting
    # nli_b: 0.40 vs 0.50, interval 0.4-0.5 ± hypot(0.1, 0.05): crosses zero, so not counted as forgotten.
    assert rows["cross-domain"]["mean_delta"] == pytest.approx(-0.10)
    assert rows["cross-domain"]["n_below_base"] == 0 and rows["cross-domain"]["datasets_below_base"] == ""
    # summ: 0.05 vs 0.20, interval entirely below zero.
    assert rows["cross-task"]["n_below_base"] == 1 and rows["cross-task"]["datasets_below_base"] == "summ"
    assert rows["cross-task"]["worst_dataset"] == "summ" and rows["cross-task"]["eval_task"] == "summarization"


def test_a_set_is_learned_in_pre_training_when_the_last_checkpoint_is_reliably_above_the_first(table):
    groups = pretraining_groups(table, shots=0)
    # nli_b rises 0.50 -> 0.70 (interval of the rise above zero); nli_a and summ stay within noise.
    assert groups == {"nli_a": "not learned in pre-training", "nli_b": "learned in pre-training",
                      "summ": "not learned in pre-training"}


def test_groups_refuse_a_table_with_two_metrics_for_one_set_instead_of_comparing_them(table):
    # A benchmark carries acc and acc_norm: comparing the first checkpoint's acc with the last one's acc_norm would
    # call a flat set learned. headline() keeps one of them.
    norm = table.filter((pl.col("relation") == "base") & (pl.col("eval_dataset") == "nli_a")).with_columns(
        pl.lit("acc_norm").alias("metric"), pl.col("value") + 0.3)
    mixed = pl.concat([table, norm])
    with pytest.raises(ValueError, match=r"nli_a \(acc_norm, accuracy\).*headline"):
        pretraining_groups(mixed, shots=0)
    assert pretraining_groups(mixed.filter(pl.col("metric") != "acc_norm"), shots=0) == pretraining_groups(table, shots=0)


def test_a_rise_short_of_a_quarter_of_the_headroom_is_not_learning_even_with_a_narrow_interval():
    # A checkpoint that gives one output for every prompt has an interval of almost nothing: summ's ROUGE-L creeping
    # 0.00 -> 0.15 clears it, but covers only 15 % of the way to a perfect score; nli_b's 0.50 -> 0.70 covers 40 %.
    rows = [row("s10", 10, "summ", 0.0, 0.0, 0.001), row("s20", 20, "summ", 0.15, 0.149, 0.151),
            row("s10", 10, "nli_b", 0.50, 0.45, 0.55), row("s20", 20, "nli_b", 0.70, 0.65, 0.75)]
    table = finalize(pl.DataFrame(rows, schema=SCHEMA), "hand-made")
    assert pretraining_groups(table) == {"nli_b": "learned in pre-training", "summ": "not learned in pre-training"}
    assert MIN_SHARE_OF_HEADROOM == 0.25
    # The same creep is flat for finding (i); the rise is not.
    assert set(flat_sets(table, "m")) == {"summ"}


def test_the_main_train_size_is_the_largest_with_the_whole_split_largest_of_all():
    assert main_train_size(["100", "1000", "all"]) == "all"
    assert main_train_size(["100", "20", "1000"]) == "1000"


# --- MRC and Table 6 ------------------------------------------------------------------------------------------------

def second_arm_table():
    """One checkpoint; summ-tuned and nli_a-tuned models; an instruction-tuned model on two benchmarks."""
    def r(eval_dataset, value, train=None, shots=0, metric=None, task=None):
        out = row("s10", 10, eval_dataset if eval_dataset in TASK else "summ", value, value - 0.05, value + 0.05,
                  train=train if train in TASK else None, shots=shots)
        if task:  # a benchmark row
            out.update(eval_dataset=eval_dataset, eval_task=task, metric=metric)
        if train == "mix":
            out.update(train_dataset="mix", train_task="instruction", train_format="chat", train_size="all",
                       relation="instruction-tuned")
        return out

    rows = [r("nli_a", 0.40), r("nli_b", 0.50), r("summ", 0.20),
            r("nli_a", 0.80, "nli_a"), r("nli_b", 0.60, "nli_a"), r("summ", 0.05, "nli_a"),
            r("nli_a", 0.44, "summ"), r("nli_b", 0.45, "summ"), r("summ", 0.30, "summ")]
    for train in (None, "mix"):
        rows += [r("easy_mc", 0.60 if train is None else 0.62, train, shots=4, metric="acc", task="multiple_choice"),
                 r("easy_mc", 0.30, train, shots=4, metric="acc_norm", task="multiple_choice"),
                 r("hard_mc", 0.50 if train is None else 0.70, train, shots=4, metric="acc", task="multiple_choice")]
    return finalize(pl.DataFrame(rows, schema=SCHEMA), "hand-made")


def test_mrc_is_the_mean_relative_change_on_the_other_task_kind():
    mrc = {r["direction"]: r for r in mean_ratio_of_change(headline(second_arm_table())).iter_rows(named=True)
           if r["aggregate"] == "checkpoint"}
    # classification -> generation: nli_a-tuned on summ: (0.05 - 0.20) / 0.20
    assert mrc["classification -> generation"]["mrc"] == pytest.approx(-0.75)
    # generation -> classification: summ-tuned on nli_a and nli_b: mean of 0.04 / 0.40 and -0.05 / 0.50
    assert mrc["generation -> classification"]["mrc"] == pytest.approx((0.10 - 0.10) / 2)
    assert mrc["generation -> classification"]["n_pairs"] == 2
    # D_E = the other kind's fine-tuning sets only: nli_b is nobody's train set
    only_train = {r["direction"]: r for r in
                  mean_ratio_of_change(headline(second_arm_table()), "train_sets").iter_rows(named=True)}
    assert only_train["generation -> classification"]["mrc"] == pytest.approx(0.10)


def test_table6_averages_each_groups_gain_over_its_sets():
    table = headline(second_arm_table())
    groups = {"nli_a": NOT_PRETRAINING, "nli_b": NOT_PRETRAINING, "summ": NOT_PRETRAINING,
              "easy_mc": PRETRAINING, "hard_mc": NOT_PRETRAINING}
    gains = {r["group"]: r for r in group_gains(table, groups).iter_rows(named=True)}
    # not learned in pre-training: nli_a +0.40 (in-domain), nli_b +0.10 (cross-domain), summ +0.10, hard_mc +0.20
    assert gains[NOT_PRETRAINING]["mean_delta"] == pytest.approx((0.40 + 0.10 + 0.10 + 0.20) / 4)
    assert gains[NOT_PRETRAINING]["datasets"] == "hard_mc,nli_a,nli_b,summ"
    # learned in pre-training: the instruction-tuned model's acc on easy_mc (acc_norm left out by headline)
    assert gains[PRETRAINING]["mean_delta"] == pytest.approx(0.02)
    assert gains[PRETRAINING]["n_datasets"] == 1


def test_configured_groups_override_the_ones_read_from_the_base_curves(table):
    # Each set's curve at its largest shot count: nli_a (4-shot) has one checkpoint, nli_b rises .50 -> .70.
    computed = {"nli_a": NOT_PRETRAINING, "nli_b": PRETRAINING, "summ": NOT_PRETRAINING}
    assert dataset_groups(table) == pretraining_groups(table) == computed
    assert dataset_groups(table, {"nli_b": NOT_PRETRAINING}) == {**computed, "nli_b": NOT_PRETRAINING}


def test_the_comparison_shots_pair_the_most_cells_unless_set(table):
    # 0 shots pairs three fine-tuned rows with their base; one stray pair at 7 shots must not decide.
    stray = finalize(pl.concat([table, pl.DataFrame([
        row("s10", 10, "nli_a", 0.33, 0.30, 0.36, shots=7),
        row("s10", 10, "nli_a", 0.90, 0.85, 0.95, train="nli_a", shots=7)], schema=SCHEMA)]), "hand-made")
    assert comparison_shots(stray) == 0
    assert comparison_shots(stray, shots=7) == 7
    assert comparison_shots(stray, instruction_tuned=True) is None  # no instruction-tuned rows
    # The same count of pairs at two shot counts: the larger one.
    tie = finalize(pl.concat([table.filter(pl.col("eval_dataset") == "nli_a"), pl.DataFrame([
        row("s10", 10, "nli_a", 0.90, 0.85, 0.95, train="nli_a", shots=4)], schema=SCHEMA)]), "hand-made")
    assert comparison_shots(tie) == 4


def test_table6_uses_exactly_the_configured_groups(table):
    configured = {"nli_b": NOT_PRETRAINING}
    assert table_groups(table, configured) == configured
    assert table_groups(table) == pretraining_groups(table)
    gains = group_gains(headline(table), table_groups(table, configured))
    assert gains["datasets"].to_list() == ["nli_b"] and gains["mean_delta"].to_list() == [pytest.approx(-0.10)]


def test_the_mrc_table_holds_the_mean_over_checkpoints_marked_as_such():
    one = second_arm_table()
    two = finalize(pl.concat([one, one.with_columns(pl.lit("s20").alias("checkpoint"), pl.lit(20, pl.Int64).alias("step"),
                                                    pl.col("value") * 2)]), "two checkpoints")
    mrc = mean_ratio_of_change(headline(two))
    per = mrc.filter(pl.col("aggregate") == "checkpoint")
    mean = mrc.filter(pl.col("aggregate") == "mean over checkpoints").row(0, named=True)
    assert per.height == 4 and mean["checkpoint"] is None and mean["n_checkpoints"] == 2
    # classification -> generation: -0.75 at s10; at s20 both scores double, so the ratio is the same.
    assert mean["direction"] == "classification -> generation" and mean["mrc"] == pytest.approx(-0.75)
