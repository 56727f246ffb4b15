"""Prompt formats and few-shot assembly.

Three formats, as in the paper's Table 5 (Yang et al. add sentiment):
- `default`: `### Input: ...` headers, one field per line, ending in a task header such as `### Summary:`;
- `instruct`: a natural-language instruction around the fields;
- `io`: the bare fields, one per line, then the output.
A prompt ends where the model's answer starts; the completion is the reference (with its leading space in the
formats whose prompt ends in a colon). Demonstrations are whole prompt + completion pairs, each followed by a
separator (a blank line by default; the paper's code used one newline), chosen per query from a pool or as the same
first k rows of a split (DEMONSTRATIONS). Everything here is deterministic.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from amuro.io import write_parquet

FORMATS = ("default", "io", "instruct")
DEMO_SEPARATOR = "\n\n"
# How the demonstrations of a k-shot prompt are chosen (evaluation.demonstrations): `selection` per_query (drawn for
# each query from `split` with the seed, never the query itself) or first_k (the first k rows of `split`, in file
# order, the same for every query, as both papers' code: the paper's eval/predict.py takes the eval file's own first
# k, Yang et al.'s evaluate_cross.py the first k of a few-shot file); with first_k a query among those rows is
# replaced by the next row unless `include_query` (the paper's code keeps it, solved, in its own prompt).
DEMONSTRATIONS = {"selection": "per_query", "split": "train", "include_query": False, "separator": DEMO_SEPARATOR}
SPLITS = ("train", "validation", "test")


# task -> format -> prompt template; the completion is " {target}" except for io, where it is "{target}".
TEMPLATES: dict[str, dict[str, str]] = {
    "summarization": {
        "default": "### Input: {document}\n### Summary:",
        "instruct": "Please read the following text: {document} Provide a summary:",
        "io": "{document}\n",
    },
    "question_generation": {
        "default": "### Input: {context}\n### Answer: {answer}\n### Question:",
        "instruct": "Given the context: {context} And the answer: {answer} Generate a suitable question:",
        "io": "{context}\n{answer}\n",
    },
    "nli": {
        "default": "### Input_1: {premise}\n### Input_2: {hypothesis}\n### Inference:",
        "instruct": "Consider the following texts: Text 1: {premise} Text 2: {hypothesis} The relation is",
        "io": "{premise}\n{hypothesis}\n",
    },
    "paraphrase": {
        "default": "### Input_1: {sentence1}\n### Input_2: {sentence2}\n### Paraphrase Classification:",
        "instruct": ("Let's compare the two sentences: Sentence_1: {sentence1} Sentence_2: {sentence2} "
                     "Are they paraphrasing?:"),
        "io": "{sentence1}\n{sentence2}\n",
    },
    "sentiment": {
        "default": "### Input: {text}\n### Sentiment:",
        "instruct": "Analyze the sentiment of the following text: {text} Sentiment:",
        "io": "{text}\n",
    },
}


def render(task: str, fmt: str, example: dict, templates: dict[str, str] | None = None) -> tuple[str, str]:
    """(prompt, completion) of one example in one format; `templates` (a dataset's own, by format) replace the
    task's built-in template for the formats they name."""
    prompt = ((templates or {}).get(fmt) or TEMPLATES[task][fmt]).format(**example)
    completion = example["target"] if fmt == "io" else " " + example["target"]
    return prompt, completion


def assemble(demonstrations: list[tuple[str, str]], prompt: str, separator: str = DEMO_SEPARATOR) -> str:
    """A k-shot prompt: the demonstrations' prompt + completion, each followed by `separator`, then the query prompt."""
    return "".join(p + c + separator for p, c in demonstrations) + prompt


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def demonstration_ids(dataset: str, query_id: str, pool: list[str], k: int, seed: int,
                      split: str = "train") -> list[str]:
    """`k` demonstration ids for one query, drawn from `pool` (the ids of `split`) without the query itself.

    The draw depends only on (seed, dataset, query id), so every format and every shot count of a query sees
    the same demonstrations (the k-shot set is a prefix of the (k+1)-shot set), and so does every fine-tuned
    model, whatever its train size.
    """
    if k == 0:
        return []
    rng = np.random.default_rng([seed, _stable_hash(dataset), _stable_hash(query_id)])
    # A prefix of one permutation, so that more shots only ever add demonstrations.
    candidates = rng.permutation(len(pool))[:k + 1]
    chosen = [pool[i] for i in candidates if pool[i] != query_id][:k]
    if len(chosen) < k:
        raise ValueError(f"dataset {dataset}: the {split} split has {len(pool)} examples, too few for {k} shots")
    return chosen


def first_demonstration_ids(dataset: str, query_id: str, pool: list[str], k: int, include_query: bool = False,
                            split: str = "train") -> list[str]:
    """The first `k` ids of `pool` (the ids of `split`, in file order): the same demonstrations for every query. The
    query itself is skipped (the next row takes its place) unless `include_query`."""
    chosen = pool[:k] if include_query else [i for i in pool[:k + 1] if i != query_id][:k]
    if len(chosen) < k:
        raise ValueError(f"dataset {dataset}: the {split} split (evaluation.demonstrations.split) has {len(pool)} "
                         f"examples, too few for the first {k} as demonstrations")
    return chosen


def demonstration_rule(spec: dict) -> str:
    """The demonstration choice as prompt files and predictions record it, e.g. `per_query:train`, `first_k:test`,
    `first_k:test:with_query`."""
    rule = f"{spec['selection']}:{spec['split']}"
    return rule + ":with_query" if spec["include_query"] else rule


# demo_chars: the length in characters of each demonstration block at the start of the prompt, so that evaluation
# can drop whole demonstrations from a prompt too long for the model (amuro.scorer.Scorer.fit_demonstrations).
# demonstrations, demo_separator: how they were chosen (demonstration_rule) and what follows each.
PROMPT_SCHEMA = pa.schema([
    ("id", pa.string()), ("shots", pa.int32()), ("prompt", pa.string()), ("completion", pa.string()),
    ("target", pa.string()), ("demo_ids", pa.list_(pa.string())), ("demo_chars", pa.list_(pa.int32())),
    ("demonstrations", pa.string()), ("demo_separator", pa.string()),
])


def demo_chars(demonstrations: list[tuple[str, str]], separator: str = DEMO_SEPARATOR) -> list[int]:
    """The length of each demonstration's block in an assemble()d prompt."""
    return [len(p) + len(c) + len(separator) for p, c in demonstrations]


def build_prompts(dataset: str, task: str, fmt: str, data_dir: str | Path, out_dir: str | Path,
                  shots: list[int], seed: int, templates: dict[str, str] | None = None,
                  demonstrations: dict | None = None,
                  write_splits: Sequence[str] = ("train", "validation", "test")) -> None:
    """Write {out_dir}/{split}.parquet of each of `write_splits`: one row per example and shot count (train and
    validation: 0-shot only, whatever `shots` says, so that the workflow builds them apart from the test split:
    another shot count then rewrites no train file and reruns no fine-tune).

    demonstrations: how they are chosen and joined (DEMONSTRATIONS, whose values fill what it leaves out)."""
    spec = {**DEMONSTRATIONS, **(demonstrations or {})}
    data_dir = Path(data_dir)
    splits = {split: pq.read_table(data_dir / f"{split}.parquet").to_pylist() for split in SPLITS}
    pool = [ex["id"] for ex in splits[spec["split"]]]
    rendered = {ex["id"]: render(task, fmt, ex, templates) for ex in splits[spec["split"]]}
    rule, separator = demonstration_rule(spec), spec["separator"]
    max_shots = max(shots)

    def choose(query_id: str) -> list[str]:
        if spec["selection"] == "first_k":
            return first_demonstration_ids(dataset, query_id, pool, max_shots, spec["include_query"], spec["split"])
        return demonstration_ids(dataset, query_id, pool, max_shots, seed, spec["split"])

    for split, examples in splits.items():
        if split not in write_splits:
            continue
        split_shots = sorted(set(shots)) if split == "test" else [0]
        rows = []
        for ex in examples:
            prompt, completion = render(task, fmt, ex, templates)
            demos = choose(ex["id"]) if max(split_shots) else []
            for k in split_shots:
                ids = demos[:k]
                shown = [rendered[i] for i in ids]
                rows.append({"id": ex["id"], "shots": k, "prompt": assemble(shown, prompt, separator),
                             "completion": completion, "target": ex["target"], "demo_ids": ids,
                             "demo_chars": demo_chars(shown, separator), "demonstrations": rule,
                             "demo_separator": separator})
        write_parquet(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA), Path(out_dir) / f"{split}.parquet")


