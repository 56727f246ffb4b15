"""A byte-level BPE tokenizer trained on the mini-world corpus, saved as an ordinary HF fast tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from amuro.io import atomic_path

EOS = "<|endoftext|>"
PAD = "<|padding|>"


def train_tokenizer(corpus: str | Path, out_dir: str | Path, vocab_size: int, documents: int) -> None:
    from transformers import PreTrainedTokenizerFast

    with open(corpus) as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(documents), f)]
    tok = Tokenizer(models.BPE())
    # No prefix space: " yes" and "yes" are different tokens, as in OLMo's and GPT-2's tokenizers.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD,
                                 model_max_length=1 << 30, clean_up_tokenization_spaces=False)
    with atomic_path(out_dir, directory=True) as tmp:
        hf.save_pretrained(tmp)
