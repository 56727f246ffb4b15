"""How each figure is drawn: one function per figure id of `amuro.figures.catalog`, a pure function of the
long-format results table.

Drawing from a table that lacks the rows a figure shows raises FigureDataError naming what is missing. Matplotlib is
imported only when a figure is drawn. The paper's figures show the main fine-tuning variant, every cell at the mean
of its seeds with their range as its band (amuro.variants); full_vs_lora compares the variants.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist

import polars as pl

from amuro import analysis
from amuro.figures.catalog import FIGURES
from amuro.figures.plotting import (CheckpointAxis, by_checkpoint_panels, checkpoint_heatmaps, curve, grid,
                                    legend_right, pyplot, save, shared_legend, ylabel_for, zero_line)
from amuro.figures.selection import (FigureDataError, main_transfer, mean_with_interval, require_rows, rows_at,
                                     task_kind)
from amuro.variants import by_variant, main_variant_rows, seed_means

ERRORBAR_CONFIDENCE = 0.90  # the paper's bar charts show 90 % intervals
OWN_TASK = "own task,\nother sets"

# figure id -> its drawing function (table, figure id, confidence, groups) -> matplotlib figure
DRAWERS: dict[str, Callable] = {}


def draws(figure_id: str):
    if figure_id not in FIGURES:
        raise KeyError(f"figure '{figure_id}' is not in amuro.figures.catalog")

    def register(draw_figure):
        DRAWERS[figure_id] = draw_figure
        return draw_figure

    return register


def draw(figure_id: str, table: pl.DataFrame, pdf: str | Path, png: str | Path, confidence: float = 0.95,
         benchmark_metric: str = "acc", groups: dict[str, str] | None = None) -> None:
    """Draw one registered figure from a long-format table into `pdf` and `png`.

    Benchmarks are shown with `benchmark_metric`; `groups` fixes the pre-training group of the sets it names.
    """
    if figure_id not in FIGURES:
        raise FigureDataError(f"unknown figure '{figure_id}' (figures: {', '.join(FIGURES)})")
    fig = DRAWERS[figure_id](figure_rows(figure_id, table, benchmark_metric), figure_id, confidence, groups or {})
    fig.suptitle(FIGURES[figure_id].title, fontsize=11)
    save(fig, pdf, png)


def figure_rows(figure_id: str, table: pl.DataFrame, benchmark_metric: str = "acc") -> pl.DataFrame:
    """The rows a figure draws from: one metric per benchmark; for the paper's figures, the main variant with each
    cell at the mean of its seeds, their range as its band."""
    table = analysis.headline(table, benchmark_metric)
    if FIGURES[figure_id].every_variant:
        return table
    return seed_means(main_variant_rows(table), band="range")


def draw_figure(figure_id: str, tables: list[str], pdf: str | Path, png: str | Path, settings: dict) -> None:
    """`amuro figure`: one figure from long-format tables, with the settings a workflow passes (confidence,
    benchmark_metric, groups)."""
    from amuro.results import read_tables

    draw(figure_id, read_tables(tables), pdf, png, confidence=settings.get("confidence", 0.95),
         benchmark_metric=settings.get("benchmark_metric", "acc"), groups=settings.get("groups", {}))


# --- The figures ---------------------------------------------------------------------------------------------------

@draws("pretraining_curves")
def pretraining_curves(table, figure_id, confidence, groups):
    base = require_rows(analysis.base_curves(table), figure_id, "base (pre-trained) rows")
    eval_format = base["eval_format"][0]
    shots = "/".join(map(str, sorted(base["shots"].unique().to_list())))
    groups = analysis.dataset_groups(base, groups)
    names = ["learned in pre-training", "not learned in pre-training"]
    fig, axes = grid(2, ncols=2, width=6.0, height=3.4)
    axis = CheckpointAxis(base)
    for ax, name in zip(axes, names):
        members = [d for d, g in groups.items() if g == name]
        for dataset in members:
            curves = base.filter(pl.col("eval_dataset") == dataset)
            for (model, _, _), rows in curves.group_by(analysis.CURVE, maintain_order=True):
                label = dataset if base["model"].n_unique() == 1 else f"{model}: {dataset}"
                if curves["metric"].n_unique() > 1:  # one set scored by two evaluations: two curves
                    label += f" ({rows['metric'][0]})"
                curve(ax, axis, rows, "value", "ci_low", "ci_high", label=label)
        ax.set_title(f"{name} ({len(members)} sets)")
        axis.decorate(ax)
        if members:
            legend_right(ax, ncols=1 if len(members) < 12 else 2)
    axes[0].set_ylabel(f"{ylabel_for(base)} ({shots}-shot, {eval_format} format)")
    return fig


@draws("finetuned_vs_base")
def finetuned_vs_base(table, figure_id, confidence, groups):
    rows = main_transfer(table, figure_id, relation="in-domain")
    datasets = sorted(rows["train_dataset"].unique().to_list())
    fig, axes = grid(len(datasets), sharey=False)
    axis = CheckpointAxis(rows)
    for ax, dataset in zip(axes, datasets):
        cell = rows.filter(pl.col("train_dataset") == dataset)
        curve(ax, axis, cell, "finetuned", "finetuned_ci_low", "finetuned_ci_high", label="fine-tuned", color="C0")
        curve(ax, axis, cell, "base", "base_ci_low", "base_ci_high", label="pre-trained", color="C1", linestyle="--")
        ax.set_title(dataset)
        ax.set_ylabel(f"{ylabel_for(cell)} ({cell['shots'][0]}-shot, {cell['eval_format'][0]})")
        axis.decorate(ax)
    shared_legend(fig, axes[0])
    return fig


@draws("finetuning_gain")
def finetuning_gain(table, figure_id, confidence, groups):
    rows = main_transfer(table, figure_id, relation="in-domain")
    groups = analysis.dataset_groups(table, groups)
    order = {"not learned in pre-training": 0, "learned in pre-training": 1}
    datasets = sorted(rows["train_dataset"].unique().to_list(), key=lambda d: (order.get(groups.get(d), 2), d))
    axis = CheckpointAxis(rows)
    z = NormalDist().inv_cdf
    scale = z(0.5 + ERRORBAR_CONFIDENCE / 2) / z(0.5 + confidence / 2)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(datasets) + 2), 3.8), layout="constrained")
    width = 0.8 / len(axis.pairs)
    colors = axis.colors()
    for j, pair in enumerate(axis.pairs):
        at = rows_at(rows, pair)
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
               label=axis.one_line(j))
    zero_line(ax)
    # The paper's names for the two groups, seen from fine-tuning.
    names = {"not learned in pre-training": "learned in fine-tuning", "learned in pre-training": "learned in pre-training"}
    labels = [f"{d}\n({names.get(groups.get(d), 'no base curve')})" for d in datasets]
    ax.set_xticks(range(len(datasets)), labels, fontsize=7)
    ax.set_ylabel("in-domain change: fine-tuned − pre-trained")
    ax.legend(title="checkpoint", loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


@draws("format_sensitivity")
def format_sensitivity(table, figure_id, confidence, groups):
    transfer = require_rows(analysis.transfer_matrix(table), figure_id, "fine-tuned rows with matching base rows")
    main_format = analysis.main_train_format(transfer["train_format"].unique().to_list())
    # The main size among the main format's cells (instruction-tuned rows, train size "all", are not among them).
    transfer = transfer.filter(pl.col("train_format") == main_format)
    rows = transfer.filter(
        (pl.col("relation") == "in-domain")
        & pl.col("train_size").eq_missing(analysis.main_train_size(transfer["train_size"].to_list()))
        & (pl.col("shots") == analysis.comparison_shots(table))
    )
    rows = require_rows(rows, figure_id, "in-domain rows")
    formats = sorted(rows["eval_format"].unique().to_list(), key=lambda f: (f != "default", f))
    datasets = sorted(rows["train_dataset"].unique().to_list())
    fig, axes = grid(len(datasets), sharey=False)
    axis = CheckpointAxis(rows)
    for ax, dataset in zip(axes, datasets):
        for k, fmt in enumerate(formats):
            cell = rows.filter((pl.col("train_dataset") == dataset) & (pl.col("eval_format") == fmt))
            curve(ax, axis, cell, "finetuned", "finetuned_ci_low", "finetuned_ci_high", color=f"C{k}",
                  label=f"{fmt} (fine-tuned)")
            curve(ax, axis, cell, "base", "base_ci_low", "base_ci_high", band=False, color=f"C{k}",
                  linestyle="--", label=f"{fmt} (pre-trained)")
        ax.set_title(f"{dataset} (fine-tuned in {main_format})")
        ax.set_ylabel(ylabel_for(rows.filter(pl.col("train_dataset") == dataset)))
        axis.decorate(ax)
    shared_legend(fig, axes[0], ncols=len(formats) * 2)
    return fig


@draws("cross_task")
def cross_task(table, figure_id, confidence, groups):
    rows = main_transfer(table, figure_id, relation="cross-task").with_columns(
        pl.col("train_task").map_elements(task_kind, return_dtype=pl.String).alias("train_kind"),
        pl.col("eval_task").map_elements(task_kind, return_dtype=pl.String).alias("eval_kind"),
    )
    directions = sorted({(a, b) for a, b in zip(rows["train_kind"], rows["eval_kind"])})
    fig, axes = grid(len(directions), ncols=2, width=5.6, sharey=False)
    axis = CheckpointAxis(rows)
    for ax, (src, dst) in zip(axes, directions):
        part = rows.filter((pl.col("train_kind") == src) & (pl.col("eval_kind") == dst))
        means = mean_with_interval(part, ["train_dataset", "model", "checkpoint"])
        for dataset in sorted(means["train_dataset"].unique().to_list()):
            curve(ax, axis, means.filter(pl.col("train_dataset") == dataset), "mean", "low", "high", label=dataset)
        zero_line(ax)
        ax.set_title(f"{src} → {dst} ({part['eval_dataset'].n_unique()} eval sets)")
        ax.set_ylabel("mean change vs pre-trained")
        axis.decorate(ax)
        legend_right(ax, title="fine-tuned on")
    return fig


@draws("cross_domain")
def cross_domain(table, figure_id, confidence, groups):
    rows = main_transfer(table, figure_id, relation="cross-domain")
    tasks = sorted(rows["train_task"].unique().to_list())
    fig, axes = grid(len(tasks), ncols=3, width=4.2, sharey=False)
    axis = CheckpointAxis(rows)
    for ax, task in zip(axes, tasks):
        part = rows.filter(pl.col("train_task") == task)
        pairs = part.group_by(["train_dataset", "eval_dataset"], maintain_order=True)
        for (train, evaluated), pair in pairs:
            curve(ax, axis, pair, "delta", "delta_ci_low", "delta_ci_high", label=f"{train} → {evaluated}")
        zero_line(ax)
        axis.decorate(ax)
        ax.set_ylabel(f"change in {ylabel_for(part)}")
        if part.select("train_dataset", "eval_dataset").n_unique() == 1:
            ax.set_title(f"{task}: {part['train_dataset'][0]} → {part['eval_dataset'][0]}", fontsize=9)
        else:
            ax.set_title(task)
            legend_right(ax, title="fine-tuned on → eval set")
    return fig


@draws("transfer_heatmap")
def transfer_heatmap(table, figure_id, confidence, groups):
    rows = main_transfer(table, figure_id)
    fig, axes, axis = by_checkpoint_panels(rows)
    # Sets grouped by task, so the blocks of the matrix are tasks.
    trains = [d for _, d in sorted(set(zip(rows["train_task"], rows["train_dataset"])))]
    evals = [d for _, d in sorted(set(zip(rows["eval_task"], rows["eval_dataset"])))]
    vmax = max(abs(v) for v in rows["delta"].to_list()) or 1.0
    checkpoint_heatmaps(fig, axes, axis, rows, "eval_dataset", trains, evals, value=lambda r: r["delta"],
                        note=lambda r: f"{r['delta']:+.2f}", colorbar="fine-tuned − pre-trained",
                        vmax=vmax, cmap="RdBu")
    return fig


@draws("forgetting_heatmap")
def forgetting_heatmap(table, figure_id, confidence, groups):
    forgetting = require_rows(analysis.forgetting_matrix(main_transfer(table, figure_id)), figure_id,
                              "cross-domain or cross-task rows")
    fig, axes, axis = by_checkpoint_panels(forgetting)
    trains = sorted(forgetting["train_dataset"].unique().to_list())
    # A fine-tuning set has one cross-domain task (its own), so all cross-domain cells share one column.
    column = pl.when(pl.col("relation") == "cross-domain").then(pl.lit(OWN_TASK)).otherwise(pl.col("eval_task"))
    forgetting = forgetting.with_columns(column.alias("column"))
    tasks = sorted(set(forgetting["column"].to_list()) - {OWN_TASK})
    cols = ([OWN_TASK] if OWN_TASK in forgetting["column"].to_list() else []) + tasks
    worst = min(0.0, *forgetting["mean_delta"].to_list())
    checkpoint_heatmaps(fig, axes, axis, forgetting, "column", trains, cols,
                        value=lambda r: min(0.0, r["mean_delta"]),
                        note=lambda r: f"{r['n_below_base']}/{r['n_eval_datasets']}",
                        colorbar="mean change vs pre-trained, losses only\n(cells: sets reliably below / sets)",
                        vmax=0.0, vmin=min(worst, -0.01), cmap="Reds_r")
    return fig


@draws("train_size")
def train_size(table, figure_id, confidence, groups):
    rows = main_transfer(table, figure_id, all_sizes=True)
    sizes = sorted(rows["train_size"].unique().to_list(), key=analysis.size_order)
    if len(sizes) < 2:
        raise FigureDataError(f"figure '{figure_id}': needs at least two train sizes; the table has {sizes}")
    relations = [r for r in ("in-domain", "cross-domain", "cross-task") if r in rows["relation"].to_list()]
    fig, axes = grid(len(relations), ncols=3, sharey=False)
    axis = CheckpointAxis(rows)
    colors = axis.colors()
    for ax, rel in zip(axes, relations):
        means = mean_with_interval(rows.filter(pl.col("relation") == rel), ["model", "checkpoint", "train_size"])
        for j, pair in enumerate(axis.pairs):
            m = rows_at(means, pair)
            m = m.with_columns(pl.col("train_size").map_elements(lambda s: sizes.index(s), return_dtype=pl.Int64)
                               .alias("_x")).sort("_x")
            ax.errorbar(m["_x"].to_list(), m["mean"].to_list(), yerr=[m["err_low"].to_list(), m["err_high"].to_list()],
                        marker="o", markersize=3, capsize=2, color=colors[j], label=axis.one_line(j))
        zero_line(ax)
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("training examples")
        ax.set_title(rel)
        ax.set_ylabel("mean change vs pre-trained")
    legend_right(axes[-1], title="checkpoint")
    return fig


@draws("fticl")
def fticl(table, figure_id, confidence, groups):
    transfer = require_rows(analysis.transfer_matrix(table), figure_id, "fine-tuned rows with matching base rows")
    plain = analysis.main_train_format(transfer["train_format"].unique().to_list())
    if plain is None or "fticl" not in transfer["train_format"].to_list():
        raise FigureDataError(f"figure '{figure_id}': needs fine-tuned rows in train format 'fticl' and in a plain "
                              f"format; the table has train formats {sorted(transfer['train_format'].unique().to_list())}")
    rows = main_transfer(table, figure_id, train_formats=(plain, "fticl"))
    relations = [r for r in ("in-domain", "cross-domain", "cross-task") if r in rows["relation"].to_list()]
    fig, axes = grid(len(relations), ncols=3, sharey=False)
    axis = CheckpointAxis(rows)
    for ax, rel in zip(axes, relations):
        means = mean_with_interval(rows.filter(pl.col("relation") == rel), ["train_format", "model", "checkpoint"])
        for fmt, label in ((plain, f"plain ({plain})"), ("fticl", "FTICL")):
            curve(ax, axis, means.filter(pl.col("train_format") == fmt), "mean", "low", "high", label=label)
        zero_line(ax)
        ax.set_title(rel)
        ax.set_ylabel("mean change vs pre-trained")
        axis.decorate(ax)
    shared_legend(fig, axes[0])
    return fig


def _gain_lines(ax, axis: CheckpointAxis, rows: pl.DataFrame) -> None:
    """One line per eval set (its mean change over the models tuned for it) and the group's mean (Table 6)."""
    per_set = mean_with_interval(rows, ["eval_dataset", "model", "checkpoint"])
    for dataset, r in per_set.group_by("eval_dataset", maintain_order=True):
        curve(ax, axis, r, "mean", "low", "high", label=dataset[0], linewidth=1)
    group = per_set.group_by(["model", "checkpoint"], maintain_order=True).agg(pl.col("mean").mean())
    curve(ax, axis, group.with_columns(pl.col("mean").alias("low"), pl.col("mean").alias("high")), "mean", "low",
          "high", band=False, label="group mean", color="black", linewidth=2.5)


