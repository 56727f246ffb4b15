import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from amuro import scoring
from amuro.evaluate import EvalRequest, EvalSettings, evaluate
from amuro.scorer import Scorer, StopAfterText, _shared_stems, cut_generation
from amuro.formats import PROMPT_SCHEMA
from amuro.metrics import match_label, rouge_l
from conftest import write_tiny_olmo

WORDS = "yes no maybe positive negative the cat sat on a mat Kuri lives in Rege Keva so".split()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random tiny OLMo with a tokenizer in which ' yes' is one token and ' maybe so' two words."""
    torch.manual_seed(0)
    return write_tiny_olmo(tmp_path_factory.mktemp("model") / "model",
                           [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 20, max_positions=128,
                           tie_embeddings=False)


def _prompt_file(path, prompts, targets):
    rows = [{"id": f"ex{i}", "shots": 0, "prompt": p, "completion": " " + t, "target": t, "demo_ids": []}
            for i, (p, t) in enumerate(zip(prompts, targets))]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA), path)


@pytest.mark.parametrize("labels", [(" yes", " positive"), (" maybe", " no", " yes"),
                                    (" maybe so", " maybe", " the cat", " no")])
def test_label_scores_match_a_direct_forward_pass(tiny_model, labels):
    """One-token labels share the prompt's pass, " m aybe" shares the pass of " m aybe s o", " n o" needs its own."""
    scorer = Scorer(tiny_model, batch_size=3)
    prompts = ["the cat sat on", "Kuri lives in Rege so", "a"]
    continuations = [scorer.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    token_sets = [[5, 9, 40], [7], [12, 13]]
    logprobs, tokenprobs = scorer.label_scores(prompts, continuations, token_sets, "test")
    for i, prompt in enumerate(prompts):
        p = scorer.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for j, c in enumerate(continuations):
            logp = torch.log_softmax(scorer.model(torch.tensor([p + c])).logits[0].float(), -1)
            assert logprobs[i][j] == pytest.approx([logp[len(p) - 1 + k, t].item() for k, t in enumerate(c)], abs=1e-4)
        first = logp[len(p) - 1]
        assert tokenprobs[i] == pytest.approx([max(first[t].item() for t in ids) for ids in token_sets], abs=1e-4)


@pytest.mark.parametrize("labels", [(" yes", " positive", " no"), (" maybe so", " maybe", " the cat", " no")])
def test_generation_prefill_scores_single_token_labels_without_passes_of_their_own(tiny_model, labels):
    """Classification reads TokenProb and one-token labels from its greedy generation's prefill: the same scores as
    dedicated passes, and no further pass when every label is one token."""
    scorer = Scorer(tiny_model, batch_size=2)
    prompts = ["the cat sat on", "Kuri lives in Rege so", "a", "on a mat the cat"]
    continuations = [scorer.tokenizer(label, add_special_tokens=False)["input_ids"] for label in labels]
    token_sets = [[5, 9, 40], [7], [12, 13]]
    _, first = scorer.generate(prompts, 3, "test", first_logprobs=True)
    own_logprobs, own_tokenprobs = scorer.label_scores(prompts, continuations, token_sets, "test")
    passes = []
    hook = scorer.model.register_forward_hook(lambda module, args, out: passes.append(1))
    shared_logprobs, shared_tokenprobs = scorer.label_scores(prompts, continuations, token_sets, "test", first)
    hook.remove()
    longer_stems = sum(1 for stem in _shared_stems(continuations)[0] if stem)
    assert len(passes) == 2 * longer_stems  # batches of two: (4 prompts x stems beyond the prompt) / 2
    if all(len(c) == 1 for c in continuations):
        assert not passes
    flat = lambda rows: [x for row in rows for cont in row for x in cont]  # noqa: E731
    assert flat(shared_logprobs) == pytest.approx(flat(own_logprobs), abs=1e-5)
    assert [x for row in shared_tokenprobs for x in row] == pytest.approx([x for row in own_tokenprobs for x in row],
                                                                          abs=1e-5)


def test_continuations_share_the_pass_of_a_longer_one_they_start():
    stems, stem_of = _shared_stems([[1], [2, 3, 4], [2, 3], [5, 6], [2, 7]])
    assert stems == [[2, 3], [5]] and stem_of == [0, 0, 0, 1, 0]


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_model):
    prompts = ["the cat", "Kuri lives in Rege so Kuri lives", "a mat"]
    batched = Scorer(tiny_model, batch_size=3).generate(prompts, 8, "test")
    alone = [Scorer(tiny_model, batch_size=1).generate([p], 8, "test")[0] for p in prompts]
    assert batched == alone


