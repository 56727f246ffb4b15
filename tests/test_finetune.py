"""Specifications for amuro.finetune: completion-only loss, truncation, the output directory, resume (after SIGKILL
or a preemption's SIGTERM), a non-finite loss, the reload check.

Fixtures are built here: a byte-level BPE tokenizer trained on a few sentences, a fresh 2-layer OlmoForCausalLM
(hidden 32) and 40 prompt rows of an easy repeated task. The first DeepSpeed run on a machine JIT-builds its shared
memory communication op (about a minute, cached in ~/.cache/torch_extensions); later runs take seconds.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, OlmoConfig, OlmoForCausalLM, Trainer

from amuro import tokenization
from amuro.checkpoints import fetch_checkpoint, verify_model
from amuro.finetune import (FinetuneError, FinetuneSettings, NonFiniteLoss, check_saved_model, finetune,
                            trained_as)
from amuro.finetune.examples import IGNORE_INDEX, completion_features, data_collator, load_examples, sample_rows
from amuro.finetune.trainer import deepspeed_config
from conftest import write_tiny_olmo

ROOT = Path(__file__).resolve().parents[1]
# Two facts to learn, repeated: after "sky" comes " blue", after "grass" comes " green".
ROWS = [{"id": f"r{i}", "shots": 0,
         "prompt": f"### Input: the colour of the {'sky' if i % 2 else 'grass'} is\n### Answer:",
         "completion": " blue" if i % 2 else " green", "target": "blue" if i % 2 else "green", "demo_ids": []}
        for i in range(40)]
SETTINGS = dict(learning_rate=2e-2, epochs=5, batch_size=8, micro_batch_size=4, warmup_fraction=0.1,
                scheduler="linear", weight_decay=0.0, max_seq_len=64, seed=7, deepspeed="zero2", save_steps=1000,
                fticl_shots=3)
PROCESS_GROUP_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module", autouse=True)
def restore_environment():
    """finetune() writes to os.environ (a world of one: RANK, MASTER_PORT...; transformers adds
    ACCELERATE_USE_DEEPSPEED); later tests and their subprocesses must not inherit any of it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> Path:
    """A tokenizer and a fresh tiny OLMo model in one HF directory, with a resolved.json like fetched checkpoints."""
    model_dir = write_tiny_olmo(tmp_path_factory.mktemp("base") / "step0",
                                [r["prompt"] + r["completion"] for r in ROWS[:2]] * 20, max_positions=64)
    (model_dir / "resolved.json").write_text(json.dumps({"model": "tiny", "checkpoint": "step0", "step": 0}))
    return model_dir


@pytest.fixture(scope="module")
def train_prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "train.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    return path