FTICL_DEMONSTRATIONS = ("sampled", "validation_first")


def build_fticl_prompts(dataset: str, task: str, data_dir: str | Path, out_file: str | Path, shots: int,
                        seed: int, templates: dict[str, str] | None = None, demonstrations: str = "sampled") -> None:
    """The FTICL train split (Yang et al.): the same `shots` demonstrations before every training example, in the
    default format. demonstrations sampled: drawn once from the train split with `seed` and left out of training;
    validation_first: the validation split's first rows (Yang et al.'s train_ptune.py: the first examples of the
    task's few-shot file), and every train example is trained on. The file's metadata records both settings."""
    if demonstrations not in FTICL_DEMONSTRATIONS:
        raise ValueError(f"demonstrations must be one of {', '.join(FTICL_DEMONSTRATIONS)}, not {demonstrations!r}")
    train = pq.read_table(Path(data_dir) / "train.parquet").to_pylist()
    if demonstrations == "sampled":
        fixed = demonstration_ids(dataset, "fticl", [ex["id"] for ex in train], shots, seed)
        shown = [ex for ex in train if ex["id"] in set(fixed)]
    else:
        shown = pq.read_table(Path(data_dir) / "validation.parquet").to_pylist()[:shots]
        if len(shown) < shots:
            raise ValueError(f"dataset {dataset}: the validation split has {len(shown)} examples, too few for "
                             f"{shots} FTICL demonstrations")
    demos = [render(task, "default", ex, templates) for ex in shown]
    demo_ids = [ex["id"] for ex in shown]
    rows = []
    for ex in train:
        if demonstrations == "sampled" and ex["id"] in demo_ids:
            continue
        prompt, completion = render(task, "default", ex, templates)
        rows.append({"id": ex["id"], "shots": shots, "prompt": assemble(demos, prompt), "completion": completion,
                     "target": ex["target"], "demo_ids": sorted(demo_ids) if demonstrations == "sampled" else demo_ids,
                     "demo_chars": demo_chars(demos)})
    metadata = {"amuro.fticl": json.dumps({"shots": shots, "demonstrations": demonstrations})}
    write_parquet(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA.with_metadata(metadata)), out_file)


def index_prompts(prompts: list[str], out: str | Path) -> None:
    """`amuro index-prompts`: the index of the test prompts every evaluation job reads (their paths and hashes)."""
    from amuro.hashing import write_file_index

    write_file_index(out, [{"path": str(p)} for p in prompts])