@pytest.mark.parametrize("method", ["tokenprob", "loglik", "constrained", "generate"])
def test_a_classification_example_is_scored_every_way(tiny_model, tmp_path, method):
    _prompt_file(tmp_path / "test.parquet", ["the cat sat on a mat so", "Kuri lives in Keva so"], ["yes", "no"])
    request = EvalRequest("toy_nli", "nli", "default", 0, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"), ("yes", "maybe", "no"))
    evaluate(tiny_model, [request], EvalSettings(classification=method), {"model": "toy", "train": "base"})
    for row in pq.read_table(tmp_path / "out.parquet").to_pylist():
        chosen = row[f"label_{method}"]
        assert row["prediction"] == (chosen or "")
        assert row["score"] == float(chosen == row["reference"])
        assert row["scoring"] == method and row["metric"] == "accuracy" and row["model"] == "toy"


def test_every_method_is_kept_per_example_and_tokenprob_is_the_default(tiny_model, tmp_path):
    """In this tokenizer " yes" is one token, " m aybe" and " n o" two: every method reads the same passes."""
    labels = ("yes", "maybe", "no")
    prompts = ["the cat sat on a mat so", "Kuri lives in Keva so", "a cat", "Rege"]
    _prompt_file(tmp_path / "test.parquet", prompts, ["yes", "no", "maybe", "no"])
    requests = [EvalRequest("toy_nli", "nli", fmt, 0, str(tmp_path / "test.parquet"), str(tmp_path / f"{fmt}.parquet"),
                            labels) for fmt in ("default", "io")]
    evaluate(tiny_model, requests, EvalSettings(), {"model": "toy", "train": "base"})
    scorer = Scorer(tiny_model, batch_size=4)
    token_sets = scoring.label_token_ids(scorer.tokenizer, labels)
    for fmt, lead in (("default", " "), ("io", "")):
        table = pq.read_table(tmp_path / f"{fmt}.parquet")
        columns = table.column_names
        assert columns.index("label_tokenprob") < columns.index("label_constrained") < columns.index("label_logprobs")
        continuations = [scorer.tokenizer(lead + label, add_special_tokens=False)["input_ids"] for label in labels]
        logprobs, tokenprobs = scorer.label_scores(prompts, continuations, token_sets, "test")
        generations = scorer.generate(prompts, 5, "test")
        for row, lp, tp, gen in zip(table.to_pylist(), logprobs, tokenprobs, generations):
            assert row["scoring"] == "tokenprob" and row["prediction"] == row["label_tokenprob"]
            assert row["label_tokenprobs"] == pytest.approx(tp, abs=1e-5)
            assert row["label_logprobs"] == pytest.approx([sum(x) for x in lp], abs=1e-5)
            assert row["label_tokenprob"] == labels[scoring.best(row["label_tokenprobs"])]
            assert row["label_loglik"] == labels[scoring.best(row["label_logprobs"])]
            assert row["label_constrained"] == labels[scoring.constrained_choice(continuations, lp)]
            assert row["generation"] == gen and row["label_generate"] == match_label(gen, labels)
            # Each label's own first token is one of its TokenProb tokens.
            assert all(t >= x[0] - 1e-5 for t, x in zip(row["label_tokenprobs"], lp))


def _candidate_ids(tokenizer, labels, rule):
    """Each rule's candidates as the papers' code finds them, computed here without amuro.scoring's help."""
    if rule == "subtokens":  # the paper: every token of the tokenised label words, bare and after a space
        return [set(tokenizer(w, add_special_tokens=False)["input_ids"]) | set(
            tokenizer(" " + w, add_special_tokens=False)["input_ids"]) for w in labels]
    if rule == "first_token":  # Yang et al.: one token per label, the first of the label as the prompt goes on
        return [{tokenizer(" " + w, add_special_tokens=False)["input_ids"][0]} for w in labels]
    vocabulary = {i: scoring.normalize_token(tokenizer.decode([i])) for i in range(len(tokenizer))}
    starts = {i: [w for w in labels if t and w.startswith(t)] for i, t in vocabulary.items()}
    return [{i for i, s in starts.items() if s == [w]} for w in labels]


@pytest.mark.parametrize("rule", ["prefix", "subtokens", "first_token"])
def test_a_tokenprob_prediction_counts_the_candidates_of_its_rule(tiny_model, tmp_path, rule):
    """evaluation.tokenprob_candidates: the configured rule makes `label_tokenprob` and the score; every rule is kept
    per example (label_tokenprob_<rule>), each from the same next-token distribution."""
    labels = ("yes", "maybe", "no")
    prompts = ["the cat sat on a mat so", "Kuri lives in Keva so", "a cat", "Rege"]
    _prompt_file(tmp_path / "test.parquet", prompts, ["yes", "no", "maybe", "no"])
    request = EvalRequest("toy_nli", "nli", "default", 0, str(tmp_path / "test.parquet"), str(tmp_path / "out.parquet"),
                          labels)
    evaluate(tiny_model, [request], EvalSettings(tokenprob_candidates=rule), {"model": "toy", "train": "base"})
    scorer = Scorer(tiny_model, batch_size=1)
    expected = {r: _candidate_ids(scorer.tokenizer, labels, r) for r in ("prefix", "subtokens", "first_token")}
    assert expected["subtokens"][1] > expected["first_token"][1]  # " m", "aybe" (and "maybe"'s own pieces)
    for prompt, row in zip(prompts, pq.read_table(tmp_path / "out.parquet").to_pylist()):
        ids = scorer.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        after = torch.log_softmax(scorer.model(torch.tensor([ids])).logits[0, -1].float(), -1)
        best = {r: labels[scoring.best([max(after[i].item() for i in c) for c in cands])]
                for r, cands in expected.items()}
        assert row["tokenprob_candidates"] == rule and row["scoring"] == "tokenprob"
        assert row["label_tokenprobs"] == pytest.approx([max(after[i].item() for i in c) for c in expected[rule]],
                                                        abs=1e-4)
        assert row["prediction"] == row["label_tokenprob"] == best[rule]
        assert {r: row[f"label_tokenprob_{r}"] for r in expected} == best


def test_a_candidate_rule_the_tokenizer_cannot_serve_is_refused_when_configured_and_left_out_otherwise(tiny_model,
                                                                                                      tmp_path):
    """" maybe" and " maybe so" start with the same token: first_token (and prefix) cannot tell them apart."""
    _prompt_file(tmp_path / "test.parquet", ["the cat sat on a mat so"], ["maybe"])
    request = EvalRequest("toy_nli", "nli", "default", 0, str(tmp_path / "test.parquet"), str(tmp_path / "out.parquet"),
                          ("maybe", "maybe so", "no"))
    with pytest.raises(ValueError, match=r"evaluation.tokenprob_candidates first_token: labels 'maybe' and 'maybe so' "
                                         r"start with the same token"):
        evaluate(tiny_model, [request], EvalSettings(tokenprob_candidates="first_token"), {"model": "toy"})
    # (paper_substring: first_word matching needs one-word labels)
    evaluate(tiny_model, [request], EvalSettings(tokenprob_candidates="subtokens", label_match="paper_substring"),
             {"model": "toy"})
    row = pq.read_table(tmp_path / "out.parquet").to_pylist()[0]
    assert row["label_tokenprob_subtokens"] == row["label_tokenprob"]
    assert row["label_tokenprob_first_token"] is None and row["label_tokenprob_prefix"] is None


def test_an_unknown_classification_method_is_refused():
    with pytest.raises(ValueError, match="'exact' is not one of generate, constrained, tokenprob, loglik"):
        EvalSettings(classification="exact")


def test_generation_is_scored_with_rouge_l(tiny_model, tmp_path):
    _prompt_file(tmp_path / "test.parquet", ["the cat", "Kuri lives"], ["the cat sat on a mat", "in Rege"])
    request = EvalRequest("toy_sum", "summarization", "default", 0, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"))
    evaluate(tiny_model, [request], EvalSettings(max_new_tokens_generation=6), {"model": "toy", "train": "base"})
    for row in pq.read_table(tmp_path / "out.parquet").to_pylist():
        assert row["metric"] == "rougeL" and "\n\n" not in row["prediction"] and "###" not in row["prediction"]
        assert row["score"] == rouge_l(row["reference"], row["prediction"])
        assert row["generation_stop"] == "paragraph" and row["shots_used"] == 0 and row["label_match"] is None


def test_asking_for_shots_the_prompt_file_lacks_is_an_error(tiny_model, tmp_path):
    _prompt_file(tmp_path / "test.parquet", ["the cat"], ["yes"])
    request = EvalRequest("toy", "nli", "default", 4, str(tmp_path / "test.parquet"), str(tmp_path / "o.parquet"),
                          ("yes", "no"))
    with pytest.raises(ValueError, match=r"no 4-shot prompts.*holds shots \[0\]"):
        evaluate(tiny_model, [request], EvalSettings(), {"model": "toy"})
    assert not (tmp_path / "o.parquet").exists()


CNN_REFERENCE = "Kuri lives in Rege .\nThe cat sat on a mat ."


@pytest.mark.parametrize(("text", "rule", "expected"), [
    # Several lines of highlights survive; the next demonstration (blank line) or header ends the prediction.
    (" Kuri lives in Rege .\nThe cat sat on a mat .\n\n### Input: next", "paragraph", CNN_REFERENCE),
    (" Kuri lives in Rege .\nThe cat sat on a mat .\n### Input: next", "paragraph", CNN_REFERENCE),
    # A leading newline is not the end: the prediction starts at the first text.
    ("\n\nKuri lives in Rege .\n\nmore", "paragraph", "Kuri lives in Rege ."),
    ("\nKuri lives in Rege .\nThe cat", "line", "Kuri lives in Rege ."),
    ("\n\n  \n", "paragraph", ""),
])
def test_generation_ends_where_the_next_demonstration_or_header_would_start(text, rule, expected):
    assert cut_generation(text, rule) == expected


def test_the_none_rule_keeps_everything_past_a_blank_line_and_a_header():
    text = " Kuri lives in Rege .\n\n### Input: the cat\n### Summary: a mat"
    assert cut_generation(text, "none") == text.strip()


@pytest.mark.parametrize(("rule", "expected"), [
    ("none", "Kuri lives in Rege .\n\n### Input: the cat sat"),
    ("paragraph", "Kuri lives in Rege ."),
    ("line", "Kuri lives in Rege ."),
])
def test_a_prediction_without_a_stop_keeps_text_past_a_blank_line_and_a_header(tiny_model, tmp_path, monkeypatch,
                                                                               rule, expected):
    """generation_stop none (the paper's prediction scripts): the raw output is scored, the model's next invented
    demonstration included; the other rules cut it where that demonstration starts."""
    from transformers import GenerationMixin

    scorer = Scorer(tiny_model, batch_size=2)
    output = scorer.tokenizer(" Kuri lives in Rege .\n\n### Input: the cat sat", add_special_tokens=False)["input_ids"]

    def fixed_output(self, input_ids, max_new_tokens, stopping_criteria=None, **kwargs):
        from types import SimpleNamespace

        new = torch.tensor([output[:max_new_tokens]] * input_ids.shape[0])
        return SimpleNamespace(sequences=torch.cat([input_ids, new], dim=1))

    monkeypatch.setattr(GenerationMixin, "generate", fixed_output)
    _prompt_file(tmp_path / "test.parquet", ["the cat sat on a mat so", "Kuri lives"], ["Kuri lives in Rege .", "a"])
    request = EvalRequest("toy_sum", "summarization", "default", 0, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"))
    evaluate(tiny_model, [request], EvalSettings(max_new_tokens_generation=60, generation_stop=rule),
             {"model": "toy", "train": "base"})
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert [r["prediction"] for r in rows] == [expected] * 2
    assert all(r["generation_stop"] == rule for r in rows)
    assert rows[0]["score"] == rouge_l("Kuri lives in Rege .", expected)


def test_a_multi_line_reference_is_matched_whole_by_the_paragraph_rule():
    generated = "\nKuri lives in Rege .\nThe cat sat on a mat .\n\n### Input:"
    assert rouge_l(CNN_REFERENCE, cut_generation(generated, "paragraph")) == 1.0
    assert rouge_l(CNN_REFERENCE, cut_generation(generated, "line")) < 0.7
    # The old rule (cut at the first newline, whatever came before it) predicted nothing here.
    assert generated.split("\n")[0].strip() == ""


def test_the_stopping_criterion_stops_a_row_only_after_some_text(tiny_model):
    scorer = Scorer(tiny_model, batch_size=2)
    prompt = scorer.encode("the cat")
    generated = [scorer.tokenizer(text, add_special_tokens=False)["input_ids"]
                 for text in ("\n\n", "\n\nthe cat\n\n")]
    width = max(map(len, generated))
    # As in generate(): one prompt width, then each row's new tokens (a finished row continues with padding).
    ids = torch.tensor([prompt + g + [scorer.pad_id] * (width - len(g)) for g in generated])
    stop = StopAfterText(scorer.tokenizer, len(prompt), "paragraph")
    assert stop(ids, None).tolist() == [False, True]


def test_a_k_shot_prompt_too_long_for_the_model_loses_whole_demonstrations(tiny_model, tmp_path):
    from amuro.formats import assemble, demo_chars

    demos = [(f"the cat sat on a mat so Kuri lives in Rege {w}", " yes") for w in ("so", "the cat", "a mat", "Keva")]
    query = "Kuri lives in Keva so"
    prompt = assemble(demos, query)
    scorer = Scorer(tiny_model, batch_size=1)  # 128 positions
    assert 128 - 60 < len(scorer.encode(prompt)) <= 128
    # With room for 60 new tokens the prompt does not fit: the farthest demonstrations go, whole.
    fitted, kept = scorer.fit_demonstrations(prompt, demo_chars(demos), room=60)
    assert 0 < kept < 4 and fitted == assemble(demos[4 - kept:], query)
    assert len(scorer.encode(fitted)) <= 128 - 60 and scorer.truncated == 0
    assert scorer.fit_demonstrations(prompt, demo_chars(demos), room=0) == (prompt, 4)

    rows = [{"id": "ex0", "shots": 4, "prompt": prompt, "completion": " yes", "target": "yes",
             "demo_ids": ["a", "b", "c", "d"], "demo_chars": demo_chars(demos)}]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA), tmp_path / "test.parquet")
    request = EvalRequest("toy_sum", "summarization", "default", 4, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"))
    evaluate(tiny_model, [request], EvalSettings(max_new_tokens_generation=60), {"model": "toy", "train": "base"})
    row = pq.read_table(tmp_path / "out.parquet").to_pylist()[0]
    assert row["shots_used"] == kept and row["prompt"] == prompt


OVERLONG_WORDS = ("so", "the cat", "a mat", "Keva") * 2  # eight demonstrations: past the tiny model's 128 positions


def _overlong_prompt_file(path, demos, query):
    from amuro.formats import assemble, demo_chars

    rows = [{"id": "ex0", "shots": len(demos), "prompt": assemble(demos, query), "completion": " yes", "target": "yes",
             "demo_ids": [f"d{i}" for i in range(len(demos))], "demo_chars": demo_chars(demos)}]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA), path)
    return rows[0]["prompt"]


