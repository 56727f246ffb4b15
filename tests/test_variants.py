"""Variants and seeds in the analysis: every cell's spread over seeds, the tables per variant on the seed mean, and
each finding's margin weighed against its spread over seeds."""

import polars as pl
import pytest
from test_findings import study

from amuro.analysis import headline
from amuro.findings import findings_table, render
from amuro.results import finalize
from amuro.tables import summary_tables
from amuro.variants import by_variant, replicates, seed_means, seed_summary

TUNED = pl.col("train_dataset").is_not_null()


def cells(table: pl.DataFrame, variant: str, seed: int) -> pl.DataFrame:
    return table.filter(TUNED).with_columns(train_variant=pl.lit(variant), train_seed=pl.lit(seed, pl.Int64))


def shifted(table: pl.DataFrame, by: float) -> pl.DataFrame:
    """Every tuned score moved by `by` (a seed that learned a little more or less), its interval with it."""
    return table.with_columns([pl.col(c) + by for c in ("value", "ci_low", "ci_high")])


def two_variants(full_seeds: dict[int, pl.DataFrame], lora: pl.DataFrame) -> pl.DataFrame:
    """The base rows of study(), the full variant at each seed given, LoRA at seed 1."""
    tuned = [cells(t, "full", seed) for seed, t in full_seeds.items()] + [cells(lora, "lora", 1)]
    return finalize(pl.concat([study().filter(~TUNED), *tuned]), "variants and seeds")


def test_the_seed_summary_has_each_cells_mean_sd_min_max_and_seeds():
    table = two_variants({1: study(), 2: shifted(study(), 0.1)}, study())
    summary = seed_summary(table)
    full = summary.filter(pl.col("train_variant") == "full")
    assert full["n_seeds"].unique().to_list() == [2] and full["seeds"].unique().to_list() == ["1,2"]
    row = full.filter((pl.col("train_dataset") == "nli") & (pl.col("eval_dataset") == "nli")
                      & (pl.col("checkpoint") == "s40") & (pl.col("eval_format") == "default")).row(0, named=True)
    assert (row["min"], row["mean"], row["max"]) == pytest.approx((0.86, 0.91, 0.96))
    assert row["sd"] == pytest.approx(0.1 / 2 ** 0.5)
    lora = summary.filter(pl.col("train_variant") == "lora")
    assert lora["n_seeds"].unique().to_list() == [1] and lora["sd"].is_null().all()
    # One row per cell and eval row, the base rows left out.
    assert summary.height == table.filter(TUNED).select(pl.exclude("train_seed", "value", "ci_low", "ci_high")).n_unique()


@pytest.mark.parametrize("band, low, high", [("interval", 0.89, 0.93), ("range", 0.86, 0.96)])
def test_a_seed_mean_has_its_seeds_interval_in_the_tables_and_their_range_in_the_figures(band, low, high):
    table = two_variants({1: study(), 2: shifted(study(), 0.1)}, study())
    means = seed_means(table, band)
    row = means.filter((pl.col("train_variant") == "full") & (pl.col("train_dataset") == "nli")
                       & (pl.col("eval_dataset") == "nli") & (pl.col("checkpoint") == "s40")
                       & (pl.col("eval_format") == "default")).row(0, named=True)
    assert (row["value"], row["ci_low"], row["ci_high"]) == pytest.approx((0.91, low, high))
    assert row["train_seed"] is None
    # A cell with one seed is kept as it is, and the base rows too.
    assert means.filter(pl.col("train_variant") == "lora").equals(
        table.filter(pl.col("train_variant") == "lora").select(means.columns))
    assert means.filter(pl.col("relation") == "base").height == table.filter(pl.col("relation") == "base").height


def test_replicates_take_each_cell_at_one_seed_and_the_one_seed_cells_in_each():
    table = two_variants({1: study(), 2: shifted(study(), 0.1)}, study())
    first, second = replicates(table)
    assert first.filter(pl.col("train_variant") == "full")["train_seed"].unique().to_list() == [1]
    assert second.filter(pl.col("train_variant") == "full")["train_seed"].unique().to_list() == [2]
    for replicate in (first, second):
        assert replicate.filter(pl.col("train_variant") == "lora").height == table.filter(
            pl.col("train_variant") == "lora").height
    assert len(replicates(study())) == 1


