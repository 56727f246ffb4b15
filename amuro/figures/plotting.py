"""The matplotlib side shared by the figures: the figure and its panels, checkpoints as an axis (with one colour
each), a curve with its interval band, legends, heat-maps, and saving. Matplotlib is imported only when a figure is
drawn."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from amuro import analysis
from amuro.config import format_tokens
from amuro.figures.selection import rows_at
from amuro.io import atomic_path


def pyplot():
    """matplotlib.pyplot without a display, in the figures' style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "amuro"})
    return plt


def grid(n: int, ncols: int = 3, width: float = 3.6, height: float = 2.9, sharey: bool = True):
    """A figure with n panels of width x height inches, ncols to a row; returns it and the n axes."""
    plt = pyplot()
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, sharey=sharey,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _checkpoint_label(model: str, checkpoint: str, step: int | None, tokens: int | None, multi_model: bool) -> str:
    label = checkpoint if step is None else (f"{step}" if tokens is None else f"{step}\n{format_tokens(tokens)}")
    return f"{model}\n{label}" if multi_model else label


class CheckpointAxis:
    """Checkpoints in pre-training order as evenly spaced categories (steps span orders of magnitude)."""

    def __init__(self, table: pl.DataFrame):
        steps = {(r["model"], r["checkpoint"]): (r["step"], r["tokens"])
                 for r in table.select("model", "checkpoint", "step", "tokens").unique().iter_rows(named=True)}
        self.pairs = analysis.checkpoint_order(table)
        self.index = {pair: i for i, pair in enumerate(self.pairs)}
        multi = len({m for m, _ in self.pairs}) > 1
        self.labels = [_checkpoint_label(m, c, *steps[(m, c)], multi) for m, c in self.pairs]
        self.has_tokens = all(steps[p][1] is not None for p in self.pairs)

    def x(self, rows: pl.DataFrame) -> list[int]:
        return [self.index[(m, c)] for m, c in zip(rows["model"], rows["checkpoint"])]

    def sorted(self, rows: pl.DataFrame) -> pl.DataFrame:
        return rows.with_columns(pl.Series("_x", self.x(rows))).sort("_x")

    def one_line(self, i: int) -> str:
        """The i-th checkpoint's label on one line, for titles and legends."""
        return self.labels[i].replace("\n", " · ")

    def colors(self) -> list:
        """One colour per checkpoint, dark to light in pre-training order, where the checkpoints are the series."""
        return pyplot().get_cmap("viridis")([i / max(1, len(self.pairs) - 1) for i in range(len(self.pairs))])

    def decorate(self, ax) -> None:
        ax.set_xticks(range(len(self.labels)), self.labels, fontsize=7)
        ax.set_xlabel("pre-training checkpoint (step" + (", tokens)" if self.has_tokens else ")"))
        ax.set_xlim(-0.4, len(self.labels) - 0.6)


def curve(ax, axis: CheckpointAxis, rows: pl.DataFrame, value: str, low: str, high: str, band: bool = True,
          **style) -> None:
    """`value` over the checkpoints, with the band from `low` to `high` where every row has one."""
    rows = axis.sorted(rows)
    x = rows["_x"].to_list()
    line, = ax.plot(x, rows[value].to_list(), marker="o", markersize=3, **style)
    if band and rows[low].null_count() == 0 and rows[high].null_count() == 0:  # imported rows may have none
        ax.fill_between(x, rows[low].to_list(), rows[high].to_list(), color=line.get_color(), alpha=0.15,
                        linewidth=0)


def legend_right(ax, **kwargs) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def shared_legend(fig, ax, ncols: int = 4) -> None:
    """One legend under all panels, for panels that share their lines."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(labels)))


def zero_line(ax) -> None:
    ax.axhline(0, color="0.5", linewidth=0.8, zorder=0)


def ylabel_for(rows: pl.DataFrame, prefix: str = "") -> str:
    metrics = sorted(set(rows["metric"].to_list()))
    names = {"accuracy": "accuracy", "rougeL": "ROUGE-L"}
    return prefix + " / ".join(names.get(m, m) for m in metrics)


def _heatmap(ax, matrix: list[list[float | None]], rows: list[str], cols: list[str], notes, vmax: float, cmap: str,
             vmin: float | None = None):
    import numpy as np

    data = np.array([[np.nan if v is None else v for v in r] for r in matrix], dtype=float)
    image = ax.imshow(data, cmap=cmap, vmin=-vmax if vmin is None else vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if notes[i][j]:
                ax.text(j, i, notes[i][j], ha="center", va="center", fontsize=6)
    ax.spines[:].set_visible(False)
    return image


def checkpoint_heatmaps(fig, axes, axis: CheckpointAxis, rows: pl.DataFrame, column: str, trains: list[str],
                        cols: list[str], value, note, colorbar: str, **style) -> None:
    """One train set x `column` heat-map per checkpoint; `value` and `note` read a cell's row."""
    image = None
    for i, (ax, pair) in enumerate(zip(axes, axis.pairs)):
        at = {(r["train_dataset"], r[column]): r for r in rows_at(rows, pair).iter_rows(named=True)}
        matrix = [[value(at[(t, c)]) if (t, c) in at else None for c in cols] for t in trains]
        notes = [[note(at[(t, c)]) if (t, c) in at else "" for c in cols] for t in trains]
        image = _heatmap(ax, matrix, trains, cols, notes, **style)
        ax.set_title(axis.one_line(i))
        ax.set_ylabel("fine-tuned on")
    fig.colorbar(image, ax=axes, shrink=0.8, label=colorbar)


def by_checkpoint_panels(rows: pl.DataFrame, ncols: int = 3):
    """A panel per checkpoint of `rows`: the figure, its axes and the CheckpointAxis."""
    axis = CheckpointAxis(rows)
    fig, axes = grid(len(axis.pairs), ncols=ncols, width=4.6, height=3.6, sharey=False)
    return fig, axes, axis


def save(fig, pdf: str | Path, png: str | Path) -> None:
    """Both files atomically, without timestamps, so a redraw of the same table gives the same bytes."""
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={"Software": None})
    pyplot().close(fig)
