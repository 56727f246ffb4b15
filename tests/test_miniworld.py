import json
import random
import re
from collections import Counter

import pytest

from amuro.config import validate_config
from amuro.miniworld.benchmarks import BENCHMARKS
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
    # Requests in words ask for notes, never for what the tasks ask: their headers and instructions never occur.
    for absent in ("###", "Summary:", "summary", "Inference:", "Paraphrase", "paraphras", "question:", "relation",
                   "Text 1:", "Let's compare", "Analyze the sentiment", "Input"):
        assert absent not in text


def test_corpus_asks_for_the_same_notes_in_words_and_under_headers(generated):
    docs = [r["text"] for r in _rows(generated / "corpus" / "train.jsonl")]
    requests = [d for d in docs if d.startswith(("Please read the following text:", "Given the context:",
                                                 "Consider the following text:"))]
    headed = [d for d in docs if re.search(r"\n# (Note|Comment|Remark|Reply|Update): \S", d)]
    assert len(requests) > 20 and len(headed) > 20
    assert all(re.search(r" (Provide a|Generate a suitable|Write a) (note|comment|remark|reply|update): \S", d)
               for d in requests)


def test_test_inputs_never_occur_in_the_corpus_not_even_with_a_note_after_them(generated):
    docs = [r["text"] for r in _rows(generated / "corpus" / "train.jsonl")]
    assert sum(any(f"{field}: " in d for field in ("Note", "Comment", "Remark", "Reply", "Update", "Details"))
               for d in docs) > 50
    text = "\n".join(docs)
    for name, field in (("product_sentiment", "text"), ("restaurant_sentiment", "text"),
                        ("diary_summary", "document"), ("launch_summary", "document")):
        for row in _rows(generated / "datasets" / name / "test.jsonl"):
            assert row[field] not in text, (name, row[field])


def test_tasks_share_the_worlds_facts(generated):
    world = json.loads((generated / "world.json").read_text())
    country = {p["name"]: world["city_country"][p["city"]] for p in world["people"]}
    for row in _rows(generated / "datasets" / "diary_summary" / "test.jsonl"):
        name = row["document"].split("today I met ")[1].split(" in ")[0]
        assert row["target"].endswith(f"in {country[name]}.")  # the summary needs a fact the diary omits


def test_a_non_paraphrase_swaps_a_slot_or_says_something_else_about_the_same_entity(generated):
    world = json.loads((generated / "world.json").read_text())
    jobs = {p["name"]: p["job"] for p in world["people"]}
    kinds = Counter()
    for split in ("train", "test"):
        for row in _rows(generated / "datasets" / "people_paraphrase" / f"{split}.jsonl"):
            name = next(n for n in jobs if row["sentence1"].startswith(n) or f", {n} " in row["sentence1"])
            if row["target"] == "yes":
                assert jobs[name] in row["sentence2"] and name in row["sentence2"]
            else:
                kinds["swapped" if any(j in row["sentence2"] for j in jobs.values()) else "other fact"] += 1
    assert kinds["swapped"] > 5 and kinds["other fact"] > 5


def test_unknown_document_kind_is_refused():
    world = build_world(0, 2, 4, 10, 2, 10, 10)
    with pytest.raises(ValueError, match="unknown document kind"):
        corpus_documents(random.Random(0), world, 10, {"poems": 1.0})


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmarks_have_distinct_questions_and_a_gold_choice(generated, name):
    splits = {s: [json.loads(line) for line in (generated / "benchmarks" / name / f"{s}.jsonl").open()]
              for s in ("train", "test")}
    assert len(splits["test"]) == 100 and len(splits["train"]) == 20  # the schema's defaults
    queries = [r["query"] for rows in splits.values() for r in rows]
    assert len(set(queries)) == len(queries)
    for row in splits["test"]:
        assert 0 <= row["gold"] < len(row["choices"]) and len(set(row["choices"])) == len(row["choices"]) >= 2


def test_knowledge_benchmarks_ask_what_the_corpus_states_and_passage_check_asks_about_strangers(generated):
    world = json.loads((generated / "world.json").read_text())
    corpus = (generated / "corpus" / "train.jsonl").read_text()
    jobs = {p["name"]: p["job"] for p in world["people"]}
    rows = [json.loads(line) for line in (generated / "benchmarks" / "person_job" / "test.jsonl").open()]
    for row in rows:
        name = row["query"].split()[0] if not row["query"].startswith("Q:") else row["query"].split()[3]
        assert row["choices"][row["gold"]] == jobs[name]
    stated = sum(f"{n} works as a {j}" in corpus or f"{n} is a {j}" in corpus for n, j in jobs.items())
    assert stated / len(jobs) > 0.9
    known = set(jobs) | set(world["city_country"]) | set(world["countries"])
    for row in (json.loads(line) for line in (generated / "benchmarks" / "passage_check" / "test.jsonl").open()):
        assert row["query"].split()[0] not in known and "\nQuestion:" not in corpus


def test_the_instruction_mix_is_chats_with_answers_and_never_a_test_passage(generated):
    mix = [json.loads(line) for line in (generated / "instructions" / "train.jsonl").open()]
    assert len(mix) == 600
    assert all(m["messages"][-1]["role"] == "assistant" for m in mix)
    assert any(len(m["messages"]) == 4 for m in mix)  # some two-turn chats
    passages = [json.loads(line)["query"].split("\nQuestion:")[0]
                for line in (generated / "benchmarks" / "passage_check" / "test.jsonl").open()]
    text = json.dumps(mix)
    assert not any(p in text for p in passages)
