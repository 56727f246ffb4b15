import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amuro.axes import main_eval_format
from amuro.formats import FORMATS, TEMPLATES, assemble, build_prompts, demonstration_ids, render
from amuro.tasks import TASKS

EXAMPLES = {
    "summarization": {"document": "Dear diary, today I met Kuri.", "target": "The writer met Kuri."},
    "question_generation": {"context": "Kuri lives in Rege.", "answer": "Rege", "target": "Where does Kuri live?"},
    "nli": {"premise": "Kuri lives in Rege.", "hypothesis": "Kuri lives in Keva.", "target": "no"},
    "paraphrase": {"sentence1": "Kuri is a pilot.", "sentence2": "Kuri flies planes.", "target": "yes"},
    "sentiment": {"text": "I love it.", "target": "positive"},
}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_task_renders_in_every_format_with_all_its_fields(task, fmt):
    prompt, completion = render(task, fmt, EXAMPLES[task])
    for field in TASKS[task].fields:
        assert EXAMPLES[task][field] in prompt
    assert completion.strip() == EXAMPLES[task]["target"]
    assert EXAMPLES[task]["target"] not in prompt


@pytest.mark.parametrize("formats, main", [
    (["io", "default", "instruct"], "default"),
    (["io", "instruct"], "instruct"),
    (["instruct", "io"], "instruct"),
    ([], None),
])
def test_the_main_format_is_default_else_the_first_in_sorted_order(formats, main):
    assert main_eval_format(formats) == main


def test_default_format_follows_the_paper():
    prompt, completion = render("nli", "default", EXAMPLES["nli"])
    assert prompt == "### Input_1: Kuri lives in Rege.\n### Input_2: Kuri lives in Keva.\n### Inference:"
    assert completion == " no"
    prompt, _ = render("summarization", "instruct", EXAMPLES["summarization"])
    assert prompt.startswith("Please read the following text:") and prompt.endswith("Provide a summary:")


def test_io_format_is_bare_fields_then_output():
    prompt, completion = render("paraphrase", "io", EXAMPLES["paraphrase"])
    assert prompt == "Kuri is a pilot.\nKuri flies planes.\n"
    assert completion == "yes"


def test_k_shot_prompt_has_k_demonstrations_before_the_query():
    demos = [("Q1:", " a"), ("Q2:", " b")]
    assert assemble(demos, "Q3:") == "Q1: a\n\nQ2: b\n\nQ3:"
    assert assemble([], "Q3:") == "Q3:"


def test_demonstrations_never_include_the_query():
    pool = [f"ex{i}" for i in range(6)]
    for query in pool:
        for seed in range(20):
            assert query not in demonstration_ids("d", query, pool, 5, seed)


def test_demonstrations_are_deterministic_and_nested_across_shot_counts():
    pool = [f"ex{i}" for i in range(100)]
    four = demonstration_ids("d", "test-1", pool, 4, seed=7)
    assert four == demonstration_ids("d", "test-1", pool, 4, seed=7)
    assert len(set(four)) == 4
    assert demonstration_ids("d", "test-1", pool, 7, seed=7)[:4] == four
    assert demonstration_ids("d", "test-2", pool, 4, seed=7) != four


def test_too_few_train_examples_for_the_shots_is_an_error():
    with pytest.raises(ValueError, match="too few for 4 shots"):
        demonstration_ids("tiny", "x", ["a", "b"], 4, seed=0)


def _write_dataset(d, n_train=30, n_test=10):
    schema = pa.schema([(c, pa.string()) for c in ("id", "text", "target")])
    for split, n in (("train", n_train), ("validation", 5), ("test", n_test)):
        rows = [{"id": f"{split}-{i}", "text": f"review {split} {i}", "target": ["positive", "negative"][i % 2]}
                for i in range(n)]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), d / f"{split}.parquet")


def test_prompt_files_are_byte_identical_across_runs_and_never_leak(tmp_path):
    _write_dataset(tmp_path)
    for out in ("a", "b"):
        build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / out, shots=[0, 4], seed=3)
    for split in ("train", "validation", "test"):
        assert (tmp_path / "a" / f"{split}.parquet").read_bytes() == (tmp_path / "b" / f"{split}.parquet").read_bytes()
    test = pq.read_table(tmp_path / "a" / "test.parquet").to_pylist()
    assert sorted({r["shots"] for r in test}) == [0, 4]
    for row in test:
        assert len(row["demo_ids"]) == row["shots"]
        assert row["id"] not in row["demo_ids"]
        assert all(d.startswith("train-") for d in row["demo_ids"])
        assert row["prompt"].count("### Sentiment:") == row["shots"] + 1
        # Each demonstration's block length: dropping the first j blocks leaves the last shots - j and the query.
        assert len(row["demo_chars"]) == row["shots"]
        query = next(r["prompt"] for r in test if r["id"] == row["id"] and r["shots"] == 0)
        assert len(row["prompt"]) == sum(row["demo_chars"]) + len(query)
        rest = row["prompt"][sum(row["demo_chars"][:1]):]
        assert rest.count("### Sentiment:") == max(row["shots"], 1) and rest.endswith(query)
    train = pq.read_table(tmp_path / "a" / "train.parquet").to_pylist()
    assert {r["shots"] for r in train} == {0}