def test_keep_sends_a_prompt_past_the_context_to_the_model_whole(tiny_model, tmp_path):
    """overlong_prompts keep (the papers' code): no demonstration is dropped and nothing is cut, even past the
    model's 128 positions; the rotary-position OLMo reads positions it was not trained on and still answers."""
    demos = [(f"the cat sat on a mat so Kuri lives in Rege {w}", " yes") for w in OVERLONG_WORDS]
    prompt = _overlong_prompt_file(tmp_path / "test.parquet", demos, "Kuri lives in Keva so")
    scorer = Scorer(tiny_model, batch_size=1, overlong_prompts="keep")
    assert len(scorer.encode(prompt, room=60)) > 128 and scorer.truncated == 0
    assert scorer.fit_demonstrations(prompt, [1] * 8, room=60) == (prompt, 8)
    for mode in ("keep", "drop_demonstrations"):
        request = EvalRequest("toy_sum", "summarization", "default", 8, str(tmp_path / "test.parquet"),
                              str(tmp_path / f"{mode}.parquet"))
        evaluate(tiny_model, [request], EvalSettings(max_new_tokens_generation=20, overlong_prompts=mode),
                 {"model": "toy", "train": "base"})
    keep = pq.read_table(tmp_path / "keep.parquet").to_pylist()[0]
    drop = pq.read_table(tmp_path / "drop_demonstrations.parquet").to_pylist()[0]
    assert (keep["overlong_prompts"], keep["shots_used"]) == ("keep", 8)
    assert keep["prompt_tokens"] == len(scorer.encode(prompt))
    assert keep["prompt_tokens"] > 128 and keep["prediction"]
    assert drop["overlong_prompts"] == "drop_demonstrations" and drop["shots_used"] < 8
    assert drop["prompt_tokens"] <= 128 - 20


