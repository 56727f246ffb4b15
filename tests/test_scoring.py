import polars as pl
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from amuro import scoring
from amuro.cli import main

# Byte-level pieces as in GPT-2 and OLMo ("Ġ" is a leading space). Ids are the list positions.
VOCAB = ["<eos>", "[YES]", "yes", "Ġyes", "Yes", "ĠYES", "yes.", "Ġy", "yesterday", "no", "Ġno", "n", "ĠN",
         "neutral", "Ġneut", "Ġent", "ail", "ment", "Ġ", "."]
ID = {piece: i for i, piece in enumerate(VOCAB)}


@pytest.fixture(scope="module")
def tokenizer():
    """Decoding is all TokenProb needs of a tokenizer, so one without merges will do."""
    tok = Tokenizer(models.BPE(vocab=ID, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # "[YES]" is special: it would otherwise normalise to "yes".
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="[YES]", name_or_path="toy-bpe")


def _ids(*pieces):
    return tuple(ID[p] for p in pieces)


def test_a_label_counts_every_token_that_is_it_or_its_start_and_ambiguous_tokens_count_for_none(tokenizer):
    yes, no, neutral = scoring.label_token_ids(tokenizer, ("yes", "no", "neutral"))
    assert yes == _ids("yes", "Ġyes", "Yes", "ĠYES", "yes.", "Ġy")
    # "n" and " N" start both "no" and "neutral".
    assert no == _ids("no", "Ġno")
    assert neutral == _ids("neutral", "Ġneut")
    # Without "no" among the labels, "n" and " N" are evidence for "neutral"; " ent" starts "entailment".
    assert scoring.label_token_ids(tokenizer, ("entailment", "neutral")) == (
        _ids("Ġent"), _ids("n", "ĠN", "neutral", "Ġneut"))


def test_token_sets_are_computed_once_per_tokenizer_and_labels(tokenizer):
    first = scoring.label_token_ids(tokenizer, ("yes", "no"))
    assert scoring.label_token_ids(tokenizer, ("yes", "no")) is first


def test_a_label_without_a_token_of_its_own_is_an_error(tokenizer):
    with pytest.raises(ValueError, match=r"label 'maybe' has no token of its own in tokenizer 'toy-bpe'"):
        scoring.label_token_ids(tokenizer, ("yes", "maybe"))
    # "no" starts "none": every token of "no" is shared.
    with pytest.raises(ValueError, match=r"label 'no' has no token"):
        scoring.label_token_ids(tokenizer, ("no", "none"))


def test_tokenprob_takes_the_best_token_of_each_label(tokenizer):
    labels = ("yes", "no")
    logits = torch.full((len(VOCAB),), -5.0)
    logits[ID["yes"]] = 4.0  # the answer without its leading space
    logits[ID["Yes"]] = 1.0
    logits[ID["Ġno"]] = 2.0
    logits[ID["n"]] = 3.0  # a start of "no" only, as "neutral" is not a label here
    logp = torch.log_softmax(logits, -1)
    token_sets = scoring.label_token_ids(tokenizer, labels)
    scores = scoring.tokenprob_scores(logp, token_sets)
    assert scores == pytest.approx([logp[ID["yes"]].item(), logp[ID["n"]].item()])
    assert labels[scoring.best(scores)] == "yes"
    # Requiring the exact continuation " yes" would have answered "no".
    assert logp[ID["Ġyes"]] < logp[ID["Ġno"]]


def test_best_breaks_ties_by_label_order():
    assert scoring.best([-1.0, -0.5, -0.5]) == 1


def test_constrained_decoding_walks_the_label_trie():
    # Labels A = [1, 2], B = [1, 3], C = [4]; token_logprobs[j][k] = log P(token k of label j | prompt, tokens < k).
    token_ids = [[1, 2], [1, 3], [4]]
    token_logprobs = [[-0.5, -2.0], [-0.5, -1.0], [-0.7]]
    # Step 0: token 1 (-0.5) beats token 4 (-0.7), leaving A and B; step 1: token 3 (-1.0) beats token 2 (-2.0).
    assert scoring.constrained_choice(token_ids, token_logprobs) == 1
    # The whole-word log-likelihoods are A -2.5, B -1.5, C -0.7: loglik answers C.
    by = scoring.predict(("A", "B", "C"), "c, surely", token_ids, token_logprobs, [-0.4, -0.6, -0.7])
    assert by == {"generate": "C", "constrained": "B", "tokenprob": "A", "loglik": "C"}


def test_constrained_decoding_breaks_ties_by_label_order_and_stops_at_a_complete_label():
    assert scoring.constrained_choice([[5], [6]], [[-1.0], [-1.0]]) == 0
    assert scoring.constrained_choice([[1, 2], [1]], [[-0.1, -0.1], [-0.1]]) == 1


def _predictions(path, meta, references, labels, metric="accuracy", shots=0):
    rows = [{**meta, "eval_format": "default", "shots": shots, "metric": metric, "reference": ref,
             **{f"label_{m}": label for m, label in zip(scoring.METHODS, by)}}
            for ref, by in zip(references, labels)]
    pl.DataFrame(rows, schema_overrides={"train_dataset": pl.String, "label_generate": pl.String}).write_parquet(path)
    return str(path)


@pytest.fixture
def prediction_files(tmp_path):
    """Labels per example in METHODS order: generate, constrained, tokenprob, loglik."""
    base = {"model": "toy", "train": "base", "train_dataset": None, "eval_dataset": "toy_nli"}
    tuned = {"model": "toy", "checkpoint": "step100-tokens1B", "eval_dataset": "toy_nli"}
    return [
        _predictions(tmp_path / "a.parquet", {**base, "checkpoint": "step200-tokens2B"}, ["yes", "no"],
                     [("yes", "no", "yes", "yes"), ("no", "no", "yes", "no")]),
        _predictions(tmp_path / "b.parquet", {**base, "checkpoint": "step100-tokens1B"}, ["yes", "no", "maybe", "no"],
                     [("yes", "yes", "yes", "no"), (None, "no", "no", "no"),
                      ("maybe", "no", "maybe", "maybe"), ("yes", "no", "no", "yes")]),
        _predictions(tmp_path / "c.parquet", {**tuned, "train": "toy_nli-default-all", "train_dataset": "toy_nli"},
                     ["yes", "no"], [("yes", "yes", "yes", "no"), ("no", "no", "no", "no")]),
        _predictions(tmp_path / "d.parquet", {**tuned, "train": "toy_sst-default-all", "train_dataset": "toy_sst"},
                     ["yes"], [("no", "no", "no", "no")]),
        _predictions(tmp_path / "e.parquet", {**base, "checkpoint": "step100-tokens1B", "eval_dataset": "toy_sum"},
                     ["a summary"], [(None, None, None, None)], metric="rougeL"),
    ]


def test_method_comparison_gives_every_methods_accuracy_per_prediction_file(prediction_files):
    table = scoring.method_comparison(prediction_files)
    assert list(table.schema.items()) == list(scoring.COMPARISON_SCHEMA.items())
    rows = table.select("checkpoint", "train", "method", "accuracy", "n_examples").rows()
    accuracies = {"step100-tokens1B/base": [0.5, 0.75, 1.0, 0.5], "step100-tokens1B/toy_nli-default-all":
                  [1.0, 1.0, 1.0, 0.5], "step100-tokens1B/toy_sst-default-all": [0.0] * 4,
                  "step200-tokens2B/base": [1.0, 0.5, 0.5, 1.0]}
    expected = [(cell.split("/")[0], cell.split("/")[1], method, value, n)
                for cell, n in (("step100-tokens1B/base", 4), ("step100-tokens1B/toy_nli-default-all", 2),
                                ("step100-tokens1B/toy_sst-default-all", 1), ("step200-tokens2B/base", 2))
                for method, value in zip(scoring.METHODS, accuracies[cell])]
    assert rows == expected  # checkpoints in pre-training order, then cells, then methods; the rougeL file skipped
    first = table.row(0, named=True)
    assert (first["step"], first["tokens"], first["train_dataset"], first["eval_format"], first["shots"]) == (
        100, 10**9, None, "default", 0)


def test_table3_averages_base_checkpoints_and_in_domain_fine_tuned_cells(prediction_files):
    table = scoring.table3(scoring.method_comparison(prediction_files))
    assert table.columns == ["model", "eval_dataset", "kind", "shots", *scoring.METHODS, "tokenprob_prefix",
                             "tokenprob_subtokens", "tokenprob_first_token", "evaluations"]
    # Base: the mean over the two checkpoints; fine-tuned: toy_nli's own cell only (not the toy_sst one). These
    # predictions keep no TokenProb per candidate rule.
    assert table.rows() == [("toy", "toy_nli", "base", 0, 0.75, 0.625, 0.75, 0.75, None, None, None, 2),
                            ("toy", "toy_nli", "fine-tuned", 0, 1.0, 1.0, 1.0, 0.5, None, None, None, 1)]


def test_table3_compares_tokenprob_under_every_candidate_rule(tmp_path, prediction_files):
    rules = {"tokenprob_prefix": ["yes", "no"], "tokenprob_subtokens": ["yes", "yes"],
             "tokenprob_first_token": ["no", "yes"]}
    frame = pl.read_parquet(prediction_files[0])  # references yes, no
    frame.with_columns(**{f"label_{m}": pl.Series(v) for m, v in rules.items()}).write_parquet(tmp_path / "r.parquet")
    comparison = scoring.method_comparison([tmp_path / "r.parquet"])
    assert comparison["method"].to_list() == list(scoring.COMPARED)
    row = scoring.table3(comparison).row(0, named=True)
    assert (row["tokenprob_prefix"], row["tokenprob_subtokens"], row["tokenprob_first_token"]) == (1.0, 0.5, 0.0)
    assert row["tokenprob"] == 0.5 and row["evaluations"] == 1


def test_table3_keeps_each_shot_count_apart(tmp_path, prediction_files):
    four = _predictions(tmp_path / "f.parquet", {"model": "toy", "train": "base", "train_dataset": None,
                                                 "eval_dataset": "toy_nli", "checkpoint": "step100-tokens1B"},
                        ["yes", "no"], [("no", "no", "no", "no"), ("no", "no", "no", "no")], shots=4)
    table = scoring.table3(scoring.method_comparison(prediction_files + [four]))
    base = {r["shots"]: r for r in table.iter_rows(named=True) if r["kind"] == "base"}
    # The 0-shot row is unchanged by the 4-shot run, which is a row of its own.
    assert base[0]["tokenprob"] == 0.75 and base[0]["evaluations"] == 2
    assert base[4]["tokenprob"] == 0.5 and base[4]["evaluations"] == 1


def test_predictions_without_every_method_are_refused(tmp_path, prediction_files):
    pl.read_parquet(prediction_files[0]).drop("label_tokenprob").write_parquet(tmp_path / "old.parquet")
    with pytest.raises(ValueError, match=r"old.parquet: missing column\(s\) label_tokenprob"):
        scoring.method_comparison([tmp_path / "old.parquet"])


def test_the_cli_writes_the_comparison_and_table3(tmp_path, prediction_files):
    assert main(["scoring-methods", "--out", str(tmp_path / "cmp.parquet"), "--table3", str(tmp_path / "t3.parquet"),
                 *prediction_files]) == 0
    comparison = scoring.method_comparison(prediction_files)
    assert pl.read_parquet(tmp_path / "cmp.parquet").equals(comparison)
    assert pl.read_parquet(tmp_path / "t3.parquet").equals(scoring.table3(comparison))
