"""The training set: prompts and completions (or chats) tokenized with the loss on the completion only, sampled to
the cell's size, and the collator that makes micro-batches of them (padded, or packed into one row)."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow.parquet as pq
from datasets import Dataset
from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

from amuro import data, instructions, tokenization
from amuro.finetune.settings import VARLEN_ATTENTION, FinetuneError, FinetuneSettings

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label value the loss skips


def completion_features(prompt_ids: list[int], completion_ids: list[int], eos_id: int,
                        max_seq_len: int, keep_start: int = 0) -> tuple[dict, bool]:
    """One training example: prompt + completion + EOS, with the loss on completion + EOS only.

    Too long: the prompt is cut from the left (its first `keep_start` tokens, the BOS, stay) so the completion
    survives; a completion longer than max_seq_len on its own loses its end. Returns the features and whether
    anything was cut.
    """
    completion_ids = list(completion_ids) + [eos_id]
    cut = len(prompt_ids) + len(completion_ids) > max_seq_len
    if cut:
        head, rest = list(prompt_ids[:keep_start]), list(prompt_ids[keep_start:])
        completion_ids = completion_ids[:max_seq_len - len(head)]
        keep = max_seq_len - len(head) - len(completion_ids)
        prompt_ids = head + (rest[len(rest) - keep:] if keep else [])
    input_ids = list(prompt_ids) + completion_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }, cut


def sample_rows(n: int, size: int | None, seed: int) -> list[int]:
    """`size` row indices drawn with `seed`, in their original order; all rows when size is None or >= n."""
    if size is not None and size > n:
        log.warning("asked for %d training examples but the file has only %d: using all", size, n)
    return data.sample_rows(list(range(n)), size, seed)


def load_examples(train_file: str | Path, tokenizer, settings: FinetuneSettings):
    """The tokenized training set as a datasets.Dataset, and how many examples were cut to max_seq_len.

    A prompt file (`prompt`, `completion`) trains on the completion; an instruction mix (`messages`) on the
    assistant turns, rendered with the tokenizer's chat template.
    """
    if tokenizer.eos_token_id is None:
        raise FinetuneError("the tokenizer has no EOS token; fine-tuning appends one to every completion")
    if "messages" in pq.read_schema(train_file).names:
        features, n_cut = _chat_examples(train_file, tokenizer, settings)
    else:
        features, n_cut = _completion_examples(train_file, tokenizer, settings)
    if n_cut:
        log.warning("%d of %d examples were longer than max_seq_len=%d and were cut",
                    n_cut, len(features), settings.max_seq_len)
    log.info("%d training examples from %s (%d cut)", len(features), train_file, n_cut)
    return Dataset.from_list(features), n_cut


def _completion_examples(train_prompts, tokenizer, settings: FinetuneSettings) -> tuple[list[dict], int]:
    table = pq.read_table(train_prompts, columns=["prompt", "completion"])
    rows = sample_rows(table.num_rows, settings.size, settings.seed)
    prompts = [table["prompt"][i].as_py() for i in rows]
    completions = [table["completion"][i].as_py() for i in rows]
    # The prompt after the tokenizer's BOS, if it has one, as evaluation encodes it (amuro.tokenization).
    bos = list(tokenization.bos_ids(tokenizer))
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    features, n_cut = [], 0
    for p, c in zip(prompt_ids, completion_ids):
        example, cut = completion_features(bos + p, c, tokenizer.eos_token_id, settings.max_seq_len, len(bos))
        features.append(example)
        n_cut += cut
    return features, n_cut


def _chat_examples(train_file, tokenizer, settings: FinetuneSettings) -> tuple[list[dict], int]:
    instructions.ensure_chat_template(tokenizer, settings.chat_template)
    table = pq.read_table(train_file, columns=["id", "messages"])
    features, n_cut, dropped = [], 0, 0
    for i in sample_rows(table.num_rows, settings.size, settings.seed):
        example, cut = instructions.chat_features(table["messages"][i].as_py(), tokenizer, settings.max_seq_len)
        n_cut += cut
        if example is None:
            dropped += 1
        else:
            features.append(example)
    if dropped:
        log.warning("%d conversations lost every assistant token to max_seq_len=%d and were left out",
                    dropped, settings.max_seq_len)
    if not features:
        raise FinetuneError(f"{train_file}: no conversation has an assistant turn within max_seq_len")
    return features, n_cut


def data_collator(batching: str, pad_tokenizer, attention: str):
    """Micro-batches as the model takes them. Both give the same loss on the same examples: packing drops each
    example's first label, which is a prompt token (never trained on) in every example we build."""
    if batching == "packed":
        # One row, positions restarting at every example: FlashAttention reads the boundaries from cu_seq_lens, SDPA
        # and eager from the positions (transformers builds a block-diagonal mask).
        return DataCollatorWithFlattening(separator_id=IGNORE_INDEX,
                                          return_flash_attn_kwargs=attention in VARLEN_ATTENTION)
    return DataCollatorForSeq2Seq(pad_tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
