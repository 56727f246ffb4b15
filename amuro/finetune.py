"""Supervised fine-tuning of one checkpoint on one task's train prompts, with the HF Trainer and DeepSpeed.

The model learns to produce `completion` after `prompt`: the loss covers the completion and EOS only. Training runs
in `scratch_dir` with a Trainer checkpoint every `save_steps` steps, so a killed job resumes where it stopped; a
preempted one (SIGTERM, SIGUSR1) saves a checkpoint at the next step and exits for its retry (Preempted). A NaN or
infinite loss stops the job naming the step (NonFiniteLoss). The result (weights, tokenizer, `train_meta.json` with
every file's sha256, `train_log.parquet`; never optimizer states) appears in `out_dir` all at once, and only after
the saved model has been reloaded and checked against the base model; the scratch directory is then removed.

Runs as a single CPU/GPU process without a launcher, or as N processes under the `deepspeed` launcher.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import deepspeed
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import transformers
from datasets import Dataset
from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq,
                          DataCollatorWithFlattening, PrinterCallback, Trainer, TrainerCallback, TrainingArguments)
from transformers.integrations.deepspeed import unset_hf_deepspeed_config
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging as hf_logging

from amuro import instructions, registry, tokenization
from amuro.hashing import hash_files
from amuro.io import atomic_path, free_port, write_json, write_parquet

log = logging.getLogger(__name__)

DEEPSPEED_CONFIGS = Path(__file__).parent / "deepspeed"
IGNORE_INDEX = -100  # label value the loss skips
RECIPES = ("fast", "paper")
BATCHINGS = ("auto", "packed", "padded")
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # take packed rows without a quadratic mask
DEEPSPEED_STAGES = ("auto", "zero0", "zero2", "zero3")


class FinetuneError(RuntimeError):
    pass


class Preempted(FinetuneError):
    """The job was asked to stop (SIGTERM, SIGUSR1) and saved a checkpoint to resume from: exit and be retried."""


class NonFiniteLoss(FinetuneError):
    pass


@dataclass
class FinetuneSettings:
    learning_rate: float
    epochs: float
    batch_size: int  # effective batch = micro_batch_size x accumulation x world size
    micro_batch_size: int
    warmup_fraction: float  # of all optimizer steps, rounded up
    scheduler: str  # a transformers lr_scheduler_type: linear, cosine, constant_with_warmup, ...
    weight_decay: float
    max_seq_len: int
    seed: int
    deepspeed: str  # zero0 | zero2 | zero3 (amuro/deepspeed/<name>.json) | auto: zero0 alone, zero2 for several
    size: int | None = None  # training examples, sampled with `seed` in their original order; None = all
    save_steps: int = 50  # Trainer checkpoint interval in scratch_dir, for resuming
    logging_steps: int = 5
    chat_template: str | None = None  # instruction tuning: for a tokenizer without one (None: Tulu v2's)
    # Gradient clipping (max global norm; 0 = none). The paper's code (open-instruct) does not clip; the HF Trainer
    # clips at 1.0 unless told otherwise. The DeepSpeed configs take it from here ("gradient_clipping": "auto").
    max_grad_norm: float = 1.0
    # How the work is laid out on the hardware; the optimisation itself (batch, lr, schedule, data order) is the same.
    # fast: micro-batches of micro_batch_size, padding-free where attention takes variable-length sequences.
    # paper: the paper's engine exactly (padded micro-batches of 1 with accumulation, ZeRO-3): for faithful timing.
    recipe: str = "fast"
    # fast only. packed: a micro-batch is one row of its examples end to end, each attending only to itself
    # (DataCollatorWithFlattening); padded: examples of similar length padded to the longest; auto: packed where
    # attention is variable-length (FlashAttention), padded elsewhere (SDPA would attend over the whole packed row).
    batching: str = "auto"
    # A transformers attn_implementation; auto: flash_attention_2 where flash-attn is installed on CUDA, else sdpa.
    attention: str = "auto"

    def __post_init__(self):
        if self.size == "all":
            self.size = None
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, not {self.batching!r}")
        if self.recipe == "paper":
            self.micro_batch_size, self.deepspeed, self.batching = 1, "zero3", "padded"
        if self.deepspeed not in DEEPSPEED_STAGES:
            raise ValueError(f"deepspeed must be one of {', '.join(DEEPSPEED_STAGES)}, not {self.deepspeed!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), not {self.warmup_fraction}")
        for name in ("batch_size", "micro_batch_size", "max_seq_len", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be >= 1 or None, not {self.size}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0 (0: no clipping), not {self.max_grad_norm}")

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneSettings":
        """Settings from the config's hyper-parameters plus cell info; unknown keys (fticl_shots, ...) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------------------------- data