def test_keep_refuses_a_model_whose_positions_end_at_its_context(tiny_model, tmp_path):
    """A model with learned absolute positions (GPT-2's) has no position 129: keep names the setting instead of
    failing inside the model; drop_demonstrations still scores it."""
    import shutil

    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    gpt2 = tmp_path / "gpt2"
    shutil.copytree(tiny_model, gpt2)
    tokenizer = AutoTokenizer.from_pretrained(gpt2)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2,
                               bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                               pad_token_id=tokenizer.pad_token_id)).save_pretrained(gpt2)
    demos = [(f"the cat sat on a mat so Kuri lives in Rege {w}", " yes") for w in OVERLONG_WORDS]
    _overlong_prompt_file(tmp_path / "test.parquet", demos, "Kuri lives in Keva so")
    request = EvalRequest("toy_sum", "summarization", "default", 8, str(tmp_path / "test.parquet"),
                          str(tmp_path / "out.parquet"))
    with pytest.raises(ValueError, match=r"evaluation.overlong_prompts keep: 1 prompts need up to \d+ positions.*"
                                         r"past the model's 128.*no rotary embeddings"):
        evaluate(gpt2, [request], EvalSettings(max_new_tokens_generation=20, overlong_prompts="keep"), {"model": "g"})
    assert not (tmp_path / "out.parquet").exists()
    evaluate(gpt2, [request], EvalSettings(max_new_tokens_generation=20), {"model": "g"})
    assert pq.read_table(tmp_path / "out.parquet")["shots_used"].to_pylist()[0] < 8


