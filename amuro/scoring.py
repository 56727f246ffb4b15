"""Classification scoring methods, and the paper's comparison of them (its Table 3).

Every classification example is scored four ways from the same model outputs (amuro.evaluate keeps all four):
- `generate`: free greedy generation whose first word must name a label (the paper's string match);
- `constrained`: greedy decoding restricted to the label words' token sequences (a walk down their trie);
- `tokenprob`: the paper's final method (its Appendix C): at the first answer position, the label whose candidate
  tokens score highest. Which tokens are a label's candidates is a setting (TOKENPROB_CANDIDATES): `prefix` (amuro's)
  every vocabulary token that is the label or its start, whatever its case, leading space or trailing punctuation;
  `subtokens` (the paper's code) every token of the label word tokenised bare and after a space; `first_token`
  (Yang et al.'s code) one token per label, the first of the label as the prompt continues into it;
- `loglik`: the label word whose whole continuation has the highest log-likelihood.

The paper's Table 3 comparison (method_comparison, table3) also reports TokenProb under every candidate rule.
"""

from __future__ import annotations

import functools
import logging
import string
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from amuro import metrics
from amuro.checkpoints import parse_revision

log = logging.getLogger(__name__)

METHODS = ("generate", "constrained", "tokenprob", "loglik")
# Which vocabulary tokens TokenProb counts for a label (label_candidates).
TOKENPROB_CANDIDATES = ("prefix", "subtokens", "first_token")
# Table 3's columns: every method, then TokenProb under each candidate rule (`tokenprob` is the configured one).
COMPARED = METHODS + tuple(f"tokenprob_{rule}" for rule in TOKENPROB_CANDIDATES)
_SURROUNDING = string.whitespace + string.punctuation

COMPARISON_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String,
    "checkpoint": pl.String,
    "step": pl.Int64,
    "tokens": pl.Int64,
    "train": pl.String,
    "train_dataset": pl.String,
    "eval_dataset": pl.String,
    "eval_format": pl.String,
    "shots": pl.Int64,
    "method": pl.String,
    "accuracy": pl.Float64,
    "n_examples": pl.Int64,
}
_EVALUATION = ["model", "checkpoint", "train", "train_dataset", "eval_dataset", "eval_format", "shots"]
# Checkpoints in pre-training order (a name without a step, like `main`, sorts last), methods in METHODS order.
_SORT = ["model", "step", "checkpoint", "train", "eval_dataset", "eval_format", "shots"]


def normalize_token(text: str) -> str:
    """A decoded token without surrounding whitespace or punctuation, lower-cased (" Yes." -> "yes")."""
    return text.strip(_SURROUNDING).lower()


@functools.lru_cache(maxsize=4)
def _normalized_vocabulary(tokenizer) -> tuple[str, ...]:
    """Every token id's normalised text ("" for special tokens), decoded once per tokenizer."""
    special = set(tokenizer.all_special_ids)
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return tuple("" if i in special else normalize_token(t) for i, t in enumerate(texts))


