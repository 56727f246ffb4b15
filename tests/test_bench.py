"""`amuro bench` on the mini-world architecture: the recipes it compares and what it reports (not how fast)."""

import json

import pytest

from amuro import bench


@pytest.mark.slow
def test_bench_runs_both_recipes_on_the_same_steps_and_compares_batched_evaluation(tmp_path):
    overrides = dict(steps=4, warmup_steps=1, eval_examples=8, max_new_tokens=4)
    result = bench.main(quick=True, json_out=str(tmp_path / "bench.json"), threads=1, work_dir=str(tmp_path),
                        overrides=overrides)
    paper, fast = result["finetune"]["paper"], result["finetune"]["fast"]
    assert (paper["micro_batch_size"], paper["accumulation"], paper["batching"], paper["deepspeed"]) == (
        1, 8, "padded", "zero3")
    # One process: the default (auto) has nothing to partition and trains on ZeRO stage 0.
    assert (fast["micro_batch_size"], fast["accumulation"], fast["batching"], fast["deepspeed"]) == (
        8, 1, "packed", "zero0")
    # Same effective batch, same examples per step: the same loss at every step.
    assert len(paper["losses"]) == len(fast["losses"]) == 4
    assert result["finetune"]["loss_max_relative_difference"] < 1e-4
    assert paper["steps_timed"] == fast["steps_timed"] == 3
    assert result["finetune"]["speedup"] == pytest.approx(fast["tokens_per_s"] / paper["tokens_per_s"])
    assert paper["mfu"] is None  # no GPU, no peak to divide by
    evaluation = result["evaluate"]
    assert evaluation["single"]["batch_size"] == 1 and evaluation["batched"]["batch_size"] == 16
    assert evaluation["same_predictions"] == 1.0 and evaluation["same_tokenprob_labels"] == 1.0
    assert json.loads((tmp_path / "bench.json").read_text())["config"]["steps"] == 4
    assert not list(tmp_path.glob("amuro-bench-*"))  # the temporary model and runs are gone


def test_mfu_is_six_times_parameters_per_token_against_the_gpu_peak():
    assert bench.peak_flops("NVIDIA H100 80GB HBM3") == bench.peak_flops("NVIDIA H200") == 989e12
    assert bench.peak_flops(None) is None
    assert bench.loss_agreement([2.0, 1.0], [2.0, 1.01, 5.0]) == pytest.approx(0.01)


@pytest.mark.workflow
def test_the_plan_benchmark_dry_runs_the_grown_paper_study_and_reports_its_jobs(tmp_path):
    import yaml

    from amuro.config import validate_config
    from amuro.scaling import STUDIES, grown_config, plan_bench
    from jobs import PAPER, expected_jobs

    (result,) = plan_bench(studies=["500"], json_out=tmp_path / "plan.json")
    checkpoints, formats, sizes = STUDIES["500"]
    config = validate_config(grown_config(yaml.safe_load(PAPER.read_text()), checkpoints, formats, sizes))
    assert result["jobs"] == expected_jobs(config, {"train_size", "fticl", "full_vs_lora"}).total()
    assert result["seconds"] > 0 and 0 < result["peak_gb"] < 4
    assert json.loads((tmp_path / "plan.json").read_text()) == [result]


def test_the_floor_snakefile_defaults_to_the_20000_job_studys_shape():
    import re

    import yaml

    from amuro.config import validate_config
    from amuro.scaling import FLOOR, STUDIES, grown_config, floor_config
    from jobs import PAPER

    shape = floor_config(validate_config(grown_config(yaml.safe_load(PAPER.read_text()), *STUDIES["20000"])))
    defaults = dict(re.findall(r'config\.get\("(\w+)", (\d+)\)', FLOOR.read_text()))
    assert {key: int(value) for key, value in defaults.items()} == shape


@pytest.mark.workflow
def test_the_floor_plans_a_fetch_and_evaluation_per_checkpoint_and_a_fine_tune_evaluation_and_summary_per_cell(
        tmp_path):
    from amuro.scaling import FLOOR, dry_run

    result = dry_run(None, tmp_path, FLOOR, {"checkpoints": 2, "cells": 3, "outputs": 2, "base_outputs": 4})
    assert result["jobs"] == 2 * 2 + 2 * 3 * 2 + 2 * (3 + 1) + 1  # fetch, base evaluation; fine-tune, its
    # evaluation; summaries (cells and base); all