PAPER_DEMONSTRATIONS = {"selection": "first_k", "split": "test", "include_query": False, "separator": "\n"}


def _rows(path):
    return pq.read_table(path).to_pylist()


def test_first_k_shows_every_query_the_same_first_rows_of_the_named_split(tmp_path):
    """The papers' fixed demonstrations: the first k rows of the eval file itself (Sun & Dredze) joined by one newline;
    a query among them gets the next row in its place."""
    _write_dataset(tmp_path)
    build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / "out", shots=[0, 2, 4], seed=3,
                  demonstrations=PAPER_DEMONSTRATIONS)
    test = _rows(tmp_path / "out" / "test.parquet")
    first = [f"test-{i}" for i in range(5)]
    query = {r["id"]: r["prompt"] for r in test if r["shots"] == 0}
    for row in (r for r in test if r["shots"]):
        expected = [i for i in first if i != row["id"]][:row["shots"]]
        assert row["demo_ids"] == expected
        shown = [render("sentiment", "default", {"text": f"review test {i.split('-')[1]}",
                                                 "target": ["positive", "negative"][int(i.split("-")[1]) % 2]})
                 for i in expected]
        assert row["prompt"] == "".join(p + c + "\n" for p, c in shown) + query[row["id"]]
        assert sum(row["demo_chars"]) + len(query[row["id"]]) == len(row["prompt"])
        assert (row["demonstrations"], row["demo_separator"]) == ("first_k:test", "\n")
    # Every query outside the first rows sees one and the same prompt prefix.
    assert len({r["prompt"][:sum(r["demo_chars"])] for r in test if r["shots"] == 4 and r["id"] not in first}) == 1


def test_first_k_with_include_query_keeps_a_querys_own_solved_example_as_the_papers_code(tmp_path):
    _write_dataset(tmp_path)
    build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / "out", shots=[0, 4], seed=3,
                  demonstrations={**PAPER_DEMONSTRATIONS, "include_query": True})
    test = _rows(tmp_path / "out" / "test.parquet")
    assert {tuple(r["demo_ids"]) for r in test if r["shots"] == 4} == {tuple(f"test-{i}" for i in range(4))}
    own = next(r for r in test if r["id"] == "test-1" and r["shots"] == 4)
    assert "### Input: review test 1\n### Sentiment: negative\n" in own["prompt"]
    assert own["demonstrations"] == "first_k:test:with_query"


def test_first_k_of_a_few_shot_split_as_yang_et_al(tmp_path):
    """Yang et al.: the first k of the released few-shot file (here the validation split), a blank line after each."""
    _write_dataset(tmp_path)
    build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / "out", shots=[0, 2, 4], seed=3,
                  demonstrations={"selection": "first_k", "split": "validation"})
    test = _rows(tmp_path / "out" / "test.parquet")
    for row in (r for r in test if r["shots"]):
        assert row["demo_ids"] == [f"validation-{i}" for i in range(row["shots"])]
        assert row["demo_separator"] == "\n\n" and row["prompt"].count("\n\n") == row["shots"]


def test_the_default_draws_per_query_from_train_as_before(tmp_path):
    _write_dataset(tmp_path)
    build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / "a", shots=[0, 4], seed=3)
    build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / "b", shots=[0, 4], seed=3,
                  demonstrations={"selection": "per_query", "split": "train", "separator": "\n\n"})
    assert (tmp_path / "a" / "test.parquet").read_bytes() == (tmp_path / "b" / "test.parquet").read_bytes()
    pool = [f"train-{i}" for i in range(30)]
    for row in _rows(tmp_path / "a" / "test.parquet"):
        assert row["demo_ids"] == demonstration_ids("reviews", row["id"], pool, 4, 3)[:row["shots"]]
        assert row["demonstrations"] == "per_query:train"


def test_a_demonstration_split_too_small_for_the_shots_is_an_error_naming_the_key(tmp_path):
    _write_dataset(tmp_path)  # validation holds 5 rows
    with pytest.raises(ValueError, match=r"dataset reviews: the validation split \(evaluation.demonstrations.split\) "
                                         r"has 5 examples, too few for the first 6"):
        build_prompts("reviews", "sentiment", "default", tmp_path, tmp_path / "out", shots=[0, 6], seed=3,
                      demonstrations={"selection": "first_k", "split": "validation"})