@functools.lru_cache(maxsize=16)
def label_token_ids(tokenizer, labels: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """For each label, the vocabulary ids that TokenProb counts for it: tokens whose normalised text is non-empty
    and is the label or a prefix of it (`yes`, ` Yes`, `yes.`, ` ye` for "yes"; ` ent` for "entailment")."""
    targets = [normalize_token(label) for label in labels]
    found: list[list[int]] = [[] for _ in labels]
    for i, text in enumerate(_normalized_vocabulary(tokenizer)):
        if not text:
            continue
        matches = [j for j, target in enumerate(targets) if target.startswith(text)]
        # A token that starts several labels ("n" for "no" and "neutral") is evidence for none of them.
        if len(matches) == 1:
            found[matches[0]].append(i)
    for label, ids in zip(labels, found):
        if not ids:
            raise ValueError(f"label {label!r} has no token of its own in tokenizer {tokenizer.name_or_path!r}: "
                             f"no vocabulary token is the label or its start without also starting another label "
                             f"of {list(labels)}")
    return tuple(tuple(ids) for ids in found)


@functools.lru_cache(maxsize=32)
def label_candidates(tokenizer, labels: tuple[str, ...], rule: str, lead: str = " ") -> tuple[tuple[int, ...], ...]:
    """For each label, the vocabulary ids TokenProb counts for it under candidate rule `rule`.

    prefix: label_token_ids (every token that is the label or its start, tokens shared by labels dropped).
    subtokens: every token of the label tokenised bare and after a space ("entailment" and " entailment", without
      special tokens), as the paper's eval/predict_classification.py (next_word); a token of several labels counts for
      each of them (ties go to the earlier label).
    first_token: the first token of the label as the prompt continues into it (`lead` + label: " yes", or "yes" in
      the io format), one per label, as Yang et al.'s evaluate_cross.py (target_ids); labels sharing it are an error.
    """
    if rule == "prefix":
        return label_token_ids(tokenizer, labels)
    if rule == "subtokens":
        return tuple(tuple(dict.fromkeys(i for word in (label, " " + label)
                                         for i in tokenizer(word, add_special_tokens=False)["input_ids"]))
                     for label in labels)
    if rule == "first_token":
        firsts = [tokenizer(lead + label, add_special_tokens=False)["input_ids"][0] for label in labels]
        for j, token in enumerate(firsts):
            if firsts.index(token) != j:
                raise ValueError(f"labels {labels[firsts.index(token)]!r} and {labels[j]!r} start with the same token "
                                 f"{tokenizer.decode([token])!r} in tokenizer {tokenizer.name_or_path!r}: one first "
                                 f"token cannot tell them apart")
        return tuple((token,) for token in firsts)
    raise ValueError(f"TokenProb candidate rule {rule!r} is not one of {', '.join(TOKENPROB_CANDIDATES)}")


def tokenprob_scores(next_logprobs, token_ids: Sequence[Sequence[int]]) -> list[float]:
    """Each label's TokenProb score: the best log-probability among its tokens at the first answer position.

    next_logprobs: the next-token log-probabilities after the prompt (a 1-d torch tensor or numpy array).
    """
    return [next_logprobs[list(ids)].max().item() for ids in token_ids]


def best(scores: Sequence[float]) -> int:
    """Index of the highest score; ties go to the earliest (the first label in the configured order)."""
    return max(range(len(scores)), key=scores.__getitem__)


def constrained_choice(token_ids: Sequence[Sequence[int]], token_logprobs: Sequence[Sequence[float]]) -> int:
    """The label that greedy decoding restricted to the labels' token sequences produces.

    token_ids[j] are label j's continuation tokens and token_logprobs[j][k] the log-probability of its token k
    after the prompt and its tokens before k. At each step the best next token among the labels still consistent
    with the decoded prefix is taken; ties go to the earlier label.
    """
    alive = list(range(len(token_ids)))
    step = 0
    while True:
        # Nothing scores stopping against going on, so a completed label wins over a longer one it starts.
        done = [j for j in alive if len(token_ids[j]) == step]
        if done:
            return done[0]
        chosen = token_ids[max(alive, key=lambda j: token_logprobs[j][step])][step]
        alive = [j for j in alive if token_ids[j][step] == chosen]
        step += 1


def predict(labels: Sequence[str], generation: str, token_ids: Sequence[Sequence[int]],
            token_logprobs: Sequence[Sequence[float]], tokenprobs: Sequence[float], label_match: str = "first_word",
            task: str | None = None) -> dict[str, str | None]:
    """Each method's label for one example (None where the free generation names no label under `label_match`)."""
    return {
        "generate": metrics.match_label(generation, labels, label_match, task),
        "constrained": labels[constrained_choice(token_ids, token_logprobs)],
        "tokenprob": labels[best(tokenprobs)],
        "loglik": labels[best([sum(lp) for lp in token_logprobs])],
    }


def method_comparison(prediction_files: Sequence[str | Path]) -> pl.DataFrame:
    """Accuracy of every scoring method on every classification prediction file (the data of the paper's Table 3),
    and of TokenProb under every candidate rule (methods tokenprob_prefix, ...; `tokenprob` is the configured rule).

    Files of generation sets (metric rougeL) are skipped. One row per evaluation (model, checkpoint, train cell,
    eval set, format, shots) and method, in a fixed column order and sort.
    """
    parts = []
    for path in prediction_files:
        scores = pl.read_parquet(path)
        scores = scores.filter(pl.col("metric") == "accuracy")
        if scores.height == 0:
            log.info("%s: not a classification prediction file, skipped", path)
            continue
        missing = [c for c in _EVALUATION + ["reference"] + [f"label_{m}" for m in METHODS] if c not in scores.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (predictions written before every "
                             f"scoring method was kept?)")
        # TokenProb under each candidate rule: in predictions written since the rule became a setting.
        for method in [m for m in COMPARED if f"label_{m}" in scores.columns]:
            correct = [metrics.accuracy(gold, label)
                       for gold, label in zip(scores["reference"], scores[f"label_{method}"])]
            parts.append(scores.select(_EVALUATION).with_columns(
                method=pl.lit(method), correct=pl.Series(correct, dtype=pl.Float64)))
    if not parts:
        return pl.DataFrame(schema=COMPARISON_SCHEMA)
    table = (pl.concat([p.cast({c: COMPARISON_SCHEMA[c] for c in _EVALUATION}) for p in parts])
             .group_by(_EVALUATION + ["method"], maintain_order=True)
             .agg(accuracy=pl.col("correct").mean(), n_examples=pl.len()))
    revisions = [parse_revision(name) for name in table["checkpoint"]]
    table = table.with_columns(step=pl.Series([r["step"] for r in revisions], dtype=pl.Int64),
                               tokens=pl.Series([r["tokens"] for r in revisions], dtype=pl.Int64))
    order = pl.col("method").replace_strict({m: i for i, m in enumerate(COMPARED)}, return_dtype=pl.Int64)
    return (table.select([pl.col(c).cast(t) for c, t in COMPARISON_SCHEMA.items()])
            .sort([*_SORT, order], nulls_last=True, maintain_order=True))


def table3(comparison: pl.DataFrame) -> pl.DataFrame:
    """The paper's Table 3: accuracy of each method per model, eval set, model kind ("base" / "fine-tuned") and
    shot count (0-shot and 4-shot base runs answer differently, so they are never averaged together).

    Each cell is the unweighted mean of the per-evaluation accuracies of `comparison`: for "base" over every
    pre-trained checkpoint and format; for "fine-tuned" over every fine-tuned cell trained on that same eval set
    (in-domain only, as the paper compares a fine-tuned model on its own task), across checkpoints, train formats,
    train sizes and eval formats. `evaluations` counts the accuracies averaged. The columns after the four methods
    are TokenProb under each candidate rule (null for predictions that do not keep them).
    """
    kind = pl.when(pl.col("train") == "base").then(pl.lit("base")).otherwise(pl.lit("fine-tuned"))
    rows = (comparison.with_columns(kind=kind)
            .filter((pl.col("kind") == "base") | (pl.col("train_dataset") == pl.col("eval_dataset"))))
    return (rows.group_by(["model", "eval_dataset", "kind", "shots"])
            .agg(*[pl.col("accuracy").filter(pl.col("method") == m).mean().alias(m) for m in COMPARED],
                 evaluations=(pl.col("method") == METHODS[0]).sum().cast(pl.Int64))
            .sort(["model", "eval_dataset", "kind", "shots"]))


def scoring_methods(predictions: Sequence[str | Path], out: str | Path, table3_out: str | Path | None = None,
                    eval_format: str | None = None) -> None:
    """`amuro scoring-methods`: the per-file method comparison, and optionally its Table 3 pivot, as Parquet.

    predictions: prediction files, or the indexes evaluation jobs wrote (only their classification files in
    `eval_format`, if given, are read)."""
    from amuro.hashing import read_file_index
    from amuro.io import write_parquet
    from amuro.tasks import TASKS

    files = []
    for path in predictions:
        if Path(path).name != "index.json":
            files.append(str(path))
            continue
        files += [e["path"] for e in read_file_index(path)
                  if TASKS[e["task"]].is_classification and eval_format in (None, e["format"])]
    comparison = method_comparison(files)
    write_parquet(comparison.to_arrow(), out)
    if table3_out:
        write_parquet(table3(comparison).to_arrow(), table3_out)
