"""Specifications for instruction-tuning data: chat rendering, the assistant-only loss mask, the instruction mix."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from transformers import AutoTokenizer

from amuro.instructions import (TULU_TEMPLATE, InstructionDataError, chat_features, ensure_chat_template,
                                prepare_instructions)
from amuro.miniworld.tokenizer import train_tokenizer

TWO_TURNS = [
    {"role": "user", "content": "Where is Zasefa?"},
    {"role": "assistant", "content": "Zasefa is in Tuso."},
    {"role": "user", "content": "What food does it serve?"},
    {"role": "assistant", "content": "Zasefa serves noodle."},
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    corpus = root / "corpus.jsonl"
    texts = [m["content"] for m in TWO_TURNS] + ["<|user|>\n<|assistant|>\n"]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts) * 10)
    train_tokenizer(corpus, root / "tok", vocab_size=300, documents=50)
    tok = AutoTokenizer.from_pretrained(root / "tok")
    assert not tok.chat_template  # like OLMo-1B's: the default template must be set
    ensure_chat_template(tok, None)
    return tok


def test_a_tokenizer_without_a_template_gets_tulu_v2_and_one_with_a_template_keeps_it(tokenizer):
    assert tokenizer.chat_template == TULU_TEMPLATE
    assert tokenizer.apply_chat_template(TWO_TURNS[:2], tokenize=False) == (
        "<|user|>\nWhere is Zasefa?\n<|assistant|>\nZasefa is in Tuso.<|endoftext|>\n")
    ensure_chat_template(tokenizer, "{{ messages }}")
    assert tokenizer.chat_template == TULU_TEMPLATE


def test_the_loss_covers_both_assistant_turns_and_nothing_else(tokenizer):
    features, cut = chat_features(TWO_TURNS, tokenizer, max_seq_len=512)
    assert not cut
    ids, labels = features["input_ids"], features["labels"]
    assert len(ids) == len(labels) == len(features["attention_mask"])
    # Learned tokens are exactly the two answers, each with its EOS (and the template's newline after it).
    learned = [i for i, label in zip(ids, labels) if label != -100]
    assert [label for label in labels if label != -100] == learned
    assert tokenizer.decode(learned) == "Zasefa is in Tuso.<|endoftext|>\nZasefa serves noodle.<|endoftext|>\n"
    masked = tokenizer.decode([i for i, label in zip(ids, labels) if label == -100])
    assert masked == ("<|user|>\nWhere is Zasefa?\n<|assistant|>\n"
                      "<|user|>\nWhat food does it serve?\n<|assistant|>\n")
    # The whole example is the rendered chat, in order.
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(TWO_TURNS, tokenize=False)


def test_a_long_chat_is_cut_from_the_right_and_one_with_no_answer_left_is_dropped(tokenizer):
    full, _ = chat_features(TWO_TURNS, tokenizer, max_seq_len=512)
    n = len(full["input_ids"])
    features, cut = chat_features(TWO_TURNS, tokenizer, max_seq_len=n - 3)
    assert cut and features["input_ids"] == full["input_ids"][:n - 3]
    first_answer = next(i for i, label in enumerate(full["labels"]) if label != -100)
    features, cut = chat_features(TWO_TURNS, tokenizer, max_seq_len=first_answer)
    assert cut and features is None


def test_prepare_instructions_samples_and_rejects_a_conversation_without_an_answer(tmp_path):
    rows = [{"id": f"c{i}", "messages": TWO_TURNS[:2]} for i in range(5)]
    source = tmp_path / "mix.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "train.parquet"
    prepare_instructions("mix", {"type": "local", "file": str(source)}, sample=3, seed=0, out=out)
    table = pq.read_table(out).to_pylist()
    assert len(table) == 3 and all(r["messages"] == TWO_TURNS[:2] for r in table)
    assert [r["id"] for r in table] == sorted(r["id"] for r in table)  # original order kept

    rows[3] = {"id": "c3", "messages": [{"role": "user", "content": "hello?"}]}
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InstructionDataError, match=r"row 3 \(id c3\): no assistant turn"):
        prepare_instructions("mix", {"type": "local", "file": str(source)}, sample=None, seed=0,
                             out=tmp_path / "bad.parquet")
    assert not (tmp_path / "bad.parquet").exists()


def test_a_tokenizer_with_a_bos_gets_it_before_the_chat_outside_the_loss(tmp_path):
    from conftest import make_llama_like, write_tiny_olmo

    base = write_tiny_olmo(tmp_path / "m", [m["content"] for m in TWO_TURNS] * 10, max_positions=256)
    llama = AutoTokenizer.from_pretrained(make_llama_like(base, tmp_path / "llama"))
    olmo = AutoTokenizer.from_pretrained(base)
    for tok in (llama, olmo):
        ensure_chat_template(tok, None)
    with_bos, _ = chat_features(TWO_TURNS, llama, max_seq_len=512)
    plain, _ = chat_features(TWO_TURNS, olmo, max_seq_len=512)
    assert with_bos["input_ids"] == [llama.eos_token_id] + plain["input_ids"]
    assert with_bos["labels"] == [-100] + plain["labels"]
