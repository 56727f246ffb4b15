"""Pre-train the tiny OLMo-architecture model on the mini-world corpus with the HF Trainer.

At every configured step the model and tokenizer are saved as an ordinary HF directory named like an OLMo hub
revision (`step125-tokens512K`), so downstream rules cannot tell it from a hub checkpoint. Afterwards every
saved checkpoint is reloaded and its held-out loss measured, which also proves the saved files are complete.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from pathlib import Path

import pyarrow as pa
import torch

from amuro.config import format_tokens
from amuro.io import atomic_path, write_parquet

log = logging.getLogger(__name__)


def checkpoint_name(step: int, tokens: int) -> str:
    return f"step{step}-tokens{format_tokens(tokens)}"


def token_blocks(corpus: str | Path, tokenizer, seq_len: int):
    """Documents joined with EOS and cut into blocks of `seq_len` tokens (the last partial block is dropped)."""
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(corpus), split="train")
    eos = tokenizer.eos_token

    def tokenize(batch):
        return tokenizer([t + eos for t in batch["text"]])

    def group(batch):
        ids = [t for doc in batch["input_ids"] for t in doc]
        n = len(ids) // seq_len * seq_len
        blocks = [ids[i:i + seq_len] for i in range(0, n, seq_len)]
        return {"input_ids": blocks, "labels": [list(b) for b in blocks]}

    ds = ds.map(tokenize, batched=True, remove_columns=["text"], desc="tokenize")
    return ds.map(group, batched=True, batch_size=2000, remove_columns=ds.column_names, desc="group")


@torch.no_grad()
def heldout_loss(model, blocks, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over the held-out blocks."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(blocks), batch_size):
        ids = torch.tensor(blocks[i:i + batch_size]["input_ids"])
        out = model(input_ids=ids, labels=ids)
        n = ids.numel() - ids.shape[0]
        total += out.loss.item() * n
        count += n
    return total / count


def pretrain(settings: dict, corpus_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path,
             threads: int = 1) -> None:
    """settings: the `miniworld` config section (model, pretrain, seed)."""
    from transformers import (AutoTokenizer, OlmoConfig, OlmoForCausalLM, Trainer, TrainerCallback,
                              TrainingArguments, set_seed)

    torch.set_num_threads(threads)
    pre, arch = settings["pretrain"], settings["model"]
    set_seed(settings["seed"])
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    train_blocks = token_blocks(Path(corpus_dir) / "train.jsonl", tokenizer, pre["seq_len"])
    eval_blocks = token_blocks(Path(corpus_dir) / "heldout.jsonl", tokenizer, pre["seq_len"])
    tokens_per_step = pre["seq_len"] * pre["batch_size"]
    steps = sorted(pre["checkpoint_steps"])
    epochs = steps[-1] * pre["batch_size"] / len(train_blocks)
    log.info("%d train blocks of %d tokens; %d steps = %.2f epochs", len(train_blocks), pre["seq_len"], steps[-1], epochs)

    config = OlmoConfig(
        vocab_size=len(tokenizer), hidden_size=arch["hidden_size"], num_hidden_layers=arch["num_hidden_layers"],
        num_attention_heads=arch["num_attention_heads"], intermediate_size=arch["intermediate_size"],
        max_position_embeddings=pre["seq_len"], pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )
    model = OlmoForCausalLM(config)
    log.info("model: %d parameters", model.num_parameters())

    with atomic_path(out_dir, directory=True) as tmp:
        records: list[dict] = []

        class SaveAtSteps(TrainerCallback):
            start = time.perf_counter()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    elapsed = time.perf_counter() - self.start
                    records.append({"step": state.global_step, "loss": float(logs["loss"]),
                                    "learning_rate": float(logs.get("learning_rate", math.nan)),
                                    "tokens": state.global_step * tokens_per_step,
                                    "tokens_per_s": state.global_step * tokens_per_step / elapsed})

            def on_step_end(self, args, state, control, model=None, **kwargs):
                if state.global_step in steps:
                    name = checkpoint_name(state.global_step, state.global_step * tokens_per_step)
                    model.save_pretrained(tmp / name)
                    tokenizer.save_pretrained(tmp / name)
                    log.info("saved %s", name)

        args = TrainingArguments(
            output_dir=str(tmp / ".trainer"), max_steps=steps[-1], per_device_train_batch_size=pre["batch_size"],
            learning_rate=pre["learning_rate"], warmup_steps=pre["warmup_steps"], lr_scheduler_type="cosine",
            weight_decay=0.1, adam_beta2=0.95, logging_steps=max(1, steps[-1] // 50), save_strategy="no",
            report_to="none", seed=settings["seed"], use_cpu=not torch.cuda.is_available(),
            dataloader_drop_last=True, disable_tqdm=True,
        )
        Trainer(model=model, args=args, train_dataset=train_blocks, callbacks=[SaveAtSteps()]).train()

        summary = []
        for step in steps:
            name = checkpoint_name(step, step * tokens_per_step)
            saved = OlmoForCausalLM.from_pretrained(tmp / name)
            loss = heldout_loss(saved, eval_blocks)
            log.info("%s: held-out loss %.3f", name, loss)
            summary.append({"checkpoint": name, "step": step, "tokens": step * tokens_per_step, "heldout_loss": loss})
        write_parquet(pa.Table.from_pylist(summary), tmp / "checkpoints.parquet")
        write_parquet(pa.Table.from_pylist(records), tmp / "train_log.parquet")
        shutil.rmtree(tmp / ".trainer", ignore_errors=True)
