"""Specifications for amuro.metrics: ROUGE-L, label matching, accuracy and bootstrap intervals."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

from amuro.metrics import accuracy, bootstrap_ci, match_label, normalize_label, rouge_l, summarize

SCORES = [0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.2, 0.7, 0.9, 0.4, 0.5, 0.6]


# ROUGE-L


def test_rouge_l_one_substituted_word_scores_five_sixths():
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides: P = R = F = 5/6.
    assert rouge_l("the cat sat on the mat", "the cat lay on the mat") == pytest.approx(5 / 6)


def test_rouge_l_unequal_lengths_is_the_harmonic_mean_of_precision_and_recall():
    # LCS "the brown fox" = 3 tokens; P = 3/3 = 1, R = 3/5 = 0.6, F = 2 * 1 * 0.6 / (1 + 0.6) = 0.75.
    assert rouge_l("the quick brown fox jumps", "the brown fox") == pytest.approx(0.75)


def test_rouge_l_identical_strings_score_one():
    assert rouge_l("a summary of the news", "a summary of the news") == 1.0


def test_rouge_l_disjoint_strings_score_zero():
    assert rouge_l("the cat sat", "dogs bark loudly") == 0.0


def test_rouge_l_does_not_stem_by_default():
    assert rouge_l("cats running", "cat run") == 0.0


def test_rouge_l_with_stemmer_matches_inflected_forms():
    assert rouge_l("cats running", "cat run", stemmer=True) == pytest.approx(1.0)


# Label normalisation and matching


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("Yes.", "yes"),
        (" Yes.", "yes"),
        (" no", "no"),
        ("Positive!", "positive"),
        ("positive, because the review says so", "positive"),
        ("maybe not", "maybe"),
        ('"Entailment"', "entailment"),
        ("", ""),
    ],
)
def test_normalize_label_keeps_the_first_word_lower_cased_without_punctuation(generation, expected):
    assert normalize_label(generation) == expected


@pytest.mark.parametrize(
    ("generation", "labels", "expected"),
    [
        ("Yes.", ["yes", "no"], "yes"),
        (" no", ["yes", "no"], "no"),
        ("Positive!", ["positive", "negative"], "positive"),
        ("neutral, since nothing follows", ["entailment", "neutral", "contradiction"], "neutral"),
    ],
)
def test_match_label_finds_the_label_named_by_the_first_word(generation, labels, expected):
    assert match_label(generation, labels) == expected


def test_match_label_returns_the_label_as_given():
    assert match_label("yes", ["Yes", "No"]) == "Yes"


def test_match_label_returns_none_when_the_first_word_is_no_label():
    assert match_label("maybe not", ["yes", "no"]) is None


def test_match_label_does_not_match_labels_inside_other_words():
    # The paper's substring matching counted "not" and "know" as "no"; first-word matching does not.
    assert match_label("not sure", ["yes", "no"]) is None
    assert match_label("I know", ["yes", "no"]) is None


def test_match_label_rejects_multi_word_labels():
    with pytest.raises(ValueError, match="single word"):
        match_label("not entailment", ["entailment", "not entailment"])


# Accuracy


def test_accuracy_is_one_for_the_gold_label():
    assert accuracy("yes", "yes") == 1.0


def test_accuracy_ignores_case_and_punctuation():
    assert accuracy("Positive", " positive.") == 1.0


def test_accuracy_is_zero_for_another_label():
    assert accuracy("entailment", "contradiction") == 0.0


def test_accuracy_counts_no_label_found_as_wrong():
    assert accuracy("no", match_label("perhaps", ["yes", "no"])) == 0.0


# Bootstrap confidence intervals


def test_bootstrap_ci_is_deterministic_for_a_fixed_seed():
    assert bootstrap_ci(SCORES, seed=7) == bootstrap_ci(SCORES, seed=7)


def test_bootstrap_ci_changes_with_the_seed():
    assert bootstrap_ci(SCORES, seed=0) != bootstrap_ci(SCORES, seed=1)


def test_bootstrap_ci_contains_the_mean():
    low, high = bootstrap_ci(SCORES)
    assert low < np.mean(SCORES) < high


def test_bootstrap_ci_narrows_with_lower_confidence():
    low95, high95 = bootstrap_ci(SCORES, confidence=0.95)
    low50, high50 = bootstrap_ci(SCORES, confidence=0.50)
    assert high50 - low50 < high95 - low95


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.5])
def test_bootstrap_ci_is_scipys_percentile_bootstrap(confidence):
    # The interval written out in numpy draws and cuts as scipy.stats.bootstrap does (scipy is still installed, by
    # scikit-learn); its quantile may round the last bit differently.
    scipy_stats = pytest.importorskip("scipy.stats")
    scores = np.random.default_rng(3).random(57).round(2)
    ours = bootstrap_ci(scores, resamples=700, confidence=confidence, seed=11)
    theirs = scipy_stats.bootstrap((scores,), np.mean, n_resamples=700, confidence_level=confidence,
                                   method="percentile", vectorized=True, axis=-1,
                                   rng=np.random.default_rng(11)).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)


def test_summaries_do_not_import_scipy():
    # A summary job's start-up: scipy.stats alone took longer than the rest of its work.
    code = "import sys, amuro.results, amuro.metrics as m; m.summarize([0.1, 0.9, 0.5]); print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"]


def test_bootstrap_ci_of_constant_scores_is_the_constant_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_bootstrap_ci_of_a_single_score_is_that_score():
    assert bootstrap_ci([0.3]) == (0.3, 0.3)


def test_bootstrap_ci_rejects_empty_scores():
    with pytest.raises(ValueError, match="at least one score"):
        bootstrap_ci([])


# Summary


def test_summarize_reports_mean_interval_and_count():
    summary = summarize(SCORES, resamples=500, confidence=0.95, seed=0)
    assert summary["value"] == pytest.approx(np.mean(SCORES))
    assert summary["n_examples"] == len(SCORES)
    assert (summary["ci_low"], summary["ci_high"]) == bootstrap_ci(SCORES, resamples=500, confidence=0.95, seed=0)


@pytest.mark.parametrize(
    ("generation", "labels", "task", "expected"),
    [
        # The released table's rule: substrings, in a fixed order, anywhere in the text.
        ("I do not know", ("no", "yes"), "paraphrase", "no"),  # "not" and "know" hold "no"
        ("yes, they are", ("no", "yes"), "paraphrase", "yes"),
        ("Yes. I know.", ("no", "yes"), "paraphrase", "no"),  # "no" is checked before "yes"
        ("it is neutral, not a contradiction", ("entailment", "neutral", "contradiction"), "nli", "contradiction"),
        ("entailment or neutral", ("entailment", "neutral", "contradiction"), "nli", "neutral"),
        ("The relation is entailment", ("entailment", "neutral", "contradiction"), "nli", "entailment"),
        ("something else", ("entailment", "neutral", "contradiction"), "nli", None),
        # A task without a fixed order checks the labels in their configured order.
        ("maybe yes", ("yes", "maybe", "no"), "sentiment", "yes"),
    ],
)
def test_the_papers_substring_label_match(generation, labels, task, expected):
    assert match_label(generation, labels, "paper_substring", task) == expected


def test_the_default_label_match_reads_the_first_word_only():
    assert match_label("I do not know", ("no", "yes")) is None
    assert match_label("The relation is entailment", ("entailment", "neutral", "contradiction")) is None
    with pytest.raises(ValueError, match="'contains' is not one of first_word, paper_substring"):
        match_label("yes", ("yes", "no"), "contains")


def test_the_point_estimate_is_the_mean_or_the_midpoint_of_the_interval():
    scores = [1.0] * 7 + [0.0] * 3
    mean, mid = summarize(scores, resamples=400, seed=2), summarize(scores, resamples=400, seed=2,
                                                                   point_estimate="interval_midpoint")
    assert mean["value"] == pytest.approx(0.7)
    assert mid["value"] == pytest.approx((mean["ci_low"] + mean["ci_high"]) / 2)
    with pytest.raises(ValueError, match="point_estimate 'median'"):
        summarize(scores, point_estimate="median")


def test_reading_scores_does_not_load_the_rouge_scorer():
    # Summaries, tables and figures import amuro.results and amuro.metrics; rouge-score (nltk, scipy) costs them
    # seconds of start-up each and is needed only where predictions are scored.
    code = "import sys, amuro.results, amuro.tables; print('rouge_score' in sys.modules, 'nltk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    assert rouge_l("the cat sat", "the cat sat") == 1.0