def test_a_prediction_records_how_its_demonstrations_were_chosen_and_joined(tiny_model, tmp_path):
    from amuro.formats import build_prompts

    rows = [{"id": f"t{i}", "text": f"the cat sat on a mat {i}", "target": "yes" if i % 2 else "no"} for i in range(4)]
    for split in ("train", "validation", "test"):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{split}.parquet")
    build_prompts("toy", "sentiment", "default", tmp_path, tmp_path / "prompts", [0, 2], seed=0,
                  demonstrations={"selection": "first_k", "split": "test", "separator": "\n"})
    request = EvalRequest("toy", "sentiment", "default", 2, str(tmp_path / "prompts" / "test.parquet"),
                          str(tmp_path / "out.parquet"), ("yes", "no"))
    evaluate(tiny_model, [request], EvalSettings(), {"model": "toy", "train": "base"})
    predictions = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert {(r["demonstrations"], r["demo_separator"]) for r in predictions} == {("first_k:test", "\n")}
    assert predictions[3]["prompt"].startswith("### Input: the cat sat on a mat 0\n### Sentiment: no\n### Input:")


def _tuned_copy(model_dir, out):
    """The model as a fine-tuned one: a copy whose train_meta.json records every file's sha256."""
    import json
    import shutil

    from amuro.hashing import sha256

    shutil.copytree(model_dir, out)
    (out / "train_meta.json").write_text(json.dumps({"files": {p.name: sha256(p) for p in out.iterdir()}}))
    return out