def completion_features(prompt_ids: list[int], completion_ids: list[int], eos_id: int,
                        max_seq_len: int, keep_start: int = 0) -> tuple[dict, bool]:
    """One training example: prompt + completion + EOS, with the loss on completion + EOS only.

    Too long: the prompt is cut from the left (its first `keep_start` tokens, the BOS, stay) so the completion
    survives; a completion longer than max_seq_len on its own loses its end. Returns the features and whether
    anything was cut.
    """
    completion_ids = list(completion_ids) + [eos_id]
    cut = len(prompt_ids) + len(completion_ids) > max_seq_len
    if cut:
        head, rest = list(prompt_ids[:keep_start]), list(prompt_ids[keep_start:])
        completion_ids = completion_ids[:max_seq_len - len(head)]
        keep = max_seq_len - len(head) - len(completion_ids)
        prompt_ids = head + (rest[len(rest) - keep:] if keep else [])
    input_ids = list(prompt_ids) + completion_ids
    return {
        "input_ids": input_ids,
        "attention_mask": [1] * len(input_ids),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }, cut


def sample_rows(n: int, size: int | None, seed: int) -> list[int]:
    """`size` row indices drawn with `seed`, in their original order; all rows when size is None or >= n."""
    if size is not None and size > n:
        log.warning("asked for %d training examples but the file has only %d: using all", size, n)
    return registry.sample_rows(list(range(n)), size, seed)


def load_examples(train_file: str | Path, tokenizer, settings: FinetuneSettings):
    """The tokenized training set as a datasets.Dataset, and how many examples were cut to max_seq_len.

    A prompt file (`prompt`, `completion`) trains on the completion; an instruction mix (`messages`) on the
    assistant turns, rendered with the tokenizer's chat template.
    """
    if tokenizer.eos_token_id is None:
        raise FinetuneError("the tokenizer has no EOS token; fine-tuning appends one to every completion")
    if "messages" in pq.read_schema(train_file).names:
        features, n_cut = _chat_examples(train_file, tokenizer, settings)
    else:
        features, n_cut = _completion_examples(train_file, tokenizer, settings)
    if n_cut:
        log.warning("%d of %d examples were longer than max_seq_len=%d and were cut",
                    n_cut, len(features), settings.max_seq_len)
    log.info("%d training examples from %s (%d cut)", len(features), train_file, n_cut)
    return Dataset.from_list(features), n_cut


def _completion_examples(train_prompts, tokenizer, settings: FinetuneSettings) -> tuple[list[dict], int]:
    table = pq.read_table(train_prompts, columns=["prompt", "completion"])
    rows = sample_rows(table.num_rows, settings.size, settings.seed)
    prompts = [table["prompt"][i].as_py() for i in rows]
    completions = [table["completion"][i].as_py() for i in rows]
    # The prompt after the tokenizer's BOS, if it has one, as evaluation encodes it (amuro.tokenization).
    bos = list(tokenization.bos_ids(tokenizer))
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    features, n_cut = [], 0
    for p, c in zip(prompt_ids, completion_ids):
        example, cut = completion_features(bos + p, c, tokenizer.eos_token_id, settings.max_seq_len, len(bos))
        features.append(example)
        n_cut += cut
    return features, n_cut


