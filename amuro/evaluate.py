"""Evaluate one model (a pre-trained checkpoint or a fine-tuned cell) on all of its eval sets.

The model is loaded once; each request is one (eval dataset, format, shots) prompt file and one output file of
per-example predictions. Generation tasks are decoded greedily (left padding, stop at EOS or where the next
demonstration or header would start: GENERATION_STOPS) and scored with ROUGE-L. A k-shot prompt longer than the
model's context loses whole demonstrations, the farthest first, or (OVERLONG_PROMPTS `keep`, the papers' code) goes
to the model whole; each prediction records how many it kept and its length. Classification is scored by every
method of amuro.scoring (tokenprob, loglik,
constrained, generate), all kept per example, and the configured one is the `score`. They need one short greedy
generation and one forward pass per example and label stem: the same pass gives the label tokens' log-probabilities
(loglik, constrained) and the next-token distribution of the prompt (tokenprob).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from amuro import metrics, scoring, tokenization
from amuro.io import write_parquet
from amuro.scorer import GENERATION_STOPS, OVERLONG_PROMPTS, Scorer
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
    generation_stop: str = "paragraph"  # one of GENERATION_STOPS
    label_match: str = "first_word"  # one of metrics.LABEL_MATCHES: how a free generation names a label
    overlong_prompts: str = "drop_demonstrations"  # one of OVERLONG_PROMPTS
    tokenprob_candidates: str = "prefix"  # one of scoring.TOKENPROB_CANDIDATES: the tokens TokenProb counts per label

    def __post_init__(self):
        if self.classification not in scoring.METHODS:
            raise ValueError(f"classification scoring {self.classification!r} is not one of "
                             f"{', '.join(scoring.METHODS)}")
        if self.generation_stop not in GENERATION_STOPS:
            raise ValueError(f"generation_stop {self.generation_stop!r} is not one of {', '.join(GENERATION_STOPS)}")
        if self.label_match not in metrics.LABEL_MATCHES:
            raise ValueError(f"label_match {self.label_match!r} is not one of {', '.join(metrics.LABEL_MATCHES)}")
        if self.tokenprob_candidates not in scoring.TOKENPROB_CANDIDATES:
            raise ValueError(f"tokenprob_candidates {self.tokenprob_candidates!r} is not one of "
                             f"{', '.join(scoring.TOKENPROB_CANDIDATES)}")
        if self.overlong_prompts not in OVERLONG_PROMPTS:
            raise ValueError(f"overlong_prompts {self.overlong_prompts!r} is not one of {', '.join(OVERLONG_PROMPTS)}")



PREDICTION_FIELDS = [
    ("id", pa.string()), ("shots", pa.int32()), ("prompt", pa.string()), ("reference", pa.string()),
    ("prediction", pa.string()), ("score", pa.float64()), ("metric", pa.string()),
    ("generation", pa.string()), ("label_loglik", pa.string()), ("label_generate", pa.string()),
    ("label_tokenprob", pa.string()), ("label_constrained", pa.string()),
    ("label_logprobs", pa.list_(pa.float64())), ("label_tokenprobs", pa.list_(pa.float64())),
    ("eval_dataset", pa.string()), ("eval_task", pa.string()), ("eval_format", pa.string()),
    ("scoring", pa.string()), ("rouge_stemmer", pa.bool_()), ("max_new_tokens", pa.int32()),
    ("generation_stop", pa.string()), ("label_match", pa.string()), ("shots_used", pa.int32()),
    ("overlong_prompts", pa.string()), ("prompt_tokens", pa.int32()),
    ("tokenprob_candidates", pa.string()), ("demonstrations", pa.string()), ("demo_separator", pa.string()),
    *((f"label_tokenprob_{rule}", pa.string()) for rule in scoring.TOKENPROB_CANDIDATES),
]
# Classification-only columns, empty on generation rows.
LABEL_COLUMNS = ["label_loglik", "label_generate", "label_tokenprob", "label_constrained", "label_logprobs",
                 "label_tokenprobs", *(f"label_tokenprob_{rule}" for rule in scoring.TOKENPROB_CANDIDATES)]


def prompt_lengths(scorer: Scorer, prompts: list[str], room: int, desc: str) -> list[int]:
    """How many tokens of each prompt the model reads. With overlong_prompts `keep`, prompts that with `room` more
    tokens run past the model's context are counted and logged, and refused for a model whose positions end there."""
    lengths = [len(tokenization.encode(scorer.tokenizer, p)) for p in prompts]
    if scorer.overlong_prompts != "keep":
        return [min(n, scorer.max_len - room) for n in lengths]
    past = [n for n in lengths if n + room > scorer.max_len]
    if past and not scorer.extrapolates_positions:
        raise ValueError(f"{desc}: evaluation.overlong_prompts keep: {len(past)} prompts need up to {max(past) + room} "
                         f"positions with room for the answer, past the model's {scorer.max_len}, and its position "
                         f"embeddings end there (no rotary embeddings); use drop_demonstrations for this model")
    if past:
        log.warning("%s: %d of %d prompts need up to %d positions with room for the answer, past the model's %d; kept "
                    "whole (overlong_prompts keep), the model reads positions it was not trained on", desc,
                    len(past), len(prompts), max(past) + room, scorer.max_len)
    return lengths