def test_one_job_scores_several_models_in_turn_as_separate_jobs_would(tiny_model, tmp_path):
    from amuro.cli import main

    _prompt_file(tmp_path / "prompts.parquet", ["the cat sat on", "Kuri lives in"], ["a mat", "Rege"])
    settings = json.dumps({"max_new_tokens_generation": 4, "batch_size": 2})
    models = [_tuned_copy(tiny_model, tmp_path / f"m{i}") for i in range(2)]

    def job(i, out):
        return {"model_dir": str(models[i]), "meta": {"train": f"cell{i}"},
                "requests": [{"dataset": "d", "task": "summarization", "format": "default", "shots": 0,
                              "prompts": str(tmp_path / "prompts.parquet"), "output": str(out)}]}

    together = [job(i, tmp_path / f"together{i}.parquet") for i in range(2)]
    assert main(["evaluate", "--jobs", json.dumps(together), "--settings", settings]) == 0
    for i in range(2):
        alone = job(i, tmp_path / f"alone{i}.parquet")
        assert main(["evaluate", "--jobs", json.dumps([alone]), "--settings", settings]) == 0
        assert pq.read_table(tmp_path / f"together{i}.parquet") == pq.read_table(tmp_path / f"alone{i}.parquet")
        assert pq.read_table(tmp_path / f"together{i}.parquet")["train"].to_pylist() == [f"cell{i}"] * 2


