"""The HF Trainer and DeepSpeed around one run: the process group, the DeepSpeed config, attention and batching,
the training arguments, the scratch directory it resumes from, and the callbacks that log progress and stop the run
on preemption or a non-finite loss."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import math
import os
import shutil
import signal
from pathlib import Path

import pyarrow as pa
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from amuro.finetune.examples import EXAMPLE_START, IGNORE_INDEX
from amuro.finetune.settings import VARLEN_ATTENTION, FinetuneError, FinetuneSettings, NonFiniteLoss, Preempted
from amuro.io import free_port, write_json, write_parquet

log = logging.getLogger(__name__)

DEEPSPEED_CONFIGS = Path(__file__).parents[1] / "deepspeed"


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


def training_arguments(settings: FinetuneSettings, scratch_dir: Path, accumulation: int, batching: str,
                       cuda: bool, world_size: int = 1) -> TrainingArguments:
    # Length-grouped sampling only where it saves padding; elsewhere plain shuffling, so that every recipe and
    # micro-batch size sees the same examples in the same optimizer step. With micro_batch_mean a micro-batch's
    # examples decide how they are weighted, so they are drawn as the Trainer draws them by default (shuffled).
    grouped = batching == "padded" and settings.micro_batch_size > 1 and settings.loss != "micro_batch_mean"
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


def example_mean_loss(examples_per_step: int):
    """The Trainer's compute_loss_func for loss example_mean: each example's mean loss over its trained tokens,
    summed over the micro-batch and divided by the examples of a whole optimizer step, so that a step's
    micro-batches add up to the mean over its examples whatever their layout (open-instruct's micro-batches of 1
    with accumulation: every example counts alike, however long its answer).

    examples_per_step: the effective batch (a short last step of an epoch is divided by it too, as open-instruct's
    accumulation divides by its step count), over all processes where the Trainer multiplies each process's loss by
    their number (average_tokens_across_devices) before DeepSpeed averages the gradients. A padded micro-batch holds
    one example per row; a packed row marks each example's start with EXAMPLE_START. An example without a trained
    token (its target cut off by truncation right) adds nothing.
    """

    def loss(outputs, labels, num_items_in_batch=None):
        rows, length = labels.shape
        # Each position's example: its row, and within a packed row the examples begun so far.
        example = (labels == EXAMPLE_START).cumsum(dim=1) + torch.arange(rows, device=labels.device)[:, None] * length
        target, example = labels[:, 1:], example[:, 1:]  # position i predicts label i + 1
        target = target.masked_fill(target < 0, IGNORE_INDEX).reshape(-1)
        logits = outputs.logits[:, :-1].float()
        token_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target,
                                                       ignore_index=IGNORE_INDEX, reduction="none")
        _, example = torch.unique(example.reshape(-1), return_inverse=True)
        sums = torch.zeros(int(example.max()) + 1, device=token_loss.device).index_add_(0, example, token_loss)
        counts = torch.zeros_like(sums).index_add_(0, example, (target != IGNORE_INDEX).float())
        return (sums / counts.clamp(min=1)).sum() / examples_per_step

    return loss


def set_up_loss(trainer: Trainer, settings: FinetuneSettings, world_size: int) -> None:
    """How the Trainer turns token losses into a step's loss (settings.loss). token_mean is the Trainer's own (the
    model's loss normalised by the trained tokens of the whole effective batch, num_items_in_batch). micro_batch_mean:
    without num_items_in_batch the model averages each micro-batch's tokens and the Trainer divides by the
    accumulation steps, as it did before transformers 4.46."""
    if settings.loss == "example_mean":
        across = trainer.args.average_tokens_across_devices or world_size == 1
        trainer.compute_loss_func = example_mean_loss(settings.batch_size if across
                                                      else settings.batch_size // world_size)
    elif settings.loss == "micro_batch_mean":
        trainer.model_accepts_loss_kwargs = False


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
        if module.training and loss is not None:
            self.check(loss)

    def check(self, loss):
        if not torch.isfinite(loss).all():
            raise NonFiniteLoss(f"the loss is {loss.item()} at optimizer step {self.state.global_step + 1} of "
                                f"{self.state.max_steps} (epoch {self.state.epoch or 0:.2f})")
        return loss

    def checking(self, compute_loss_func):
        """A compute_loss_func whose loss is checked too (the model returns none of its own then)."""
        return lambda outputs, labels, num_items_in_batch=None: self.check(
            compute_loss_func(outputs, labels, num_items_in_batch=num_items_in_batch))


def train(trainer: Trainer, resume: str | None, scratch_dir: Path) -> None:
    """trainer.train(), ended early and cleanly by a preemption signal (Preempted, after a checkpoint) or by a
    non-finite loss (NonFiniteLoss; the training log so far is kept in scratch_dir). Either way no model is written."""
    preemption, loss_check = StopOnSignal(), StopOnNonFiniteLoss()
    trainer.add_callback(preemption)
    trainer.add_callback(loss_check)
    if trainer.compute_loss_func is not None:
        trainer.compute_loss_func = loss_check.checking(trainer.compute_loss_func)
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
