"""Specifications for amuro.benchmarks: lm-eval's per-sample log as prediction files that amuro.results summarises
to lm-eval's own numbers.

Fixtures: a fresh 2-layer OlmoForCausalLM (hidden 32) with a byte-level BPE tokenizer, and a 4-choice colour
benchmark of 12 test and 8 train rows in JSON lines, run through lm-eval's task files from `write_task_yamls`.
"""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from amuro.benchmarks import BenchmarkError, run_benchmarks, write_task_yamls
from amuro.results import prediction_summary
from conftest import write_tiny_olmo

COLOURS = ["red", "blue", "green", "yellowish"]  # unequal lengths, so acc_norm can choose differently from acc
THINGS = ["sky", "grass", "sun", "rose", "sea", "leaf"]
BASE_META = {"model": "tiny", "checkpoint": "step0", "train": None, "train_dataset": None, "train_format": None,
             "train_size": None}
SETTINGS = {"batch_size": 8, "limit": None}


def benchmark_rows(n: int, prefix: str) -> list[dict]:
    return [{"id": f"{prefix}{i}", "query": f"The {THINGS[i % len(THINGS)]} number {i} is",
             "choices": COLOURS[:3 + i % 2], "gold": i % 3} for i in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_tiny_olmo(tmp_path_factory.mktemp("model") / "step0",
                           [f"{r['query']} {r['choices'][r['gold']]}" for r in benchmark_rows(20, "c")], max_positions=128)


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    for split, n in (("train", 8), ("test", 12)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in benchmark_rows(n, split)))
    return write_task_yamls({"colours": {"task": "amuro_test_colours", "train": root / "train.jsonl",
                                         "test": root / "test.jsonl"}}, root / "tasks")


def run(model_dir, tasks_dir, out: Path, meta=BASE_META, task="amuro_test_colours"):
    plan = [{"benchmark": "colours", "task": task, "shots": 2, "output": str(out)}]
    return run_benchmarks(model_dir, plan, {**SETTINGS, "tasks_dir": str(tasks_dir)}, meta)


