import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "profiles" / "demo" / "study.yaml"


@pytest.fixture
def demo_config() -> dict:
    """The demo study as a plain dict, before validation (each test gets its own copy)."""
    return copy.deepcopy(yaml.safe_load(DEMO_CONFIG.read_text()))


def write_tiny_olmo(model_dir: Path, texts: list[str], max_positions: int, tie_embeddings: bool = True) -> Path:
    """A byte-level BPE tokenizer trained on `texts` and a fresh 2-layer OLMo (hidden 32) in one HF directory."""
    import json

    from transformers import AutoTokenizer, OlmoConfig, OlmoForCausalLM

    from amuro.miniworld.tokenizer import train_tokenizer

    corpus = model_dir.parent / f"{model_dir.name}-corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    train_tokenizer(corpus, model_dir, vocab_size=300, documents=len(texts))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = OlmoConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions,
                        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
                        tie_word_embeddings=tie_embeddings)
    OlmoForCausalLM(config).save_pretrained(model_dir)
    return model_dir


def make_llama_like(model_dir: Path, out_dir: Path) -> Path:
    """A copy of a tiny model directory whose tokenizer behaves like Llama-3's: no pad token, and a BOS that it adds
    only with add_special_tokens=True (here its EOS token doubles as BOS, so the vocabulary stays the same)."""
    import shutil

    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    shutil.copytree(model_dir, out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    eos = tokenizer.eos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{eos} $A", pair=f"{eos} $A $B", special_tokens=[(eos, tokenizer.eos_token_id)])
    tokenizer.bos_token = eos
    tokenizer.pad_token = None
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (out_dir / name).unlink(missing_ok=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def pytest_collection_modifyitems(items):
    """A test that reads a whole study's results (the tiny study run once per module, or the SLURM checkout) is
    marked `study`: `make test-fast` leaves those out."""
    for item in items:
        if {"tiny_study", "checkout"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.study)
