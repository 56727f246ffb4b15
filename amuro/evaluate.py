"""Evaluate one model (a pre-trained checkpoint or a fine-tuned cell) on all of its eval sets.

The model is loaded once; each request is one (eval dataset, format, shots) prompt file and one output file of
per-example predictions. Generation tasks are decoded greedily (left padding, stop at EOS or the end of the
line) and scored with ROUGE-L. Classification is scored by every method of amuro.scoring (tokenprob, loglik,
constrained, generate), all kept per example, and the configured one is the `score`. They need one short greedy
generation and one forward pass per example and label stem: the same pass gives the label tokens' log-probabilities
(loglik, constrained) and the next-token distribution of the prompt (tokenprob).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from amuro import metrics, scoring
from amuro.io import write_parquet
from amuro.tasks import TASKS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalRequest:
    dataset: str
    task: str
    format: str
    shots: int
    prompts: str  # prompt file (test split) holding every shot count
    output: str
    labels: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "EvalRequest":
        return cls(**{**d, "labels": tuple(d["labels"]) if d.get("labels") else None})


@dataclass(frozen=True)
class EvalSettings:
    classification: str = "tokenprob"  # one of scoring.METHODS
    max_new_tokens_generation: int = 60
    max_new_tokens_classification: int = 5
    batch_size: int = 16
    rouge_stemmer: bool = False

    def __post_init__(self):
        if self.classification not in scoring.METHODS:
            raise ValueError(f"classification scoring {self.classification!r} is not one of "
                             f"{', '.join(scoring.METHODS)}")


class Scorer:
    """A causal LM and its tokenizer, with batched greedy generation and label scores."""

    def __init__(self, model_dir: str | Path, batch_size: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        self.max_len = getattr(self.model.config, "max_position_embeddings", None) or 2048
        # Label scoring reads the last few positions only; models that can skip the others save a vocabulary-wide
        # projection of every prompt token.
        self.keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.batch_size = batch_size
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.truncated = 0

    def encode(self, text: str, room: int = 0) -> list[int]:
        """Token ids without special tokens; cut from the left so `room` more tokens still fit (counted)."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        limit = self.max_len - room
        if len(ids) > limit:
            self.truncated += 1
            ids = ids[-limit:]
        return ids

    def _left_padded(self, batch: list[list[int]]):
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, seq in enumerate(batch):
            ids[i, width - len(seq):] = torch.tensor(seq)
            mask[i, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int, desc: str) -> list[str]:
        """Greedy continuations, cut at the first newline (every reference is a single line)."""
        encoded = [self.encode(p, room=max_new_tokens) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
        out: list[str] = [""] * len(prompts)
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, mininterval=10):
            idx = order[start:start + self.batch_size]
            ids, mask = self._left_padded([encoded[i] for i in idx])
            gen = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.pad_id,
                                      eos_token_id=self.tokenizer.eos_token_id,
                                      stop_strings=["\n"], tokenizer=self.tokenizer)
            for i, row in zip(idx, gen[:, ids.shape[1]:]):
                text = self.tokenizer.decode(row, skip_special_tokens=True)
                out[i] = text.split("\n")[0].strip()
        return out

    @torch.no_grad()
    def label_scores(self, prompts: list[str], continuations: list[list[int]], token_sets: Sequence[Sequence[int]],
                     desc: str) -> tuple[list[list[list[float]]], list[list[float]]]:
        """For every prompt: the log-probability of each token of each continuation (token ids) after the prompt
        and the continuation's earlier tokens, and the TokenProb score of each label token set.

        A forward pass over the prompt and a stem scores every continuation whose leading tokens start that stem,
        so single-token labels all come from one pass of the prompt; TokenProb reads that pass's first answer position.
        """
        stems, stem_of = _shared_stems(continuations)
        encoded = [self.encode(p, room=max(map(len, stems))) for p in prompts]
        logprobs: list[list[list[float]]] = [[[] for _ in continuations] for _ in prompts]
        tokenprobs: list[list[float] | None] = [None] * len(prompts)
        pairs = sorted(((i, s) for i in range(len(prompts)) for s in range(len(stems))),
                       key=lambda pair: len(encoded[pair[0]]) + len(stems[pair[1]]))
        for start in tqdm(range(0, len(pairs), self.batch_size), desc=desc, mininterval=10):
            chunk = pairs[start:start + self.batch_size]
            ids, mask = self._left_padded([encoded[i] + stems[s] for i, s in chunk])
            keep = 1 + max(len(stems[s]) for _, s in chunk)
            logp = self._last_logprobs(ids, mask, keep)
            for row, (i, s) in enumerate(chunk):
                # logp[row, first + k] is the distribution of the token after the prompt and the stem's first k tokens.
                first = keep - 1 - len(stems[s])
                if tokenprobs[i] is None:
                    tokenprobs[i] = scoring.tokenprob_scores(logp[row, first], token_sets)
                for j, cont in enumerate(continuations):
                    if stem_of[j] == s:
                        span = logp[row, first:first + len(cont)]
                        logprobs[i][j] = span.gather(-1, torch.tensor(cont)[:, None]).squeeze(-1).tolist()
        return logprobs, tokenprobs

    def _last_logprobs(self, ids, mask, keep: int) -> torch.Tensor:
        """Next-token log-probabilities at the last `keep` positions of a left-padded batch, on the CPU."""
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": keep} if self.keeps_logits else {}
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                            **extra).logits
        return torch.log_softmax(logits[:, -keep:].float(), -1).cpu()


