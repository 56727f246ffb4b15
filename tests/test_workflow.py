"""The workflow through Snakemake: the dry run's job list, and a whole tiny mini-world study end to end."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from amuro.config import load_config, model_checkpoints
from amuro.figures import FIGURES as FIGURES_REGISTRY
from conftest import DEMO_CONFIG, ROOT
from jobs import FIGURES_LEFT_OUT, TINY, expected_jobs, planned_jobs, snakemake, snakemake_command, snakemake_env

pytestmark = pytest.mark.workflow



@pytest.mark.parametrize("configfile", [DEMO_CONFIG, TINY])
def test_dry_run_plans_exactly_the_jobs_the_config_implies(configfile, tmp_path):
    assert planned_jobs(tmp_path, configfile) == expected_jobs(load_config(configfile), FIGURES_LEFT_OUT[configfile])


def test_one_prompt_file_needs_only_its_dataset(tmp_path):
    jobs = planned_jobs(tmp_path, DEMO_CONFIG, "results/prompts/people_nli/io/test.parquet")
    assert jobs == Counter(miniworld_generate=1, prepare_dataset=1, build_test_prompts=1)


def test_one_figure_schedules_only_the_cells_it_shows(tmp_path):
    # Base curves (the eval sets and the benchmarks) need no fine-tuning at all.
    jobs = planned_jobs(tmp_path, DEMO_CONFIG, "results/figures/pretraining_curves.pdf")
    assert jobs == Counter(miniworld_generate=1, miniworld_tokenizer=1, miniworld_pretrain=1, fetch_checkpoint=5,
                           prepare_dataset=10, build_test_prompts=30, index_prompts=1, evaluate_base=5,
                           evaluate_benchmarks=5,
                           summarize_predictions=5, figure=1)
    # The in-domain comparison needs every checkpoint fine-tuned on every train set, and nothing else: it shows the
    # full variant, but one job per checkpoint trains all of its cells (LoRA's two train sets at two seeds too) and
    # one scores them; instruction tuning is not needed.
    jobs = planned_jobs(tmp_path, DEMO_CONFIG, "results/figures/finetuned_vs_base.pdf")
    assert jobs["finetune_checkpoint"] == 5 and "finetune" not in jobs and jobs["evaluate_finetuned"] == 5
    assert jobs["summarize_predictions"] == 5 + 5 * 5 and jobs["figure"] == 1
    assert "results_table" not in jobs and "tables" not in jobs


def test_train_size_figure_reads_every_size_but_no_fticl(tmp_path):
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["finetune"].update(formats=["default", "fticl"], sizes=["all", 100])
    configfile = tmp_path / "grid.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tmp_path, configfile, "results/figures/train_size.pdf")
    # 3 checkpoints x 2 train sets x 2 sizes, default format only.
    assert jobs["finetune"] == 12 and "build_fticl_prompts" not in jobs
    jobs = planned_jobs(tmp_path, configfile, "results/figures/fticl.pdf")
    assert jobs["finetune"] == 12 and jobs["build_fticl_prompts"] == 2


def test_a_figure_the_study_cannot_fill_fails_with_the_reason(tmp_path):
    run = snakemake(tmp_path, TINY, "results/figures/fticl.pdf", "--dry-run", check=False)
    assert run.returncode != 0
    assert "figure 'fticl' cannot be drawn from this study" in run.stdout + run.stderr
    assert "finetune.formats to hold fticl" in run.stdout + run.stderr


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny study run once, end to end, through Snakemake."""
    workdir = tmp_path_factory.mktemp("tiny_study")
    snakemake(workdir, TINY)
    return workdir


def _mean_score(path: Path) -> float:
    scores = pq.read_table(path).column("score").to_pylist()
    return sum(scores) / len(scores)


@pytest.mark.slow
def test_checkpoints_are_ordinary_hf_directories(tiny_study):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for name in ("step20-tokens40K", "step150-tokens307K", "step400-tokens819K"):
        path = tiny_study / "results" / "checkpoints" / "mini" / name
        assert {"config.json", "model.safetensors", "tokenizer.json", "resolved.json"} <= {p.name for p in path.iterdir()}
        assert AutoModelForCausalLM.from_pretrained(path).config.model_type == "olmo"
        assert AutoTokenizer.from_pretrained(path).eos_token == "<|endoftext|>"


