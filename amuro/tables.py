"""The summary tables from long-format tables, ours or imported: transfer, forgetting, Table 6 (group_gain), the
mean ratio of change (mrc), the paper's four findings checked on this study (findings), the spread of every cell over
its fine-tuning seeds (seeds) and an HTML overview. The workflow's `tables` rule and `amuro tables` both come here.

Transfer and forgetting have a row per cell, its variant and seed included. Table 6, the MRC and the findings are
computed per fine-tuning variant (a train_variant column), on the mean over each cell's seeds (amuro.variants).

Settings (amuro.config.analysis_settings of a workflow config):
- benchmark_metric: the benchmark metric the tables show (acc or acc_norm);
- groups: eval set -> Table 6 group, used exactly as given; empty: every set grouped from the base curves;
- mrc_eval_sets: D_E of the MRC (cross_task or train_sets);
- shots: the shot count tuned and base models are compared at; null: each arm's count that pairs the most cells.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from amuro import analysis, findings
from amuro.io import write_text
from amuro.report import overview_html
from amuro.results import merged_settings, read_tables, write_table
from amuro.variants import by_variant, main_variant_rows, seed_means, seed_summary, with_variant

log = logging.getLogger(__name__)

TABLES = ("transfer", "forgetting", "group_gain", "mrc", "findings", "seeds")
DEFAULTS = {"benchmark_metric": "acc", "groups": {}, "mrc_eval_sets": "cross_task", "shots": None}


def summary_tables(results: pl.DataFrame, settings: dict) -> tuple[dict[str, pl.DataFrame], str]:
    """The tables by name, and the HTML overview."""
    s = {**DEFAULTS, **settings}
    transfer = analysis.transfer_matrix(results)
    forgetting = analysis.forgetting_matrix(transfer)
    headline = analysis.headline(results, s["benchmark_metric"])
    for arm, tuned in (("supervised", False), ("instruction-tuned", True)):
        shots = analysis.comparison_shots(headline, instruction_tuned=tuned, shots=s["shots"])
        log.info("%s models are compared with their base at %s shots (%s)", arm, shots,
                 "analysis.shots" if s["shots"] is not None else "the count that pairs the most cells")
    groups = analysis.table_groups(headline, s["groups"])  # from the base curves: the same for every variant
    mrc, gains = [], []
    for variant, rows in by_variant(headline):
        rows = seed_means(rows)
        mrc.append(with_variant(analysis.mean_ratio_of_change(rows, s["mrc_eval_sets"], s["shots"]), variant))
        gains.append(with_variant(analysis.group_gains(rows, groups, s["shots"]), variant))
    empty = with_variant(analysis.mean_ratio_of_change(headline.clear(), s["mrc_eval_sets"]), None)
    mrc = pl.concat(mrc) if mrc else empty
    gains = pl.concat(gains) if gains else with_variant(analysis.group_gains(headline.clear(), groups), None)
    checked = findings.findings_table(headline, s["mrc_eval_sets"], s["shots"])
    seeds = seed_summary(headline)
    # The overview shows the main variant's cells at their seed mean and comparison shots.
    main = seed_means(main_variant_rows(headline))
    overview = overview_html(main, analysis.tuned_vs_base(main, s["shots"]), forgetting, mrc, gains, checked, seeds)
    return {"transfer": transfer, "forgetting": forgetting, "group_gain": gains, "mrc": mrc,
            "findings": checked, "seeds": seeds}, overview


def write_summary_tables(inputs: Sequence[str | Path], settings: dict, outputs: dict[str, str | Path | None]) -> None:
    """Read the long tables, write each table whose output path is given (TABLES and "overview")."""
    tables, overview = summary_tables(read_tables(list(inputs)), settings)
    # What the tables were made with and from: the analysis settings and the input tables' own settings.
    recorded = {"analysis": {**DEFAULTS, **settings}, "inputs": merged_settings(list(inputs))}
    for name, table in tables.items():
        if outputs.get(name):
            write_table(table, outputs[name], settings=recorded)
    if outputs.get("overview"):
        write_text(overview, outputs["overview"])


def write_tables(tables: Sequence[str | Path], out_dir: str | Path, config: str | Path | None = None,
                 settings: dict | None = None) -> None:
    """`amuro tables` (the workflow's rule `tables` too): every summary table into out_dir, with the analysis
    settings of a workflow config or as given."""
    from amuro.config import analysis_settings, load_config

    if (config is None) == (settings is None):
        raise SystemExit("amuro tables: give either --config or --settings")
    settings = analysis_settings(load_config(config)) if config is not None else settings
    out_dir = Path(out_dir)
    outputs = {name: out_dir / f"{name}.parquet" for name in TABLES} | {"overview": out_dir / "overview.html"}
    write_summary_tables(tables, settings, outputs)
    log.info("summary tables of %d table(s) in %s", len(tables), out_dir)
