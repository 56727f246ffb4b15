"""How each figure is drawn: one function per figure id of `amuro.figures.catalog`, a pure function of the
long-format results table.

Drawing from a table that lacks the rows a figure shows raises FigureDataError naming what is missing. Matplotlib is
imported only when a figure is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import polars as pl

from amuro import analysis
from amuro.config import format_tokens
from amuro.figures.catalog import FIGURES
from amuro.axes import main_eval_format
from amuro.io import atomic_path
from amuro.tasks import TASKS

ERRORBAR_CONFIDENCE = 0.90  # the paper's bar charts show 90 % intervals
OWN_TASK = "own task,\nother sets"


class FigureDataError(ValueError):
    pass


# figure id -> its drawing function (table, figure id, confidence, groups) -> matplotlib figure
DRAWERS: dict[str, Callable] = {}


def draws(figure_id: str):
    if figure_id not in FIGURES:
        raise KeyError(f"figure '{figure_id}' is not in amuro.figures.catalog")

    def register(draw_figure):
        DRAWERS[figure_id] = draw_figure
        return draw_figure

    return register


# --- Selections ----------------------------------------------------------------------------------------------------

def _require(table: pl.DataFrame, figure_id: str, what: str) -> pl.DataFrame:
    if table.is_empty():
        raise FigureDataError(f"figure '{figure_id}': the results table has no {what}")
    return table


def _at(rows: pl.DataFrame, pair: tuple[str, str]) -> pl.DataFrame:
    """The rows of one (model, checkpoint)."""
    return rows.filter((pl.col("model") == pair[0]) & (pl.col("checkpoint") == pair[1]))


def _main_transfer(table: pl.DataFrame, figure_id: str, relation: str | None = None,
                   all_sizes: bool = False, train_formats: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Fine-tuned vs base rows in the main train format and size, main eval format, at the comparison shots."""
    transfer = _require(analysis.transfer_matrix(table), figure_id,
                        "fine-tuned rows with a base row of the same checkpoint, eval set, format and shots")
    main_format = analysis.main_train_format(transfer["train_format"].unique().to_list())
    formats = train_formats or (main_format,)
    transfer = transfer.filter(pl.col("train_format").is_in(formats))
    if not all_sizes:
        main_size = analysis.main_train_size(transfer["train_size"].to_list())
        transfer = transfer.filter(pl.col("train_size").eq_missing(main_size))  # imported tables have no size
    transfer = transfer.filter(
        (pl.col("eval_format") == main_eval_format(transfer["eval_format"].unique().to_list()))
        & (pl.col("shots") == analysis.comparison_shots(table))
    )
    if relation is not None:
        transfer = transfer.filter(pl.col("relation") == relation)
    return _require(transfer, figure_id, f"{relation or 'fine-tuned'} rows in train format(s) {', '.join(map(str, formats))}")


def _mean_with_interval(rows: pl.DataFrame, by: list[str], value: str = "delta") -> pl.DataFrame:
    """Mean of `value` per group; its interval (low, high) treats the sets' intervals as independent."""
    means = rows.group_by(by, maintain_order=True).agg(
        pl.col(value).mean().alias("mean"),
        ((pl.col(value) - pl.col(f"{value}_ci_low")) ** 2).sum().sqrt().truediv(pl.len()).alias("err_low"),
        ((pl.col(f"{value}_ci_high") - pl.col(value)) ** 2).sum().sqrt().truediv(pl.len()).alias("err_high"),
        pl.len().alias("n"),
    )
    return means.with_columns((pl.col("mean") - pl.col("err_low")).alias("low"),
                              (pl.col("mean") + pl.col("err_high")).alias("high"))


# --- Drawing helpers -----------------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "legend.fontsize": 8, "axes.spines.top": False,
                         "axes.spines.right": False, "svg.hashsalt": "amuro"})
    return plt


def _grid(n: int, ncols: int = 3, width: float = 3.6, height: float = 2.9, sharey: bool = True):
    plt = _pyplot()
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

    def decorate(self, ax) -> None:
        ax.set_xticks(range(len(self.labels)), self.labels, fontsize=7)
        ax.set_xlabel("pre-training checkpoint (step" + (", tokens)" if self.has_tokens else ")"))
        ax.set_xlim(-0.4, len(self.labels) - 0.6)


