"""Write the world, its pre-training corpus and its task datasets to disk, all from one seed."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from amuro.io import atomic_path, write_json
from amuro.miniworld.benchmarks import BENCHMARKS, generate_benchmark, instruction_mix
from amuro.miniworld.corpus import corpus_documents
from amuro.miniworld.taskdata import DATASETS, generate_splits
from amuro.miniworld.world import build_world

log = logging.getLogger(__name__)


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def generate(settings: dict, out_dir: str | Path) -> None:
    """settings: the `miniworld` config section (seed, world, corpus, tasks, benchmarks, instructions).

    Writes world.json, corpus/{train,heldout}.jsonl, datasets/{name}/{split}.jsonl,
    benchmarks/{name}/{train,test}.jsonl and instructions/train.jsonl under `out_dir`.
    Each part draws from its own seeded stream, so changing the corpus size does not change the tasks.
    """
    out = Path(out_dir)
    seed = settings["seed"]
    world = build_world(seed, **settings["world"])
    write_json(world.to_json(), out / "world.json")

    test_inputs: set[str] = set()
    for i, name in enumerate(DATASETS):
        splits = generate_splits(name, random.Random(f"{seed}-task-{name}"), world, settings["tasks"])
        for split, rows in splits.items():
            _write_jsonl(rows, out / "datasets" / name / f"{split}.jsonl")
        test_inputs.update(r.get("text") or r.get("document") or "" for r in splits["test"])
        log.info("dataset %s: %s", name, {s: len(r) for s, r in splits.items()})

    test_passages: set[str] = set()
    for name in BENCHMARKS:
        splits = generate_benchmark(name, random.Random(f"{seed}-benchmark-{name}"), world, settings["benchmarks"])
        for split, rows in splits.items():
            _write_jsonl(rows, out / "benchmarks" / name / f"{split}.jsonl")
        test_passages.update(r["query"].split("\nQuestion:")[0] for r in splits["test"] if "\nQuestion:" in r["query"])
        log.info("benchmark %s: %s", name, {s: len(r) for s, r in splits.items()})
    mix = instruction_mix(random.Random(f"{seed}-instructions"), world, settings["instructions"]["conversations"],
                          exclude=test_passages)
    _write_jsonl(mix, out / "instructions" / "train.jsonl")
    log.info("instruction mix: %d conversations", len(mix))

    corpus = settings["corpus"]
    rng = random.Random(f"{seed}-corpus")
    # Test reviews and diaries never appear verbatim in pre-training.
    train = corpus_documents(rng, world, corpus["train_documents"], corpus["mix"], exclude=test_inputs)
    heldout = corpus_documents(rng, world, corpus["heldout_documents"], corpus["mix"], exclude=test_inputs)
    _write_jsonl([{"text": d} for d in train], out / "corpus" / "train.jsonl")
    _write_jsonl([{"text": d} for d in heldout], out / "corpus" / "heldout.jsonl")
    log.info("corpus: %d train and %d held-out documents", len(train), len(heldout))
