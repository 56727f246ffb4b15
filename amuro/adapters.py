"""LoRA cells: a fine-tuned model that is an adapter over its pre-trained checkpoint.

A LoRA cell's directory holds the adapter only (adapter_model.safetensors + adapter_config.json, peft's files), the
tokenizer, train_log.parquet and train_meta.json, which records the base checkpoint's directory and the sha256 of its
resolved.json. Whoever uses the cell checks both (amuro.checkpoints.verify_model), loads the base, and merges the
adapter into it in memory: what is scored is then an ordinary transformers model, as for a fully fine-tuned cell.
Light to import (peft and transformers are imported when a model is loaded).
"""

from __future__ import annotations

import json
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def linear_modules(model) -> list[str]:
    """The full names of a model's linear layers (what LoRA can adapt; GPT-2's Conv1D is one too). The model may be
    built on the meta device: only its modules are read."""
    import torch
    from transformers.pytorch_utils import Conv1D

    return [name for name, module in model.named_modules() if isinstance(module, (torch.nn.Linear, Conv1D))]


def unmatched_targets(targets: list[str], linear_modules: list[str]) -> list[str]:
    """The LoRA target modules that name none of a model's linear modules (peft matches a target to a module's whole
    name or its last components)."""
    return [t for t in targets if not any(name == t or name.endswith("." + t) for name in linear_modules)]


def module_kinds(linear_modules: list[str]) -> str:
    """A model's linear modules by their last name (q_proj, v_proj, ...), for an error message."""
    return ", ".join(sorted({name.rsplit(".", 1)[-1] for name in linear_modules}))


def is_adapter(model_dir: str | Path) -> bool:
    """Whether a model directory holds a LoRA adapter rather than a whole model."""
    return (Path(model_dir) / ADAPTER_CONFIG).is_file()


def base_dir(adapter_dir: str | Path) -> Path:
    """The pre-trained checkpoint an adapter was trained on, as its train_meta.json records it."""
    record = json.loads((Path(adapter_dir) / "train_meta.json").read_text())
    return Path(record["base_dir"])


def load_causal_lm(model_dir: str | Path, **kwargs):
    """A transformers causal LM from a model directory; a LoRA adapter is merged into its base checkpoint (loaded
    with the same kwargs), so that the result is an ordinary model either way."""
    from transformers import AutoModelForCausalLM

    if not is_adapter(model_dir):
        return AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(base_dir(model_dir), **kwargs)
    return PeftModel.from_pretrained(base, model_dir).merge_and_unload()
