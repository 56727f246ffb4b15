"""Loading a model once and scoring prompts with it: batched greedy generation with left padding and the stop
rules of GENERATION_STOPS, and label scores (log-likelihoods and the first answer token's distribution) that share
one forward pass per prompt and label stem. amuro.evaluate turns these into per-example predictions."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from amuro import scoring, tokenization

log = logging.getLogger(__name__)

# Where a free generation ends (after some non-space text): `paragraph` at a blank line or a `###` header, where the
# next demonstration or field would start (cnn_dailymail's highlights are several lines, so a line is not the end);
# `line` at the first newline; `none` nowhere: the whole budget (or up to EOS) is scored, as the paper's prediction
# scripts did (they pass no stop sequence).
GENERATION_STOPS = {"paragraph": ("\n\n", "###"), "line": ("\n",), "none": ()}
# What happens to a prompt that, with room for the answer, is longer than the model's context
# (max_position_embeddings): `drop_demonstrations` drops whole demonstrations, the farthest from the query first (a
# query too long on its own is then cut from the left); `keep` cuts nothing, as the papers' code did (their tokenizer
# calls set no truncation), so the model reads positions past its context: a rotary-position model (OLMo, Llama)
# extrapolates, with whatever quality that gives, and a model with learned absolute positions cannot and is refused.
OVERLONG_PROMPTS = ("drop_demonstrations", "keep")


def stop_index(text: str, rule: str) -> int | None:
    """Where `rule` ends a generation: the first stop marker after the first non-space character, else None."""
    first = next((i for i, ch in enumerate(text) if not ch.isspace()), None)
    if first is None:
        return None
    hits = [i for i in (text.find(marker, first + 1) for marker in GENERATION_STOPS[rule]) if i >= 0]
    return min(hits) if hits else None


def cut_generation(text: str, rule: str) -> str:
    """A generation up to where `rule` ends it, without surrounding whitespace."""
    end = stop_index(text, rule)
    return (text if end is None else text[:end]).strip()


class StopAfterText(StoppingCriteria):
    """Stops a row once its generated text holds a stop marker after some non-space text."""

    def __init__(self, tokenizer, prompt_width: int, rule: str):
        self.tokenizer, self.prompt_width, self.rule = tokenizer, prompt_width, rule

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor([stop_index(t, self.rule) is not None for t in texts], device=input_ids.device)


class Scorer:
    """A causal LM and its tokenizer, with batched greedy generation and label scores."""

    def __init__(self, model_dir: str | Path, batch_size: int, generation_stop: str = "paragraph",
                 overlong_prompts: str = "drop_demonstrations"):
        from transformers import AutoTokenizer

        from amuro.adapters import load_causal_lm

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        # A LoRA cell's adapter is merged into its base checkpoint: scored as any model.
        self.model = load_causal_lm(model_dir, dtype=dtype).to(self.device).eval()
        self.max_len = getattr(self.model.config, "max_position_embeddings", None) or 2048
        # Label scoring reads the last few positions only; models that can skip the others save a vocabulary-wide
        # projection of every prompt token.
        self.keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.batch_size = batch_size
        self.generation_stop = generation_stop
        self.overlong_prompts = overlong_prompts
        # Rotary position embeddings are computed for any position; learned absolute ones end at max_len.
        self.extrapolates_positions = any("rotary" in name.lower() for name, _ in self.model.named_modules())
        # As in fine-tuning (amuro.tokenization): the tokenizer's BOS, if it has one, and EOS as pad if no pad.
        self.pad_id = tokenization.pad_id(self.tokenizer)
        self.bos = list(tokenization.bos_ids(self.tokenizer))
        self.truncated = 0

    def encode(self, text: str, room: int = 0) -> list[int]:
        """The prompt's ids (after the tokenizer's BOS, if any); cut from the left, BOS kept, so that `room` more
        tokens still fit (counted: only a query too long on its own is cut, see fit_demonstrations). With
        overlong_prompts `keep` nothing is cut."""
        ids = tokenization.encode(self.tokenizer, text)
        if self.overlong_prompts == "keep":
            return ids
        limit = self.max_len - room
        if len(ids) > limit:
            self.truncated += 1
            ids = self.bos + ids[len(ids) - (limit - len(self.bos)):]
        return ids

    def fit_demonstrations(self, prompt: str, demo_chars: Sequence[int] | None, room: int) -> tuple[str, int]:
        """The prompt without as many of its leading demonstrations (whole ones, the farthest from the query first)
        as it takes for it and `room` more tokens to fit the context, and how many demonstrations it keeps.

        demo_chars: the length in characters of each demonstration block (prompt files record it); without it the
        prompt is kept whole (encode then cuts it from the left). With overlong_prompts `keep` every prompt is kept
        whole."""
        shots = len(demo_chars or [])
        if self.overlong_prompts == "keep":
            return prompt, shots
        limit = self.max_len - room
        offset = 0
        while shots and len(tokenization.encode(self.tokenizer, prompt[offset:])) > limit:
            offset += demo_chars[len(demo_chars) - shots]
            shots -= 1
        return prompt[offset:], shots

    def _left_padded(self, batch: list[list[int]]):
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, seq in enumerate(batch):
            ids[i, width - len(seq):] = torch.tensor(seq)
            mask[i, width - len(seq):] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int, desc: str,
                 first_logprobs: bool = False) -> list[str] | tuple[list[str], list[torch.Tensor]]:
        """Greedy continuations, each cut where self.generation_stop ends it (cut_generation).

        first_logprobs: also return, per prompt, the next-token log-probabilities after it (on the CPU): the
        prefill's own output, which is all that single-token labels need (label_scores(first=...))."""
        encoded = [self.encode(p, room=max_new_tokens) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths share a batch
        out: list[str] = [""] * len(prompts)
        first: list[torch.Tensor | None] = [None] * len(prompts)
        for start in tqdm(range(0, len(order), self.batch_size), desc=desc, mininterval=10):
            idx = order[start:start + self.batch_size]
            ids, mask = self._left_padded([encoded[i] for i in idx])
            # Rule `none` has no marker: no criterion, so no row is decoded and searched after every step.
            stops = ([StopAfterText(self.tokenizer, ids.shape[1], self.generation_stop)]
                     if GENERATION_STOPS[self.generation_stop] else [])
            gen = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                      do_sample=False, pad_token_id=self.pad_id,
                                      eos_token_id=self.tokenizer.eos_token_id,
                                      stopping_criteria=StoppingCriteriaList(stops),
                                      return_dict_in_generate=True, output_logits=first_logprobs)
            for row, (i, seq) in enumerate(zip(idx, gen.sequences[:, ids.shape[1]:])):
                out[i] = cut_generation(self.tokenizer.decode(seq, skip_special_tokens=True), self.generation_stop)
                if first_logprobs:
                    first[i] = torch.log_softmax(gen.logits[0][row].float(), -1).cpu()
        return (out, first) if first_logprobs else out

    @torch.no_grad()
    def label_scores(self, prompts: list[str], continuations: list[list[int]], token_sets: Sequence[Sequence[int]],
                     desc: str, first: Sequence[torch.Tensor] | None = None,
                     ) -> tuple[list[list[list[float]]], list[list[float]]]:
        """For every prompt: the log-probability of each token of each continuation (token ids) after the prompt
        and the continuation's earlier tokens, and the TokenProb score of each label token set.

        A forward pass over the prompt and a stem scores every continuation whose leading tokens start that stem,
        so single-token labels all come from one pass of the prompt; TokenProb reads that pass's first answer position.
        first: the next-token log-probabilities after each prompt, from generate(first_logprobs=True); they stand
        in for the passes of the empty stem, so that single-token labels need no pass of their own.
        """
        stems, stem_of = _shared_stems(continuations)
        encoded = [self.encode(p, room=max(map(len, stems))) for p in prompts]
        logprobs: list[list[list[float]]] = [[[] for _ in continuations] for _ in prompts]
        tokenprobs: list[list[float] | None] = [None] * len(prompts)
        if first is not None:
            for i, after_prompt in enumerate(first):
                tokenprobs[i] = scoring.tokenprob_scores(after_prompt, token_sets)
                for j, cont in enumerate(continuations):
                    if not stems[stem_of[j]]:
                        logprobs[i][j] = [after_prompt[cont[0]].item()]
        pairs = sorted(((i, s) for i in range(len(prompts)) for s in range(len(stems))
                        if first is None or stems[s]),
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