def _line(ax, axis: CheckpointAxis, rows: pl.DataFrame, value: str, low: str, high: str, band: bool = True,
          **style) -> None:
    rows = axis.sorted(rows)
    x = rows["_x"].to_list()
    line, = ax.plot(x, rows[value].to_list(), marker="o", markersize=3, **style)
    if band and rows[low].null_count() == 0 and rows[high].null_count() == 0:  # imported rows may have none
        ax.fill_between(x, rows[low].to_list(), rows[high].to_list(), color=line.get_color(), alpha=0.15,
                        linewidth=0)


def _legend_right(ax, **kwargs) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs)


def _shared_legend(fig, ax, ncols: int = 4) -> None:
    """One legend under all panels, for panels that share their lines."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(ncols, len(labels)))


def _zero(ax) -> None:
    ax.axhline(0, color="0.5", linewidth=0.8, zorder=0)


def _ylabel_for(rows: pl.DataFrame, prefix: str = "") -> str:
    metrics = sorted(set(rows["metric"].to_list()))
    names = {"accuracy": "accuracy", "rougeL": "ROUGE-L"}
    return prefix + " / ".join(names.get(m, m) for m in metrics)


def _task_kind(task: str | None) -> str:
    return TASKS[task].kind if task in TASKS else "unknown"


def save(fig, pdf: str | Path, png: str | Path) -> None:
    """Both files atomically, without timestamps, so a redraw of the same table gives the same bytes."""
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=150, metadata={"Software": None})
    _pyplot().close(fig)


def draw(figure_id: str, table: pl.DataFrame, pdf: str | Path, png: str | Path, confidence: float = 0.95,
         benchmark_metric: str = "acc", groups: dict[str, str] | None = None) -> None:
    """Draw one registered figure from a long-format table into `pdf` and `png`.

    Benchmarks are shown with `benchmark_metric`; `groups` fixes the pre-training group of the sets it names.
    """
    if figure_id not in FIGURES:
        raise FigureDataError(f"unknown figure '{figure_id}' (figures: {', '.join(FIGURES)})")
    table = analysis.headline(table, benchmark_metric)
    fig = DRAWERS[figure_id](table, figure_id, confidence, groups or {})
    fig.suptitle(FIGURES[figure_id].title, fontsize=11)
    save(fig, pdf, png)


def draw_figure(figure_id: str, tables: list[str], pdf: str | Path, png: str | Path, settings: dict) -> None:
    """`amuro figure`: one figure from long-format tables, with the settings a workflow passes (confidence,
    benchmark_metric, groups)."""
    from amuro.results import read_tables

    draw(figure_id, read_tables(tables), pdf, png, confidence=settings.get("confidence", 0.95),
         benchmark_metric=settings.get("benchmark_metric", "acc"), groups=settings.get("groups", {}))


# --- The figures ---------------------------------------------------------------------------------------------------

@draws("pretraining_curves")
def pretraining_curves(table, figure_id, confidence, groups):
    base = _require(analysis.base_curves(table), figure_id, "base (pre-trained) rows")
    eval_format = base["eval_format"][0]
    shots = "/".join(map(str, sorted(base["shots"].unique().to_list())))
    groups = analysis.dataset_groups(base, groups)
    names = ["learned in pre-training", "not learned in pre-training"]
    fig, axes = _grid(2, ncols=2, width=6.0, height=3.4)
    axis = CheckpointAxis(base)
    for ax, name in zip(axes, names):
        members = [d for d, g in groups.items() if g == name]
        for dataset in members:
            curves = base.filter(pl.col("eval_dataset") == dataset)
            for (model, _, _), rows in curves.group_by(analysis.CURVE, maintain_order=True):
                label = dataset if base["model"].n_unique() == 1 else f"{model}: {dataset}"
                if curves["metric"].n_unique() > 1:  # one set scored by two evaluations: two curves
                    label += f" ({rows['metric'][0]})"
                _line(ax, axis, rows, "value", "ci_low", "ci_high", label=label)
        ax.set_title(f"{name} ({len(members)} sets)")
        axis.decorate(ax)
        if members:
            _legend_right(ax, ncols=1 if len(members) < 12 else 2)
    axes[0].set_ylabel(f"{_ylabel_for(base)} ({shots}-shot, {eval_format} format)")
    return fig


@draws("finetuned_vs_base")
def finetuned_vs_base(table, figure_id, confidence, groups):
    rows = _main_transfer(table, figure_id, relation="in-domain")
    datasets = sorted(rows["train_dataset"].unique().to_list())
    fig, axes = _grid(len(datasets), sharey=False)
    axis = CheckpointAxis(rows)
    for ax, dataset in zip(axes, datasets):
        cell = rows.filter(pl.col("train_dataset") == dataset)
        _line(ax, axis, cell, "finetuned", "finetuned_ci_low", "finetuned_ci_high", label="fine-tuned", color="C0")
        _line(ax, axis, cell, "base", "base_ci_low", "base_ci_high", label="pre-trained", color="C1", linestyle="--")
        ax.set_title(dataset)
        ax.set_ylabel(f"{_ylabel_for(cell)} ({cell['shots'][0]}-shot, {cell['eval_format'][0]})")
        axis.decorate(ax)
    _shared_legend(fig, axes[0])
    return fig


@draws("finetuning_gain")
def finetuning_gain(table, figure_id, confidence, groups):
    from scipy.stats import norm

    rows = _main_transfer(table, figure_id, relation="in-domain")
    groups = analysis.dataset_groups(table, groups)
    order = {"not learned in pre-training": 0, "learned in pre-training": 1}
    datasets = sorted(rows["train_dataset"].unique().to_list(), key=lambda d: (order.get(groups.get(d), 2), d))
    axis = CheckpointAxis(rows)
    scale = norm.ppf(0.5 + ERRORBAR_CONFIDENCE / 2) / norm.ppf(0.5 + confidence / 2)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(datasets) + 2), 3.8), layout="constrained")
    width = 0.8 / len(axis.pairs)
    colors = plt.get_cmap("viridis")([i / max(1, len(axis.pairs) - 1) for i in range(len(axis.pairs))])
    for j, pair in enumerate(axis.pairs):
        at = _at(rows, pair)
        xs, ys, lo, hi = [], [], [], []
        for i, dataset in enumerate(datasets):
            r = at.filter(pl.col("train_dataset") == dataset)
            if r.is_empty():
                continue
            r = r.row(0, named=True)
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(r["delta"])
            lo.append((r["delta"] - r["delta_ci_low"]) * scale)
            hi.append((r["delta_ci_high"] - r["delta"]) * scale)
        ax.bar(xs, ys, width, yerr=[lo, hi], color=colors[j], capsize=1.5, error_kw={"linewidth": 0.7},
               label=axis.labels[j].replace("\n", " · "))
    _zero(ax)
    # The paper's names for the two groups, seen from fine-tuning.
    names = {"not learned in pre-training": "learned in fine-tuning", "learned in pre-training": "learned in pre-training"}
    labels = [f"{d}\n({names.get(groups.get(d), 'no base curve')})" for d in datasets]
    ax.set_xticks(range(len(datasets)), labels, fontsize=7)
    ax.set_ylabel("in-domain change: fine-tuned − pre-trained")
    ax.legend(title="checkpoint", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


@draws("format_sensitivity")
def format_sensitivity(table, figure_id, confidence, groups):
    transfer = _require(analysis.transfer_matrix(table), figure_id, "fine-tuned rows with matching base rows")
    main_format = analysis.main_train_format(transfer["train_format"].unique().to_list())
    # The main size among the main format's cells (instruction-tuned rows, train size "all", are not among them).
    transfer = transfer.filter(pl.col("train_format") == main_format)
    rows = transfer.filter(
        (pl.col("relation") == "in-domain")
        & pl.col("train_size").eq_missing(analysis.main_train_size(transfer["train_size"].to_list()))
        & (pl.col("shots") == analysis.comparison_shots(table))
    )
    rows = _require(rows, figure_id, "in-domain rows")
    formats = sorted(rows["eval_format"].unique().to_list(), key=lambda f: (f != "default", f))
    datasets = sorted(rows["train_dataset"].unique().to_list())
    fig, axes = _grid(len(datasets), sharey=False)
    axis = CheckpointAxis(rows)
    for ax, dataset in zip(axes, datasets):
        for k, fmt in enumerate(formats):
            cell = rows.filter((pl.col("train_dataset") == dataset) & (pl.col("eval_format") == fmt))
            _line(ax, axis, cell, "finetuned", "finetuned_ci_low", "finetuned_ci_high", color=f"C{k}",
                  label=f"{fmt} (fine-tuned)")
            _line(ax, axis, cell, "base", "base_ci_low", "base_ci_high", band=False, color=f"C{k}",
                  linestyle="--", label=f"{fmt} (pre-trained)")
        ax.set_title(f"{dataset} (fine-tuned in {main_format})")
        ax.set_ylabel(_ylabel_for(rows.filter(pl.col("train_dataset") == dataset)))
        axis.decorate(ax)
    _shared_legend(fig, axes[0], ncols=len(formats) * 2)
    return fig


@draws("cross_task")
def cross_task(table, figure_id, confidence, groups):
    rows = _main_transfer(table, figure_id, relation="cross-task").with_columns(
        pl.col("train_task").map_elements(_task_kind, return_dtype=pl.String).alias("train_kind"),
        pl.col("eval_task").map_elements(_task_kind, return_dtype=pl.String).alias("eval_kind"),
    )
    directions = sorted({(a, b) for a, b in zip(rows["train_kind"], rows["eval_kind"])})
    fig, axes = _grid(len(directions), ncols=2, width=5.6, sharey=False)
    axis = CheckpointAxis(rows)
    for ax, (src, dst) in zip(axes, directions):
        part = rows.filter((pl.col("train_kind") == src) & (pl.col("eval_kind") == dst))
        means = _mean_with_interval(part, ["train_dataset", "model", "checkpoint"])
        for dataset in sorted(means["train_dataset"].unique().to_list()):
            _line(ax, axis, means.filter(pl.col("train_dataset") == dataset), "mean", "low", "high", label=dataset)
        _zero(ax)
        ax.set_title(f"{src} → {dst} ({part['eval_dataset'].n_unique()} eval sets)")
        ax.set_ylabel("mean change vs pre-trained")
        axis.decorate(ax)
        _legend_right(ax, title="fine-tuned on")
    return fig


@draws("cross_domain")
def cross_domain(table, figure_id, confidence, groups):
    rows = _main_transfer(table, figure_id, relation="cross-domain")
    tasks = sorted(rows["train_task"].unique().to_list())
    fig, axes = _grid(len(tasks), ncols=3, width=4.2, sharey=False)
    axis = CheckpointAxis(rows)
    for ax, task in zip(axes, tasks):
        part = rows.filter(pl.col("train_task") == task)
        pairs = part.group_by(["train_dataset", "eval_dataset"], maintain_order=True)
        for (train, evaluated), pair in pairs:
            _line(ax, axis, pair, "delta", "delta_ci_low", "delta_ci_high", label=f"{train} → {evaluated}")
        _zero(ax)
        axis.decorate(ax)
        ax.set_ylabel(f"change in {_ylabel_for(part)}")
        if part.select("train_dataset", "eval_dataset").n_unique() == 1:
            ax.set_title(f"{task}: {part['train_dataset'][0]} → {part['eval_dataset'][0]}", fontsize=9)
        else:
            ax.set_title(task)
            _legend_right(ax, title="fine-tuned on → eval set")
    return fig


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


def _checkpoint_heatmaps(fig, axes, axis: CheckpointAxis, rows: pl.DataFrame, column: str, trains: list[str],
                         cols: list[str], value, note, colorbar: str, **style) -> None:
    """One train set x `column` heat-map per checkpoint; `value` and `note` read a cell's row."""
    image = None
    for ax, pair, label in zip(axes, axis.pairs, axis.labels):
        at = {(r["train_dataset"], r[column]): r for r in _at(rows, pair).iter_rows(named=True)}
        matrix = [[value(at[(t, c)]) if (t, c) in at else None for c in cols] for t in trains]
        notes = [[note(at[(t, c)]) if (t, c) in at else "" for c in cols] for t in trains]
        image = _heatmap(ax, matrix, trains, cols, notes, **style)
        ax.set_title(label.replace("\n", " · "))
        ax.set_ylabel("fine-tuned on")
    fig.colorbar(image, ax=axes, shrink=0.8, label=colorbar)


