"""Supervised fine-tuning of one checkpoint on one task's train prompts, with the HF Trainer and DeepSpeed.

The model learns to produce `completion` after `prompt`: the loss covers the completion and EOS only. Training runs
in `scratch_dir` with a Trainer checkpoint every `save_steps` steps, so a killed job resumes where it stopped; a
preempted one (SIGTERM, SIGUSR1) saves a checkpoint at the next step and exits for its retry (Preempted). A NaN or
infinite loss stops the job naming the step (NonFiniteLoss). The result (weights, tokenizer, `train_meta.json` with
every file's sha256, `train_log.parquet`; never optimizer states) appears in `out_dir` all at once, and only after
the saved model has been reloaded and checked against the base model; the scratch directory is then removed.

The seed (`settings.seed`, a cell's own) draws what training draws at random: the data order and dropout (the
Trainer's seed) and LoRA's initialisation; the examples a train size samples follow `settings.sample_seed`.
`method: lora` trains low-rank adapters (peft) on the frozen model through the same Trainer and DeepSpeed path, and
saves the adapter only, with the base checkpoint's directory and record hash in train_meta.json (amuro.adapters).

Runs as a single CPU/GPU process without a launcher, or as N processes under the `deepspeed` launcher.

Here: the main path (`finetune`) and the check of the saved model; `settings` has FinetuneSettings and the errors,
`examples` the training set and its collator, `trainer` the Trainer and DeepSpeed set-up and the callbacks, `lora`
the adapters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import deepspeed
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PrinterCallback, Trainer, TrainerCallback
from transformers.integrations.deepspeed import unset_hf_deepspeed_config
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging as hf_logging

from amuro import tokenization
from amuro.finetune.examples import data_collator, load_examples
from amuro.finetune.lora import check_saved_adapter, check_target_modules, parameter_counts, with_lora
from amuro.finetune.settings import FinetuneError, FinetuneSettings, NonFiniteLoss, Preempted
from amuro.finetune.trainer import (LogProgress, accumulation_steps, attention_implementation, batching_for,
                                    deepspeed_config, ensure_process_group_env, prepare_scratch, set_up_loss,
                                    skip_shared_memory_collectives, train, train_log_table, training_arguments)
from amuro.hashing import hash_files, sha256
from amuro.io import atomic_path, write_json, write_parquet

__all__ = ["FinetuneError", "FinetuneSettings", "NonFiniteLoss", "Preempted", "check_saved_model", "finetune",
           "finetune_cell", "finetune_cells"]

log = logging.getLogger(__name__)


def meta_model(base_dir: str | Path):
    """The base model's architecture, from its config alone (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_dir))


def check_saved_model(model_dir: str | Path, expected: int) -> int:
    """Reload a saved model; raise unless every weight loaded and the parameter count is `expected`."""
    try:
        model, info = AutoModelForCausalLM.from_pretrained(model_dir, output_loading_info=True)
    except Exception as exc:
        raise FinetuneError(f"the saved model in {model_dir} does not reload: {exc}") from exc
    count = model.num_parameters()
    problems = {k: v for k, v in info.items() if k in ("missing_keys", "mismatched_keys") and v}
    if count != expected or problems:
        raise FinetuneError(
            f"the saved model in {model_dir} is not a complete copy of the trained model: {count} parameters "
            f"reloaded, the base model has {expected}; {problems or 'all weights present'}")
    return count


def versions() -> dict:
    return {"torch": torch.__version__, "transformers": transformers.__version__, "deepspeed": deepspeed.__version__}