def tokenprob_candidates(tokenizer, req: EvalRequest, lead: str, configured: str, desc: str) -> dict:
    """Each candidate rule's token ids per label (scoring.label_candidates). A rule this tokenizer cannot serve is
    an error when it is the configured one, else left out of the comparison (None) with a warning."""
    found = {}
    for rule in scoring.TOKENPROB_CANDIDATES:
        try:
            found[rule] = scoring.label_candidates(tokenizer, req.labels, rule, lead)
        except ValueError as exc:
            if rule == configured:
                raise ValueError(f"{desc}: evaluation.tokenprob_candidates {rule}: {exc}") from None
            log.warning("%s: TokenProb with %s candidates left out of the comparison: %s", desc, rule, exc)
            found[rule] = None
    return found


def evaluate_request(scorer: Scorer, req: EvalRequest, settings: EvalSettings, meta: dict) -> pa.Table:
    table = pq.read_table(req.prompts)
    rows = [r for r in table.to_pylist() if r["shots"] == req.shots]
    if not rows:
        raise ValueError(f"{req.prompts}: no {req.shots}-shot prompts (the prompt file holds shots "
                         f"{sorted(set(table.column('shots').to_pylist()))})")
    task = TASKS[req.task]
    desc = f"{req.dataset}/{req.format}/{req.shots}shot"
    out = []
    if task.is_classification:
        budget = settings.max_new_tokens_classification
        # The label continues the prompt as the completions in the prompt file do (" yes", or "yes" for io);
        # TokenProb accepts either.
        lead = "" if req.format == "io" else " "
        continuations = [scorer.tokenizer(lead + label, add_special_tokens=False)["input_ids"] for label in req.labels]
        room = max(budget, *map(len, continuations))
    else:
        budget = settings.max_new_tokens_generation
        room = budget
    fitted = [scorer.fit_demonstrations(r["prompt"], r.get("demo_chars"), room) for r in rows]
    prompts = [prompt for prompt, _ in fitted]
    shots_used = [used for _, used in fitted]
    if any(used < req.shots for used in shots_used):
        log.warning("%s: %d of %d prompts were longer than the model's %d positions and lost whole demonstrations "
                    "(fewest kept: %d of %d)", desc, sum(used < req.shots for used in shots_used), len(rows),
                    scorer.max_len, min(shots_used), req.shots)
    prompt_tokens = prompt_lengths(scorer, prompts, room, desc)
    if task.is_classification:
        # One prefill per prompt serves the generation, TokenProb and the single-token labels; only longer labels
        # need passes of their own.
        generations, first = scorer.generate(prompts, budget, desc + " generate", first_logprobs=True)
        candidates = tokenprob_candidates(scorer.tokenizer, req, lead, settings.tokenprob_candidates, desc)
        token_sets = candidates[settings.tokenprob_candidates]
        logprobs, tokenprobs = scorer.label_scores(prompts, continuations, token_sets, desc + " labels", first)
        for r, gen, lp, tp, after_prompt in zip(rows, generations, logprobs, tokenprobs, first):
            by = scoring.predict(req.labels, gen, continuations, lp, tp, settings.label_match, req.task)
            chosen = by[settings.classification]
            # TokenProb under every candidate rule, from the same next-token distribution (Table 3 compares them).
            by_rule = {f"label_tokenprob_{rule}": None if ids is None else
                       req.labels[scoring.best(scoring.tokenprob_scores(after_prompt, ids))]
                       for rule, ids in candidates.items()}
            out.append({"prediction": chosen or "", "score": metrics.accuracy(r["target"], chosen),
                        "metric": "accuracy", "generation": gen, "label_loglik": by["loglik"],
                        "label_generate": by["generate"], "label_tokenprob": by["tokenprob"],
                        "label_constrained": by["constrained"], "label_logprobs": [sum(x) for x in lp],
                        "label_tokenprobs": tp, **by_rule})
    else:
        for r, gen in zip(rows, scorer.generate(prompts, budget, desc)):
            out.append({"prediction": gen, "score": metrics.rouge_l(r["target"], gen, settings.rouge_stemmer),
                        "metric": "rougeL", "generation": gen, **dict.fromkeys(LABEL_COLUMNS)})
    records = [{"id": r["id"], "shots": req.shots, "prompt": r["prompt"], "reference": r["target"], **o,
                "eval_dataset": req.dataset, "eval_task": req.task, "eval_format": req.format,
                "scoring": settings.classification if task.is_classification else "generate",
                "rouge_stemmer": settings.rouge_stemmer, "max_new_tokens": budget,
                "generation_stop": settings.generation_stop,
                "label_match": settings.label_match if task.is_classification else None, "shots_used": used,
                "overlong_prompts": settings.overlong_prompts, "prompt_tokens": length,
                "tokenprob_candidates": settings.tokenprob_candidates if task.is_classification else None,
                # How the prompt file chose and joined its demonstrations (amuro.formats.demonstration_rule).
                "demonstrations": r.get("demonstrations"), "demo_separator": r.get("demo_separator")}
               for r, o, used, length in zip(rows, out, shots_used, prompt_tokens)]
    fields = [pa.field(k, pa.string()) for k in sorted(meta)] + [pa.field(n, t) for n, t in PREDICTION_FIELDS]
    return pa.Table.from_pylist([{**meta, **rec} for rec in records], schema=pa.schema(fields))