def _chat_examples(train_file, tokenizer, settings: FinetuneSettings) -> tuple[list[dict], int]:
    instructions.ensure_chat_template(tokenizer, settings.chat_template)
    table = pq.read_table(train_file, columns=["id", "messages"])
    features, n_cut, dropped = [], 0, 0
    for i in sample_rows(table.num_rows, settings.size, settings.seed):
        example, cut = instructions.chat_features(table["messages"][i].as_py(), tokenizer, settings.max_seq_len)
        n_cut += cut
        if example is None:
            dropped += 1
        else:
            features.append(example)
    if dropped:
        log.warning("%d conversations lost every assistant token to max_seq_len=%d and were left out",
                    dropped, settings.max_seq_len)
    if not features:
        raise FinetuneError(f"{train_file}: no conversation has an assistant turn within max_seq_len")
    return features, n_cut


# ---------------------------------------------------------------------------------------------------------- setup

def ensure_process_group_env() -> int:
    """DeepSpeed needs a process group; alone (no launcher) we form a world of one. Returns the world size."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(free_port()))
    return int(os.environ["WORLD_SIZE"])


def accumulation_steps(settings: FinetuneSettings, world_size: int) -> int:
    per_step = settings.micro_batch_size * world_size
    if settings.batch_size % per_step:
        raise FinetuneError(
            f"batch_size {settings.batch_size} is not a multiple of micro_batch_size x world size "
            f"({settings.micro_batch_size} x {world_size} = {per_step}); change one of them")
    return settings.batch_size // per_step


def prepare_scratch(scratch_dir: Path, fingerprint: dict) -> None:
    """Clear what must not be resumed: a run with other settings or inputs, or a checkpoint cut off mid-save."""
    marker = scratch_dir / "finetune_settings.json"
    if marker.exists() and json.loads(marker.read_text()) != fingerprint:
        log.warning("%s holds a run with other settings or inputs: starting afresh", scratch_dir)
        shutil.rmtree(scratch_dir)
    scratch_dir.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        write_json(fingerprint, marker)
    for checkpoint in scratch_dir.glob("checkpoint-*"):
        if not (checkpoint / "trainer_state.json").exists():  # the Trainer writes it last
            log.warning("removing %s: its save was cut off", checkpoint)
            shutil.rmtree(checkpoint)


def skip_shared_memory_collectives() -> None:
    """A single CPU process has no peers, yet DeepSpeed would load its shared-memory collectives op, which it
    compiles on first use in every environment (a minute or more, and again whenever another environment built it
    last). DeepSpeed keeps its table of usable ops editable for this."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def deepspeed_config(requested: str, world_size: int) -> str:
    """The DeepSpeed config to train with. auto: ZeRO partitions optimizer states and gradients across processes, so
    a single one has nothing to partition and stage 0 spares it stage 2's gradient buckets (seconds per job on a CPU,
    where the mini-world's cells take tens of seconds); several processes get ZeRO-2."""
    if requested != "auto":
        return requested
    return "zero0" if world_size == 1 else "zero2"


def attention_implementation(requested: str) -> str:
    if requested != "auto":
        return requested
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def batching_for(settings: FinetuneSettings, attention: str) -> str:
    if settings.batching != "auto":
        return settings.batching
    return "packed" if attention in VARLEN_ATTENTION else "padded"


def data_collator(batching: str, pad_tokenizer, attention: str):
    """Micro-batches as the model takes them. Both give the same loss on the same examples: packing drops each
    example's first label, which is a prompt token (never trained on) in every example we build."""
    if batching == "packed":
        # One row, positions restarting at every example: FlashAttention reads the boundaries from cu_seq_lens, SDPA
        # and eager from the positions (transformers builds a block-diagonal mask).
        return DataCollatorWithFlattening(separator_id=IGNORE_INDEX,
                                          return_flash_attn_kwargs=attention in VARLEN_ATTENTION)
    return DataCollatorForSeq2Seq(pad_tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)


