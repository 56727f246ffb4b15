import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoTokenizer, OlmoConfig, OlmoForCausalLM

from amuro.evaluate import EvalRequest, EvalSettings, Scorer, evaluate
from amuro.formats import PROMPT_SCHEMA
from amuro.miniworld.tokenizer import train_tokenizer

WORDS = "yes no maybe positive negative the cat sat on a mat Kuri lives in Rege Keva so".split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random tiny OLMo with a tokenizer in which ' yes' is one token and ' maybe so' two words."""
    d = tmp_path_factory.mktemp("model")
    corpus = d / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": " ".join(WORDS[i:] + WORDS[:i])}) + "\n" for i in range(len(WORDS))) * 20)
    train_tokenizer(corpus, d / "model", vocab_size=300, documents=400)
    tok = AutoTokenizer.from_pretrained(d / "model")
    torch.manual_seed(0)
    OlmoForCausalLM(OlmoConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id, bos_token_id=None)).save_pretrained(d / "model")
    return d / "model"


def _prompt_file(path, prompts, targets):
    rows = [{"id": f"ex{i}", "shots": 0, "prompt": p, "completion": " " + t, "target": t, "demo_ids": []}
            for i, (p, t) in enumerate(zip(prompts, targets))]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA), path)


def test_continuation_logprobs_match_a_direct_forward_pass(tiny_model):
    scorer = Scorer(tiny_model, batch_size=3)
    prompts = ["the cat sat on", "Kuri lives in Rege so", "a"]
    for labels in ([" yes", " no"], [" maybe so", " no"]):  # one token each, then a two-token candidate
        got = scorer.continuation_logprobs(prompts, labels, "test")
        for i, prompt in enumerate(prompts):
            for j, label in enumerate(labels):
                p = scorer.tokenizer(prompt, add_special_tokens=False)["input_ids"]
                c = scorer.tokenizer(label, add_special_tokens=False)["input_ids"]
                logp = torch.log_softmax(scorer.model(torch.tensor([p + c])).logits[0].float(), -1)
                expected = sum(logp[len(p) - 1 + k, t].item() for k, t in enumerate(c))
                assert got[i][j] == pytest.approx(expected, abs=1e-4)


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_model):
    prompts = ["the cat", "Kuri lives in Rege so Kuri lives", "a mat"]
    batched = Scorer(tiny_model, batch_size=3).generate(prompts, 8, "test")
    alone = [Scorer(tiny_model, batch_size=1).generate([p], 8, "test")[0] for p in prompts]
    assert batched == alone


@pytest.mark.parametrize("method", ["loglik", "generate"])
def test_a_classification_example_is_scored_both_ways(tiny_model, tmp_path, method):
    _prompt_file(tmp_path / "test.parquet", ["the cat sat on a mat so", "Kuri lives in Keva so"], ["yes", "no"])
    request = EvalRequest("toy_nli", "nli", "default", 0, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"), ("yes", "maybe", "no"))
    evaluate(tiny_model, [request], EvalSettings(classification=method), {"model": "toy", "train": "base"})
    for row in pq.read_table(tmp_path / "out.parquet").to_pylist():
        logprobs = row["label_logprobs"]
        assert row["label_loglik"] == ("yes", "maybe", "no")[logprobs.index(max(logprobs))]
        assert row["label_generate"] in (None, "yes", "maybe", "no")
        chosen = row["label_loglik"] if method == "loglik" else row["label_generate"]
        assert row["prediction"] == (chosen or "")
        assert row["score"] == float(chosen == row["reference"])
        assert row["scoring"] == method and row["metric"] == "accuracy" and row["model"] == "toy"


def test_generation_is_scored_with_rouge_l(tiny_model, tmp_path):
    _prompt_file(tmp_path / "test.parquet", ["the cat", "Kuri lives"], ["the cat sat on a mat", "in Rege"])
    request = EvalRequest("toy_sum", "summarization", "default", 0, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"))
    evaluate(tiny_model, [request], EvalSettings(max_new_tokens_generation=6), {"model": "toy", "train": "base"})
    from amuro.metrics import rouge_l

    for row in pq.read_table(tmp_path / "out.parquet").to_pylist():
        assert row["metric"] == "rougeL" and "\n" not in row["prediction"]
        assert row["score"] == rouge_l(row["reference"], row["prediction"])


def test_asking_for_shots_the_prompt_file_lacks_is_an_error(tiny_model, tmp_path):
    _prompt_file(tmp_path / "test.parquet", ["the cat"], ["yes"])
    request = EvalRequest("toy", "nli", "default", 4, str(tmp_path / "test.parquet"), str(tmp_path / "o.parquet"),
                          ("yes", "no"))
    with pytest.raises(ValueError, match=r"no 4-shot prompts.*holds shots \[0\]"):
        evaluate(tiny_model, [request], EvalSettings(), {"model": "toy"})
    assert not (tmp_path / "o.parquet").exists()