@pytest.mark.slow
def test_held_out_loss_falls_across_checkpoints(tiny_study):
    losses = pq.read_table(tiny_study / "results" / "miniworld" / "pretrain" / "checkpoints.parquet")
    losses = losses.column("heldout_loss").to_pylist()
    assert losses == sorted(losses, reverse=True) and losses[0] - losses[-1] > 1.0


@pytest.mark.slow
def test_later_checkpoints_do_better_few_shot_on_the_task_pretraining_teaches(tiny_study):
    def accuracy(ckpt):
        return _mean_score(tiny_study / f"results/predictions/mini/{ckpt}/base/product_sentiment/default/2shot.parquet")

    assert accuracy("step400-tokens819K") > accuracy("step20-tokens40K") + 0.15


@pytest.mark.slow
def test_fine_tuned_models_beat_their_base_checkpoint_in_domain(tiny_study):
    last = "step400-tokens819K"
    for dataset in ("people_nli", "diary_summary"):
        base = max(_mean_score(tiny_study / f"results/predictions/mini/{last}/base/{dataset}/default/{k}shot.parquet")
                   for k in (0, 2))
        tuned = _mean_score(
            tiny_study / f"results/predictions/mini/{last}/{dataset}-default-all-full-42/{dataset}/default/0shot.parquet")
        assert tuned > base + 0.1, (dataset, base, tuned)


@pytest.mark.slow
def test_predictions_keep_every_example_and_its_settings(tiny_study):
    table = pq.read_table(
        tiny_study / "results/predictions/mini/step400-tokens819K/people_nli-default-all-full-42/product_sentiment/instruct/0shot.parquet")
    assert table.num_rows == 60
    row = table.to_pylist()[0]
    assert row["train_dataset"] == "people_nli" and row["eval_dataset"] == "product_sentiment"
    assert row["metric"] == "accuracy" and row["scoring"] == "tokenprob" and len(row["label_tokenprobs"]) == 2
    assert {row[f"label_{m}"] for m in ("tokenprob", "loglik", "constrained")} <= {"positive", "negative"}
    assert row["prompt"].startswith("Analyze the sentiment")


