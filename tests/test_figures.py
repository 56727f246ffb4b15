"""Every figure draws from a long-format table alone; a figure without its data says what is missing."""

import itertools

import polars as pl
import pytest

from amuro.figures import FIGURES
from amuro.figures.drawing import DRAWERS, FigureDataError, draw
from amuro.results import SCHEMA, finalize, relation

TASK = {"nli_a": "nli", "nli_b": "nli", "summ_a": "summarization", "summ_b": "summarization"}
CHECKPOINTS = [("step10-tokens20K", 10, 20_000), ("step100-tokens200K", 100, 200_000), ("main", None, None)]


def synthetic_table(train_formats=("default", "fticl"), sizes=("100", "all")) -> pl.DataFrame:
    """A whole study's rows: base curves that rise for nli_b only, and fine-tuning that helps in-domain."""
    rows = []

    def add(ckpt, step, tokens, train, train_format, size, eval_dataset, fmt, shots, value):
        train_task = TASK[train] if train else None
        rows.append({"model": "m", "checkpoint": ckpt, "step": step, "tokens": tokens, "train_dataset": train,
                     "train_task": train_task, "train_format": train_format, "train_size": size,
                     "eval_dataset": eval_dataset, "eval_task": TASK[eval_dataset], "eval_format": fmt,
                     "shots": shots, "relation": relation(train, train_task, eval_dataset, TASK[eval_dataset]),
                     "metric": "accuracy" if TASK[eval_dataset] == "nli" else "rougeL", "value": value,
                     "ci_low": value - 0.05, "ci_high": value + 0.05, "n_examples": 100})

    for i, (ckpt, step, tokens) in enumerate(CHECKPOINTS):
        for eval_dataset, fmt, shots in itertools.product(TASK, ("default", "instruct"), (0, 4)):
            add(ckpt, step, tokens, None, None, None, eval_dataset, fmt, shots,
                0.3 + 0.25 * i if eval_dataset == "nli_b" else 0.3)
        for train, train_format, size in itertools.product(("nli_a", "summ_a"), train_formats, sizes):
            for eval_dataset, fmt in itertools.product(TASK, ("default", "instruct")):
                gain = 0.4 if eval_dataset == train else -0.1 if TASK[eval_dataset] != TASK[train] else 0.1
                add(ckpt, step, tokens, train, train_format, size, eval_dataset, fmt, 0,
                    0.3 + gain * (1.2 if train_format == "fticl" else 1.0) * (0.5 if size == "100" else 1.0))
        # The second arm: a benchmark the base learns (facts_mc) and one it does not (passage_mc), 4-shot, with acc
        # and acc_norm, for the base checkpoint and its instruction-tuned copy.
        for benchmark, tuned, metric in itertools.product(("facts_mc", "passage_mc"), (False, True), ("acc", "acc_norm")):
            value = 0.25 + (0.15 * i if benchmark == "facts_mc" else 0.0) + (0.3 if tuned and benchmark == "passage_mc" else 0.02 * tuned)
            rows.append({"model": "m", "checkpoint": ckpt, "step": step, "tokens": tokens,
                         "train_dataset": "mix" if tuned else None, "train_task": "instruction" if tuned else None,
                         "train_format": "chat" if tuned else None, "train_size": "all" if tuned else None,
                         "eval_dataset": benchmark, "eval_task": "multiple_choice", "eval_format": "default",
                         "shots": 4, "relation": "instruction-tuned" if tuned else "base", "metric": metric,
                         "value": value - (0.05 if metric == "acc_norm" else 0), "ci_low": value - 0.08,
                         "ci_high": value + 0.08, "n_examples": 100})
    return finalize(pl.DataFrame(rows, schema=SCHEMA), "synthetic")


