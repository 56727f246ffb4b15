"""An HTML overview of the main tables, for the Snakemake report (which shows HTML inline, not Parquet)."""

from __future__ import annotations

import html

import polars as pl

from amuro import analysis
from amuro.axes import main_eval_format


def _html_table(table: pl.DataFrame, caption: str) -> str:
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.3f}"
        return html.escape("" if value is None else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in table.iter_rows())
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def overview_html(results: pl.DataFrame, transfer: pl.DataFrame, forgetting: pl.DataFrame,
                  mrc: pl.DataFrame | None = None, group_gain: pl.DataFrame | None = None,
                  findings: pl.DataFrame | None = None, seeds: pl.DataFrame | None = None) -> str:
    """The main tables; `results` and `transfer` with one metric per eval set (analysis.headline), the main
    variant's cells at their seed mean; Table 6, the MRC and the findings per variant (a train_variant column)."""
    parts = []
    if findings is not None and not findings.is_empty():
        columns = ["model", "train_variant", "finding", "holds", "claim", "evidence"]
        if findings["seed_sd"].is_not_null().any():
            columns[4:4] = ["margin", "seed_margins", "seed_sd", "beyond_seed_noise"]
        parts.append(_html_table(findings.select(columns), "The paper's four findings, checked on this study, per "
                                                           "fine-tuning variant (on the mean over seeds)"))
    if seeds is not None and seeds["n_seeds"].max() is not None and seeds["n_seeds"].max() > 1:
        spread = seeds.filter(pl.col("n_seeds") > 1).group_by(["model", "train_variant", "relation"]).agg(
            pl.len().alias("rows"), pl.col("sd").mean().alias("mean_sd"), (pl.col("max") - pl.col("min")).max()
            .alias("largest_range")).sort(["model", "train_variant", "relation"], nulls_last=True)
        parts.append(_html_table(spread, "Spread over fine-tuning seeds: cells with two seeds or more"))
    if group_gain is not None and not group_gain.is_empty():
        table6 = group_gain.pivot(on="group", index=["model", "train_variant", "checkpoint", "step"],
                                  values="mean_delta", sort_columns=True).sort(
            ["model", "train_variant", "step"], nulls_last=True).drop("step")
        parts.append(_html_table(table6, "Table 6: mean change from tuning (tuned − pre-trained) per pre-training group"))
        members = group_gain.group_by("group").agg(pl.col("datasets").first()).sort("group")
        parts.append(_html_table(members, "Table 6: the sets of each group"))
    if mrc is not None and not mrc.is_empty():
        if "aggregate" in mrc.columns:  # the mean over checkpoints (the paper's number) is labelled as such
            mrc = mrc.with_columns(pl.col("checkpoint").fill_null(pl.col("aggregate")))
        ratio = mrc.pivot(on="direction", index=["model", "train_variant", "checkpoint", "step"], values="mrc",
                          sort_columns=True).sort(["model", "train_variant", "step"], nulls_last=True).drop("step")
        parts.append(_html_table(ratio, "Mean ratio of change (MRC) on the other task kind, per checkpoint"))
    tuned = transfer.filter(pl.col("relation") == "instruction-tuned")
    if not tuned.is_empty():
        parts.append(_html_table(tuned.select("model", "checkpoint", "eval_dataset", "shots", "metric", "base",
                                              "finetuned", "delta", "delta_ci_low", "delta_ci_high"),
                                 "Benchmarks: pre-trained (base) vs instruction-tuned"))
    transfer = transfer.filter(pl.col("relation") != "instruction-tuned")
    if not transfer.is_empty():
        in_domain = transfer.filter(
            (pl.col("relation") == "in-domain") & (pl.col("eval_format") == main_eval_format(
                transfer["eval_format"].unique().to_list()))
        ).select("model", "checkpoint", "train_dataset", "train_format", "train_size", "train_variant", "train_seed",
                 "shots", "metric", "base", "finetuned", "delta", "delta_ci_low", "delta_ci_high")
        parts.append(_html_table(in_domain, "In-domain: pre-trained (base) vs fine-tuned, main eval format"))
        model, checkpoint = analysis.checkpoint_order(transfer)[-1]
        last = transfer.filter((pl.col("model") == model) & (pl.col("checkpoint") == checkpoint)
                               & (pl.col("eval_format") == main_eval_format(
                                   transfer["eval_format"].unique().to_list())))
        cell = ["train_dataset", "train_format", "train_size", "train_variant", "train_seed"]
        matrix = last.select(*cell, "eval_dataset", "delta").pivot(on="eval_dataset", index=cell, values="delta",
                                                                   sort_columns=True)
        parts.append(_html_table(matrix, f"Transfer matrix at {model} {checkpoint}: fine-tuned − pre-trained"))
        lost = forgetting.filter((pl.col("model") == model) & (pl.col("checkpoint") == checkpoint)
                                 & (pl.col("n_below_base") > 0)).select(
            "train_dataset", "train_variant", "train_seed", "eval_format", "relation", "eval_task", "mean_delta",
            "datasets_below_base")
        parts.append(_html_table(lost, f"Forgetting at {model} {checkpoint}: sets reliably below the pre-trained model"))
    base = results.filter(pl.col("relation") == "base").select(
        "model", "checkpoint", "eval_dataset", "eval_format", "shots", "metric", "value", "ci_low", "ci_high")
    parts.append(_html_table(base, "Pre-trained checkpoints: every eval set, format and shot count"))
    style = ("table{border-collapse:collapse;margin:1em 0;font:12px sans-serif}caption{font-weight:bold;"
             "text-align:left}td,th{border:1px solid #ccc;padding:2px 6px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