def _by_checkpoint_panels(rows: pl.DataFrame, ncols: int = 3):
    axis = CheckpointAxis(rows)
    fig, axes = _grid(len(axis.pairs), ncols=ncols, width=4.6, height=3.6, sharey=False)
    return fig, axes, axis


@draws("transfer_heatmap")
def transfer_heatmap(table, figure_id, confidence, groups):
    rows = _main_transfer(table, figure_id)
    fig, axes, axis = _by_checkpoint_panels(rows)
    # Sets grouped by task, so the blocks of the matrix are tasks.
    trains = [d for _, d in sorted(set(zip(rows["train_task"], rows["train_dataset"])))]
    evals = [d for _, d in sorted(set(zip(rows["eval_task"], rows["eval_dataset"])))]
    vmax = max(abs(v) for v in rows["delta"].to_list()) or 1.0
    _checkpoint_heatmaps(fig, axes, axis, rows, "eval_dataset", trains, evals, value=lambda r: r["delta"],
                         note=lambda r: f"{r['delta']:+.2f}", colorbar="fine-tuned − pre-trained",
                         vmax=vmax, cmap="RdBu")
    return fig


@draws("forgetting_heatmap")
def forgetting_heatmap(table, figure_id, confidence, groups):
    forgetting = _require(analysis.forgetting_matrix(_main_transfer(table, figure_id)), figure_id,
                          "cross-domain or cross-task rows")
    fig, axes, axis = _by_checkpoint_panels(forgetting)
    trains = sorted(forgetting["train_dataset"].unique().to_list())
    # A fine-tuning set has one cross-domain task (its own), so all cross-domain cells share one column.
    column = pl.when(pl.col("relation") == "cross-domain").then(pl.lit(OWN_TASK)).otherwise(pl.col("eval_task"))
    forgetting = forgetting.with_columns(column.alias("column"))
    tasks = sorted(set(forgetting["column"].to_list()) - {OWN_TASK})
    cols = ([OWN_TASK] if OWN_TASK in forgetting["column"].to_list() else []) + tasks
    worst = min(0.0, *forgetting["mean_delta"].to_list())
    _checkpoint_heatmaps(fig, axes, axis, forgetting, "column", trains, cols,
                         value=lambda r: min(0.0, r["mean_delta"]),
                         note=lambda r: f"{r['n_below_base']}/{r['n_eval_datasets']}",
                         colorbar="mean change vs pre-trained, losses only\n(cells: sets reliably below / sets)",
                         vmax=0.0, vmin=min(worst, -0.01), cmap="Reds_r")
    return fig