def finetune(base_dir: str | Path, train_prompts: str | Path, out_dir: str | Path, settings: FinetuneSettings,
             scratch_dir: str | Path, threads: int = 1, callbacks: Sequence[TrainerCallback] = (),
             run: dict | None = None) -> None:
    """callbacks: more TrainerCallbacks (amuro bench times steps with one); run: what identifies the cell (its
    variant and seed among it), recorded in train_meta.json."""
    start = time.perf_counter()
    # DeepSpeed calls collectives that torch 2.13 renamed, with a warning per call.
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated", category=FutureWarning)
    hf_logging.disable_progress_bar()  # weight loading/saving bars; progress is logged per step instead
    os.environ["OMP_NUM_THREADS"] = str(threads)  # else accelerate sets torch's threads to all physical cores
    torch.set_num_threads(threads)
    base_dir, out_dir, scratch_dir = Path(base_dir), Path(out_dir), Path(scratch_dir)
    world_size = ensure_process_group_env()
    main_process = int(os.environ["RANK"]) == 0
    accumulation = accumulation_steps(settings, world_size)
    architecture = meta_model(base_dir)
    expected = architecture.num_parameters()
    lora = settings.method == "lora"
    if lora:  # before any work: a target the model does not have is a config error
        check_target_modules(architecture, settings.lora)

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train_set, cuts = load_examples(train_prompts, tokenizer, settings)
    # Training pads on the right, with EOS where the tokenizer has no pad token (Llama-3); the saved tokenizer keeps
    # its own settings for whoever loads it.
    pad_tokenizer = tokenization.padding_tokenizer(tokenizer, "right")

    cuda = torch.cuda.is_available()
    attention = attention_implementation(settings.attention)
    batching = batching_for(settings, attention)
    # Before the model is loaded: under ZeRO-3 the arguments make from_pretrained shard the weights as they load.
    args = training_arguments(settings, scratch_dir, accumulation, batching, cuda, world_size)
    zero = deepspeed_config(settings.deepspeed, world_size)
    fingerprint = {"settings": asdict(settings), "base_dir": str(base_dir), "train_prompts": str(train_prompts)}
    with args.main_process_first(desc="inspect scratch dir"):
        if main_process:
            prepare_scratch(scratch_dir, fingerprint)
        resume = get_last_checkpoint(scratch_dir)
    resumed_step = json.loads((Path(resume) / "trainer_state.json").read_text())["global_step"] if resume else None

    if world_size == 1 and not cuda:
        skip_shared_memory_collectives()
    # On GPUs accelerate starts DeepSpeed's communication; on CPUs it starts plain torch.distributed, and ZeRO-3's
    # sharded loading would then see a world of one.
    deepspeed.init_distributed(auto_mpi_discovery=False)
    model = AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation=attention)
    # Training needs no KV cache, and with one transformers would not read a packed row's example boundaries from
    # its positions; the saved model gets it back for generation.
    model.config.use_cache = False
    if lora:
        model = with_lora(model, settings.lora, settings.seed)
        trainable, total = parameter_counts(model)  # peft counts ZeRO-3's partitioned parameters whole
    else:  # the loaded model's own count is a shard's under ZeRO-3
        trainable = total = expected
    if settings.max_seq_len > getattr(model.config, "max_position_embeddings", math.inf):
        log.warning("max_seq_len %d exceeds the model's max_position_embeddings %d",
                    settings.max_seq_len, model.config.max_position_embeddings)

    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
        data_collator=data_collator(batching, pad_tokenizer, attention, settings.loss),
        callbacks=[LogProgress(), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    set_up_loss(trainer, settings, world_size)
    log.info("fine-tuning %s: %d examples, %s epochs, batch %d = micro %d x accumulation %d x world %d, lr %g, "
             "%s loss, %s recipe: %s batches, %s attention, %s, seed %d, %s: %d of %d parameters trained", base_dir,
             len(train_set), settings.epochs, settings.batch_size, settings.micro_batch_size, accumulation,
             world_size, settings.learning_rate, settings.loss, settings.recipe, batching, attention, zero,
             settings.seed, settings.method, trainable, total)
    if resume:
        log.info("resuming from %s (step %d)", resume, resumed_step)
    train(trainer, resume, scratch_dir)

    model.config.use_cache = True
    # Every rank joins save_model (ZeRO-3 gathers the shards); only rank 0 writes, into a temporary sibling.
    with atomic_path(out_dir, directory=True) if main_process else contextlib.nullcontext(out_dir) as tmp:
        trainer.save_model(str(tmp))
        if not main_process:
            return
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; train_meta.json says it in words
        if lora:
            (tmp / "README.md").unlink(missing_ok=True)  # peft's model card template
        unset_hf_deepspeed_config()  # reload as an ordinary model, not into ZeRO-3 shards
        if lora:
            check_saved_adapter(tmp, base_dir, trainable)
        else:
            check_saved_model(tmp, expected)
        write_parquet(train_log_table(trainer.state.log_history), tmp / "train_log.parquet")
        # What evaluation checks the model against (amuro verify-model), as resolved.json for a checkpoint.
        files = hash_files(tmp)
        resolved = base_dir / "resolved.json"
        write_json({
            "run": run,
            "settings": asdict(settings),
            "method": settings.method,
            "seed": settings.seed,
            # A LoRA cell is its adapter over this checkpoint: who uses it loads this directory and checks this hash.
            "base_dir": str(base_dir),
            "base_checkpoint": json.loads(resolved.read_text()) if resolved.exists() else None,
            "base_record_sha256": sha256(resolved) if resolved.exists() else None,
            "train_prompts": str(train_prompts),
            "examples": len(train_set),
            "examples_cut": cuts["cut"],
            # Examples whose target (completion and EOS) max_seq_len cut short, or cut off entirely, and those left
            # out for it (truncation right_drop; a chat with nothing left to learn).
            "examples_target_cut": cuts["target_cut"],
            "examples_target_lost": cuts["target_lost"],
            "examples_dropped": cuts["dropped"],
            "chat_template": tokenizer.chat_template,
            "bos_ids": list(tokenization.bos_ids(tokenizer)),
            "pad_token_id": pad_tokenizer.pad_token_id,
            "parameters": total,
            "trainable_parameters": trainable,
            "optimizer_steps": trainer.state.max_steps,
            "warmup_steps": args.get_warmup_steps(trainer.state.max_steps),
            "gradient_accumulation_steps": accumulation,
            "optimizer": getattr(args.optim, "value", args.optim),
            "batching": batching,
            "attention": attention,
            "deepspeed": zero,
            "world_size": world_size,
            "tokens_seen": trainer.state.num_input_tokens_seen,
            "final_loss": next((h["loss"] for h in reversed(trainer.state.log_history) if "loss" in h), None),
            "resumed_from_step": resumed_step,
            "files": files,
            "versions": versions(),
            "device": "cuda" if cuda else "cpu",
            "wall_time_s": round(time.perf_counter() - start, 2),
        }, tmp / "train_meta.json")
    shutil.rmtree(scratch_dir, ignore_errors=True)
    log.info("fine-tuned model in %s (%.1f s)", out_dir, time.perf_counter() - start)


# A preempted fine-tune exits as a process killed by SIGTERM would (128 + 15): the job failed, and its retry resumes.
PREEMPTED_EXIT_CODE = 143


def finetune_cell(base_dir: str | Path, train_prompts: str | Path, out_dir: str | Path, settings: dict,
                  scratch_dir: str | Path, threads: int = 1, run: dict | None = None) -> None:
    """`amuro finetune`: the base checkpoint checked against its record, then one cell fine-tuned."""
    finetune_cells(base_dir, [{"train_prompts": train_prompts, "out_dir": out_dir, "settings": settings, "run": run,
                               "scratch_dir": scratch_dir}], threads)


def trained_as(out_dir: str | Path, base_dir: str | Path, settings: FinetuneSettings, run: dict | None) -> bool:
    """Whether out_dir already holds this cell: its train_meta.json records these settings and this run, trained on
    this checkpoint (the same record), and every file still matches its hash."""
    from amuro.checkpoints import CheckpointError, verify_model

    meta_file, resolved = Path(out_dir) / "train_meta.json", Path(base_dir) / "resolved.json"
    if not meta_file.is_file():
        return False
    meta = json.loads(meta_file.read_text())
    # As JSON wrote them: tuples read back as lists.
    same = (meta.get("settings") == json.loads(json.dumps(asdict(settings))) and meta.get("run") == run
            and meta.get("base_dir") == str(Path(base_dir))
            and meta.get("base_record_sha256") == (sha256(resolved) if resolved.exists() else None))
    if not same:
        return False
    try:
        verify_model(out_dir)
    except CheckpointError as exc:
        log.warning("%s is trained again: %s", out_dir, exc)
        return False
    return True


def finetune_cells(base_dir: str | Path, cells: list[dict], threads: int = 1) -> None:
    """`amuro finetune-cells` (finetune.jobs per_checkpoint): the checkpoint checked once, then each cell (train
    prompts, out_dir, settings, run, scratch_dir) fine-tuned in turn in this process; a cell already trained as
    asked (trained_as) is kept as it is."""
    from amuro.checkpoints import verify_model

    verify_model(base_dir)
    for i, cell in enumerate(cells, 1):
        settings = FinetuneSettings.from_dict(cell["settings"])
        if trained_as(cell["out_dir"], base_dir, settings, cell["run"]):
            log.info("cell %d/%d: %s is trained with these settings: kept", i, len(cells), cell["out_dir"])
            continue
        log.info("cell %d/%d: %s", i, len(cells), cell["out_dir"])
        try:
            finetune(base_dir, cell["train_prompts"], cell["out_dir"], settings, cell["scratch_dir"], threads,
                     run=cell["run"])
        except Preempted as exc:
            log.error("%s", exc)
            raise SystemExit(PREEMPTED_EXIT_CODE) from None
