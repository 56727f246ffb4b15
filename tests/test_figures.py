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


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


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