@draws("group_gain")
def group_gain(table, figure_id, confidence, groups):
    rows = require_rows(analysis.tuned_vs_base(table).filter(
        pl.col("relation").is_in(["in-domain", "cross-domain", "instruction-tuned"])), figure_id,
        "tuned rows with a base row at the same checkpoint, set, format and shots")
    groups = analysis.dataset_groups(table, groups)
    rows = rows.with_columns(pl.col("eval_dataset").replace_strict(groups, default=None).alias("group"))
    fig, axes = grid(2, ncols=2, width=6.0, height=3.4)
    axis = CheckpointAxis(rows)
    for ax, name in zip(axes, (analysis.PRETRAINING, analysis.NOT_PRETRAINING)):
        members = rows.filter(pl.col("group") == name)
        if not members.is_empty():
            _gain_lines(ax, axis, members)
            legend_right(ax, ncols=1)
        n = members["eval_dataset"].n_unique()
        ax.set_title(f"{name} ({n} set{'' if n == 1 else 's'})")
        zero_line(ax)
        axis.decorate(ax)
    axes[0].set_ylabel("tuned − pre-trained")
    return fig


@draws("full_vs_lora")
def full_vs_lora(table, figure_id, confidence, groups):
    transfer = main_transfer(table, figure_id)
    variants = [v for v, _ in by_variant(transfer)]
    trained = transfer.filter(pl.col("relation") != "instruction-tuned").group_by("train_variant").agg(
        pl.col("train_dataset").unique())
    shared = set.intersection(*(set(d) for d in trained["train_dataset"].to_list()))
    if len(variants) < 2 or not shared:
        raise FigureDataError(f"figure '{figure_id}': needs two fine-tuning variants with a train set in common; the "
                              f"table has variants {variants}")
    rows = transfer.filter(pl.col("train_dataset").is_in(sorted(shared)))
    fig, axes = grid(2, ncols=2, width=5.0, sharey=False)
    axis = CheckpointAxis(rows)
    panels = (("in-domain", "gain"), ("cross-task", "forgetting below 0"))
    for ax, (relation, meaning) in zip(axes, panels):
        part = rows.filter(pl.col("relation") == relation)
        # A seed's mean over the shared train sets and their eval sets; then the mean and range over seeds.
        per_seed = part.group_by(["train_variant", "train_seed", "model", "checkpoint"], maintain_order=True).agg(
            pl.col("delta").mean())
        per_variant = per_seed.group_by(["train_variant", "model", "checkpoint"], maintain_order=True).agg(
            pl.col("delta").mean().alias("mean"), pl.col("delta").min().alias("low"),
            pl.col("delta").max().alias("high"), pl.len().alias("seeds"))
        for k, variant in enumerate(variants):
            line = per_variant.filter(pl.col("train_variant").eq_missing(variant))
            if line.is_empty():
                continue
            seeds = line["seeds"].max()
            curve(ax, axis, line, "mean", "low", "high", band=seeds > 1, color=f"C{k}",
                  label=f"{variant} ({seeds} seed{'s' if seeds > 1 else ''})")
        zero_line(ax)
        ax.set_title(f"{relation}: {meaning} ({part['eval_dataset'].n_unique()} eval sets)\n"
                     f"fine-tuned on {', '.join(sorted(shared))}", fontsize=9)
        ax.set_ylabel("fine-tuned − pre-trained")
        axis.decorate(ax)
    shared_legend(fig, axes[0])
    return fig