@draws("train_size")
def train_size(table, figure_id, confidence, groups):
    rows = _main_transfer(table, figure_id, all_sizes=True)
    sizes = sorted(rows["train_size"].unique().to_list(), key=analysis.size_order)
    if len(sizes) < 2:
        raise FigureDataError(f"figure '{figure_id}': needs at least two train sizes; the table has {sizes}")
    relations = [r for r in ("in-domain", "cross-domain", "cross-task") if r in rows["relation"].to_list()]
    fig, axes = _grid(len(relations), ncols=3, sharey=False)
    axis = CheckpointAxis(rows)
    plt = _pyplot()
    colors = plt.get_cmap("viridis")([i / max(1, len(axis.pairs) - 1) for i in range(len(axis.pairs))])
    for ax, rel in zip(axes, relations):
        means = _mean_with_interval(rows.filter(pl.col("relation") == rel), ["model", "checkpoint", "train_size"])
        for j, pair in enumerate(axis.pairs):
            m = _at(means, pair)
            m = m.with_columns(pl.col("train_size").map_elements(lambda s: sizes.index(s), return_dtype=pl.Int64)
                               .alias("_x")).sort("_x")
            ax.errorbar(m["_x"].to_list(), m["mean"].to_list(), yerr=[m["err_low"].to_list(), m["err_high"].to_list()],
                        marker="o", markersize=3, capsize=2, color=colors[j], label=axis.labels[j].replace("\n", " · "))
        _zero(ax)
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("training examples")
        ax.set_title(rel)
        ax.set_ylabel("mean change vs pre-trained")
    _legend_right(axes[-1], title="checkpoint")
    return fig