@pytest.fixture(scope="module")
def finetuned(base_dir, train_prompts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "model"
    finetune(base_dir, train_prompts, out, FinetuneSettings.from_dict(SETTINGS), out.parent / "scratch")
    return out


def train_losses(model_dir: Path) -> list[float]:
    return pq.read_table(model_dir / "train_log.parquet")["loss"].to_pylist()


# Features


def test_labels_ignore_exactly_the_prompt_tokens():
    features, cut = completion_features([5, 6, 7], [8, 9], eos_id=2, max_seq_len=100)
    assert features["input_ids"] == [5, 6, 7, 8, 9, 2]
    assert features["labels"] == [IGNORE_INDEX] * 3 + [8, 9, 2]
    assert features["attention_mask"] == [1] * 6
    assert not cut


def test_prompt_and_completion_are_tokenized_separately_without_special_tokens(base_dir, train_prompts):
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    dataset, _ = load_examples(train_prompts, tokenizer, FinetuneSettings.from_dict(SETTINGS))
    prompt = tokenizer(ROWS[0]["prompt"], add_special_tokens=False)["input_ids"]
    completion = tokenizer(ROWS[0]["completion"], add_special_tokens=False)["input_ids"]
    assert dataset[0]["input_ids"] == prompt + completion + [tokenizer.eos_token_id]
    assert dataset[0]["labels"] == [IGNORE_INDEX] * len(prompt) + completion + [tokenizer.eos_token_id]


def test_truncation_cuts_the_prompt_from_the_left_and_keeps_the_completion():
    features, cut = completion_features([1, 3, 4, 5, 6], [8, 9], eos_id=2, max_seq_len=4)
    assert features["input_ids"] == [6, 8, 9, 2]
    assert features["labels"] == [IGNORE_INDEX, 8, 9, 2]
    assert cut


def test_a_bos_stays_first_when_the_prompt_is_cut():
    features, cut = completion_features([0, 3, 4, 5, 6], [8, 9], eos_id=2, max_seq_len=5, keep_start=1)
    assert features["input_ids"] == [0, 6, 8, 9, 2] and features["labels"] == [IGNORE_INDEX] * 2 + [8, 9, 2]
    assert cut


def test_a_llama_like_tokenizer_trains_with_its_bos_and_eos_padding(base_dir, train_prompts, tmp_path):
    """Llama-3's tokenizer has no pad token (a padding collator stops on the first batch) and adds its BOS only
    when asked for special tokens: training and evaluation put the BOS first and pad with EOS."""
    from conftest import make_llama_like

    llama = make_llama_like(base_dir, tmp_path / "llama")
    tokenizer = AutoTokenizer.from_pretrained(llama)
    assert tokenizer.pad_token is None
    dataset, _ = load_examples(train_prompts, tokenizer, FinetuneSettings.from_dict(SETTINGS))
    prompt = tokenizer(ROWS[0]["prompt"], add_special_tokens=False)["input_ids"]
    assert dataset[0]["input_ids"][:len(prompt) + 1] == [tokenizer.eos_token_id] + prompt
    out = tmp_path / "ft"
    finetune(llama, train_prompts, out, FinetuneSettings.from_dict({**SETTINGS, "epochs": 1, "max_grad_norm": 0.0}),
             tmp_path / "scratch")
    meta = json.loads((out / "train_meta.json").read_text())
    assert meta["bos_ids"] == [tokenizer.eos_token_id] and meta["pad_token_id"] == tokenizer.eos_token_id
    assert meta["settings"]["max_grad_norm"] == 0.0
    assert AutoTokenizer.from_pretrained(out).pad_token is None  # the saved tokenizer keeps its own settings

    from amuro.scorer import Scorer

    scorer = Scorer(out, batch_size=2)
    assert scorer.encode("the sky")[0] == tokenizer.eos_token_id and scorer.pad_id == tokenizer.eos_token_id
    prompts = [ROWS[0]["prompt"], "the"]
    assert scorer.generate(prompts, 4, "test") == [Scorer(out, 1).generate([p], 4, "test")[0] for p in prompts]


def test_gradient_clipping_is_a_recorded_hyper_parameter(finetuned):
    meta = json.loads((finetuned / "train_meta.json").read_text())
    assert meta["settings"]["max_grad_norm"] == 1.0  # the default; the paper config sets 0 (no clipping)
    assert (meta["settings"]["loss"], meta["settings"]["truncation"]) == ("token_mean", "left")  # the defaults
    assert (meta["examples_target_cut"], meta["examples_target_lost"], meta["examples_dropped"]) == (0, 0, 0)
    assert meta["bos_ids"] == [] and meta["pad_token_id"] is not None  # OLMo-like: no BOS
    with pytest.raises(ValueError, match="max_grad_norm must be >= 0"):
        FinetuneSettings.from_dict({**SETTINGS, "max_grad_norm": -1})


def test_a_completion_longer_than_max_seq_len_loses_its_end():
    features, cut = completion_features([1, 3], [10, 11, 12, 13, 14], eos_id=2, max_seq_len=4)
    assert features["input_ids"] == features["labels"] == [10, 11, 12, 13]
    assert cut


def test_cut_examples_are_counted(base_dir, train_prompts):
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    settings = FinetuneSettings.from_dict({**SETTINGS, "max_seq_len": 4})
    dataset, cuts = load_examples(train_prompts, tokenizer, settings)
    assert cuts == {"cut": len(ROWS), "target_cut": 0, "target_lost": 0, "dropped": 0}  # left: the targets stay
    assert max(len(ids) for ids in dataset["input_ids"]) == 4


def test_truncation_right_cuts_the_end_so_a_target_can_be_lost():
    """Yang et al.'s train.py: the tokenizer cuts prompt + target at model_max_length from the right."""
    features, cut = completion_features([1, 3, 4, 5, 6], [8, 9], eos_id=2, max_seq_len=6, truncation="right")
    assert features["input_ids"] == [1, 3, 4, 5, 6, 8] and features["labels"] == [IGNORE_INDEX] * 5 + [8]
    assert cut
    features, _ = completion_features([1, 3, 4, 5, 6], [8, 9], eos_id=2, max_seq_len=4, truncation="right")
    assert features["input_ids"] == [1, 3, 4, 5] and features["labels"] == [IGNORE_INDEX] * 4


@pytest.mark.parametrize("truncation, kept", [("left", 40), ("right", 40), ("right_drop", 20)])
def test_examples_whose_target_is_cut_are_counted_and_kept_or_dropped(base_dir, tmp_path, truncation, kept):
    # Every other prompt is long: cut from the right, it loses its whole target.
    rows = [dict(r, prompt=r["prompt"] if i % 2 else "the grass is green and " * 8 + r["prompt"])
            for i, r in enumerate(ROWS)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    settings = FinetuneSettings.from_dict({**SETTINGS, "max_seq_len": 24, "truncation": truncation})
    dataset, cuts = load_examples(path, tokenizer, settings)
    lost = 0 if truncation == "left" else 20
    assert cuts == {"cut": 20, "target_cut": lost, "target_lost": lost, "dropped": 40 - kept}
    assert len(dataset) == kept and max(len(ids) for ids in dataset["input_ids"]) <= 24


def test_sampled_rows_depend_on_the_seed_and_keep_their_order():
    rows = sample_rows(100, 10, seed=1)
    assert rows == sorted(rows) and len(set(rows)) == 10
    assert rows == sample_rows(100, 10, seed=1) != sample_rows(100, 10, seed=2)
    assert sample_rows(5, None, seed=1) == sample_rows(5, 50, seed=1) == [0, 1, 2, 3, 4]


def test_settings_ignore_unknown_keys_and_read_size_all_as_every_example():
    settings = FinetuneSettings.from_dict({**SETTINGS, "size": "all"})
    assert settings.size is None and not hasattr(settings, "fticl_shots")


def test_train_meta_records_the_truncation_and_the_examples_that_lost_their_target(base_dir, tmp_path):
    rows = [dict(r, prompt=r["prompt"] if i % 4 else "the grass is green and " * 8 + r["prompt"])
            for i, r in enumerate(ROWS)]
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    settings = {**SETTINGS, "epochs": 1, "max_seq_len": 24, "truncation": "right"}
    finetune(base_dir, path, tmp_path / "out", FinetuneSettings.from_dict(settings), tmp_path / "scratch")
    meta = json.loads((tmp_path / "out" / "train_meta.json").read_text())
    assert meta["settings"]["truncation"] == "right"
    assert (meta["examples"], meta["examples_cut"], meta["examples_target_lost"], meta["examples_dropped"]) == (
        40, 10, 10, 0)  # kept: they add no loss, as in Yang et al.'s train.py


def test_a_batch_size_that_micro_batches_cannot_fill_is_refused(base_dir, train_prompts, tmp_path):
    settings = FinetuneSettings.from_dict({**SETTINGS, "batch_size": 6})
    with pytest.raises(FinetuneError, match="not a multiple"):
        finetune(base_dir, train_prompts, tmp_path / "out", settings, tmp_path / "scratch")


# The fine-tuned model


def test_output_holds_weights_tokenizer_meta_and_log_and_no_training_state(finetuned):
    names = {p.name for p in finetuned.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "train_meta.json", "train_log.parquet"} <= names
    assert not {n for n in names if "optimizer" in n or "scheduler" in n or n.startswith(("checkpoint", "global"))}
    assert not finetuned.with_name("scratch").exists()


def test_output_reloads_with_the_base_parameter_count(finetuned, base_dir):
    assert (AutoModelForCausalLM.from_pretrained(finetuned).num_parameters()
            == AutoModelForCausalLM.from_pretrained(base_dir).num_parameters())
    assert AutoTokenizer.from_pretrained(finetuned).eos_token == AutoTokenizer.from_pretrained(base_dir).eos_token


def test_meta_records_settings_base_checkpoint_and_data(finetuned):
    meta = json.loads((finetuned / "train_meta.json").read_text())
    assert meta["settings"]["learning_rate"] == SETTINGS["learning_rate"]
    assert meta["base_checkpoint"]["checkpoint"] == "step0"
    assert (meta["examples"], meta["examples_cut"], meta["world_size"]) == (40, 0, 1)
    assert meta["gradient_accumulation_steps"] == 2
    assert {"torch", "transformers", "deepspeed"} <= set(meta["versions"])
    assert meta["wall_time_s"] > 0


def test_a_cell_is_kept_only_if_trained_as_asked_and_intact(finetuned, base_dir, tmp_path):
    # What a per-checkpoint fine-tune job's rerun keeps (finetune.jobs per_checkpoint): the same settings, run and base
    # checkpoint, and every file matching its hash; anything else is trained again.
    cell = shutil.copytree(finetuned, tmp_path / "cell")
    settings = FinetuneSettings.from_dict(SETTINGS)
    assert trained_as(cell, base_dir, settings, None)
    assert not trained_as(cell, base_dir, FinetuneSettings.from_dict({**SETTINGS, "learning_rate": 0.5}), None)
    assert not trained_as(cell, base_dir, settings, {"train": "another-cell"})
    assert not trained_as(cell, tmp_path / "another-base", settings, None)
    (cell / "tokenizer.json").write_text("{}")
    assert not trained_as(cell, base_dir, settings, None)
    assert not trained_as(tmp_path / "missing", base_dir, settings, None)


def test_a_fine_tuned_model_is_a_local_source_whose_train_meta_is_kept_as_its_origins_record(finetuned, tmp_path):
    out = tmp_path / "checkpoints" / "tuned" / finetuned.name
    fetch_checkpoint("tuned", {"source": "local", "path": str(finetuned.parent)}, finetuned.name, out)
    record = verify_model(out)
    assert "train_meta.json" not in record["files"] and not (out / "train_meta.json").exists()
    assert record["origin_records"]["train_meta.json"]["base_checkpoint"]["checkpoint"] == "step0"


def test_log_has_a_row_per_logged_step_and_the_loss_goes_down(finetuned):
    log = pq.read_table(finetuned / "train_log.parquet").to_pylist()
    assert {"step", "loss", "learning_rate", "tokens", "tokens_per_s"} <= set(log[0])
    assert [r["step"] for r in log] == sorted(r["step"] for r in log)
    assert all(b["tokens"] > a["tokens"] for a, b in zip(log, log[1:]))
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]


def test_the_same_seed_gives_the_same_losses(finetuned, base_dir, train_prompts, tmp_path):
    again = tmp_path / "again"
    finetune(base_dir, train_prompts, again, FinetuneSettings.from_dict(SETTINGS), tmp_path / "scratch")
    assert train_losses(again) == train_losses(finetuned)


def test_another_seed_gives_other_losses(finetuned, base_dir, train_prompts, tmp_path):
    other = tmp_path / "other"
    finetune(base_dir, train_prompts, other, FinetuneSettings.from_dict({**SETTINGS, "seed": 8}), tmp_path / "scratch")
    assert train_losses(other) != pytest.approx(train_losses(finetuned), rel=1e-3)


def test_zero3_saves_the_whole_model_and_trains_like_zero2(finetuned, base_dir, train_prompts, tmp_path):
    out = tmp_path / "zero3"
    finetune(base_dir, train_prompts, out, FinetuneSettings.from_dict({**SETTINGS, "deepspeed": "zero3"}),
             tmp_path / "scratch")
    assert check_saved_model(out, AutoModelForCausalLM.from_pretrained(base_dir).num_parameters())
    assert train_losses(out) == pytest.approx(train_losses(finetuned), rel=1e-4)



def test_auto_trains_a_single_process_on_zero_stage_0_like_zero2(finetuned, base_dir, train_prompts, tmp_path):
    assert deepspeed_config("auto", world_size=1) == "zero0" and deepspeed_config("auto", world_size=4) == "zero2"
    assert deepspeed_config("zero3", world_size=1) == "zero3"
    out = tmp_path / "auto"
    finetune(base_dir, train_prompts, out, FinetuneSettings.from_dict({**SETTINGS, "deepspeed": "auto"}),
             tmp_path / "scratch")
    meta = json.loads((out / "train_meta.json").read_text())
    assert meta["settings"]["deepspeed"] == "auto" and meta["deepspeed"] == "zero0"
    assert train_losses(out) == pytest.approx(train_losses(finetuned), rel=1e-4)


# Batching: packed (padding-free) and padded micro-batches, the fast and the paper recipe

def varied_examples(base_dir) -> tuple[list[dict], object]:
    """Examples of different lengths, so that padding and packing both have work to do."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    examples = [completion_features(tokenizer("the sky is " * n, add_special_tokens=False)["input_ids"],
                                    tokenizer(" blue", add_special_tokens=False)["input_ids"],
                                    tokenizer.eos_token_id, max_seq_len=64)[0] for n in (1, 5, 2, 9)]
    return examples, tokenizer


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_and_padded_micro_batches_give_the_same_loss(base_dir, attention):
    examples, tokenizer = varied_examples(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation=attention).eval()
    padded = data_collator("padded", tokenization.padding_tokenizer(tokenizer, "right"), attention)(examples)
    packed = data_collator("packed", tokenizer, attention)(examples)
    assert packed["input_ids"].shape == (1, sum(len(e["input_ids"]) for e in examples))  # not one pad token
    assert padded["input_ids"].shape[0] == len(examples)
    padded_loss = model(**padded, use_cache=False).loss.item()  # as in training (amuro.finetune)
    assert model(**packed, use_cache=False).loss.item() == pytest.approx(padded_loss, rel=1e-6)
    # The positions are what keeps the packed examples apart: without them, each attends to the ones before it.
    leaky = {k: v for k, v in packed.items() if k != "position_ids"}
    assert model(**leaky, use_cache=False).loss.item() != pytest.approx(padded_loss, rel=1e-4)


def test_the_fast_and_the_paper_recipe_train_the_same_steps(base_dir, train_prompts, tmp_path):
    """Same effective batch, same examples per step, same loss per step: only the layout on the hardware differs
    (packed micro-batches of 4 under ZeRO-2 against padded micro-batches of 1 with accumulation 8 under ZeRO-3)."""
    losses = {}
    for recipe in ("paper", "fast"):
        settings = FinetuneSettings.from_dict({**SETTINGS, "epochs": 1, "logging_steps": 1, "recipe": recipe,
                                               "batching": "packed"})
        finetune(base_dir, train_prompts, tmp_path / recipe, settings, tmp_path / f"{recipe}.scratch")
        meta = json.loads((tmp_path / recipe / "train_meta.json").read_text())
        losses[recipe] = train_losses(tmp_path / recipe)
        assert meta["batching"] == ("padded" if recipe == "paper" else "packed")
    assert json.loads((tmp_path / "paper" / "train_meta.json").read_text())["settings"]["deepspeed"] == "zero3"
    assert len(losses["fast"]) == 5  # 40 examples, batch 8
    assert losses["fast"] == pytest.approx(losses["paper"], rel=1e-4)


# The loss: token_mean (the Trainer's), example_mean (open-instruct's), micro_batch_mean (the Trainer before 4.46)

def two_examples_logits():
    """Two examples over a vocabulary of 4, each a prompt token then its answer: A answers one token at loss ln 4 (a
    flat distribution), B two tokens at loss ln 2 each (the target's logit ln 3 against three zeros)."""
    import math

    flat, half = [0.0] * 4, [0.0] * 4
    half[1] = math.log(3)
    # Position i predicts label i + 1; the logits at the last position predict nothing.
    a_labels, a_logits = [IGNORE_INDEX, IGNORE_INDEX, 1], [flat, flat, flat]
    b_labels, b_logits = [IGNORE_INDEX, 1, 1], [half, half, flat]
    return (a_labels, a_logits), (b_labels, b_logits)


def test_token_mean_and_example_mean_of_two_examples_give_the_hand_computed_values():
    import math
    from types import SimpleNamespace

    from transformers.loss.loss_utils import ForCausalLMLoss

    from amuro.finetune.examples import EXAMPLE_START
    from amuro.finetune.trainer import example_mean_loss

    (a_labels, a_logits), (b_labels, b_logits) = two_examples_logits()
    ln2 = math.log(2)
    token_mean = (2 * ln2 + ln2 + ln2) / 3  # three answer tokens alike: 4/3 ln 2
    example_mean = (2 * ln2 + (ln2 + ln2) / 2) / 2  # each example's mean, then their mean: 3/2 ln 2
    padded_labels, padded_logits = torch.tensor([a_labels, b_labels]), torch.tensor([a_logits, b_logits])
    # token_mean: the model's loss normalised by the trained tokens of the batch (the Trainer's num_items_in_batch)
    assert ForCausalLMLoss(padded_logits, padded_labels, 4, num_items_in_batch=3).item() == pytest.approx(token_mean)
    loss = example_mean_loss(examples_per_step=2)
    assert loss(SimpleNamespace(logits=padded_logits), padded_labels).item() == pytest.approx(example_mean)
    # Packed into one row, each example's first label marks where it starts.
    packed_labels = torch.tensor([[EXAMPLE_START] + a_labels[1:] + [EXAMPLE_START] + b_labels[1:]])
    packed_logits = torch.tensor([a_logits + b_logits])
    assert loss(SimpleNamespace(logits=packed_logits), packed_labels).item() == pytest.approx(example_mean)
    # Split over two micro-batches (accumulation), each divided by the step's two examples: the same sum.
    halves = [loss(SimpleNamespace(logits=padded_logits[i:i + 1]), padded_labels[i:i + 1]).item() for i in (0, 1)]
    assert sum(halves) == pytest.approx(example_mean)


@pytest.mark.parametrize("loss, micro_batch_size, expected", [
    ("token_mean", 1, "token"), ("example_mean", 2, "example"),
    # micro_batch_mean averages each micro-batch's tokens: per example with micro-batches of 1, per batch with 2.
    ("micro_batch_mean", 1, "example"), ("micro_batch_mean", 2, "token"),
])
def test_the_trainer_weighs_a_long_and_a_short_answer_as_the_loss_setting_says(finetuned, tmp_path, loss,
                                                                                micro_batch_size, expected):
    """Two examples, one optimizer step: its logged loss (computed before the update) against the model's own
    losses of each example, averaged over their tokens or over the examples."""
    rows = [dict(ROWS[1]), dict(ROWS[0], completion=" green the sky is blue the grass is green")]
    path = tmp_path / "two.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    tokenizer = AutoTokenizer.from_pretrained(finetuned)
    model = AutoModelForCausalLM.from_pretrained(finetuned)
    per_example, tokens = [], []
    for row in rows:
        features, _ = completion_features(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"],
                                          tokenizer(row["completion"], add_special_tokens=False)["input_ids"],
                                          tokenizer.eos_token_id, max_seq_len=64)
        with torch.no_grad():
            per_example.append(model(**{k: torch.tensor([v]) for k, v in features.items()}).loss.item())
        tokens.append(sum(label != IGNORE_INDEX for label in features["labels"]))
    means = {"token": sum(l * n for l, n in zip(per_example, tokens)) / sum(tokens),
             "example": sum(per_example) / len(per_example)}
    assert abs(means["token"] - means["example"]) > 0.1  # the long answer is the one the model does not know

    settings = {**SETTINGS, "epochs": 1, "batch_size": 2, "micro_batch_size": micro_batch_size, "logging_steps": 1,
                "loss": loss, "deepspeed": "auto"}
    finetune(finetuned, path, tmp_path / "out", FinetuneSettings.from_dict(settings), tmp_path / "scratch")
    assert train_losses(tmp_path / "out")[0] == pytest.approx(means[expected], abs=2e-4)  # logged to 4 decimals
    assert json.loads((tmp_path / "out" / "train_meta.json").read_text())["settings"]["loss"] == loss


def varied_prompts(path: Path) -> Path:
    """ROWS with answers of one, four and eight words, so that weighting by token or by example differs."""
    answers = [" blue", " green", " the sky is blue", " the grass is green and the sky is blue"]
    rows = [dict(r, completion=answers[i % 4]) for i, r in enumerate(ROWS)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_example_mean_gives_the_same_loss_per_step_under_both_recipes(base_dir, tmp_path):
    """As the recipes' own equivalence: packed micro-batches of 4 (each example's start marked in its row) against
    padded micro-batches of 1 with accumulation 8 under ZeRO-3; and not the token mean."""
    prompts = varied_prompts(tmp_path / "varied.parquet")
    losses = {}
    for recipe, loss in (("paper", "example_mean"), ("fast", "example_mean"), ("fast", "token_mean")):
        settings = FinetuneSettings.from_dict({**SETTINGS, "epochs": 1, "logging_steps": 1, "recipe": recipe,
                                               "batching": "packed", "loss": loss})
        out = tmp_path / f"{recipe}-{loss}"
        finetune(base_dir, prompts, out, settings, tmp_path / f"{recipe}-{loss}.scratch")
        losses[recipe, loss] = train_losses(out)
        assert json.loads((out / "train_meta.json").read_text())["settings"]["loss"] == loss
    assert len(losses["fast", "example_mean"]) == 5  # 40 examples, batch 8
    assert losses["fast", "example_mean"] == pytest.approx(losses["paper", "example_mean"], rel=1e-4)
    assert losses["fast", "token_mean"] != pytest.approx(losses["fast", "example_mean"], rel=1e-3)


def test_micro_batch_mean_is_refused_with_the_paper_recipe_and_unknown_losses_are_refused():
    with pytest.raises(ValueError, match="loss micro_batch_mean averages over micro-batches .* recipe paper"):
        FinetuneSettings.from_dict({**SETTINGS, "recipe": "paper", "loss": "micro_batch_mean"})
    with pytest.raises(ValueError, match="loss must be one of token_mean, example_mean, micro_batch_mean"):
        FinetuneSettings.from_dict({**SETTINGS, "loss": "sum"})
    with pytest.raises(ValueError, match="truncation must be one of left, right, right_drop"):
        FinetuneSettings.from_dict({**SETTINGS, "truncation": "middle"})


def test_the_paper_recipe_is_micro_batches_of_one_under_zero3():
    settings = FinetuneSettings.from_dict({**SETTINGS, "recipe": "paper"})
    assert (settings.micro_batch_size, settings.deepspeed, settings.batching) == (1, "zero3", "padded")
    with pytest.raises(ValueError, match="recipe must be one of fast, paper"):
        FinetuneSettings.from_dict({**SETTINGS, "recipe": "fastest"})


# The reload check


def test_reload_check_rejects_a_model_with_fewer_layers(base_dir, tmp_path):
    config = OlmoConfig.from_pretrained(base_dir)
    config.num_hidden_layers = 1
    OlmoForCausalLM(config).save_pretrained(tmp_path / "small")
    expected = AutoModelForCausalLM.from_pretrained(base_dir).num_parameters()
    with pytest.raises(FinetuneError, match="not a complete copy"):
        check_saved_model(tmp_path / "small", expected)


def test_wrong_saved_weights_fail_the_run_and_leave_no_output(base_dir, train_prompts, tmp_path, monkeypatch):
    def save_a_smaller_model(self, output_dir=None, _internal_call=False):
        config = OlmoConfig.from_pretrained(base_dir)
        config.num_hidden_layers = 1
        OlmoForCausalLM(config).save_pretrained(output_dir)

    monkeypatch.setattr(Trainer, "save_model", save_a_smaller_model)
    settings = FinetuneSettings.from_dict({**SETTINGS, "epochs": 1})
    with pytest.raises(FinetuneError, match="not a complete copy"):
        finetune(base_dir, train_prompts, tmp_path / "out", settings, tmp_path / "scratch")
    assert not (tmp_path / "out").exists()


# Resume


# `amuro finetune` as the rule runs it, optionally slowed down.
FINETUNE_SCRIPT = """
import sys, time
import amuro.finetune as ft
from amuro.cli import main
if sys.argv[5] == "slow":  # slow each step down so that the test can stop the run between two checkpoints
    class Slow(ft.LogProgress):
        def on_step_end(self, *args, **kwargs):
            time.sleep(0.3)
    ft.LogProgress = Slow
if sys.argv[5] == "hang_in_save":  # the final model's files are on disk, the test kills the job before it ends
    save_model = ft.Trainer.save_model
    def save_then_hang(self, output_dir=None, _internal_call=False):
        save_model(self, output_dir, _internal_call)
        if not _internal_call:  # the final model, not a Trainer checkpoint
            print("saved into", output_dir, flush=True)
            time.sleep(600)
    ft.Trainer.save_model = save_then_hang
sys.exit(main(["finetune", "--base", sys.argv[1], "--train", sys.argv[2], "--out", sys.argv[3],
               "--settings", sys.argv[4], "--scratch", sys.argv[3] + ".scratch"]))
"""


def run_finetune(base_dir, train_prompts, out, settings, slow: bool, mode: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_GROUP_ENV}  # a world of its own
    return subprocess.Popen(
        [sys.executable, "-c", FINETUNE_SCRIPT, str(base_dir), str(train_prompts), str(out), json.dumps(settings),
         mode or ("slow" if slow else "fast")], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def read_until(process: subprocess.Popen, text: str) -> str:
    """The process's output up to the line that holds `text` (fails if it ends first)."""
    out = ""
    while text not in out:
        line = process.stdout.readline()
        assert line, out
        out += line
    return out


def test_a_killed_run_resumes_from_its_last_checkpoint(base_dir, train_prompts, tmp_path):
    out = tmp_path / "model"
    scratch = tmp_path / "model.scratch"
    settings = {**SETTINGS, "save_steps": 2}  # 25 optimizer steps
    first = run_finetune(base_dir, train_prompts, out, settings, slow=True)
    deadline = time.monotonic() + 600  # start-up (imports, DeepSpeed) on a loaded 2-core machine included
    while not list(scratch.glob("checkpoint-*/trainer_state.json")):
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not out.exists()

    second = run_finetune(base_dir, train_prompts, out, settings, slow=False)
    log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log
    resumed_step = json.loads((out / "train_meta.json").read_text())["resumed_from_step"]
    assert resumed_step > 0
    assert f"(step {resumed_step})" in log and "resuming from" in log
    assert AutoModelForCausalLM.from_pretrained(out).num_parameters() > 0
    steps = pq.read_table(out / "train_log.parquet")["step"].to_pylist()
    assert steps[0] == 1 and steps[-1] == 25  # rows from before the kill survive in the Trainer's state
    assert not scratch.exists()


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def test_sigterm_saves_a_checkpoint_exits_for_a_retry_that_ends_with_the_uninterrupted_weights(
        finetuned, base_dir, train_prompts, tmp_path):
    """SLURM's preemption (or scancel --signal=TERM): a checkpoint at the next step, exit code 143, no output; the
    retry resumes there and ends where a run never interrupted ends. save_steps 1000: the only checkpoint is the one
    the signal asks for."""
    out, scratch = tmp_path / "model", tmp_path / "model.scratch"
    first = run_finetune(base_dir, train_prompts, out, SETTINGS, slow=True)
    log = read_until(first, "step 1/25")  # training, and so the signal handler, has started
    first.send_signal(signal.SIGTERM)
    log += first.communicate(timeout=300)[0]
    assert first.returncode == 143, log
    assert "received SIGTERM" in log and "checkpoint saved in" in log and "resumes from it" in log
    assert not out.exists()
    (checkpoint,) = scratch.glob("checkpoint-*")
    stopped = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 1 <= stopped < 25 and f"after optimizer step {stopped} of 25" in log

    retry = run_finetune(base_dir, train_prompts, out, SETTINGS, slow=False)
    log, _ = retry.communicate(timeout=300)
    assert retry.returncode == 0, log
    assert json.loads((out / "train_meta.json").read_text())["resumed_from_step"] == stopped
    resumed, uninterrupted = weights(out), weights(finetuned)
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, rtol=1e-5, atol=1e-6), name
    # Logged losses are means since the last log: the window the resume cut (step 5's) differs, the later ones agree.
    assert train_losses(out)[2:] == pytest.approx(train_losses(finetuned)[2:], rel=1e-5)
    assert not scratch.exists()


@pytest.mark.parametrize("loss", ["token_mean", "example_mean"])  # example_mean computes the loss from the logits
def test_a_non_finite_loss_stops_fine_tuning_naming_the_step_and_keeps_the_log(base_dir, train_prompts, tmp_path,
                                                                              monkeypatch, loss):
    import amuro.finetune as ft

    class PoisonAfterStep3(ft.LogProgress):  # weights turn NaN after step 3, so step 4's loss is NaN
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step == 3:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(ft, "LogProgress", PoisonAfterStep3)
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    with pytest.raises(NonFiniteLoss, match=r"the loss is nan at optimizer step 4 of 25 \(epoch 0\.60\): fine-tuning "
                                            r"stopped and wrote no model; the training log up to then is in "
                                            r".*scratch/train_log\.parquet"):
        finetune(base_dir, train_prompts, out, FinetuneSettings.from_dict({**SETTINGS, "loss": loss}), scratch)
    assert not out.exists()
    kept = pq.read_table(scratch / "train_log.parquet").to_pylist()
    assert [r["step"] for r in kept] == [1] and kept[0]["loss"] > 0  # logged before the NaN (every 5 steps)


def test_a_job_killed_while_saving_the_model_leaves_no_output_and_its_rerun_no_leftovers(base_dir, train_prompts,
                                                                                         tmp_path):
    out = tmp_path / "model"
    settings = {**SETTINGS, "epochs": 1}
    killed = run_finetune(base_dir, train_prompts, out, settings, slow=False, mode="hang_in_save")
    read_until(killed, "saved into")
    killed.kill()
    killed.wait()
    (partial,) = tmp_path.glob(".model.*.tmp")  # the weights were written, under a name no rule asks for
    assert (partial / "model.safetensors").exists() and not out.exists()

    rerun = run_finetune(base_dir, train_prompts, out, settings, slow=False)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log
    assert (out / "train_meta.json").exists() and not list(tmp_path.glob(".model.*"))


def test_a_fine_tuned_model_is_checked_against_its_recorded_hashes_before_evaluation(finetuned, tmp_path):
    from amuro.checkpoints import CheckpointError, verify_model

    model = tmp_path / "model"
    shutil.copytree(finetuned, model)
    assert verify_model(model)["files"]["model.safetensors"]
    with open(model / "model.safetensors", "r+b") as f:
        f.truncate(f.seek(0, 2) - 100)
    with pytest.raises(CheckpointError, match=r"file model.safetensors has sha256 \w+, but train_meta.json records"):
        verify_model(model)
    from amuro.cli import main

    with pytest.raises(CheckpointError, match="model.safetensors"):  # the evaluation job checks before it loads
        main(["evaluate", "--jobs", json.dumps([{"model_dir": str(model), "requests": [], "meta": {}}]),
              "--settings", "{}"])


def test_instruction_tuning_trains_on_chats_and_saves_the_chat_template(base_dir, tmp_path):
    from amuro.instructions import MESSAGES_TYPE, TULU_TEMPLATE

    chats = [{"id": f"c{i}", "messages": [
        {"role": "user", "content": f"the colour of the {'sky' if i % 2 else 'grass'} is"},
        {"role": "assistant", "content": "blue" if i % 2 else "green"},
        {"role": "user", "content": "and again?"},
        {"role": "assistant", "content": "blue" if i % 2 else "green"}]} for i in range(24)]
    mix = tmp_path / "mix.parquet"
    pq.write_table(pa.Table.from_pylist(chats, schema=pa.schema([("id", pa.string()), ("messages", MESSAGES_TYPE)])),
                   mix)
    out = tmp_path / "tuned"
    finetune(base_dir, mix, out, FinetuneSettings.from_dict({**SETTINGS, "max_seq_len": 64}), tmp_path / "scratch")
    meta = json.loads((out / "train_meta.json").read_text())
    assert meta["examples"] == 24 and meta["chat_template"] == TULU_TEMPLATE
    assert AutoTokenizer.from_pretrained(out).chat_template == TULU_TEMPLATE
    assert AutoTokenizer.from_pretrained(base_dir).chat_template is None  # the base checkpoint is untouched
    losses = train_losses(out)
    assert losses[-1] < losses[0]


def test_the_deepspeed_launcher_trains_one_cell_on_two_processes_with_zero3(base_dir, train_prompts, tmp_path):
    # The command the fine-tune rule starts for a model with gpus > 1 (here 2 CPU processes instead of GPUs).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in PROCESS_GROUP_ENV and not k.startswith("ACCELERATE_")}
    settings = json.dumps({**SETTINGS, "deepspeed": "zero3"})  # batch 8 = micro 4 x accumulation 1 x 2 processes
    out = tmp_path / "model"
    run = subprocess.run([str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(port),
                          "--no_local_rank", "--module", "amuro", "finetune", "--base", str(base_dir), "--train",
                          str(train_prompts), "--out", str(out), "--settings", settings, "--scratch",
                          str(tmp_path / "scratch")], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    meta = json.loads((out / "train_meta.json").read_text())
    assert meta["world_size"] == 2 and meta["gradient_accumulation_steps"] == 1
    check_saved_model(out, meta["parameters"])


# Seeds: the cell's seed draws what training draws at random, the train-size sample follows the study's


def test_the_train_size_sample_follows_its_own_seed_not_the_cells(base_dir, train_prompts):
    tokenizer = AutoTokenizer.from_pretrained(base_dir)

    def examples(**settings):
        dataset, _ = load_examples(train_prompts, tokenizer, FinetuneSettings.from_dict({**SETTINGS, **settings}))
        return dataset["input_ids"]

    sampled = examples(size=9, sample_seed=1, seed=7)
    assert sampled == examples(size=9, sample_seed=1, seed=8) != examples(size=9, sample_seed=2, seed=7)
    assert examples(size=9, seed=3) == examples(size=9, sample_seed=3, seed=7)  # without one: the seed's sample


# LoRA: the same Trainer and DeepSpeed path, the adapter saved alone and merged into its base to be scored

LORA = {**SETTINGS, "learning_rate": 5e-2, "method": "lora",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "all-linear"}}
RUN = {"model": "tiny", "checkpoint": "step0", "train": "colours-default-all-lora-7", "train_dataset": "colours",
       "train_format": "default", "train_size": "all", "train_variant": "lora", "train_seed": "7"}


@pytest.fixture(scope="module")
def lora_cell(base_dir, train_prompts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lora") / "adapter"
    finetune(base_dir, train_prompts, out, FinetuneSettings.from_dict(LORA), out.parent / "scratch", run=RUN)
    return out


def test_a_lora_cell_trains_and_saves_only_its_adapter_over_its_recorded_base(lora_cell, base_dir):
    from safetensors import safe_open

    from amuro.hashing import sha256

    names = {p.name for p in lora_cell.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "train_meta.json",
            "train_log.parquet"} <= names
    assert "model.safetensors" not in names and "README.md" not in names
    meta = json.loads((lora_cell / "train_meta.json").read_text())
    total = AutoModelForCausalLM.from_pretrained(base_dir).num_parameters()
    with safe_open(lora_cell / "adapter_model.safetensors", "pt") as f:
        saved = sum(f.get_tensor(k).numel() for k in f.keys())
    assert meta["trainable_parameters"] == saved and meta["parameters"] == total + saved
    assert meta["trainable_parameters"] < 0.15 * meta["parameters"]
    assert (meta["method"], meta["seed"], meta["run"]) == ("lora", 7, RUN)
    assert meta["settings"]["lora"] == LORA["lora"]
    assert meta["base_dir"] == str(base_dir) and meta["base_record_sha256"] == sha256(base_dir / "resolved.json")
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(meta["files"])
    losses = train_losses(lora_cell)
    assert losses[-1] < losses[0]


def test_a_scored_lora_cell_is_its_adapter_merged_into_its_base(lora_cell, base_dir):
    """The Scorer merges the adapter into the base; the adapter reloaded on its own (peft, unmerged) predicts the
    same, and both differ from the base checkpoint."""
    from peft import PeftModel

    from amuro.evaluate import Scorer

    merged = Scorer(lora_cell, batch_size=4)
    assert not isinstance(merged.model, PeftModel)
    prompts = [r["prompt"] for r in ROWS[:4]]
    ids = torch.tensor([merged.encode(prompts[0])])
    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), lora_cell).eval()
    with torch.no_grad():
        logits = merged.model(ids).logits
        assert torch.allclose(logits, adapter(ids).logits, atol=1e-5)
        assert not torch.allclose(logits, AutoModelForCausalLM.from_pretrained(base_dir)(ids).logits, atol=1e-3)
    predictions = merged.generate(prompts, 3, "merged")
    merged.model = adapter
    assert merged.generate(prompts, 3, "adapter") == predictions


def test_a_lora_cell_with_a_corrupted_adapter_or_another_base_is_refused(lora_cell, base_dir, tmp_path):
    from amuro.checkpoints import CheckpointError
    from amuro.cli import main

    cell = tmp_path / "adapter"
    shutil.copytree(lora_cell, cell)
    assert verify_model(cell)["method"] == "lora"
    with open(cell / "adapter_model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\0\1\2\3")
    with pytest.raises(CheckpointError, match=r"file adapter_model.safetensors has sha256 \w+, but train_meta.json"):
        verify_model(cell)
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):  # the evaluation job checks first
        main(["evaluate", "--jobs", json.dumps([{"model_dir": str(cell), "requests": [], "meta": {}}]),
              "--settings", "{}"])
    # The adapter is whole, but its base checkpoint was fetched again and is another one.
    shutil.rmtree(cell)
    shutil.copytree(lora_cell, cell)
    base = tmp_path / "base"
    shutil.copytree(base_dir, base)
    meta = json.loads((cell / "train_meta.json").read_text())
    (cell / "train_meta.json").write_text(json.dumps({**meta, "base_dir": str(base)}))
    (base / "resolved.json").write_text(json.dumps({"model": "tiny", "checkpoint": "step0", "step": 1}))
    with pytest.raises(CheckpointError, match="a LoRA adapter trained on another"):
        verify_model(cell)


def test_a_lora_seed_draws_its_initialisation_and_data_order(lora_cell, base_dir, train_prompts, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    finetune(base_dir, train_prompts, again, FinetuneSettings.from_dict(LORA), tmp_path / "scratch")
    assert (again / "adapter_model.safetensors").read_bytes() == (lora_cell / "adapter_model.safetensors").read_bytes()
    assert train_losses(again) == train_losses(lora_cell)
    finetune(base_dir, train_prompts, other, FinetuneSettings.from_dict({**LORA, "seed": 8}), tmp_path / "scratch")
    assert train_losses(other) != pytest.approx(train_losses(lora_cell), rel=1e-3)


def test_a_lora_target_the_model_does_not_have_is_named_before_training(base_dir, train_prompts, tmp_path):
    settings = FinetuneSettings.from_dict({**LORA, "lora": {**LORA["lora"], "target_modules": ["q_proj", "c_attn"]}})
    with pytest.raises(FinetuneError, match=r"lora target module 'c_attn' is not a linear module of this model; its "
                                            r"linear modules are down_proj, gate_proj, k_proj, lm_head, o_proj, "
                                            r"q_proj, up_proj, v_proj"):
        finetune(base_dir, train_prompts, tmp_path / "out", settings, tmp_path / "scratch")
    assert not (tmp_path / "scratch").exists()


def test_lora_settings_are_checked_when_made():
    assert FinetuneSettings.from_dict({**SETTINGS, "method": "lora"}).lora.target_modules == "all-linear"
    with pytest.raises(ValueError, match="method must be one of full, lora"):
        FinetuneSettings.from_dict({**SETTINGS, "method": "qlora"})
    with pytest.raises(ValueError, match="lora r must be >= 1"):
        FinetuneSettings.from_dict({**LORA, "lora": {"r": 0}})
    with pytest.raises(ValueError, match="for method lora only"):
        FinetuneSettings.from_dict({**SETTINGS, "lora": {"r": 4}})


def test_a_preempted_lora_cell_resumes_to_the_uninterrupted_adapter(lora_cell, base_dir, train_prompts, tmp_path):
    from safetensors.torch import load_file

    out, scratch = tmp_path / "model", tmp_path / "model.scratch"
    first = run_finetune(base_dir, train_prompts, out, LORA, slow=True)
    log = read_until(first, "step 1/25")
    first.send_signal(signal.SIGTERM)
    log += first.communicate(timeout=300)[0]
    assert first.returncode == 143, log
    retry = run_finetune(base_dir, train_prompts, out, LORA, slow=False)
    log, _ = retry.communicate(timeout=300)
    assert retry.returncode == 0, log
    assert json.loads((out / "train_meta.json").read_text())["resumed_from_step"] >= 1
    resumed, uninterrupted = (load_file(d / "adapter_model.safetensors") for d in (out, lora_cell))
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.allclose(resumed[name], tensor, rtol=1e-5, atol=1e-6), name
    assert not scratch.exists()
