"""LoRA fine-tuning: the adapters peft puts on the model before the Trainer sees it, their target modules checked
against the model, and the check of a saved adapter."""

from __future__ import annotations

import math
from pathlib import Path

import transformers

from amuro.adapters import ADAPTER_WEIGHTS, linear_modules, module_kinds, unmatched_targets
from amuro.finetune.settings import FinetuneError, LoraSettings


def check_target_modules(model, lora: LoraSettings) -> None:
    """Every configured target module names a linear layer of the model, else an error naming it and listing the
    model's linear modules (the config check does the same at load, where the model is known then)."""
    if lora.target_modules == "all-linear":
        return
    names = linear_modules(model)
    for target in unmatched_targets(lora.target_modules, names):
        raise FinetuneError(
            f"lora target module {target!r} is not a linear module of this model; its linear modules are "
            f"{module_kinds(names)} (set finetune.variants.<name>.lora.target_modules to some of them, or all-linear)")


def with_lora(model, lora: LoraSettings, seed: int):
    """The model with LoRA adapters on its target modules, everything else frozen. The adapters' initialisation is
    drawn with the cell's seed (peft draws it from torch's generator while it wraps the model)."""
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, lora)
    transformers.set_seed(seed)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=lora.target_modules, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def parameter_counts(model) -> tuple[int, int]:
    """(trainable, total) parameters of a model with adapters."""
    return model.get_nb_trainable_parameters()


def check_saved_adapter(adapter_dir: str | Path, base_dir: str | Path, trainable: int) -> None:
    """Reload a saved adapter onto its base; raise unless it loads and holds exactly the `trainable` parameters."""
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    adapter_dir = Path(adapter_dir)
    try:
        with safe_open(adapter_dir / ADAPTER_WEIGHTS, "pt") as f:
            count = sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)
    except Exception as exc:
        raise FinetuneError(f"the saved adapter in {adapter_dir} does not reload onto {base_dir}: {exc}") from exc
    if count != trainable:
        raise FinetuneError(f"the saved adapter in {adapter_dir} holds {count} parameters, but {trainable} were "
                            f"trained")