def test_a_changed_model_stops_a_several_model_job_before_it_writes_anything(tiny_model, tmp_path):
    from amuro.checkpoints import CheckpointError
    from amuro.cli import main

    _prompt_file(tmp_path / "prompts.parquet", ["the cat sat on"], ["a mat"])
    models = [_tuned_copy(tiny_model, tmp_path / f"m{i}") for i in range(2)]
    (models[1] / "config.json").write_text((models[1] / "config.json").read_text() + "\n")
    jobs = [{"model_dir": str(m), "meta": {"train": m.name},
             "requests": [{"dataset": "d", "task": "summarization", "format": "default", "shots": 0,
                           "prompts": str(tmp_path / "prompts.parquet"), "output": str(tmp_path / f"{m.name}.parquet")}]}
            for m in models]
    with pytest.raises(CheckpointError, match=r"m1: file config.json has sha256"):
        main(["evaluate", "--jobs", json.dumps(jobs), "--settings", json.dumps({"max_new_tokens_generation": 4})])
    assert not list(tmp_path.glob("m*.parquet"))


def test_a_rerun_keeps_what_was_made_from_the_same_inputs_and_scores_only_the_rest(tiny_model, tmp_path):
    """A job rerun because the study grew (another set, format or shot count) keeps every prediction file made from
    the same model, prompts and settings, byte for byte and untouched, and scores the new and the changed ones; its
    index lists them all."""
    from amuro.cli import main

    model = _tuned_copy(tiny_model, tmp_path / "model")
    for name in ("a", "b"):
        _prompt_file(tmp_path / f"{name}.parquet", ["the cat sat on", "Kuri lives in"], ["a mat", "Rege"])

    def request(name):
        return {"dataset": name, "task": "summarization", "format": "default", "shots": 0,
                "prompts": str(tmp_path / f"{name}.parquet"), "output": str(tmp_path / f"out_{name}.parquet")}

    def run(names, settings):
        job = {"model_dir": str(model), "meta": {"train": "cell"}, "requests": [request(n) for n in names],
               "index": str(tmp_path / "index.json")}
        assert main(["evaluate", "--jobs", json.dumps([job]), "--settings", json.dumps(settings)]) == 0

    settings = {"max_new_tokens_generation": 4, "batch_size": 2}
    run(["a"], settings)
    first = (tmp_path / "out_a.parquet").stat().st_mtime_ns, (tmp_path / "out_a.parquet").read_bytes()
    run(["a", "b"], settings)  # a second eval set: a is kept
    assert ((tmp_path / "out_a.parquet").stat().st_mtime_ns, (tmp_path / "out_a.parquet").read_bytes()) == first
    index = json.loads((tmp_path / "index.json").read_text())["files"]
    assert [e["path"] for e in index] == [str(tmp_path / "out_a.parquet"), str(tmp_path / "out_b.parquet")]
    # Changed prompts, or other settings, make a prediction again.
    _prompt_file(tmp_path / "a.parquet", ["a mat", "Kuri lives in"], ["a mat", "Rege"])
    run(["a", "b"], settings)
    assert (tmp_path / "out_a.parquet").stat().st_mtime_ns != first[0]
    b = (tmp_path / "out_b.parquet").stat().st_mtime_ns
    run(["a", "b"], {**settings, "max_new_tokens_generation": 3})
    assert (tmp_path / "out_b.parquet").stat().st_mtime_ns != b