def test_fticl_prepends_the_same_fixed_demonstrations_to_every_training_example(tmp_path):
    from amuro.formats import build_fticl_prompts

    _write_dataset(tmp_path)
    build_fticl_prompts("reviews", "sentiment", tmp_path, tmp_path / "fticl.parquet", shots=3, seed=3)
    rows = pq.read_table(tmp_path / "fticl.parquet").to_pylist()
    demo_sets = {tuple(r["demo_ids"]) for r in rows}
    assert len(demo_sets) == 1 and len(next(iter(demo_sets))) == 3
    demos = set(next(iter(demo_sets)))
    assert len(rows) == 30 - 3 and not demos & {r["id"] for r in rows}
    first_block = rows[0]["prompt"].rsplit("### Input:", 1)[0]
    for r in rows:
        assert r["prompt"].startswith(first_block)  # identical demonstrations, identical order
        assert r["prompt"].count("### Sentiment:") == 4


def test_fticl_can_take_the_first_validation_rows_and_train_on_every_train_example(tmp_path):
    """Yang et al.'s train_ptune.py: the first `shot` examples of the task's few-shot file (the validation split of
    their study here) before every training example."""
    import json

    from amuro.formats import build_fticl_prompts

    _write_dataset(tmp_path)
    build_fticl_prompts("reviews", "sentiment", tmp_path, tmp_path / "fticl.parquet", shots=2, seed=3,
                        demonstrations="validation_first")
    table = pq.read_table(tmp_path / "fticl.parquet")
    rows = table.to_pylist()
    assert len(rows) == 30 and {tuple(r["demo_ids"]) for r in rows} == {("validation-0", "validation-1")}
    assert rows[0]["prompt"] == ("### Input: review validation 0\n### Sentiment: positive\n\n"
                                 "### Input: review validation 1\n### Sentiment: negative\n\n"
                                 "### Input: review train 0\n### Sentiment:")
    assert json.loads(table.schema.metadata[b"amuro.fticl"]) == {"shots": 2, "demonstrations": "validation_first"}
    build_fticl_prompts("reviews", "sentiment", tmp_path, tmp_path / "sampled.parquet", shots=2, seed=3)
    assert json.loads(pq.read_schema(tmp_path / "sampled.parquet").metadata[b"amuro.fticl"])["demonstrations"] == (
        "sampled")
    with pytest.raises(ValueError, match="the validation split has 5 examples, too few for 6 FTICL demonstrations"):
        build_fticl_prompts("reviews", "sentiment", tmp_path, tmp_path / "x.parquet", shots=6, seed=3,
                            demonstrations="validation_first")


# A dataset's own templates (Yang et al.'s prompt_map.json puts every field on its own line).
YANG_NLI = {"default": "### Input_1:\n{premise}\n### Input_2:\n{hypothesis}\n### Inference:",
            "instruct": "Consider the following texts: Text 1:{premise}\nText 2:{hypothesis}\nThe relation is"}


def test_a_dataset_template_replaces_the_task_template_for_its_formats_only():
    prompt, completion = render("nli", "default", EXAMPLES["nli"], YANG_NLI)
    assert prompt == "### Input_1:\nKuri lives in Rege.\n### Input_2:\nKuri lives in Keva.\n### Inference:"
    assert completion == " no"
    assert render("nli", "io", EXAMPLES["nli"], YANG_NLI) == render("nli", "io", EXAMPLES["nli"])


def test_build_prompts_writes_demonstrations_in_the_dataset_template(tmp_path):
    rows = [{"id": f"e{i}", "premise": f"p{i}", "hypothesis": f"h{i}", "target": "yes"} for i in range(6)]
    for split in ("train", "validation", "test"):
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{split}.parquet")
    build_prompts("d", "nli", "default", tmp_path, tmp_path / "out", [0, 2], seed=0, templates=YANG_NLI)
    test = pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()
    two_shot = next(r for r in test if r["shots"] == 2)
    assert two_shot["prompt"].count("### Input_1:\n") == 3 and two_shot["prompt"].endswith("### Inference:")


@pytest.mark.parametrize("template, message", [
    ("### Input:\n{document}\n### Summary:", r"templates.default': unknown field\(s\) document; a nli template can use "
                                              r"\{premise\}, \{hypothesis\}"),
    ("### {premise!r}", r"templates.default': not a valid template: '\{premise\}' has a format spec"),
    ("no fields at all", r"templates.default': uses none of the example's fields"),
])
def test_a_bad_dataset_template_is_refused_at_config_load_naming_the_key(template, message):
    from amuro.config import ConfigError, validate_config

    config = {"models": {"m": {"source": "miniworld"}},
              "datasets": {"rte": {"task": "nli", "labels": ["entailment", "neutral"],
                                   "source": {"type": "miniworld", "name": "x"}, "templates": {"default": template}}}}
    with pytest.raises(ConfigError, match=r"key 'datasets.rte." + message):
        validate_config(config)