def test_the_main_variant_comes_first_and_instruction_tuned_rows_go_with_it():
    table = two_variants({1: study()}, study())
    instruction = table.filter(TUNED).head(3).with_columns(relation=pl.lit("instruction-tuned"),
                                                           train_variant=pl.lit("full"))
    table = pl.concat([table, instruction])
    parts = dict(by_variant(table))
    assert list(parts) == ["full", "lora"]
    assert parts["full"].filter(pl.col("relation") == "instruction-tuned").height == 3
    assert parts["lora"].filter(pl.col("relation") == "instruction-tuned").is_empty()


def test_findings_are_checked_per_variant_and_against_the_spread_over_seeds():
    """Full fine-tuning twice, the seeds close: every finding holds beyond seed noise. LoRA forgets nothing: its
    (iii) fails. Two seeds that disagree on (iv): it may hold on their mean, but not beyond their spread."""
    lora = study(cls_to_gen=0.0, gen_to_cls=0.0)
    table = findings_table(headline(two_variants({1: study(), 2: shifted(study(), 0.01)}, lora)))
    by = {(r["train_variant"], r["finding"]): r for r in table.iter_rows(named=True)}
    assert {f: by["full", f]["holds"] for f in ("i", "ii", "iii", "iv")} == dict.fromkeys(("i", "ii", "iii", "iv"), True)
    assert all(by["full", f]["beyond_seed_noise"] for f in ("i", "iii", "iv")) and by["full", "i"]["n_seeds"] == 2
    assert 0.4 < by["full", "iii"]["margin"] < 0.6  # about -60 % against -10 % (the second seed a little less)
    assert by["full", "iii"]["seed_margins"] == "+0.500, +0.421" and by["full", "iii"]["seed_sd"] < 0.1
    assert not by["lora", "iii"]["holds"] and by["lora", "iii"]["seed_sd"] is None
    assert by["lora", "iii"]["beyond_seed_noise"] is None  # one seed: no spread to weigh against

    disagree = two_variants({1: study(kept=[0.5, 0.8, 0.95]), 2: study(kept=[0.9, 0.8, 0.85])}, lora)
    table = findings_table(headline(disagree))
    row = table.filter((pl.col("train_variant") == "full") & (pl.col("finding") == "iv")).row(0, named=True)
    assert row["holds"] and row["seed_margins"] == "+0.450, -0.050"
    assert row["beyond_seed_noise"] is False
    assert "NOT beyond seed noise" in render(table)


def test_table6_and_the_mrc_are_per_variant_on_the_seed_mean():
    lora = study(cls_to_gen=0.0, gen_to_cls=0.0)
    tables, overview = summary_tables(two_variants({1: study(), 2: shifted(study(), 0.02)}, lora), {})
    mrc = tables["mrc"].filter(pl.col("aggregate") == "mean over checkpoints")
    mrc = {(r["train_variant"], r["direction"]): r["mrc"] for r in mrc.iter_rows(named=True)}
    assert mrc["lora", "classification -> generation"] == pytest.approx(0.0)
    # The full variant's summaries: 0.04 and 0.06 against a base of 0.10, so -50 % on the seed mean.
    assert mrc["full", "classification -> generation"] == pytest.approx(-0.5)
    gains = tables["group_gain"]
    assert set(gains["train_variant"].to_list()) == {"full", "lora"}
    # The full variant's gain is the mean of its two seeds: 0.01 above LoRA's, which trained like its first seed.
    full, lora_gain = (gains.filter(pl.col("train_variant") == v).sort("checkpoint", "group")["mean_delta"]
                       for v in ("full", "lora"))
    assert (full - lora_gain).to_list() == pytest.approx([0.01] * full.len())
    assert tables["seeds"]["n_seeds"].max() == 2
    assert "Spread over fine-tuning seeds" in overview and "beyond_seed_noise" in overview