def test_another_shot_count_in_the_prompt_file_keeps_the_predictions_of_the_others(tiny_model, tmp_path):
    """The test prompts hold every shot count: adding one rewrites the file, and the 0-shot predictions, made from
    rows that did not change, are kept."""
    from amuro.cli import main

    model = _tuned_copy(tiny_model, tmp_path / "model")
    _prompt_file(tmp_path / "p.parquet", ["the cat sat on", "Kuri lives in"], ["a mat", "Rege"])
    job = {"model_dir": str(model), "meta": {"train": "base"},
           "requests": [{"dataset": "a", "task": "summarization", "format": "default", "shots": 0,
                         "prompts": str(tmp_path / "p.parquet"), "output": str(tmp_path / "out.parquet")}]}
    settings = json.dumps({"max_new_tokens_generation": 4})
    assert main(["evaluate", "--jobs", json.dumps([job]), "--settings", settings]) == 0
    made = (tmp_path / "out.parquet").stat().st_mtime_ns
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    pq.write_table(pa.Table.from_pylist(rows + [{**r, "shots": 2, "prompt": "a mat. " + r["prompt"]} for r in rows],
                                        schema=PROMPT_SCHEMA), tmp_path / "p.parquet")
    assert main(["evaluate", "--jobs", json.dumps([job]), "--settings", settings]) == 0
    assert (tmp_path / "out.parquet").stat().st_mtime_ns == made