def training_arguments(settings: FinetuneSettings, scratch_dir: Path, accumulation: int, batching: str,
                       cuda: bool, world_size: int = 1) -> TrainingArguments:
    # Length-grouped sampling only where it saves padding; elsewhere plain shuffling, so that every recipe and
    # micro-batch size sees the same examples in the same optimizer step.
    grouped = batching == "padded" and settings.micro_batch_size > 1
    zero = DEEPSPEED_CONFIGS / f"{deepspeed_config(settings.deepspeed, world_size)}.json"
    return TrainingArguments(
        output_dir=str(scratch_dir), num_train_epochs=settings.epochs, learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.micro_batch_size, gradient_accumulation_steps=accumulation,
        warmup_steps=settings.warmup_fraction,  # a float below 1 is a fraction: ceil(fraction x optimizer steps)
        lr_scheduler_type=settings.scheduler, weight_decay=settings.weight_decay, seed=settings.seed,
        max_grad_norm=settings.max_grad_norm,
        bf16=cuda, use_cpu=not cuda, deepspeed=str(zero),
        train_sampling_strategy="group_by_length" if grouped else "random",
        include_num_input_tokens_seen="non_padding",
        logging_steps=settings.logging_steps, logging_first_step=True, save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1, report_to="none", disable_tqdm=True, dataloader_drop_last=False,
    )


