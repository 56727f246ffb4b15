"""Scoring: ROUGE-L for generation, label accuracy for classification, bootstrap confidence intervals.

Pure functions kept apart from the tasks, so the same metric code serves every dataset.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

import numpy as np

_PUNCTUATION = string.punctuation
_SURROUNDING = string.whitespace + string.punctuation



@functools.lru_cache(maxsize=2)
def _rouge_l_scorer(stemmer: bool):
    # Imported here: rouge-score loads nltk and scipy (about 2.5 s), which the light jobs that only read scores
    # (summaries, tables, figures) do not need. Building a scorer loads the stemmer; one per setting is enough.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=stemmer)


def rouge_l(reference: str, prediction: str, stemmer: bool = False) -> float:
    """ROUGE-L F-measure of `prediction` against `reference`.

    No stemming by default: the paper computed ROUGE-L without it (HF `evaluate`'s default).
    """
    # RougeScorer.score takes the target first; swapping the arguments would swap precision and recall.
    return float(_rouge_l_scorer(stemmer).score(reference, prediction)["rougeL"].fmeasure)


def normalize_label(text: str) -> str:
    """The first word of `text`, lower-cased, without surrounding whitespace or punctuation ("" if none)."""
    words = text.strip(_SURROUNDING).lower().split()
    # Free generations run on past the label ("positive, because ..."), so only the first word counts.
    return words[0].strip(_PUNCTUATION) if words else ""


# How a free generation names a label: `first_word` (its first word is the label; the default) or `paper_substring`
# (the released table's rule: the first label word in a fixed order that occurs anywhere in the lower-cased
# generation, so "not" and "know" count as "no" and "a neutral contradiction" as "contradiction").
LABEL_MATCHES = ("first_word", "paper_substring")
PAPER_SUBSTRING_ORDER = {"nli": ("contradiction", "neutral", "entailment"), "paraphrase": ("no", "yes")}


def match_label(generation: str, labels: Sequence[str], mode: str = "first_word", task: str | None = None) -> str | None:
    """The label (as given in `labels`) that a free generation names under `mode` (LABEL_MATCHES), else None.

    paper_substring checks the task's words in PAPER_SUBSTRING_ORDER first, then any other label in `labels` order.
    """
    if mode == "paper_substring":
        text = generation.lower()
        words = {label.strip(_SURROUNDING).lower(): label for label in labels}
        order = [w for w in PAPER_SUBSTRING_ORDER.get(task, ()) if w in words]
        order += [w for w in words if w not in order]
        return next((words[w] for w in order if w and w in text), None)
    if mode != "first_word":
        raise ValueError(f"label match {mode!r} is not one of {', '.join(LABEL_MATCHES)}")
    answer = normalize_label(generation)
    for label in labels:
        canonical = label.strip(_SURROUNDING).lower()
        if len(canonical.split()) != 1:
            # Matching is by first word, so a multi-word or empty label could never match (or would match wrongly).
            raise ValueError(f"label {label!r} must be a single word to be matched against a generation")
        if answer == canonical:
            return label
    return None


def accuracy(gold: str, predicted: str | None) -> float:
    """1.0 if `predicted` names the gold label after normalisation, else 0.0; None (no label found) is wrong."""
    if predicted is None:
        return 0.0
    return float(normalize_label(gold) == normalize_label(predicted))


def bootstrap_ci(
    scores: Sequence[float], resamples: int = 3000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of `scores`, deterministic for a fixed seed.

    The draws and the interval are scipy.stats.bootstrap's (method="percentile", vectorized; its result to the last
    bit or two of the float): written out because importing scipy.stats costs a summary job about a second, more
    than the rest of its work, and a study has one summary job per evaluated model."""
    data = np.asarray(scores, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap_ci needs at least one score; got an empty sequence")
    if np.all(data == data[0]):
        value = float(data[0])  # every resample has the same mean
        return value, value
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, (resamples, data.size))].mean(axis=-1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


# The point estimate of a summary: `mean` (the default) or `interval_midpoint`, the midpoint of the bootstrap
# interval, which is what the paper's released table reports as Performance.
POINT_ESTIMATES = ("mean", "interval_midpoint")


def summarize(
    scores: Sequence[float], resamples: int = 3000, confidence: float = 0.95, seed: int = 0,
    point_estimate: str = "mean",
) -> dict[str, float | int]:
    """The point estimate of `scores` (POINT_ESTIMATES) with its bootstrap interval: keys value, ci_low, ci_high,
    n_examples."""
    if point_estimate not in POINT_ESTIMATES:
        raise ValueError(f"point_estimate {point_estimate!r} is not one of {', '.join(POINT_ESTIMATES)}")
    ci_low, ci_high = bootstrap_ci(scores, resamples=resamples, confidence=confidence, seed=seed)
    mean = float(np.mean(np.asarray(scores, dtype=float)))
    return {
        "value": mean if point_estimate == "mean" else (ci_low + ci_high) / 2,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "n_examples": len(scores),
    }