@pytest.fixture(scope="module")
def base_run(model_dir, tasks_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "colours" / "2shot.parquet"
    return out, run(model_dir, tasks_dir, out)


def test_task_yaml_names_the_files_by_absolute_path(tasks_dir):
    config = yaml.safe_load((tasks_dir / "amuro_test_colours.yaml").read_text())
    files = config["dataset_kwargs"]["data_files"]
    assert config["task"] == "amuro_test_colours" and config["output_type"] == "multiple_choice"
    assert all(Path(p).is_absolute() and Path(p).exists() for p in files.values())
    assert [m["metric"] for m in config["metric_list"]] == ["acc", "acc_norm"]


def test_one_row_per_example_and_metric_with_argmax_predictions(base_run):
    out, _ = base_run
    table = pl.read_parquet(out)
    test = benchmark_rows(12, "test")
    assert table["metric"].to_list() == ["acc"] * 12 + ["acc_norm"] * 12
    assert table["id"].to_list() == [str(i) for i in range(12)] * 2
    assert table["shots"].unique().to_list() == [2]
    assert table["eval_dataset"].unique().to_list() == ["colours"]
    assert table["lm_eval_task"].unique().to_list() == ["amuro_test_colours"]
    for row in table.iter_rows(named=True):
        doc = test[int(row["id"])]
        assert row["reference"] == doc["choices"][doc["gold"]]
        assert row["prompt"].endswith(doc["query"]) and row["prompt"].count("\n\n") == 2  # two demonstrations
        lls = np.array(row["choice_logliks"])
        assert len(lls) == len(doc["choices"])
        if row["metric"] == "acc_norm":
            lls = lls / np.array([len(c) for c in doc["choices"]])
        assert row["prediction"] == doc["choices"][int(np.argmax(lls))]
        assert row["score"] == float(row["prediction"] == row["reference"])


def test_summary_equals_lm_evals_own_aggregate(base_run):
    out, aggregates = base_run
    assert set(aggregates) == {"colours"} and set(aggregates["colours"]) == {2}
    summary = prediction_summary([out], train_task=None, resamples=200)
    assert summary["metric"].to_list() == ["acc", "acc_norm"]
    for row in summary.iter_rows(named=True):
        assert row["value"] == pytest.approx(aggregates["colours"][2][row["metric"]], abs=1e-12)
        assert row["relation"] == "base" and row["eval_task"] == "multiple_choice" and row["n_examples"] == 12


def test_a_second_run_gives_identical_bytes(base_run, model_dir, tasks_dir, tmp_path):
    out, aggregates = base_run
    again = tmp_path / "2shot.parquet"
    assert run(model_dir, tasks_dir, again) == aggregates
    assert again.read_bytes() == out.read_bytes()


def test_an_unknown_task_is_named(model_dir, tasks_dir, tmp_path):
    with pytest.raises(BenchmarkError, match="colours.*no_such_task"):
        run(model_dir, tasks_dir, tmp_path / "x.parquet", task="no_such_task")
    assert not (tmp_path / "x.parquet").exists()


def test_rows_of_an_instruction_tuned_model(model_dir, tasks_dir, tmp_path):
    meta = {**BASE_META, "train": "mix-full", "train_dataset": "mix", "train_format": "chat", "train_size": "full"}
    out = tmp_path / "2shot.parquet"
    run(model_dir, tasks_dir, out, meta=meta)
    summary = prediction_summary([out], train_task="instruction", resamples=200)
    assert summary["relation"].unique().to_list() == ["instruction-tuned"]
    assert summary["train_dataset"].unique().to_list() == ["mix"]


@pytest.fixture(scope="module")
def split_tasks_dir(tmp_path_factory) -> Path:
    """The colour task as lm-eval's ARC is: train, validation and test splits (validation rows have ids `val...`)."""
    root = tmp_path_factory.mktemp("colours_splits")
    for split, n in (("train", 8), ("validation", 6), ("test", 12)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in benchmark_rows(n, split[:3])))
    tasks = write_task_yamls({"colours": {"task": "amuro_test_splits", "train": root / "train.jsonl",
                                          "test": root / "test.jsonl"}}, root / "tasks")
    config = yaml.safe_load((tasks / "amuro_test_splits.yaml").read_text())
    config["dataset_kwargs"]["data_files"]["validation"] = str(root / "validation.jsonl")
    config.update(training_split="train", validation_split="validation")
    (tasks / "amuro_test_splits.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return tasks


@pytest.mark.parametrize("split, scored, n", [("default", "test", 12), ("test", "test", 12),
                                              ("validation", "validation", 6)])
def test_benchmarks_split_picks_the_split_scored_and_every_row_records_it(model_dir, split_tasks_dir, tmp_path,
                                                                        split, scored, n):
    """benchmarks.split validation: the paper's run_lm_eval --split validation, where lm-eval scores test."""
    plan = [{"benchmark": "colours", "task": "amuro_test_splits", "shots": 2, "output": str(tmp_path / "o.parquet"),
             "split": split}]
    run_benchmarks(model_dir, plan, {**SETTINGS, "tasks_dir": str(split_tasks_dir)}, BASE_META)
    table = pl.read_parquet(tmp_path / "o.parquet").filter(pl.col("metric") == "acc")
    assert table["eval_split"].unique().to_list() == [scored] and table.height == n
    docs = benchmark_rows(n, scored[:3])
    assert all(row["prompt"].endswith(docs[int(row["id"])]["query"]) for row in table.iter_rows(named=True))


def test_a_split_the_task_lacks_is_refused_naming_the_key(model_dir, tasks_dir, tmp_path):
    plan = [{"benchmark": "colours", "task": "amuro_test_colours", "shots": 2, "output": str(tmp_path / "o.parquet"),
             "split": "validation"}]
    with pytest.raises(BenchmarkError, match=r"benchmark colours \(lm-eval task amuro_test_colours\): benchmarks "
                                             r"split validation \(benchmarks.split or benchmarks.tasks.<id>.split\): "
                                             r"the lm-eval task has no validation split"):
        run_benchmarks(model_dir, plan, {**SETTINGS, "tasks_dir": str(tasks_dir)}, BASE_META)
    assert not (tmp_path / "o.parquet").exists()


def test_each_benchmark_job_gets_its_split_and_a_mini_world_one_cannot_have_validation(demo_config):
    from amuro.config import ConfigError, validate_config
    from amuro.study import Study

    tasks = demo_config["benchmarks"]["tasks"]
    first, second = sorted(tasks)[:2]
    tasks[first]["split"] = "test"
    study = Study(validate_config(demo_config))
    splits = {r["benchmark"]: r["split"] for r in study.benchmarking.requests(study.base_runs()[0])}
    assert splits[first] == "test" and splits[second] == "default"
    demo_config["benchmarks"]["split"] = "validation"
    with pytest.raises(ConfigError, match=r"key 'benchmarks.split': mini-world benchmark '\w+' has no validation "
                                          r"split"):
        validate_config(demo_config)
    demo_config["benchmarks"]["split"] = "default"
    tasks[first]["split"] = "validation"
    with pytest.raises(ConfigError, match=rf"key 'benchmarks.tasks.{first}.split'"):
        validate_config(demo_config)


def test_a_lora_cell_is_scored_as_its_adapter_merged_into_its_base(model_dir, tasks_dir, tmp_path):
    """An adapter directory (amuro.adapters) gives lm-eval the merged model: the same scores as that model saved
    whole, and other scores than its base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    adapted = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))  # random B: a visible change
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    adapted.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(adapter)
    (adapter / "train_meta.json").write_text(json.dumps({"method": "lora", "base_dir": str(model_dir)}))
    adapted.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(merged)
    scores = {name: run(path, tasks_dir, tmp_path / name / "2shot.parquet")
              for name, path in (("adapter", adapter), ("merged", merged), ("base", model_dir))}
    assert scores["adapter"] == scores["merged"]
    rows = {name: pl.read_parquet(tmp_path / name / "2shot.parquet")["choice_logliks"].to_list() for name in scores}
    assert np.allclose(np.concatenate(rows["adapter"]), np.concatenate(rows["merged"]), atol=1e-4)
    assert not np.allclose(np.concatenate(rows["adapter"]), np.concatenate(rows["base"]), atol=1e-3)