@draws("fticl")
def fticl(table, figure_id, confidence, groups):
    transfer = _require(analysis.transfer_matrix(table), figure_id, "fine-tuned rows with matching base rows")
    plain = analysis.main_train_format(transfer["train_format"].unique().to_list())
    if plain is None or "fticl" not in transfer["train_format"].to_list():
        raise FigureDataError(f"figure '{figure_id}': needs fine-tuned rows in train format 'fticl' and in a plain "
                              f"format; the table has train formats {sorted(transfer['train_format'].unique().to_list())}")
    rows = _main_transfer(table, figure_id, train_formats=(plain, "fticl"))
    relations = [r for r in ("in-domain", "cross-domain", "cross-task") if r in rows["relation"].to_list()]
    fig, axes = _grid(len(relations), ncols=3, sharey=False)
    axis = CheckpointAxis(rows)
    for ax, rel in zip(axes, relations):
        means = _mean_with_interval(rows.filter(pl.col("relation") == rel), ["train_format", "model", "checkpoint"])
        for fmt, label in ((plain, f"plain ({plain})"), ("fticl", "FTICL")):
            _line(ax, axis, means.filter(pl.col("train_format") == fmt), "mean", "low", "high", label=label)
        _zero(ax)
        ax.set_title(rel)
        ax.set_ylabel("mean change vs pre-trained")
        axis.decorate(ax)
    _shared_legend(fig, axes[0])
    return fig


