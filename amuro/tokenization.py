"""Special tokens as each tokenizer needs them, the same way in fine-tuning and in evaluation.

- BOS: a tokenizer that puts a beginning-of-text token before the text when asked for special tokens (Llama-3's
  `<|begin_of_text|>`, Llama-2's `<s>`) gets it before every prompt and every training example; the text itself is
  encoded without special tokens (fine-tuning appends the EOS after the completion). OLMo-1B-hf's tokenizer and the
  mini-world's add none, so their prompts are unchanged.
- Pad: a tokenizer without a pad token (Llama-3's) pads with its EOS token. Padded positions are masked out of
  attention and of the loss, so the id is never learned or read; the saved tokenizer keeps its own settings.
"""

from __future__ import annotations

import copy
import functools


@functools.lru_cache(maxsize=8)
def bos_ids(tokenizer) -> tuple[int, ...]:
    """The ids the tokenizer puts before a text when it adds special tokens (empty for OLMo-1B-hf)."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return tuple(full[:start])
    return ()


def encode(tokenizer, text: str, bos: bool = True) -> list[int]:
    """The text's ids without special tokens, after the tokenizer's BOS (if it has one and `bos`)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [*bos_ids(tokenizer), *ids] if bos else ids


def pad_id(tokenizer) -> int:
    """The tokenizer's pad id, else its EOS id."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither a pad nor an EOS token to pad with")
    return tokenizer.eos_token_id


def padding_tokenizer(tokenizer, side: str):
    """A copy that pads on `side`, with the EOS token as pad token when the tokenizer has none."""
    padder = copy.deepcopy(tokenizer)
    padder.padding_side = side
    if padder.pad_token is None:
        padder.pad_token = padder.eos_token
    return padder
