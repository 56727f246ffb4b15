"""docs/paper.md's "Checking against the paper", run as written on the two tables the paper released.

tests/data/paper holds both CSVs byte for byte as published (SOURCE.json: repository, commit, sha256). The page's
commands run unchanged in a scratch directory, and every number the page states about their output is asserted
here, on the tables those commands wrote.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).parents[1]
RELEASE = Path(__file__).parent / "data" / "paper"
PAGE = (ROOT / "docs" / "paper.md").read_text()
SECTION = PAGE.split("## Checking against the paper", 1)[1].split("\n## ", 1)[0]
CHECKPOINTS = ["step1000", "step18000", "step342000", "step424000", "step505000", "step592000", "step738000", "main"]
# Table 6 as docs/paper.md states it, steps 1000 ... 738000 and main.
LEARNED_IN_FINETUNING = [0.0618, 0.1487, 0.2857, 0.2968, 0.3035, 0.2971, 0.2644, 0.2903]
LEARNED_IN_PRETRAINING = [0.0368, 0.0406, 0.0017, 0.0087, 0.0220, 0.0174, 0.0136, -0.0019]


def test_the_released_tables_are_the_published_bytes():
    source = json.loads((RELEASE / "SOURCE.json").read_text())
    for name, entry in source["files"].items():
        assert hashlib.sha256((RELEASE / name).read_bytes()).hexdigest() == entry["sha256"], name


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """The page's commands, as written, in a directory holding the two CSVs, the paper config and the venv."""
    work = tmp_path_factory.mktemp("paper")
    for name in ("all_perf_table.csv", "official_eval_table.csv"):
        shutil.copy(RELEASE / name, work / name)
    shutil.copy(ROOT / "workflow_config.yaml", work / "workflow_config.yaml")
    (work / ".venv").symlink_to(Path(sys.prefix))
    script = re.search(r"```bash\n(.*?)```", SECTION, re.S).group(1)
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, capture_output=True, text=True,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr[-3000:]
    return work / "paper", run.stderr


def test_the_import_keeps_647_cells_and_every_benchmark_row_and_logs_the_two_it_leaves_out(checked):
    out, log = checked
    assert "647 of the per-cell table's 649 rows and all 107 benchmark rows" in SECTION
    assert pl.read_parquet(out / "cells.parquet").height == 647
    assert pl.read_parquet(out / "benchmarks.parquet").height == 107
    assert "2 row(s) left out as second numbers of a cell: lines 278, 409" in log


def test_the_mrc_is_the_papers(checked):
    out, _ = checked
    mrc = pl.read_parquet(out / "mrc.parquet").filter(pl.col("aggregate") == "mean over checkpoints")
    mrc = {r["direction"]: r for r in mrc.iter_rows(named=True)}
    cls_gen, gen_cls = mrc["classification -> generation"], mrc["generation -> classification"]
    assert "**−61.46 %**" in SECTION and "**+0.31 %**" in SECTION
    assert round(100 * cls_gen["mrc"], 2) == -61.46 and round(100 * gen_cls["mrc"], 2) == 0.31
    # "4 pairs per checkpoint, 8 checkpoints"
    for row in (cls_gen, gen_cls):
        assert (row["n_checkpoints"], row["n_pairs"]) == (8, 32)


def test_table6_is_the_papers_at_every_checkpoint(checked):
    out, _ = checked
    gains = pl.read_parquet(out / "group_gain.parquet")
    for group, expected, datasets in (
            ("not learned in pre-training", LEARNED_IN_FINETUNING,
             "boolq,mnli_matched,mnli_mismatched,paws,socialiqa,xlsum,xsum"),
            ("learned in pre-training", LEARNED_IN_PRETRAINING, "arc_challenge,arc_easy,hellaswag,openbookqa,sciq_mc")):
        rows = {r["checkpoint"]: r for r in gains.filter(pl.col("group") == group).iter_rows(named=True)}
        assert [round(rows[c]["mean_delta"], 4) for c in CHECKPOINTS] == expected, group
        assert {rows[c]["datasets"] for c in CHECKPOINTS} == {datasets}
        assert ", ".join(f"{v:.4f}".replace("-", "−") for v in expected) in SECTION.replace("\n  ", " ")


def test_the_comparison_is_at_4_shots_with_or_without_analysis_shots(checked):
    _, log = checked
    assert "Comparison shots: 4 (`analysis.shots`" in SECTION
    assert "supervised models are compared with their base at 4 shots (analysis.shots)" in log
    from amuro import analysis

    cells = analysis.headline(pl.read_parquet(checked[0] / "cells.parquet"))
    assert analysis.comparison_shots(cells) == 4  # the most-pairs rule, without analysis.shots


@pytest.mark.parametrize("figure", ["pretraining_curves", "group_gain", "instruction_tuned", "cross_task",
                                    "finetuned_vs_base"])
def test_every_figure_the_section_lists_is_drawn(checked, figure):
    out, _ = checked
    assert figure in SECTION
    assert (out / f"{figure}.pdf").read_bytes().startswith(b"%PDF")
    assert (out / f"{figure}.png").stat().st_size > 10_000


def test_a_set_scored_by_two_evaluations_is_two_pretraining_curves(checked):
    # The benchmark table's rte and qqp (lm-eval, acc) beside the per-cell table's (the paper's prompts, accuracy).
    out, _ = checked
    from amuro import analysis

    table = analysis.headline(pl.concat([pl.read_parquet(out / "cells.parquet"),
                                         pl.read_parquet(out / "benchmarks.parquet")]))
    base = analysis.base_curves(table).filter(pl.col("eval_dataset") == "rte")
    assert sorted(base.group_by(analysis.CURVE).agg(pl.col("metric").first())["metric"]) == ["acc", "accuracy"]
    assert "rte" in analysis.pretraining_groups(table)
