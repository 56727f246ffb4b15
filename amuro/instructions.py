"""Instruction tuning data: an instruction mix as chat `messages`, rendered with the tokenizer's chat template,
with the loss on assistant turns only.

The paper instruction-tunes every OLMo-1B checkpoint on Tulu v2 (`allenai/tulu-v2-sft-mixture`, rows of `messages`).
OLMo-1B's tokenizer (like the mini-world's) has no chat template; such tokenizers get Tulu v2's own format, and the
template used travels with the tuned model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa

from amuro import data, tokenization
from amuro.io import write_parquet

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
# Tulu v2's format: "<|user|>\n...\n<|assistant|>\n...EOS\n"; the generation prompt is "<|assistant|>\n".
# (Newlines are Jinja strings: transformers renders templates with trim_blocks, which eats one after a block tag.)
TULU_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


class InstructionDataError(ValueError):
    """A conversation that cannot be trained on; the message names the source and the row."""


def check_messages(messages, where: str) -> list[dict]:
    if not isinstance(messages, list) or not messages:
        raise InstructionDataError(f"{where}: `messages` must be a non-empty list of {{role, content}}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InstructionDataError(f"{where}: message {i} must have a role in {ROLES} and a text content, "
                                       f"got {m!r:.120}")
    if not any(m["role"] == "assistant" for m in messages):
        raise InstructionDataError(f"{where}: no assistant turn to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def prepare_instructions(name: str, source: dict, sample: int | None, seed: int, out: str | Path,
                         miniworld_dir: str | Path | None = None, download: str | Path | None = None) -> None:
    """The mix as Parquet (`id`, `messages`), sampled with `seed` in its original order.

    download: the download stage's record of a hub mix; it is then read offline from the HF cache at the recorded
    commit (the pinned revision of the mix), its files checked against the recorded hashes.
    """
    from datasets import load_dataset

    if source["type"] == "hub":
        if download is None:
            raise InstructionDataError(f"instruction mix {name}: a hub mix needs its download record "
                                       f"(results/downloads/instructions/{name}.json)")
        from amuro.downloads import local_dataset_snapshot

        record = json.loads(Path(download).read_text())
        local = local_dataset_snapshot(name, record)
        raw = load_dataset(str(local), source["name"], split=source["split"])
        where = f"{source['path']}@{record['commit']} ({source['split']})"
    else:
        path = source["file"] if source["type"] == "local" else Path(miniworld_dir) / "instructions" / "train.jsonl"
        if not Path(path).exists():
            raise InstructionDataError(f"instruction mix {name}: file {path} does not exist")
        builder = "parquet" if str(path).endswith(".parquet") else "json"
        raw = load_dataset(builder, data_files=str(path), split="train")
        where = str(path)
    if "messages" not in raw.column_names:
        raise InstructionDataError(f"instruction mix {name}: {where} has no `messages` column "
                                   f"(columns: {raw.column_names})")
    rows = data.sample_rows(list(range(len(raw))), sample, seed)
    ids = raw["id"] if "id" in raw.column_names else None
    records = []
    for i in rows:
        row_id = str(ids[i]) if ids is not None else f"{name}-{i:07d}"
        records.append({"id": row_id, "messages": check_messages(raw[i]["messages"], f"{where}, row {i} (id {row_id})")})
    write_parquet(pa.Table.from_pylist(records, schema=pa.schema([("id", pa.string()), ("messages", MESSAGES_TYPE)])),
                  out)
    log.info("instruction mix %s: %d of %d conversations from %s", name, len(records), len(raw), where)


def ensure_chat_template(tokenizer, template: str | None) -> str:
    """The tokenizer's own template, or `template` (Tulu v2's when None) set on it. Returns the one in use."""
    if not tokenizer.chat_template:
        tokenizer.chat_template = template or TULU_TEMPLATE
    return tokenizer.chat_template


def chat_features(messages: list[dict], tokenizer, max_seq_len: int) -> tuple[dict | None, bool]:
    """One training example from a conversation: every token of the rendered chat, labels on assistant turns only.

    The chat is rendered turn by turn, and each new piece of text is tokenized on its own, so a token never spans
    a prompt/answer boundary and the mask is exact for any template whose renderings extend each other. An
    assistant turn's piece runs from after the generation prompt to the end of the turn (EOS included). Too long:
    cut at max_seq_len from the right. Returns None when nothing learnable is left, and whether anything was cut.
    """
    def render(upto: int, prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=prompt)

    input_ids: list[int] = []
    labels: list[int] = []
    done = ""

    def extend(text: str, learn: bool):
        nonlocal done
        if not text.startswith(done):
            raise InstructionDataError("the chat template does not render a conversation as an extension of its "
                                       "earlier turns; the assistant-only mask cannot be computed for it")
        ids = tokenizer(text[len(done):], add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if learn else [-100] * len(ids))
        done = text

    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            extend(render(i, prompt=True), learn=False)
            extend(render(i + 1, prompt=False), learn=True)
        else:
            extend(render(i + 1, prompt=False), learn=False)
    # The tokenizer's BOS before the chat, as before every prompt (amuro.tokenization), unless the template wrote it.
    bos = list(tokenization.bos_ids(tokenizer))
    if bos and input_ids[:len(bos)] != bos:
        input_ids, labels = bos + input_ids, [-100] * len(bos) + labels
    cut = len(input_ids) > max_seq_len
    input_ids, labels = input_ids[:max_seq_len], labels[:max_seq_len]
    if all(label == -100 for label in labels):
        return None, cut
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}, cut


def prepare_instructions_from_spec(spec: dict, out: str | Path, miniworld_dir: str | Path | None = None,
                                   download: str | Path | None = None) -> None:
    """`amuro prepare-instructions`: the mix as the plan describes it (name, source, sample, seed)."""
    prepare_instructions(spec["name"], spec["source"], spec["sample"], spec["seed"], out, miniworld_dir, download)