@pytest.mark.slow
def test_the_study_ends_with_the_results_table_matrices_and_figures(tiny_study):
    import polars as pl

    from amuro.results import SCHEMA

    results = pl.read_parquet(tiny_study / "results/tables/results.parquet")
    assert list(results.schema) == list(SCHEMA)
    # 3 checkpoints x (base: 3 sets x 2 formats x 2 shot counts + 2 tuned models x 3 sets x 2 formats x 1 shot count
    # + base and instruction-tuned: 2 benchmarks x (acc, acc_norm))
    assert results.height == 3 * (3 * 2 * 2 + 2 * 3 * 2 + 2 * 2 * 2)
    assert results.group_by("relation").len().sort("relation").rows() == [
        ("base", 36 + 12), ("cross-task", 24), ("in-domain", 12), ("instruction-tuned", 12)]
    transfer = pl.read_parquet(tiny_study / "results/tables/transfer.parquet")
    # every fine-tuned row has its base row at 0 shots, every instruction-tuned row its base row at 2 shots
    assert transfer.height == 3 * 2 * 3 * 2 + 3 * 2 * 2
    for figure in set(FIGURES_REGISTRY) - FIGURES_LEFT_OUT[TINY]:
        assert (tiny_study / f"results/figures/{figure}.png").stat().st_size > 10_000
        assert (tiny_study / f"results/figures/{figure}.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_benchmark_rows_equal_the_per_example_means_and_tuned_models_keep_the_chat_template(tiny_study):
    import json

    import polars as pl

    results = pl.read_parquet(tiny_study / "results/tables/results.parquet")
    tuned = results.filter(pl.col("relation") == "instruction-tuned")
    assert set(tuned["eval_dataset"]) == {"city_country", "passage_check"} and set(tuned["metric"]) == {"acc", "acc_norm"}
    assert set(tuned["train_dataset"]) == {"chat_mix"} and set(tuned["train_task"]) == {"instruction"}
    cell = "results/benchmarks/mini/step400-tokens819K/chat_mix-chat-all-full-42/passage_check/2shot.parquet"
    examples = pl.read_parquet(tiny_study / cell)
    assert examples.height == 2 * 30 and examples["scoring"].unique().to_list() == ["lm-eval"]
    row = tuned.filter((pl.col("checkpoint") == "step400-tokens819K") & (pl.col("eval_dataset") == "passage_check")
                       & (pl.col("metric") == "acc")).row(0, named=True)
    assert row["value"] == pytest.approx(examples.filter(pl.col("metric") == "acc")["score"].mean())
    meta = json.loads((tiny_study / "results/finetuned/mini/step400-tokens819K/chat_mix/chat/all/full/42/train_meta.json")
                      .read_text())
    assert "<|assistant|>" in meta["chat_template"]
    for table in ("mrc", "group_gain", "scoring_methods", "table3"):
        assert pl.read_parquet(tiny_study / f"results/tables/{table}.parquet").height > 0
    gains = pl.read_parquet(tiny_study / "results/tables/group_gain.parquet")
    assert set(gains["checkpoint"]) == {"step20-tokens40K", "step150-tokens307K", "step400-tokens819K"}


@pytest.mark.slow
def test_the_tiny_study_shows_findings_i_and_iii_in_its_own_tables(tiny_study):
    """(i) a set flat in the base curve gains clearly more from fine-tuning at the last checkpoint than at the first;
    (iii) classification-tuned models lose more of the base's generation than generation-tuned ones lose of its
    classification. Read from the study's findings table, which is what its results table gives."""
    import polars as pl

    from amuro.analysis import headline
    from amuro.findings import findings_table

    found = pl.read_parquet(tiny_study / "results/tables/findings.parquet")
    results = pl.read_parquet(tiny_study / "results/tables/results.parquet")
    assert found.equals(findings_table(headline(results)))
    verdict = {r["finding"]: r for r in found.iter_rows(named=True)}
    assert verdict["i"]["holds"], verdict["i"]["evidence"]
    assert verdict["iii"]["holds"], verdict["iii"]["evidence"]


def test_a_finished_study_has_nothing_left_to_do(tiny_study):
    assert "Nothing to be done" in snakemake(tiny_study, TINY, "--dry-run").stdout


@pytest.mark.slow
def test_a_killed_workflow_redoes_only_its_unfinished_jobs_and_writes_the_same_table(tiny_study, tmp_path):
    """Snakemake and its jobs SIGKILLed together (the machine or the login session gone) while a fine-tuned cell is
    evaluated: after --unlock, the same command redoes only that evaluation and what follows it, and the results
    table is byte-identical to the uninterrupted run's, the cell fine-tuned again with the same seed included."""
    workdir = tmp_path / "study"
    shutil.copytree(tiny_study, workdir)
    cell, target = "mini/step20-tokens40K", "results/tables/results.parquet"
    # The study as it stands while one cell is still to be made: its model, predictions and summary, and the table
    # made from them, absent (with the table present, Snakemake would rightly take missing intermediates as done).
    shutil.rmtree(workdir / f"results/finetuned/{cell}/people_nli/default/all/full/42")
    shutil.rmtree(workdir / f"results/predictions/{cell}/people_nli-default-all-full-42")
    (workdir / f"results/tables/cells/{cell}/people_nli-default-all-full-42.parquet").unlink()
    (workdir / target).unlink()
    evaluation_log = workdir / f"logs/evaluate/{cell}/people_nli-default-all-full-42.log"
    evaluation_log.unlink()
    run = subprocess.Popen(snakemake_command(workdir, TINY, target), env=snakemake_env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not evaluation_log.exists():  # the fine-tune is done, its evaluation under way
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    locked = snakemake(workdir, TINY, target, check=False)
    assert locked.returncode != 0 and "cannot be locked" in locked.stdout + locked.stderr
    snakemake(workdir, TINY, "--unlock")
    redo = planned_jobs(workdir, TINY, target, "--rerun-incomplete")
    assert redo == Counter(evaluate_finetuned=1, summarize_predictions=1, results_table=1)
    snakemake(workdir, TINY, target, "--rerun-incomplete")
    assert (workdir / target).read_bytes() == (tiny_study / target).read_bytes()
    assert "Nothing to be done" in snakemake(workdir, TINY, target, "--dry-run").stdout


@pytest.mark.slow
def test_another_seed_reruns_a_cell_from_its_prompts_on_and_changes_its_results(tiny_study, tmp_path):
    """The study seed reaches every seeded step after pre-training (demonstrations, train-size samples, bootstrap;
    the fine-tuning seed is the cell's own, finetune.seeds): one cell
    asked for with another seed is made again from its prompts on, the mini-world untouched, and its numbers change.
    (The same seed gives the same bytes: the killed-workflow test above.)"""
    from amuro.results import table_settings

    workdir = tmp_path / "study"
    shutil.copytree(tiny_study, workdir)
    cell = "results/tables/cells/mini/step20-tokens40K/people_nli-default-all-full-42.parquet"
    pretraining = {p: p.stat().st_mtime_ns for p in (workdir / "results/miniworld").rglob("*") if p.is_file()}
    planned = planned_jobs(workdir, TINY, cell, "--config", "seed=8")
    assert planned["finetune"] == planned["evaluate_finetuned"] == planned["summarize_predictions"] == 1, planned
    assert planned["build_prompts"] >= 1 and not any(rule.startswith("miniworld") for rule in planned), planned
    snakemake(workdir, TINY, cell, "--config", "seed=8")

    before, after = pq.read_table(tiny_study / cell).to_pylist(), pq.read_table(workdir / cell).to_pylist()
    key = ("eval_dataset", "eval_format", "shots", "metric")
    assert sorted(tuple(r[k] for k in key) for r in before) == sorted(tuple(r[k] for k in key) for r in after)
    assert (table_settings(tiny_study / cell)["seed"], table_settings(workdir / cell)["seed"]) == (7, 8)
    values = lambda rows: {tuple(r[k] for k in key): (r["value"], r["ci_low"], r["ci_high"]) for r in rows}
    assert values(before) != values(after)
    assert {p: p.stat().st_mtime_ns for p in pretraining} == pretraining


@pytest.mark.slow
def test_one_evaluation_job_per_checkpoint_writes_the_predictions_one_job_per_cell_does(tiny_study, tmp_path):
    """evaluation.finetuned_jobs per_checkpoint (the demo's): the same prediction files, byte for byte, from one
    process per checkpoint; with own_task, the other formats only on the sets of the cell's own task."""
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["evaluation"].update(finetuned_jobs="per_checkpoint", finetuned_other_formats="own_task")
    configfile = tmp_path / "tiny_per_checkpoint.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "study"
    shutil.copytree(tiny_study, workdir)
    cell = "results/predictions/mini/step20-tokens40K/people_nli-default-all-full-42"
    shutil.rmtree(workdir / cell)
    shutil.rmtree(workdir / "results/predictions/mini/step20-tokens40K/diary_summary-default-all-full-42")
    target = f"{cell}/people_nli/instruct/0shot.parquet"
    planned = planned_jobs(workdir, configfile, target)
    assert planned == Counter(evaluate_finetuned=1), planned
    snakemake(workdir, configfile, target)
    written = sorted(p.relative_to(workdir / cell).as_posix() for p in (workdir / cell).rglob("*.parquet"))
    # people_nli in both formats; the other sets (summaries, sentiment) in the main format only.
    assert written == ["diary_summary/default/0shot.parquet", "people_nli/default/0shot.parquet",
                       "people_nli/instruct/0shot.parquet", "product_sentiment/default/0shot.parquet"]
    for name in written:
        assert (workdir / cell / name).read_bytes() == (tiny_study / cell / name).read_bytes(), name
    assert (workdir / "logs/evaluate/mini/step20-tokens40K/finetuned.log").is_file()


@pytest.mark.slow
def test_one_finetune_job_per_checkpoint_trains_the_cells_one_job_per_cell_does_and_keeps_them_as_it_grows(
        tiny_study, tmp_path):
    """finetune.jobs per_checkpoint (the demo's): the same weights, byte for byte, from one process per checkpoint;
    a seed added later reruns the job, which keeps the cells it has (untouched) and trains only the new one."""
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["finetune"]["jobs"] = "per_checkpoint"
    configfile = tmp_path / "tiny_per_checkpoint.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "study"
    shutil.copytree(tiny_study, workdir)
    checkpoint = "results/finetuned/mini/step20-tokens40K"
    cells = [f"{checkpoint}/{dataset}/default/all/full/42" for dataset in ("diary_summary", "people_nli")]
    for cell in cells:
        shutil.rmtree(workdir / cell)
    assert planned_jobs(workdir, configfile, *cells) == Counter(finetune_checkpoint=1)
    snakemake(workdir, configfile, *cells)
    weights = lambda root, cell: (root / cell / "model.safetensors").read_bytes()
    assert all(weights(workdir, cell) == weights(tiny_study, cell) for cell in cells)
    log = workdir / "logs/finetune/mini/step20-tokens40K/cells.log"
    assert "cell 2/2" in log.read_text()

    config["finetune"]["seeds"] = [42, 43]
    configfile.write_text(yaml.safe_dump(config))
    # Snakemake's own .snakemake_timestamp aside, which it touches in every directory output of a job that ran.
    trained = {p: p.stat().st_mtime_ns for cell in cells for p in (workdir / cell).iterdir() if p.name[0] != "."}
    new_cell = f"{checkpoint}/people_nli/default/all/full/43"
    assert planned_jobs(workdir, configfile, new_cell) == Counter(finetune_checkpoint=1)
    snakemake(workdir, configfile, new_cell)
    assert {p: p.stat().st_mtime_ns for p in trained} == trained
    assert weights(workdir, new_cell) != weights(workdir, cells[1])
    text = log.read_text()
    assert text.count("is trained with these settings: kept") == 2 and "cell 4/4: " + new_cell in text


def test_fticl_and_train_sizes_add_their_cells(tmp_path):
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["finetune"].update(formats=["default", "fticl"], sizes=["all", 100])
    configfile = tmp_path / "grid.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tmp_path, configfile)
    assert jobs == expected_jobs(load_config(configfile), {"cross_domain", "full_vs_lora"})
    assert jobs["finetune"] == 3 * 2 * 2 * 2 + 3 and jobs["build_fticl_prompts"] == 2  # + instruction tuning
    cell = "results/predictions/mini/step20-tokens40K/people_nli-fticl-100-full-42/people_nli/default/0shot.parquet"
    assert planned_jobs(tmp_path, configfile, cell)["build_fticl_prompts"] == 1


def test_variants_and_seeds_add_their_cells_and_a_lora_cell_is_scored_over_its_checkpoint(tmp_path):
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["finetune"].update(seeds=[1, 2], variants={"full": {}, "lora": {
        "method": "lora", "datasets": ["people_nli"], "hyperparameters": {"learning_rate": 0.01}}})
    configfile = tmp_path / "grid.yaml"
    configfile.write_text(yaml.safe_dump(config))
    jobs = planned_jobs(tmp_path, configfile)
    assert jobs == expected_jobs(load_config(configfile), FIGURES_LEFT_OUT[TINY] - {"full_vs_lora"})
    assert jobs["finetune"] == 3 * (2 + 1) * 2 + 3  # checkpoints x (2 full + 1 lora train sets) x seeds + chat
    target = "results/predictions/mini/step20-tokens40K/people_nli-default-all-lora-2/people_nli/default/0shot.parquet"
    out = snakemake(tmp_path, configfile, "--dry-run", "--printshellcmds", target).stdout
    finetune = next(line for line in out.splitlines() if "amuro finetune" in line)
    assert "--out results/finetuned/mini/step20-tokens40K/people_nli/default/all/lora/2 " in finetune
    assert all(part in finetune for part in ('"method": "lora"', '"seed": 2', '"learning_rate": 0.01', '"r": 8'))
    evaluation = out.split("rule evaluate_finetuned:", 1)[1].split("\n\n", 1)[0]
    inputs = next(line for line in evaluation.splitlines() if line.strip().startswith("input:"))
    assert "results/checkpoints/mini/step20-tokens40K," in inputs  # the adapter is merged into its checkpoint


def test_the_paper_config_plans_instruction_tuning_per_olmo_checkpoint_and_llama3_on_four_gpus(tmp_path):
    config = load_config(ROOT / "workflow_config.yaml")
    olmo, llama = len(model_checkpoints(config, "olmo1b")), len(model_checkpoints(config, "llama3_8b"))
    assert (olmo, llama) == (8, 1)
    jobs = planned_jobs(tmp_path, ROOT / "workflow_config.yaml")
    sft = (olmo + llama) * len(config["finetune"]["datasets"])
    assert jobs["finetune"] == sft + olmo  # + one Tulu v2 run per OLMo checkpoint
    assert jobs["prepare_instructions"] == 1
    assert jobs["evaluate_benchmarks"] == (olmo + llama) + olmo  # every base checkpoint + every Tulu model
    assert jobs["fetch_checkpoint"] == olmo + llama
    assert jobs == expected_jobs(config, {"train_size", "fticl", "full_vs_lora"})
    # Llama3-8B's cells start the deepspeed launcher on 4 GPUs; OLMo's run as one process.
    out = snakemake(tmp_path, ROOT / "workflow_config.yaml", "--dry-run", "--printshellcmds",
                    "results/finetuned/llama3_8b/main/xsum/default/all/full/42",
                    "results/finetuned/olmo1b/main/tulu_v2/chat/all/full/42").stdout
    llama_cmd = next(line for line in out.splitlines() if "--out results/finetuned/llama3_8b" in line)
    # The checkpoint's files are checked against its resolved.json by the finetune command itself, once per rank.
    assert "Shell command: deepspeed --num_gpus 4 --master_port" in llama_cmd
    assert "--no_local_rank --module amuro finetune --base results/checkpoints/llama3_8b/main" in llama_cmd
    assert '"learning_rate": 5e-06' in llama_cmd and '"deepspeed": "zero3"' in llama_cmd
    tulu_cmd = next(line for line in out.splitlines() if "--out results/finetuned/olmo1b/main/tulu_v2" in line)
    assert "Shell command: python -m amuro finetune" in tulu_cmd and "results/instructions/tulu_v2/train.parquet" in tulu_cmd
    assert '"epochs": 5' in tulu_cmd


def _resources(out: str, rule: str) -> dict[str, str]:
    block = out.split(f"rule {rule}:", 1)[1].split("\n\n", 1)[0]
    line = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
    return dict(item.split("=", 1) for item in line.split(":", 1)[1].strip().split(", "))


def test_gpu_jobs_ask_for_their_models_share_and_a_profile_overrides_any_of_it(tmp_path):
    # rules/cluster.smk: 360 minutes and 64 GB per GPU of the model; Llama-3-8B fine-tunes on 4 GPUs.
    target = "results/finetuned/llama3_8b/main/xsum/default/all/full/42"
    out = snakemake(tmp_path, ROOT / "workflow_config.yaml", "--dry-run", target).stdout
    asked = _resources(out, "finetune")
    assert (asked["gpu"], asked["runtime"], asked["mem_mb"]) == ("4", str(4 * 360), str(4 * 64_000))
    # What a cluster's profile writes under set-resources replaces the rule's own request.
    out = snakemake(tmp_path, ROOT / "workflow_config.yaml", "--dry-run", target,
                    "--set-resources", "finetune:runtime=999", "finetune:mem_mb=123").stdout
    asked = _resources(out, "finetune")
    assert (asked["gpu"], asked["runtime"], asked["mem_mb"]) == ("4", "999", "123")


CHECKPOINTS = ["step20-tokens40K", "step150-tokens307K", "step400-tokens819K"]


def reused_config(tiny_study, **changes) -> dict:
    """A small study of the tiny study's checkpoints reused as a `local` source (as a lab reuses a finished study's
    models): two checkpoints, one train set, the default format, 0-shot base runs, two eval sets."""
    import yaml

    config = yaml.safe_load(TINY.read_text())
    config["models"] = {"reused": {"source": "local", "path": str(tiny_study / "results/checkpoints/mini"),
                                   "checkpoints": CHECKPOINTS[:2]}}
    config["finetune"]["datasets"] = ["people_nli"]
    config.update(formats=["default"], benchmarks={"tasks": {}})
    config["evaluation"].update(base_shots=[0], datasets=["people_nli", "product_sentiment"])
    del config["instruction_tuning"]
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if name:
            config[section][name] = value
        else:
            config[section] = value
    return config


@pytest.fixture(scope="module")
def reused_study(tiny_study, tmp_path_factory):
    """The small reused study, run to the end once."""
    import yaml

    workdir = tmp_path_factory.mktemp("reused") / "study"
    shutil.copytree(tiny_study, workdir)  # the mini-world's datasets, already made
    configfile = workdir.parent / "reused.yaml"
    configfile.write_text(yaml.safe_dump(reused_config(tiny_study)))
    snakemake(workdir, configfile)
    return workdir


def grown(reused_study, tmp_path, tiny_study, **changes):
    import yaml

    workdir = tmp_path / "study"
    shutil.copytree(reused_study, workdir, symlinks=True)
    configfile = tmp_path / "grown.yaml"
    configfile.write_text(yaml.safe_dump(reused_config(tiny_study, **changes)))
    return workdir, configfile


def predictions(workdir, model: str) -> dict[str, str]:
    """A model's prediction files and their sha256."""
    from amuro.hashing import sha256

    return {str(p.relative_to(workdir)): sha256(p) for p in (workdir / "results/predictions" / model).rglob("*shot.parquet")}


COSTLY = ("fetch_checkpoint", "finetune", "build_prompts")


@pytest.mark.slow
@pytest.mark.parametrize("growth, changes, new_jobs", [
    # A checkpoint: its fetch, fine-tune and evaluations, nothing of the two checkpoints there were.
    ("checkpoint", {"models": "three checkpoints"}, dict(fetch_checkpoint=1, finetune=1)),
    # A train set: its fine-tune at both checkpoints (its prompts exist: every dataset's prompts are built).
    ("train set", {"finetune.datasets": ["people_nli", "product_sentiment"]}, dict(finetune=2)),
    # A fine-tuning seed, or a LoRA variant: the cell's new copy at both checkpoints, nothing else.
    ("seed", {"finetune.seeds": [42, 43]}, dict(finetune=2)),
    ("variant", {"finetune.variants": {"full": {}, "lora": {"method": "lora", "lora": {"r": 4}}}}, dict(finetune=2)),
])
def test_growing_a_finished_study_by_a_checkpoint_train_set_seed_or_variant_plans_only_its_own_costly_jobs(
        reused_study, tiny_study, tmp_path, growth, changes, new_jobs):
    if changes.get("models") == "three checkpoints":
        changes = {"models": {"reused": {"source": "local", "path": str(tiny_study / "results/checkpoints/mini"),
                                         "checkpoints": CHECKPOINTS}}}
    workdir, configfile = grown(reused_study, tmp_path, tiny_study, **changes)
    planned = planned_jobs(workdir, configfile)
    assert {rule: planned[rule] for rule in COSTLY if planned[rule]} == new_jobs, planned


@pytest.mark.slow
@pytest.mark.parametrize("growth, changes", [
    ("eval set", {"evaluation.datasets": ["people_nli", "product_sentiment", "diary_summary"]}),
    ("format", {"formats": ["default", "instruct"]}),
    ("shot count", {"evaluation.base_shots": [0, 2]}),
])
def test_growing_the_eval_grid_rescores_nothing_already_scored(reused_study, tiny_study, tmp_path, growth, changes):
    """Another eval set, format or shot count: no fetch, fine-tune or train prompt is made again; the evaluation
    jobs rerun, keep every prediction already made (the same file, untouched) and score only the new ones."""
    workdir, configfile = grown(reused_study, tmp_path, tiny_study, **changes)
    planned = planned_jobs(workdir, configfile)
    # Nothing is fetched, fine-tuned or given train prompts again (the tiny study this one copies built the instruct
    # format's prompts already).
    assert not any(planned[rule] for rule in COSTLY), planned
    before = predictions(workdir, "reused")
    snakemake(workdir, configfile)
    after = predictions(workdir, "reused")
    # Every prediction there was is kept as it was (Snakemake touches a rerun job's outputs, so the evaluation logs,
    # not the files' times, say which were scored), and the new ones are scored.
    kept = set(re.findall(r"kept (\S+) \(made from the same model", "".join(
        log.read_text() for log in (workdir / "logs/evaluate/reused").rglob("*.log"))))
    assert set(before) <= kept and {path: after[path] for path in before} == before
    assert len(after) > len(before)
    assert "Nothing to be done" in snakemake(workdir, configfile, "--dry-run").stdout