def with_variants(table: pl.DataFrame) -> pl.DataFrame:
    """The table's fine-tuned cells as the variant full (seed 42), and a LoRA variant of the main format and size
    at seeds 1 and 2, which change half and three quarters as much from the base as full fine-tuning."""
    finetuned = pl.col("train_dataset").is_not_null() & (pl.col("relation") != "instruction-tuned")
    table = table.with_columns(train_variant=pl.when(finetuned).then(pl.lit("full")),
                               train_seed=pl.when(finetuned).then(pl.lit(42, pl.Int64)))
    base = table.filter(pl.col("relation") == "base").select("checkpoint", "eval_dataset", "eval_format", "shots",
                                                             "metric", pl.col("value").alias("base_value"))
    main = table.filter(finetuned & (pl.col("train_format") == "default") & (pl.col("train_size") == "all"))
    main = main.join(base, on=["checkpoint", "eval_dataset", "eval_format", "shots", "metric"])
    lora = [main.with_columns(train_variant=pl.lit("lora"), train_seed=pl.lit(seed, pl.Int64),
                              value=pl.col("base_value") + share * (pl.col("value") - pl.col("base_value")))
            .with_columns(ci_low=pl.col("value") - 0.05, ci_high=pl.col("value") + 0.05).drop("base_value")
            for seed, share in ((1, 0.5), (2, 0.75))]
    return finalize(pl.concat([table, *lora]), "synthetic with variants")


@pytest.fixture(scope="module")
def table():
    return with_variants(synthetic_table())


