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
# loss example_mean, packed rows: the label at each example's first position (a prompt token, never trained on), so
# that the loss can tell the examples of one row apart. Every negative label is skipped by the loss.
EXAMPLE_START = -101


def completion_features(prompt_ids: list[int], completion_ids: list[int], eos_id: int,
                        max_seq_len: int, keep_start: int = 0, truncation: str = "left") -> tuple[dict, bool]:
    """One training example: prompt + completion + EOS, with the loss on completion + EOS only.

    Too long, truncation left: the prompt is cut from the left (its first `keep_start` tokens, the BOS, stay) so the
    completion survives; a completion longer than max_seq_len on its own loses its end. right (and right_drop): the
    whole is cut at max_seq_len from the right, so the completion goes first (Yang et al.'s train.py). Returns the
    features and whether anything was cut.
    """
    completion_ids = list(completion_ids) + [eos_id]
    cut = len(prompt_ids) + len(completion_ids) > max_seq_len
    if cut and truncation != "left":
        prompt_ids = list(prompt_ids[:max_seq_len])
        completion_ids = completion_ids[:max_seq_len - len(prompt_ids)]
    elif cut:
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


def load_examples(train_file: str | Path, tokenizer, settings: FinetuneSettings) -> tuple[Dataset, dict]:
    """The tokenized training set as a datasets.Dataset, and what max_seq_len cut: examples `cut` at all, whose
    target lost tokens (`target_cut`, null for chats) or every token (`target_lost`), and `dropped` (left out).

    A prompt file (`prompt`, `completion`) trains on the completion; an instruction mix (`messages`) on the
    assistant turns, rendered with the tokenizer's chat template.
    """
    if tokenizer.eos_token_id is None:
        raise FinetuneError("the tokenizer has no EOS token; fine-tuning appends one to every completion")
    if "messages" in pq.read_schema(train_file).names:
        features, cuts = _chat_examples(train_file, tokenizer, settings)
    else:
        features, cuts = _completion_examples(train_file, tokenizer, settings)
    if cuts["cut"]:
        log.warning("%d of %d examples were longer than max_seq_len=%d and were cut",
                    cuts["cut"], len(features) + cuts["dropped"], settings.max_seq_len)
    log.info("%d training examples from %s (%s)", len(features), train_file,
             ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in cuts.items() if v is not None))
    return Dataset.from_list(features), cuts


def _completion_examples(train_prompts, tokenizer, settings: FinetuneSettings) -> tuple[list[dict], dict]:
    table = pq.read_table(train_prompts, columns=["prompt", "completion"])
    rows = sample_rows(table.num_rows, settings.size, settings.sampling_seed)
    prompts = [table["prompt"][i].as_py() for i in rows]
    completions = [table["completion"][i].as_py() for i in rows]
    # The prompt after the tokenizer's BOS, if it has one, as evaluation encodes it (amuro.tokenization).
    bos = list(tokenization.bos_ids(tokenizer))
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    features, cuts = [], {"cut": 0, "target_cut": 0, "target_lost": 0, "dropped": 0}
    for p, c in zip(prompt_ids, completion_ids):
        example, cut = completion_features(bos + p, c, tokenizer.eos_token_id, settings.max_seq_len, len(bos),
                                           settings.truncation)
        trained = sum(label != IGNORE_INDEX for label in example["labels"])
        cuts["cut"] += cut
        cuts["target_cut"] += trained < len(c) + 1  # the completion and its EOS
        if trained == 0:
            cuts["target_lost"] += 1
            if settings.truncation == "right_drop":  # nothing to learn: open-instruct leaves it out
                cuts["dropped"] += 1
                continue
        features.append(example)
    if cuts["target_cut"]:
        log.warning("%d examples lost target tokens to max_seq_len=%d (truncation %s), %d of them every one%s",
                    cuts["target_cut"], settings.max_seq_len, settings.truncation, cuts["target_lost"],
                    " (left out)" if cuts["dropped"] else "")
    if not features:
        raise FinetuneError(f"{train_prompts}: no example keeps a target token within max_seq_len")
    return features, cuts


def _chat_examples(train_file, tokenizer, settings: FinetuneSettings) -> tuple[list[dict], dict]:
    instructions.ensure_chat_template(tokenizer, settings.chat_template)
    table = pq.read_table(train_file, columns=["id", "messages"])
    features, n_cut, dropped = [], 0, 0
    for i in sample_rows(table.num_rows, settings.size, settings.sampling_seed):
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
    # A chat is always cut from the right, and one left with nothing to learn is left out.
    return features, {"cut": n_cut, "target_cut": None, "target_lost": dropped, "dropped": dropped}


def data_collator(batching: str, pad_tokenizer, attention: str, loss: str = "token_mean"):
    """Micro-batches as the model takes them. Both give the same loss on the same examples: packing drops each
    example's first label, which is a prompt token (never trained on) in every example we build; for the
    example_mean loss it marks the example's start there instead (EXAMPLE_START)."""
    if batching == "packed":
        # One row, positions restarting at every example: FlashAttention reads the boundaries from cu_seq_lens, SDPA
        # and eager from the positions (transformers builds a block-diagonal mask).
        return DataCollatorWithFlattening(separator_id=EXAMPLE_START if loss == "example_mean" else IGNORE_INDEX,
                                          return_flash_attn_kwargs=attention in VARLEN_ATTENTION)
    return DataCollatorForSeq2Seq(pad_tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
