"""Score one model on multiple-choice benchmarks through lm-evaluation-harness, one row per example and metric.

The paper scored its pre-trained and instruction-tuned checkpoints on benchmarks like ARC and SciQ with
lm-evaluation-harness, so the numbers here come from lm-eval itself (its prompts, few-shot sampling with its default
seeds, its log-likelihoods and its acc / acc_norm) rather than from a re-implementation. Its per-sample log is kept
as one Parquet file per benchmark and shot count, in the prediction-file form `amuro.results` summarises: the mean of
`score` per metric is exactly lm-eval's own aggregate, and the bootstrap interval comes from amuro.results.

Benchmarks that are not lm-eval tasks (the mini-world's) are local JSON-lines files; `write_task_yamls` turns them
into lm-eval task files.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from amuro.adapters import is_adapter, load_causal_lm
from amuro.io import write_parquet
from amuro.tasks import BENCHMARK_TASK

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_norm")
# lm-eval keys results by "metric,filter"; multiple-choice tasks score the unfiltered responses ("none").
FILTER = "none"
# Which split of a task is scored (benchmarks.split): `default` the task's own choice (lm-eval scores its test split
# where it has one, else validation), or `validation` / `test` (the paper's olmo_eval run_lm_eval.py ran with
# --split validation).
SPLITS = ("default", "validation", "test")
# lm-eval's defaults (lm_eval.defaults), passed explicitly: few-shot demonstrations are sampled with them.
SEEDS = {"random_seed": 0, "numpy_random_seed": 1234, "torch_random_seed": 1234, "fewshot_random_seed": 1234}

PREDICTION_FIELDS = [
    ("id", pa.string()), ("shots", pa.int32()), ("prompt", pa.string()), ("reference", pa.string()),
    ("prediction", pa.string()), ("score", pa.float64()), ("metric", pa.string()),
    ("choice_logliks", pa.list_(pa.float64())),
    ("eval_dataset", pa.string()), ("eval_task", pa.string()), ("eval_format", pa.string()),
    ("scoring", pa.string()), ("lm_eval_task", pa.string()), ("lm_eval_version", pa.string()),
    ("eval_split", pa.string()),
]


class BenchmarkError(ValueError):
    pass


def write_task_yamls(benchmarks: dict[str, dict], out_dir: str | Path) -> Path:
    """lm-eval task files for benchmarks stored as JSON lines; returns `out_dir`, the include path to give lm-eval.

    benchmarks: benchmark id -> {"task": the task name to register, "train": JSON lines, "test": JSON lines}, rows
    {"id", "query", "choices", "gold"}. Train rows are the few-shot demonstrations.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for spec in benchmarks.values():
        config = {
            "task": spec["task"],
            "dataset_path": "json",
            # Absolute paths: lm-eval resolves nothing relative to the task file.
            "dataset_kwargs": {"data_files": {"train": str(Path(spec["train"]).resolve()),
                                              "test": str(Path(spec["test"]).resolve())}},
            "test_split": "test",
            "fewshot_split": "train",
            "output_type": "multiple_choice",
            "doc_to_text": "{{query}}",
            # Field names rather than "{{choices}}" / "{{gold}}": lm-eval then takes the list and the index as they
            # are instead of rendering them to text and parsing that back.
            "doc_to_choice": "choices",
            "doc_to_target": "gold",
            "target_delimiter": " ",
            "fewshot_delimiter": "\n\n",
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in METRICS],
            "metadata": {"version": 1.0},
        }
        (out / f"{spec['task']}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _task_manager(tasks_dir: str | Path | None, names: set[str]):
    from lm_eval.tasks import TaskManager

    if tasks_dir is not None:
        # Indexing lm-eval's thousands of built-in task files takes seconds; skip it when the local ones suffice.
        local = TaskManager(include_path=str(tasks_dir), include_defaults=False)
        if names <= set(local.all_tasks):
            return local
    return TaskManager(include_path=str(tasks_dir) if tasks_dir is not None else None)


def _with_split(config: dict, split: str, where: str) -> dict:
    """The task config scoring `split` (SPLITS): lm-eval scores its test split whenever it names one, so validation
    means no test split."""
    if split == "default":
        return config
    if not config.get(f"{split}_split"):
        raise BenchmarkError(f"{where}: benchmarks split {split} (benchmarks.split or benchmarks.tasks.<id>.split): "
                             f"the lm-eval task has no {split} split (its test split: {config.get('test_split')}, "
                             f"validation split: {config.get('validation_split')})")
    return {**config, "test_split": None} if split == "validation" else config


def eval_split(task) -> str:
    """The split lm-eval scores of a loaded task (its test split where it has one, else its validation split)."""
    return task.config.test_split if task.has_test_docs() else task.config.validation_split


def _load_tasks(manager, entries: list[dict]) -> dict:
    """lm-eval Task objects by name; simple_evaluate runs these very objects, so their doc_to_* can be reused.

    An entry with a `download` record (an lm-eval task over hub data) reads the recorded snapshot from the HF cache;
    its `split` (SPLITS, default `default`) picks the split scored.
    """
    tasks = {}
    for e in entries:
        if e["task"] in tasks:
            continue
        if e["task"] not in manager.all_tasks:
            raise BenchmarkError(f"benchmark {e['benchmark']}: lm-eval knows no task {e['task']!r}")
        spec = e["task"]
        if e.get("download"):
            from amuro.downloads import offline_task_config

            spec = offline_task_config(e["benchmark"], e["task"], e["download"], manager)
        split = e.get("split", "default")
        if split != "default":
            if isinstance(spec, str):
                from amuro.downloads import benchmark_task_config

                spec = benchmark_task_config(spec, manager, resolve_functions=True)
            spec = _with_split(spec, split, f"benchmark {e['benchmark']} (lm-eval task {e['task']})")
        loaded = manager.load(spec)["tasks"]
        if list(loaded) != [e["task"]]:
            raise BenchmarkError(f"benchmark {e['benchmark']}: {e['task']!r} is a group of {len(loaded)} lm-eval "
                                 f"tasks; a benchmark must name one task")
        if loaded[e["task"]].OUTPUT_TYPE != "multiple_choice":
            raise BenchmarkError(f"benchmark {e['benchmark']}: lm-eval task {e['task']!r} is "
                                 f"{loaded[e['task']].OUTPUT_TYPE}, not multiple_choice")
        tasks[e["task"]] = loaded[e["task"]]
    return tasks


def _gold_index(gold, choices: list[str], where: str) -> int:
    # As lm-eval's process_results: an index, or the text of the gold choice.
    if isinstance(gold, str) and gold in choices:
        return choices.index(gold)
    if isinstance(gold, int) and 0 <= gold < len(choices):
        return gold
    raise BenchmarkError(f"{where}: the gold answer {gold!r} names none of the {len(choices)} choices "
                         f"(tasks with several gold answers are not supported)")


def _prediction_rows(task, samples: list[dict], where: str) -> list[dict]:
    """One row per logged sample and metric (acc rows first, each metric in doc_id order).

    The chosen answers are recomputed from the logged log-likelihoods exactly as lm-eval's process_results does
    (argmax; for acc_norm, log-likelihood / the choice's length in characters) and checked against its scores.
    """
    # BoolQ, for one, reports acc only.
    present = [m for m in METRICS if m in samples[0]]
    rows: dict[str, list[dict]] = {m: [] for m in present}
    for s in sorted(samples, key=lambda s: s["doc_id"]):
        doc_where = f"{where}, doc {s['doc_id']}"
        choices = task.doc_to_choice(s["doc"])
        # Tasks like winogrande put the choices into the context and take the gold index from doc_to_text.
        gold = _gold_index(task.doc_to_text(s["doc"]) if task.multiple_input else task.doc_to_target(s["doc"]),
                           choices, doc_where)
        lls = np.array([ll for ll, _ in s["filtered_resps"]], dtype=np.float64)
        if len(lls) != len(choices):
            raise BenchmarkError(f"{doc_where}: {len(lls)} log-likelihoods for {len(choices)} choices")
        chosen = {"acc": int(np.argmax(lls)),
                  "acc_norm": int(np.argmax(lls / np.array([float(len(c)) for c in choices])))}
        for metric in present:
            if float(chosen[metric] == gold) != s[metric]:
                raise BenchmarkError(f"{doc_where}: lm-eval's {metric} {s[metric]} disagrees with the argmax of the "
                                     f"logged log-likelihoods (a task with its own process_results?)")
            rows[metric].append({"id": str(s["doc_id"]), "prompt": s["arguments"][0][0], "reference": choices[gold],
                                 "prediction": choices[chosen[metric]], "score": float(s[metric]),
                                 "metric": metric, "choice_logliks": lls.tolist()})
    return [r for m in present for r in rows[m]]


def run_benchmarks(model_dir: str | Path, plan: list[dict], settings: dict, meta: dict,
                   threads: int = 1) -> dict[str, dict[int, dict[str, float]]]:
    """Evaluate one HF model directory on every plan entry and write each entry's per-example Parquet.

    plan: [{"benchmark": our id, "task": lm-eval task name, "shots": k, "output": Parquet path, "split": one of
    SPLITS (optional, default `default`)}];
    settings: {"batch_size", "limit" (examples per benchmark, None = all), "tasks_dir" (extra task files or None)};
    meta: what identifies the model (model, checkpoint, train cell), stored on every row.
    Returns lm-eval's aggregates, {benchmark: {shots: {"acc": x, "acc_norm": y}}}.
    """
    import lm_eval
    import torch

    torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = "bfloat16" if device == "cuda" else "float32"  # as amuro.evaluate
    manager = _task_manager(settings.get("tasks_dir"), {e["task"] for e in plan})
    by_shots: dict[int, list[dict]] = defaultdict(list)
    for e in plan:
        by_shots[e["shots"]].append(e)
    # Every task is loaded (and checked) before the model is; each shot count gets Task objects of its own, since
    # simple_evaluate sets their shot count and re-seeds their few-shot sampler.
    tasks_by_shots = {shots: _load_tasks(manager, entries) for shots, entries in sorted(by_shots.items())}

    model, model_args = "hf", f"pretrained={model_dir},dtype={dtype}"  # lm-eval loads the directory itself
    if is_adapter(model_dir):  # a LoRA cell: its adapter merged into the base, handed over as a model
        from lm_eval.models.huggingface import HFLM
        from transformers import AutoTokenizer

        merged = load_causal_lm(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
        model, model_args = HFLM(pretrained=merged, tokenizer=AutoTokenizer.from_pretrained(model_dir),
                                 batch_size=settings["batch_size"]), None
    fields = [pa.field(k, pa.string()) for k in sorted(meta)] + [pa.field(n, t) for n, t in PREDICTION_FIELDS]
    aggregates: dict[str, dict[int, dict[str, float]]] = defaultdict(dict)
    for shots, tasks in tasks_by_shots.items():
        start = time.perf_counter()
        # No output path and no request cache: lm-eval writes no files (datasets caches the data it loads in the HF
        # cache); the Parquet files below are the only outputs.
        results = lm_eval.simple_evaluate(
            model=model, model_args=model_args, tasks=list(tasks.values()),
            num_fewshot=shots, batch_size=settings["batch_size"], limit=settings.get("limit"), device=device,
            log_samples=True, bootstrap_iters=0,  # intervals come from amuro.results
            task_manager=manager, **SEEDS)
        seconds = time.perf_counter() - start
        for e in by_shots[shots]:
            where = f"benchmark {e['benchmark']} (lm-eval task {e['task']}, {shots}-shot)"
            samples = [s for s in results["samples"].get(e["task"], []) if s["filter"] == FILTER]
            if not samples:
                raise BenchmarkError(f"{where}: lm-eval returned no samples")
            rows = _prediction_rows(tasks[e["task"]], samples, where)
            records = [{**meta, **r, "shots": shots, "eval_dataset": e["benchmark"], "eval_task": BENCHMARK_TASK,
                        "eval_format": "default", "scoring": "lm-eval", "lm_eval_task": e["task"],
                        "lm_eval_version": lm_eval.__version__, "eval_split": eval_split(tasks[e["task"]])}
                       for r in rows]
            write_parquet(pa.Table.from_pylist(records, schema=pa.schema(fields)), e["output"])
            scores = {m: float(results["results"][e["task"]][f"{m},{FILTER}"]) for m in METRICS
                      if f"{m},{FILTER}" in results["results"][e["task"]]}
            aggregates[e["benchmark"]][shots] = scores
            log.info("%s: %s on %d examples (lm-eval's %d-shot run: %.1fs)", where,
                     ", ".join(f"{m} {v:.4f}" for m, v in scores.items()), len(samples), shots, seconds)
    return dict(aggregates)


def evaluate_benchmarks(model_dir: str | Path, requests: list[dict], settings: dict, local_tasks: dict | None,
                        meta: dict, threads: int = 1, index: str | Path | None = None) -> None:
    """One benchmark job: the model checked against its record, then `run_benchmarks`, with task files for the
    local benchmarks (`local_tasks`, as `write_task_yamls` takes them) that live only as long as the run: they are
    inputs, not outputs. `index`: where to list the score files written (what the run's summary reads)."""
    import tempfile

    from amuro.checkpoints import verify_model
    from amuro.hashing import write_file_index

    verify_model(model_dir)
    with tempfile.TemporaryDirectory() as tasks_dir:
        if local_tasks:
            settings = {**settings, "tasks_dir": str(write_task_yamls(local_tasks, tasks_dir))}
        run_benchmarks(model_dir, requests, settings, meta, threads=threads)
    if index:
        write_file_index(index, [{"path": r["output"], "benchmark": r["benchmark"], "task": "multiple_choice",
                                  "shots": r["shots"]} for r in requests])