def _gain_lines(ax, axis: CheckpointAxis, rows: pl.DataFrame) -> None:
    """One line per eval set (its mean change over the models tuned for it) and the group's mean (Table 6)."""
    per_set = _mean_with_interval(rows, ["eval_dataset", "model", "checkpoint"])
    for dataset, r in per_set.group_by("eval_dataset", maintain_order=True):
        _line(ax, axis, r, "mean", "low", "high", label=dataset[0], linewidth=1)
    group = per_set.group_by(["model", "checkpoint"], maintain_order=True).agg(pl.col("mean").mean())
    _line(ax, axis, group.with_columns(pl.col("mean").alias("low"), pl.col("mean").alias("high")), "mean", "low",
          "high", band=False, label="group mean", color="black", linewidth=2.5)


@draws("group_gain")
def group_gain(table, figure_id, confidence, groups):
    rows = _require(analysis.tuned_vs_base(table).filter(
        pl.col("relation").is_in(["in-domain", "cross-domain", "instruction-tuned"])), figure_id,
        "tuned rows with a base row at the same checkpoint, set, format and shots")
    groups = analysis.dataset_groups(table, groups)
    rows = rows.with_columns(pl.col("eval_dataset").replace_strict(groups, default=None).alias("group"))
    fig, axes = _grid(2, ncols=2, width=6.0, height=3.4)
    axis = CheckpointAxis(rows)
    for ax, name in zip(axes, (analysis.PRETRAINING, analysis.NOT_PRETRAINING)):
        members = rows.filter(pl.col("group") == name)
        if not members.is_empty():
            _gain_lines(ax, axis, members)
            _legend_right(ax, ncols=1)
        n = members["eval_dataset"].n_unique()
        ax.set_title(f"{name} ({n} set{'' if n == 1 else 's'})")
        _zero(ax)
        axis.decorate(ax)
    axes[0].set_ylabel("tuned − pre-trained")
    return fig


@draws("instruction_tuned")
def instruction_tuned(table, figure_id, confidence, groups):
    tuned = _require(table.filter(pl.col("relation") == "instruction-tuned"), figure_id, "instruction-tuned rows")
    shots = analysis.comparison_shots(table, instruction_tuned=True)
    tuned = tuned.filter(pl.col("shots") == shots)
    base = table.filter((pl.col("relation") == "base") & (pl.col("shots") == shots)
                        & pl.col("eval_dataset").is_in(tuned["eval_dataset"].unique().to_list()))
    groups = analysis.dataset_groups(table, groups)
    benchmarks = sorted(tuned["eval_dataset"].unique().to_list(),
                        key=lambda d: (groups.get(d) != analysis.PRETRAINING, d))
    fig, axes = _grid(len(benchmarks), ncols=3)
    axis = CheckpointAxis(pl.concat([tuned, base]))
    for ax, benchmark in zip(axes, benchmarks):
        for model, rows in base.filter(pl.col("eval_dataset") == benchmark).group_by("model", maintain_order=True):
            _line(ax, axis, rows, "value", "ci_low", "ci_high", label=f"{model[0]} pre-trained", linestyle="--")
        for model, rows in tuned.filter(pl.col("eval_dataset") == benchmark).group_by("model", maintain_order=True):
            _line(ax, axis, rows, "value", "ci_low", "ci_high", label=f"{model[0]} instruction-tuned")
        ax.set_title(f"{benchmark}\n({groups.get(benchmark, 'no base curve')})", fontsize=9)
        ax.set_ylabel(f"{_ylabel_for(tuned)} ({shots}-shot)")
        axis.decorate(ax)
    _shared_legend(fig, axes[0], ncols=2)
    return fig
