import json
import random
from collections import Counter

import pytest

from amuro.config import validate_config
from amuro.miniworld.corpus import corpus_documents
from amuro.miniworld.generate import generate
from amuro.miniworld.taskdata import DATASETS
from amuro.miniworld.world import build_world
from amuro.tasks import TASKS

SMALL = {"seed": 5, "world": {"people": 60, "products": 40, "restaurants": 20},
         "corpus": {"train_documents": 2000, "heldout_documents": 100},
         "tasks": {"train": 60, "validation": 20, "test": 40}}


def _settings(**overrides):
    config = {"models": {"m": {"source": "miniworld"}},
              "datasets": {"d": {"task": "summarization", "source": {"type": "miniworld", "name": "diary_summary"}}},
              "miniworld": {**SMALL, **overrides}}
    return validate_config(config)["miniworld"]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    generate(_settings(), out)
    return out


def test_same_seed_gives_the_same_bytes(generated, tmp_path):
    generate(_settings(), tmp_path)
    assert _files(tmp_path) == _files(generated)


def test_another_seed_gives_another_world(generated, tmp_path):
    generate(_settings(seed=6), tmp_path)
    assert (tmp_path / "corpus" / "train.jsonl").read_bytes() != (generated / "corpus" / "train.jsonl").read_bytes()


def test_every_task_type_has_at_least_two_datasets():
    per_task = Counter(task for task, _, _ in DATASETS.values())
    assert set(per_task) == set(TASKS)
    assert min(per_task.values()) >= 2


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", DATASETS)
def test_splits_have_their_sizes_and_never_share_an_input(generated, name):
    splits = {s: _rows(generated / "datasets" / name / f"{s}.jsonl") for s in ("train", "validation", "test")}
    assert {s: len(r) for s, r in splits.items()} == {"train": 60, "validation": 20, "test": 40}
    task = TASKS[DATASETS[name][0]]
    inputs = {s: {tuple(r[f] for f in task.fields) for r in rows} for s, rows in splits.items()}
    assert not inputs["train"] & inputs["test"]
    assert not inputs["validation"] & inputs["test"]
    labels = DATASETS[name][2]
    if labels:
        assert {r["target"] for r in splits["train"]} == set(labels)


def test_corpus_states_sentiment_naturally_but_never_the_other_tasks_or_formats(generated):
    docs = [r["text"] for r in _rows(generated / "corpus" / "train.jsonl")]
    text = "\n".join(docs)
    assert sum(d.endswith(("Sentiment: positive", "Sentiment: negative")) for d in docs) > 50
    for absent in ("###", "Summary:", "Inference:", "Paraphrase", "Please read", "Given the context",
                   "Consider the following", "Let's compare", "Analyze the sentiment"):
        assert absent not in text


def test_test_reviews_never_occur_in_the_corpus(generated):
    corpus = {r["text"].split("Sentiment:")[0].rstrip(" -#\n")
              for r in _rows(generated / "corpus" / "train.jsonl")}
    for name in ("product_sentiment", "restaurant_sentiment"):
        for row in _rows(generated / "datasets" / name / "test.jsonl"):
            assert row["text"] not in corpus


def test_tasks_share_the_worlds_facts(generated):
    world = json.loads((generated / "world.json").read_text())
    country = {p["name"]: world["city_country"][p["city"]] for p in world["people"]}
    for row in _rows(generated / "datasets" / "diary_summary" / "test.jsonl"):
        name = row["document"].split("today I met ")[1].split(" in ")[0]
        assert row["target"].endswith(f"in {country[name]}.")  # the summary needs a fact the diary omits


def test_unknown_document_kind_is_refused():
    world = build_world(0, 2, 4, 10, 2, 10, 10)
    with pytest.raises(ValueError, match="unknown document kind"):
        corpus_documents(random.Random(0), world, 10, {"poems": 1.0})