class LogProgress(TrainerCallback):
    """One readable log line per logging step (replaces the Trainer's printer of raw dicts)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            log.info("step %d/%d  epoch %.2f  loss %.4f  lr %.3g  tokens %d  tokens/s %.0f",
                     state.global_step, state.max_steps, logs.get("epoch", math.nan), logs["loss"],
                     logs.get("learning_rate", math.nan), logs.get("num_input_tokens_seen", 0),
                     logs.get("train_tokens_per_second", math.nan))


class StopOnSignal(TrainerCallback):
    """Preemption: save a resumable checkpoint at the next optimizer step and stop.

    SLURM sends SIGTERM when it preempts or cancels a job (and a chosen signal before the time limit with `--signal`),
    then SIGKILL after its KillWait. The handler only sets a flag; the Trainer saves at the step boundary, where
    model, optimizer and data order are consistent. Ranks agree on the flag (all_reduce), since a ZeRO save is
    collective and a rank that stopped alone would hang the others.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.received: int | None = None
        self.stopped_at: int | None = None

    @contextlib.contextmanager
    def handling_signals(self):
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _handle(self, signum, frame):
        self.received = signum
        log.warning("received %s: saving a checkpoint at the end of this step, then stopping",
                    signal.Signals(signum).name)

    def _stop_agreed(self, args) -> bool:
        stop = self.received is not None
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            flag = torch.tensor([int(stop)], device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        return stop

    def on_step_end(self, args, state, control, **kwargs):
        if self._stop_agreed(args):
            control.should_save = control.should_training_stop = True
            self.stopped_at = state.global_step


class StopOnNonFiniteLoss(TrainerCallback):
    """Stop at the first micro-batch whose loss is NaN or infinite, naming the optimizer step.

    The Trainer itself hides such losses (logging_nan_inf_filter averages them away) and trains on, so the check
    sits on the model's forward pass, where every micro-batch's loss passes.
    """

    def __init__(self):
        self.state = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.state = state
        model.register_forward_hook(self._check)

    def _check(self, module, inputs, output):
        loss = getattr(output, "loss", None)
        if module.training and loss is not None and not torch.isfinite(loss).all():
            raise NonFiniteLoss(f"the loss is {loss.item()} at optimizer step {self.state.global_step + 1} of "
                                f"{self.state.max_steps} (epoch {self.state.epoch or 0:.2f})")


def train(trainer: Trainer, resume: str | None, scratch_dir: Path) -> None:
    """trainer.train(), ended early and cleanly by a preemption signal (Preempted, after a checkpoint) or by a
    non-finite loss (NonFiniteLoss; the training log so far is kept in scratch_dir). Either way no model is written."""
    preemption, loss_check = StopOnSignal(), StopOnNonFiniteLoss()
    trainer.add_callback(preemption)
    trainer.add_callback(loss_check)
    with preemption.handling_signals():
        try:
            trainer.train(resume_from_checkpoint=resume)
        except NonFiniteLoss as exc:
            kept = scratch_dir / "train_log.parquet"
            if trainer.is_world_process_zero():
                write_parquet(train_log_table(trainer.state.log_history), kept)
            raise NonFiniteLoss(f"{exc}: fine-tuning stopped and wrote no model; the training log up to then is "
                                f"in {kept}, checkpoints before it stay in {scratch_dir}") from None
    if preemption.stopped_at is not None:
        raise Preempted(f"stopped by {signal.Signals(preemption.received or signal.SIGTERM).name} after optimizer "
                        f"step {preemption.stopped_at} of {trainer.state.max_steps}; checkpoint saved in "
                        f"{scratch_dir}, the next run of this job resumes from it")


def train_log_table(log_history: list[dict]) -> pa.Table:
    """The Trainer's log history (kept across resumes in its checkpoints) as one row per logged step."""
    rows = [{"step": int(h["step"]), "epoch": float(h.get("epoch", math.nan)), "loss": float(h["loss"]),
             "learning_rate": float(h.get("learning_rate", math.nan)),
             "grad_norm": float(h.get("grad_norm", math.nan)),
             "tokens": int(h.get("num_input_tokens_seen", 0)),
             "tokens_per_s": float(h.get("train_tokens_per_second", math.nan))}
            for h in log_history if "loss" in h]
    schema = pa.schema([("step", pa.int64()), ("epoch", pa.float64()), ("loss", pa.float64()),
                        ("learning_rate", pa.float64()), ("grad_norm", pa.float64()), ("tokens", pa.int64()),
                        ("tokens_per_s", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def expected_parameters(base_dir: str | Path) -> int:
    """Parameter count of the base model, from its config alone (built on the meta device: no memory, no time)."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_dir))
    return model.num_parameters()


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


# ---------------------------------------------------------------------------------------------------------- main

def finetune(base_dir: str | Path, train_prompts: str | Path, out_dir: str | Path, settings: FinetuneSettings,
             scratch_dir: str | Path, threads: int = 1, callbacks: Sequence[TrainerCallback] = ()) -> None:
    """callbacks: more TrainerCallbacks (amuro bench times steps with one)."""
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
    expected = expected_parameters(base_dir)

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    train_set, n_cut = load_examples(train_prompts, tokenizer, settings)
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
    if settings.max_seq_len > getattr(model.config, "max_position_embeddings", math.inf):
        log.warning("max_seq_len %d exceeds the model's max_position_embeddings %d",
                    settings.max_seq_len, model.config.max_position_embeddings)

    trainer = Trainer(
        model=model, args=args, train_dataset=train_set, processing_class=tokenizer,
        data_collator=data_collator(batching, pad_tokenizer, attention),
        callbacks=[LogProgress(), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)
    log.info("fine-tuning %s: %d examples, %s epochs, batch %d = micro %d x accumulation %d x world %d, lr %g, "
             "%s recipe: %s batches, %s attention, %s", base_dir, len(train_set), settings.epochs, settings.batch_size,
             settings.micro_batch_size, accumulation, world_size, settings.learning_rate, settings.recipe, batching,
             attention, zero)
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
        unset_hf_deepspeed_config()  # reload as an ordinary model, not into ZeRO-3 shards
        check_saved_model(tmp, expected)
        write_parquet(train_log_table(trainer.state.log_history), tmp / "train_log.parquet")
        # What evaluation checks the model against (amuro verify-checkpoint), as resolved.json for a checkpoint.
        files = hash_files(tmp)
        resolved = base_dir / "resolved.json"
        write_json({
            "settings": asdict(settings),
            "base_dir": str(base_dir),
            "base_checkpoint": json.loads(resolved.read_text()) if resolved.exists() else None,
            "train_prompts": str(train_prompts),
            "examples": len(train_set),
            "examples_cut": n_cut,
            "chat_template": tokenizer.chat_template,
            "bos_ids": list(tokenization.bos_ids(tokenizer)),
            "pad_token_id": pad_tokenizer.pad_token_id,
            "parameters": expected,
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