def _shared_stems(continuations: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """The fewest token sequences (stems) such that every continuation's tokens but its last start one of them,
    and the stem each continuation is read from."""
    stems: list[list[int]] = []
    stem_of = [0] * len(continuations)
    # Longest first, so a shorter continuation joins the stem of a longer one that it starts.
    for j in sorted(range(len(continuations)), key=lambda j: -len(continuations[j])):
        lead = continuations[j][:-1]
        match = next((s for s, stem in enumerate(stems) if stem[:len(lead)] == lead), None)
        if match is None:
            stems.append(lead)
            match = len(stems) - 1
        stem_of[j] = match
    return stems, stem_of


PREDICTION_FIELDS = [
    ("id", pa.string()), ("shots", pa.int32()), ("prompt", pa.string()), ("reference", pa.string()),
    ("prediction", pa.string()), ("score", pa.float64()), ("metric", pa.string()),
    ("generation", pa.string()), ("label_loglik", pa.string()), ("label_generate", pa.string()),
    ("label_tokenprob", pa.string()), ("label_constrained", pa.string()),
    ("label_logprobs", pa.list_(pa.float64())), ("label_tokenprobs", pa.list_(pa.float64())),
    ("eval_dataset", pa.string()), ("eval_task", pa.string()), ("eval_format", pa.string()),
    ("scoring", pa.string()), ("rouge_stemmer", pa.bool_()), ("max_new_tokens", pa.int32()),
]
# Classification-only columns, empty on generation rows.
LABEL_COLUMNS = ["label_loglik", "label_generate", "label_tokenprob", "label_constrained", "label_logprobs",
                 "label_tokenprobs"]


def evaluate_request(scorer: Scorer, req: EvalRequest, settings: EvalSettings, meta: dict) -> pa.Table:
    table = pq.read_table(req.prompts)
    rows = [r for r in table.to_pylist() if r["shots"] == req.shots]
    if not rows:
        raise ValueError(f"{req.prompts}: no {req.shots}-shot prompts (the prompt file holds shots "
                         f"{sorted(set(table.column('shots').to_pylist()))})")
    prompts = [r["prompt"] for r in rows]
    task = TASKS[req.task]
    desc = f"{req.dataset}/{req.format}/{req.shots}shot"
    out = []
    if task.is_classification:
        budget = settings.max_new_tokens_classification
        generations = scorer.generate(prompts, budget, desc + " generate")
        # The label continues the prompt as the completions in the prompt file do (" yes", or "yes" for io);
        # TokenProb accepts either.
        lead = "" if req.format == "io" else " "
        continuations = [scorer.tokenizer(lead + label, add_special_tokens=False)["input_ids"] for label in req.labels]
        token_sets = scoring.label_token_ids(scorer.tokenizer, req.labels)
        logprobs, tokenprobs = scorer.label_scores(prompts, continuations, token_sets, desc + " labels")
        for r, gen, lp, tp in zip(rows, generations, logprobs, tokenprobs):
            by = scoring.predict(req.labels, gen, continuations, lp, tp)
            chosen = by[settings.classification]
            out.append({"prediction": chosen or "", "score": metrics.accuracy(r["target"], chosen),
                        "metric": "accuracy", "generation": gen, "label_loglik": by["loglik"],
                        "label_generate": by["generate"], "label_tokenprob": by["tokenprob"],
                        "label_constrained": by["constrained"], "label_logprobs": [sum(x) for x in lp],
                        "label_tokenprobs": tp})
    else:
        budget = settings.max_new_tokens_generation
        for r, gen in zip(rows, scorer.generate(prompts, budget, desc)):
            out.append({"prediction": gen, "score": metrics.rouge_l(r["target"], gen, settings.rouge_stemmer),
                        "metric": "rougeL", "generation": gen, **dict.fromkeys(LABEL_COLUMNS)})
    records = [{"id": r["id"], "shots": req.shots, "prompt": r["prompt"], "reference": r["target"], **o,
                "eval_dataset": req.dataset, "eval_task": req.task, "eval_format": req.format,
                "scoring": settings.classification if task.is_classification else "generate",
                "rouge_stemmer": settings.rouge_stemmer, "max_new_tokens": budget}
               for r, o in zip(rows, out)]
    fields = [pa.field(k, pa.string()) for k in sorted(meta)] + [pa.field(n, t) for n, t in PREDICTION_FIELDS]
    return pa.Table.from_pylist([{**meta, **rec} for rec in records], schema=pa.schema(fields))


def evaluate(model_dir: str | Path, requests: list[EvalRequest], settings: EvalSettings, meta: dict,
             threads: int = 1) -> None:
    """meta: what identifies the model (model, checkpoint, train cell), stored on every row."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    scorer = Scorer(model_dir, settings.batch_size)
    for req in requests:
        start = time.perf_counter()
        table = evaluate_request(scorer, req, settings, meta)
        write_parquet(table, req.output)
        mean = sum(table.column("score").to_pylist()) / table.num_rows
        log.info("%s %s %d-shot: %s %.3f on %d examples (%.1fs)", req.dataset, req.format, req.shots,
                 table.column("metric")[0], mean, table.num_rows, time.perf_counter() - start)
    if scorer.truncated:
        log.warning("%d prompts were longer than the model's %d positions and were cut from the left",
                    scorer.truncated, scorer.max_len)