@pytest.mark.parametrize("figure_id", sorted(FIGURES))
def test_every_figure_draws_from_the_table_alone(figure_id, table, tmp_path):
    draw(figure_id, table, tmp_path / "f.pdf", tmp_path / "f.png")
    assert (tmp_path / "f.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "f.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*.tmp"))


def test_redrawing_the_same_table_gives_the_same_bytes(table, tmp_path):
    for name in ("a", "b"):
        draw("transfer_heatmap", table, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_a_figure_without_its_rows_says_what_is_missing(tmp_path):
    plain = synthetic_table(train_formats=("default",), sizes=("all",))
    with pytest.raises(FigureDataError, match=r"figure 'fticl': needs fine-tuned rows in train format 'fticl'"):
        draw("fticl", plain, tmp_path / "f.pdf", tmp_path / "f.png")
    with pytest.raises(FigureDataError, match=r"figure 'train_size': needs at least two train sizes"):
        draw("train_size", plain, tmp_path / "f.pdf", tmp_path / "f.png")
    base_only = plain.filter(pl.col("relation") == "base")
    with pytest.raises(FigureDataError, match=r"figure 'finetuned_vs_base': the results table has no fine-tuned rows"):
        draw("finetuned_vs_base", base_only, tmp_path / "f.pdf", tmp_path / "f.png")
    assert not (tmp_path / "f.pdf").exists()


def test_every_catalogued_figure_has_a_drawing():
    assert set(DRAWERS) == set(FIGURES)


# --- What a figure shows: its plotted data, read off the matplotlib figure ----------------------------------------

def _lines(ax) -> dict[str, list[float]]:
    """Each labelled line of a panel: label -> its y values, in checkpoint order."""
    return {line.get_label(): [round(float(y), 6) for y in line.get_ydata()] for line in ax.get_lines()
            if not line.get_label().startswith("_")}


def _drawn(figure_id, table, groups=None):
    """The figure as `draw` makes it (benchmarks shown with acc), before it is saved."""
    from amuro.figures.drawing import figure_rows

    return DRAWERS[figure_id](figure_rows(figure_id, table, "acc"), figure_id, 0.95, groups or {})


def test_pretraining_curves_put_each_set_under_its_group_with_its_scores(table):
    learned, not_learned = _drawn("pretraining_curves", table).axes[:2]
    # nli_b rises .30 -> .55 -> .80 over the checkpoints (4-shot, default: each set's largest shot count) and is
    # the only prompt set learned in pre-training; facts_mc (acc) is the benchmark the base learns.
    assert _lines(learned) == {"facts_mc": [0.25, 0.4, 0.55], "nli_b": [0.3, 0.55, 0.8]}
    assert _lines(not_learned) == {"nli_a": [0.3] * 3, "passage_mc": [0.25] * 3, "summ_a": [0.3] * 3,
                                   "summ_b": [0.3] * 3}


def test_a_configured_group_moves_a_set_to_the_other_panel(table):
    learned, not_learned = _drawn("pretraining_curves", table, {"nli_b": "not learned in pre-training"}).axes[:2]
    assert "nli_b" not in _lines(learned) and _lines(not_learned)["nli_b"] == [0.3, 0.55, 0.8]


def test_finetuned_vs_base_draws_each_train_sets_in_domain_scores_beside_its_base(table):
    panels = {ax.get_title(): _lines(ax) for ax in _drawn("finetuned_vs_base", table).axes if ax.get_visible()}
    # Main train format (default) and size (all), 0 shots: nli_a gains .4 in-domain, from .3 at every checkpoint.
    assert panels["nli_a"] == {"fine-tuned": [0.7] * 3, "pre-trained": [0.3] * 3}
    assert panels["summ_a"] == {"fine-tuned": [0.7] * 3, "pre-trained": [0.3] * 3}


def test_the_transfer_heatmap_shows_each_cells_change_from_its_base(table):
    fig = _drawn("transfer_heatmap", table)
    image = next(ax for ax in fig.axes if ax.images).images[0]
    values = sorted({round(float(v), 6) for v in image.get_array().compressed()})
    # In-domain +.4, the other set of the same task +.1, the other task -.1 (default format, size all, 0 shots).
    assert values == [-0.1, 0.1, 0.4]


def test_full_vs_lora_draws_each_variants_gain_and_forgetting_with_its_seeds(table):
    gain, forgetting = _drawn("full_vs_lora", table).axes[:2]
    # In-domain +.4 for full fine-tuning; LoRA's seeds +.2 and +.3, drawn at their mean. Cross-task, full fine-tuning
    # falls further behind the base as nli_b's base rises (.3 -> .8, tuned stays .2); LoRA changes 5/8 as much.
    assert _lines(gain) == {"full (1 seed)": [0.4] * 3, "lora (2 seeds)": [0.25] * 3}
    assert _lines(forgetting) == {"full (1 seed)": [-0.1, -0.1625, -0.225],
                                  "lora (2 seeds)": [-0.0625, -0.101563, -0.140625]}
    band = next(c for c in gain.collections if c.get_paths())  # the first band: LoRA's, from .2 to .3
    ys = band.get_paths()[0].vertices[:, 1]
    assert (round(float(ys.min()), 6), round(float(ys.max()), 6)) == (0.2, 0.3)


def test_the_papers_figures_show_the_main_variant_at_the_mean_of_its_seeds(table):
    """A second seed of full fine-tuning that gains .2 more: the line is the seeds' mean, the band their range, and
    LoRA stays out."""
    second = table.filter((pl.col("train_variant") == "full") & (pl.col("train_dataset") == "nli_a")
                          & (pl.col("eval_dataset") == "nli_a")).with_columns(
        train_seed=pl.lit(43, pl.Int64), value=pl.col("value") + 0.2)
    seeded = finalize(pl.concat([table, second]), "two seeds")
    panels = {ax.get_title(): _lines(ax) for ax in _drawn("finetuned_vs_base", seeded).axes if ax.get_visible()}
    assert panels["nli_a"] == {"fine-tuned": [0.8] * 3, "pre-trained": [0.3] * 3}
    assert panels["summ_a"] == {"fine-tuned": [0.7] * 3, "pre-trained": [0.3] * 3}
    from amuro.figures.drawing import figure_rows

    rows = figure_rows("finetuned_vs_base", seeded).filter((pl.col("train_dataset") == "nli_a")
                                                           & (pl.col("eval_dataset") == "nli_a"))
    assert set(rows["train_variant"].to_list()) == {"full"}
    shown = rows.filter((pl.col("train_format") == "default") & (pl.col("train_size") == "all")
                        & (pl.col("eval_format") == "default"))
    assert set(zip(shown["ci_low"].round(6), shown["ci_high"].round(6))) == {(0.7, 0.9)}
