"""`amuro bench`: how fast the workflow fine-tunes and evaluates, against the paper's settings.

Fine-tuning: a randomly initialised model of a built-in architecture (OLMo-1B's, or the mini-world's for a CPU run)
is fine-tuned through amuro.finetune, exactly as a workflow cell is, on synthetic prompt/completion pairs with
xsum-like lengths: once with the `paper` recipe (padded micro-batches of 1, accumulation, ZeRO-3) and once with the
`fast` one, at the same effective batch, on the same examples in the same order. Reported: non-padding tokens/s
over the steps after a warm-up, MFU (6 x parameters FLOPs per token against the GPU's bf16 peak), peak memory, the
speed-up, and how far apart the two loss curves are.

Evaluation: greedy generation and label scoring through amuro.scorer.Scorer on generated prompts, one example
at a time and batched. Reported: examples/s of each, the speed-up, and whether predictions and TokenProb labels agree.

Each measurement runs in its own process (a clean DeepSpeed state and an honest peak memory).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# OLMo-1B-hf's architecture (1.18 B parameters) and the mini-world demo's.
ARCHITECTURES = {
    "olmo-1b": dict(vocab_size=50304, hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,
                    intermediate_size=8192, max_position_embeddings=2048, tie_word_embeddings=True),
    "miniworld": dict(vocab_size=1024, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=512, max_position_embeddings=512, tie_word_embeddings=True),
}
# Dense bf16 peak FLOP/s by GPU name (the H200 is an H100 with more memory).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
SPECIAL_TOKENS = ["<pad>", "<eos>", "<unk>"]


@dataclass(frozen=True)
class BenchConfig:
    architecture: str
    steps: int  # optimizer steps per fine-tuning run
    warmup_steps: int  # left out of the timing (allocation, kernel selection)
    batch_size: int  # effective batch, both recipes
    micro_batch_size: int  # of the fast recipe
    prompt_tokens: int  # median length; lognormal, as news articles are
    completion_tokens: int
    max_seq_len: int
    eval_examples: int
    eval_batch_size: int
    eval_prompt_tokens: int
    max_new_tokens: int
    # Of the fast recipe. Packed by default: padded micro-batches are grouped by length, which changes the examples
    # of each step, and the loss curves could then not be compared step by step.
    batching: str = "packed"
    seed: int = 0

    @classmethod
    def preset(cls, quick: bool) -> "BenchConfig":
        if quick:  # minutes on a laptop CPU
            return cls("miniworld", steps=12, warmup_steps=2, batch_size=8, micro_batch_size=8, prompt_tokens=400,
                       completion_tokens=24, max_seq_len=512, eval_examples=48, eval_batch_size=16,
                       eval_prompt_tokens=300, max_new_tokens=16)
        # xsum: articles of about 430 tokens (OLMo's tokenizer) and one-sentence summaries of about 25.
        return cls("olmo-1b", steps=30, warmup_steps=5, batch_size=8, micro_batch_size=8, prompt_tokens=450,
                   completion_tokens=25, max_seq_len=2048, eval_examples=128, eval_batch_size=32,
                   eval_prompt_tokens=450, max_new_tokens=40)


# ---------------------------------------------------------------------------------------------------------- inputs

def synthetic_lengths(rng: np.random.Generator, n: int, median: int, sigma: float, cap: int) -> list[int]:
    return [int(x) for x in np.clip(np.round(rng.lognormal(np.log(median), sigma, n)), 1, cap)]


def words(rng: np.random.Generator, n: int, vocab_size: int) -> str:
    """n random tokens of the word-level bench tokenizer, as text."""
    return " ".join(f"w{i}" for i in rng.integers(len(SPECIAL_TOKENS), vocab_size, n))


def write_model(config: BenchConfig, out: Path) -> Path:
    """A randomly initialised model and a word-level tokenizer (`w<id>` is token id) in one HF directory."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import OlmoConfig, OlmoForCausalLM, PreTrainedTokenizerFast

    arch = ARCHITECTURES[config.architecture]
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    vocab.update({f"w{i}": i for i in range(len(SPECIAL_TOKENS), arch["vocab_size"])})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>")
    torch.manual_seed(config.seed)
    model = OlmoForCausalLM(OlmoConfig(**arch, pad_token_id=0, eos_token_id=1, bos_token_id=None))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_train_prompts(config: BenchConfig, out: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(config.seed)
    n = config.steps * config.batch_size
    vocab = ARCHITECTURES[config.architecture]["vocab_size"]
    completions = synthetic_lengths(rng, n, config.completion_tokens, 0.3, config.max_seq_len // 4)
    prompts = synthetic_lengths(rng, n, config.prompt_tokens, 0.4, config.max_seq_len - 1)
    rows = [{"prompt": words(rng, p, vocab), "completion": " " + words(rng, c, vocab)}
            for p, c in zip(prompts, completions)]
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def eval_prompts(config: BenchConfig) -> list[str]:
    rng = np.random.default_rng(config.seed + 1)
    vocab = ARCHITECTURES[config.architecture]["vocab_size"]
    lengths = synthetic_lengths(rng, config.eval_examples, config.eval_prompt_tokens, 0.4,
                                ARCHITECTURES[config.architecture]["max_position_embeddings"] - config.max_new_tokens)
    return [words(rng, n, vocab) for n in lengths]


# ---------------------------------------------------------------------------------------------------------- workers

def peak_memory_gb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux: the process's peak RSS


def finetune_case(job: dict) -> dict:
    """One fine-tuning run through amuro.finetune, timed step by step."""
    import torch
    from transformers import TrainerCallback

    from amuro.finetune import FinetuneSettings, finetune

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.tokens, self.losses = [], [], []

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())
            self.tokens.append(int(state.num_input_tokens_seen))

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    settings = FinetuneSettings.from_dict(job["settings"])
    timer = StepTimer()
    work = Path(job["work"])
    finetune(job["model_dir"], job["train_prompts"], work / "out", settings, work / "scratch",
             threads=job["threads"], callbacks=[timer])
    meta = json.loads((work / "out" / "train_meta.json").read_text())
    w = job["warmup_steps"]
    seconds = timer.times[-1] - timer.times[w - 1]
    tokens = timer.tokens[-1] - timer.tokens[w - 1]
    return {"recipe": settings.recipe, "batching": meta["batching"], "attention": meta["attention"],
            "micro_batch_size": settings.micro_batch_size, "accumulation": meta["gradient_accumulation_steps"],
            "deepspeed": meta["deepspeed"], "steps_timed": len(timer.times) - w, "tokens_per_s": tokens / seconds,
            "seconds_per_step": seconds / (len(timer.times) - w), "peak_memory_gb": peak_memory_gb(),
            "parameters": meta["parameters"], "losses": timer.losses}


def evaluate_case(job: dict) -> dict:
    """Greedy generation and label scoring, one example at a time and batched, on the same prompts."""
    import torch

    from amuro import scoring
    from amuro.scorer import Scorer

    torch.set_num_threads(job["threads"])
    config = BenchConfig(**job["config"])
    prompts = eval_prompts(config)
    labels = ("w5", "w6", "w7")
    result = {}
    runs = {}
    for name, batch in (("single", 1), ("batched", config.eval_batch_size)):
        scorer = Scorer(job["model_dir"], batch_size=batch)
        continuations = [scorer.tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label in labels]
        token_sets = scoring.label_token_ids(scorer.tokenizer, labels)
        scorer.generate(prompts[:2], 2, "warm-up")
        start = time.perf_counter()
        generations = scorer.generate(prompts, config.max_new_tokens, f"{name} generate")
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        _, tokenprobs = scorer.label_scores(prompts, continuations, token_sets, f"{name} labels")
        labels_s = time.perf_counter() - start
        runs[name] = (generations, [int(np.argmax(t)) for t in tokenprobs])
        result[name] = {"batch_size": batch, "generate_examples_per_s": len(prompts) / generate_s,
                        "label_examples_per_s": len(prompts) / labels_s}
        del scorer
    result["same_predictions"] = sum(a == b for a, b in zip(runs["single"][0], runs["batched"][0])) / len(prompts)
    result["same_tokenprob_labels"] = sum(a == b for a, b in zip(runs["single"][1], runs["batched"][1])) / len(prompts)
    result["examples"] = len(prompts)
    result["max_new_tokens"] = config.max_new_tokens
    return result


CASES = {"finetune": finetune_case, "evaluate": evaluate_case}


def run_case(kind: str, job: dict, work: Path) -> dict:
    """A case in a fresh Python process; its log goes to work/<name>.log."""
    job_file, result_file = work / f"{job['name']}.job.json", work / f"{job['name']}.result.json"
    job_file.write_text(json.dumps(job))
    with open(work / f"{job['name']}.log", "w") as log_file:
        proc = subprocess.run([sys.executable, "-m", "amuro.bench", kind, str(job_file), str(result_file)],
                              stdout=log_file, stderr=subprocess.STDOUT)
    if proc.returncode:
        tail = (work / f"{job['name']}.log").read_text()[-3000:]
        raise RuntimeError(f"bench case {job['name']} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(result_file.read_text())


# ---------------------------------------------------------------------------------------------------------- report

def hardware() -> dict:
    import deepspeed
    import torch
    import transformers

    info = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "deepspeed": deepspeed.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def peak_flops(gpu: str | None) -> float | None:
    return next((flops for name, flops in PEAK_BF16.items() if gpu and name in gpu), None)


def loss_agreement(a: list[float], b: list[float]) -> float:
    """Largest relative difference between two loss curves over their common steps."""
    n = min(len(a), len(b))
    return max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(a[:n], b[:n]))


def bench(config: BenchConfig, work: Path, threads: int) -> dict:
    model_dir = write_model(config, work / "model")
    train = write_train_prompts(config, work / "train.parquet")
    hw = hardware()
    peak = peak_flops(hw.get("gpu"))
    hyper = dict(learning_rate=1e-4, epochs=1, batch_size=config.batch_size, micro_batch_size=config.micro_batch_size,
                 warmup_fraction=0.0, scheduler="constant", weight_decay=0.0, max_seq_len=config.max_seq_len,
                 seed=config.seed, deepspeed="auto", save_steps=10**6, logging_steps=1, max_grad_norm=0.0)
    finetuning = {}
    for recipe in ("paper", "fast"):
        log.info("fine-tuning, %s recipe", recipe)
        job = {"name": f"finetune-{recipe}", "settings": {**hyper, "recipe": recipe, "batching": config.batching},
               "model_dir": str(model_dir), "train_prompts": str(train), "work": str(work / recipe), "threads": threads,
               "warmup_steps": config.warmup_steps}
        case = run_case("finetune", job, work)
        case["mfu"] = 6 * case["parameters"] * case["tokens_per_s"] / peak if peak else None
        finetuning[recipe] = case
    finetuning["speedup"] = finetuning["fast"]["tokens_per_s"] / finetuning["paper"]["tokens_per_s"]
    finetuning["loss_max_relative_difference"] = loss_agreement(finetuning["paper"]["losses"],
                                                                finetuning["fast"]["losses"])
    log.info("evaluation")
    evaluation = run_case("evaluate", {"name": "evaluate", "config": asdict(config), "model_dir": str(model_dir),
                                       "threads": threads}, work)
    evaluation["generate_speedup"] = (evaluation["batched"]["generate_examples_per_s"]
                                      / evaluation["single"]["generate_examples_per_s"])
    evaluation["label_speedup"] = (evaluation["batched"]["label_examples_per_s"]
                                   / evaluation["single"]["label_examples_per_s"])
    return {"config": asdict(config), "hardware": hw, "threads_per_process": threads, "peak_bf16_flops": peak,
            "finetune": finetuning, "evaluate": evaluation}


def summary(result: dict) -> str:
    ft, ev = result["finetune"], result["evaluate"]

    def mfu(case):
        return f"{100 * case['mfu']:.1f} %" if case["mfu"] is not None else "n/a (no GPU peak)"

    lines = [f"amuro bench: {result['config']['architecture']} on "
             f"{result['hardware'].get('gpu') or result['hardware']['cpu'] + ' CPU'}",
             "fine-tuning        tokens/s    MFU                 peak memory  batches",
             *(f"  {name:<8} {ft[name]['tokens_per_s']:>14,.0f}    {mfu(ft[name]):<19} "
               f"{ft[name]['peak_memory_gb']:>6.2f} GB    micro {ft[name]['micro_batch_size']} x accumulation "
               f"{ft[name]['accumulation']}, {ft[name]['batching']}, {ft[name]['deepspeed']}"
               for name in ("paper", "fast")),
             f"  fast / paper: {ft['speedup']:.2f}x; loss curves differ by at most "
             f"{100 * ft['loss_max_relative_difference']:.3f} % over {len(ft['fast']['losses'])} steps",
             "evaluation         generate ex/s   labels ex/s",
             *(f"  {name:<8} {ev[name]['generate_examples_per_s']:>15,.2f} {ev[name]['label_examples_per_s']:>13,.2f}"
               f"   (batch {ev[name]['batch_size']})" for name in ("single", "batched")),
             f"  batched / single: generate {ev['generate_speedup']:.1f}x, labels {ev['label_speedup']:.1f}x; "
             f"same predictions {100 * ev['same_predictions']:.0f} %, same TokenProb labels "
             f"{100 * ev['same_tokenprob_labels']:.0f} %"]
    return "\n".join(lines)


def main(quick: bool, json_out: str | None, threads: int, work_dir: str | None, overrides: dict) -> dict:
    config = BenchConfig(**{**asdict(BenchConfig.preset(quick)), **overrides})
    with tempfile.TemporaryDirectory(prefix="amuro-bench-", dir=work_dir) as tmp:
        result = bench(config, Path(tmp), threads)
    print(summary(result))
    if json_out:
        from amuro.io import write_json

        write_json(result, json_out)
    return result


def run_bench(quick: bool, json_out: str | None, threads: int, work_dir: str | None, architecture: str | None = None,
              steps: int | None = None, batching: str | None = None, plan: bool = False,
              studies: list[str] | None = None, config: str | None = None) -> None:
    """`amuro bench`: the preset (quick: the mini-world on CPU), with the options given overriding it; with `plan`,
    how long planning takes as a study grows (amuro.scaling) instead."""
    if plan:
        from amuro.scaling import plan_bench

        plan_bench(config, studies, json_out)
        return
    overrides = {k: v for k, v in (("architecture", architecture), ("steps", steps), ("batching", batching))
                 if v is not None}
    main(quick, json_out, threads, work_dir, overrides)


if __name__ == "__main__":  # a case in its own process: python -m amuro.bench KIND JOB.json RESULT.json
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kind, job_path, result_path = sys.argv[1:4]
    Path(result_path).write_text(json.dumps(CASES[kind](json.loads(Path(job_path).read_text()))))
