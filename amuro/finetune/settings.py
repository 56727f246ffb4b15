"""The settings of one fine-tuning run (a typed dataclass, checked when made) and the errors that end one."""

from __future__ import annotations

from dataclasses import dataclass, fields

RECIPES = ("fast", "paper")
BATCHINGS = ("auto", "packed", "padded")
VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # take packed rows without a quadratic mask
DEEPSPEED_STAGES = ("auto", "zero0", "zero2", "zero3")
# How a step's token losses become its loss: token_mean (the HF Trainer's: all trained tokens of the effective batch
# alike), example_mean (each example's mean, then the mean over examples: open-instruct's micro-batches of 1),
# micro_batch_mean (each micro-batch's token mean, then the mean over micro-batches: the HF Trainer before 4.46).
LOSSES = ("token_mean", "example_mean", "micro_batch_mean")
# How an example longer than max_seq_len is cut: left (the prompt's start goes, the completion stays), right (the
# end goes, completion first: a target can be lost entirely), right_drop (right, and an example left without any
# target token is dropped, as open-instruct drops it).
TRUNCATIONS = ("left", "right", "right_drop")
METHODS = ("full", "lora")


class FinetuneError(RuntimeError):
    pass


class Preempted(FinetuneError):
    """The job was asked to stop (SIGTERM, SIGUSR1) and saved a checkpoint to resume from: exit and be retried."""


class NonFiniteLoss(FinetuneError):
    pass


@dataclass
class LoraSettings:
    """Low-rank adapters (peft's LoraConfig): rank r, scaling alpha / r, dropout on the adapters' input, and the
    linear modules that get them (names as peft matches them, or all-linear: every one but the output head)."""

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"lora r must be >= 1, not {self.r}")
        if self.alpha <= 0:
            raise ValueError(f"lora alpha must be > 0, not {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora dropout must be in [0, 1), not {self.dropout}")
        if isinstance(self.target_modules, str) and self.target_modules != "all-linear":
            raise ValueError(f"lora target_modules must be all-linear or a list of module names, "
                             f"not {self.target_modules!r}")
        if not isinstance(self.target_modules, str):
            self.target_modules = list(self.target_modules)


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
    seed: int  # what training draws at random: data order, dropout, LoRA's initialisation
    deepspeed: str  # zero0 | zero2 | zero3 (amuro/deepspeed/<name>.json) | auto: zero0 alone, zero2 for several
    size: int | None = None  # training examples, sampled with `sample_seed` in their original order; None = all
    # The seed of that sample, apart from `seed` so that every seed of a cell trains on the same examples (the
    # workflow passes the train set's seed); None: `seed`.
    sample_seed: int | None = None
    method: str = "full"  # full: every parameter is trained; lora: adapters only (`lora`), the base frozen
    lora: LoraSettings | None = None  # method lora (a dict is read as LoraSettings; None: its defaults)
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
    loss: str = "token_mean"  # one of LOSSES
    truncation: str = "left"  # one of TRUNCATIONS (prompt files; a chat is always cut from the right)

    def __post_init__(self):
        if self.size == "all":
            self.size = None
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.method == "lora":
            self.lora = LoraSettings(**self.lora) if isinstance(self.lora, dict) else self.lora or LoraSettings()
        elif self.lora is not None:
            raise ValueError("lora settings are for method lora only")
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}, not {self.recipe!r}")
        if self.batching not in BATCHINGS:
            raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, not {self.batching!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}")
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, not {self.truncation!r}")
        if self.recipe == "paper" and self.loss == "micro_batch_mean":
            raise ValueError("loss micro_batch_mean averages over micro-batches of micro_batch_size examples, which "
                             "recipe paper sets to 1 (that is example_mean); use recipe fast, or loss example_mean")
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

    @property
    def sampling_seed(self) -> int:
        """The seed that samples `size` training examples."""
        return self.seed if self.sample_seed is None else self.sample_seed

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneSettings":
        """Settings from the config's hyper-parameters plus cell info; unknown keys (fticl_shots, ...) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