# What made a prediction file, kept in its Parquet metadata: a rerun keeps a file whose provenance is unchanged.
PROVENANCE_KEY = b"amuro.provenance"


def provenance(model_record: str, req: EvalRequest, settings: EvalSettings, meta: dict) -> str:
    """The model's record, the prompt rows (of the request's shot count: the file holds every shot count, and
    another one added leaves these rows as they were), the request and the settings a prediction file was made from."""
    import hashlib

    rows = pq.read_table(req.prompts).filter(pc.field("shots") == req.shots).to_pylist()
    prompts = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    request = {k: v for k, v in asdict(req).items() if k != "output"}
    return json.dumps({"model_record": model_record, "prompt_rows_sha256": prompts, "request": request,
                       "settings": asdict(settings), "meta": meta}, sort_keys=True)


def made_from(path: str | Path, made: str) -> bool:
    """Whether the prediction file at `path` exists and was made from exactly `made` (its provenance)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    return metadata.get(PROVENANCE_KEY) == made.encode()


def model_record(model_dir: str | Path) -> str:
    """The sha256 of the record a model directory is checked against (resolved.json or train_meta.json)."""
    from amuro.hashing import sha256

    for name in ("resolved.json", "train_meta.json"):
        if (Path(model_dir) / name).is_file():
            return sha256(Path(model_dir) / name)
    return ""


def evaluate(model_dir: str | Path, requests: list[EvalRequest], settings: EvalSettings, meta: dict,
             threads: int = 1) -> None:
    """meta: what identifies the model (model, checkpoint, train cell), stored on every row.

    A request whose prediction file was already made from the same model, prompts and settings is kept as it is:
    a job rerun because the study grew scores only what is new (the model is not even loaded when nothing is)."""
    record = model_record(model_dir)
    made = {req: provenance(record, req, settings, meta) for req in requests}
    todo = [req for req in requests if not made_from(req.output, made[req])]
    for req in requests:
        if req not in todo:
            log.info("%s %s %d-shot: kept %s (made from the same model, prompts and settings)", req.dataset,
                     req.format, req.shots, req.output)
    if not todo:
        return
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    scorer = Scorer(model_dir, settings.batch_size, settings.generation_stop, settings.overlong_prompts)
    for req in todo:
        start = time.perf_counter()
        table = evaluate_request(scorer, req, settings, meta)
        write_parquet(table.replace_schema_metadata({**(table.schema.metadata or {}), PROVENANCE_KEY: made[req]}),
                      req.output)
        mean = sum(table.column("score").to_pylist()) / table.num_rows
        log.info("%s %s %d-shot: %s %.3f on %d examples (%.1fs)", req.dataset, req.format, req.shots,
                 table.column("metric")[0], mean, table.num_rows, time.perf_counter() - start)
    if scorer.truncated:
        log.warning("%d prompts were longer than the model's %d positions without any demonstration and were cut "
                    "from the left", scorer.truncated, scorer.max_len)


def evaluate_models(jobs: list[dict], settings: dict, threads: int = 1) -> None:
    """`amuro evaluate`: each model of `jobs` ({model_dir, requests, meta}) in turn, after every one of them was
    checked against its record, so that a damaged model stops the job before it writes anything."""
    from amuro.checkpoints import verify_model

    for job in jobs:
        verify_model(job["model_dir"])
    for job in jobs:
        evaluate(job["model_dir"], [EvalRequest.from_dict(r) for r in job["requests"]], EvalSettings(**settings),
                 job["meta"], threads=threads)
        if job.get("index"):
            from amuro.hashing import write_file_index

            write_file_index(job["index"], [{"path": r["output"], "dataset": r["dataset"], "task": r["task"],
                                             "format": r["format"], "shots": r["shots"]} for r in job["requests"]])