@draws("instruction_tuned")
def instruction_tuned(table, figure_id, confidence, groups):
    tuned = require_rows(table.filter(pl.col("relation") == "instruction-tuned"), figure_id, "instruction-tuned rows")
    shots = analysis.comparison_shots(table, instruction_tuned=True)
    tuned = tuned.filter(pl.col("shots") == shots)
    base = table.filter((pl.col("relation") == "base") & (pl.col("shots") == shots)
                        & pl.col("eval_dataset").is_in(tuned["eval_dataset"].unique().to_list()))
    groups = analysis.dataset_groups(table, groups)
    benchmarks = sorted(tuned["eval_dataset"].unique().to_list(),
                        key=lambda d: (groups.get(d) != analysis.PRETRAINING, d))
    fig, axes = grid(len(benchmarks), ncols=3)
    axis = CheckpointAxis(pl.concat([tuned, base]))
    for ax, benchmark in zip(axes, benchmarks):
        for model, rows in base.filter(pl.col("eval_dataset") == benchmark).group_by("model", maintain_order=True):
            curve(ax, axis, rows, "value", "ci_low", "ci_high", label=f"{model[0]} pre-trained", linestyle="--")
        for model, rows in tuned.filter(pl.col("eval_dataset") == benchmark).group_by("model", maintain_order=True):
            curve(ax, axis, rows, "value", "ci_low", "ci_high", label=f"{model[0]} instruction-tuned")
        ax.set_title(f"{benchmark}\n({groups.get(benchmark, 'no base curve')})", fontsize=9)
        ax.set_ylabel(f"{ylabel_for(tuned)} ({shots}-shot)")
        axis.decorate(ax)
    shared_legend(fig, axes[0], ncols=2)
    return fig
