"""Evaluate one model (a pre-trained checkpoint or a fine-tuned cell) on all of its eval sets.

The model is loaded once; each request is one (eval dataset, format, shots) prompt file and one output file of
per-example predictions. Generation tasks are decoded greedily (left padding, stop at EOS or the end of the
line) and scored with ROUGE-L. Classification is scored both ways and the configured one is the `score`:
- `loglik`: the label word whose continuation has the highest log-likelihood (no parsing failures);
- `generate`: a short greedy generation whose first word must name a label (the paper's string match).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from amuro import metrics
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
    classification: str = "loglik"  # or "generate"
    max_new_tokens_generation: int = 60
    max_new_tokens_classification: int = 5
    batch_size: int = 16
    rouge_stemmer: bool = False


class Scorer:
    """A causal LM and its tokenizer, with batched greedy generation and continuation log-likelihoods."""

    def __init__(self, model_dir: str | Path, batch_size: int):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(self.device).eval()
        self.max_len = getattr(self.model.config, "max_position_embeddings", None) or 2048
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
    def continuation_logprobs(self, prompts: list[str], continuations: list[str], desc: str) -> list[list[float]]:
        """log P(continuation | prompt) for every prompt and every candidate continuation."""
        cont_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        room = max(map(len, cont_ids))
        encoded = [self.encode(p, room=room) for p in prompts]
        if room == 1:
            # Every candidate is one token: one forward pass of the prompt scores them all.
            first = torch.tensor([c[0] for c in cont_ids], device=self.device)
            return [row[first].tolist() for row in self._next_token_logprobs(encoded, desc)]
        scores = [[0.0] * len(continuations) for _ in prompts]
        pairs = sorted(((i, j) for i in range(len(prompts)) for j in range(len(continuations))),
                       key=lambda ij: len(encoded[ij[0]]))
        for start in tqdm(range(0, len(pairs), self.batch_size), desc=desc, mininterval=10):
            chunk = pairs[start:start + self.batch_size]
            ids, mask = self._left_padded([encoded[i] + cont_ids[j] for i, j in chunk])
            logp = self._logprobs(ids, mask)
            width = ids.shape[1]
            for row, (i, j) in enumerate(chunk):
                n = len(cont_ids[j])
                # logits at position t predict token t + 1
                targets = ids[row, width - n:]
                scores[i][j] = logp[row, width - n - 1:width - 1].gather(-1, targets[:, None]).sum().item()
        return scores

    def _logprobs(self, ids, mask):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        return torch.log_softmax(logits.float(), -1)

    def _next_token_logprobs(self, encoded: list[list[int]], desc: str) -> list[torch.Tensor]:
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        out: list[torch.Tensor] = [None] * len(encoded)
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, mininterval=10):
            idx = order[start:start + self.batch_size]
            ids, mask = self._left_padded([encoded[i] for i in idx])
            last = self._logprobs(ids, mask)[:, -1]
            for row, i in enumerate(idx):
                out[i] = last[row]
        return out


PREDICTION_FIELDS = [
    ("id", pa.string()), ("shots", pa.int32()), ("prompt", pa.string()), ("reference", pa.string()),
    ("prediction", pa.string()), ("score", pa.float64()), ("metric", pa.string()),
    ("generation", pa.string()), ("label_loglik", pa.string()), ("label_generate", pa.string()),
    ("label_logprobs", pa.list_(pa.float64())),
    ("eval_dataset", pa.string()), ("eval_task", pa.string()), ("eval_format", pa.string()),
    ("scoring", pa.string()), ("rouge_stemmer", pa.bool_()), ("max_new_tokens", pa.int32()),
]


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
        # The label continues the prompt as the completions in the prompt file do (" yes", or "yes" for io).
        lead = "" if req.format == "io" else " "
        logprobs = scorer.continuation_logprobs(prompts, [lead + label for label in req.labels], desc + " loglik")
        for r, gen, lp in zip(rows, generations, logprobs):
            by_loglik = req.labels[max(range(len(lp)), key=lp.__getitem__)]
            by_generation = metrics.match_label(gen, req.labels)
            chosen = by_loglik if settings.classification == "loglik" else by_generation
            out.append({"prediction": chosen or "", "score": metrics.accuracy(r["target"], chosen),
                        "metric": "accuracy", "generation": gen, "label_loglik": by_loglik,
                        "label_generate": by_generation, "label_logprobs": lp})
    else:
        budget = settings.max_new_tokens_generation
        for r, gen in zip(rows, scorer.generate(prompts, budget, desc)):
            out.append({"prediction": gen, "score": metrics.rouge_l(r["target"], gen, settings.rouge_stemmer),
                        "metric": "rougeL", "generation": gen, "label_loglik": None, "label_generate": None,
                        "label_logprobs": None})
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
