import json

import pyarrow.parquet as pq
import pytest

from amuro.config import ConfigError, validate_config
from amuro.data import DatasetError, prepare_dataset


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _spec(tmp_path, **extra):
    dataset = {"task": "nli", "labels": ["entailment", "neutral", "contradiction"],
               "source": {"type": "local", "files": {"train": str(tmp_path / "train.jsonl"),
                                                     "test": str(tmp_path / "test.jsonl")}},
               "fields": {"premise": "sentence_a", "hypothesis": "sentence_b", "target": "gold"}, **extra}
    config = validate_config({"models": {"m": {"source": "miniworld"}}, "datasets": {"nli_local": dataset}})
    return config["datasets"]["nli_local"]


def _nli_rows(n, prefix):
    return [{"sentence_a": f"{prefix} premise {i}", "sentence_b": f"hypothesis {i}", "gold": i % 3} for i in range(n)]


def test_local_files_become_canonical_parquet(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", _nli_rows(40, "train"))
    _write_jsonl(tmp_path / "test.jsonl", _nli_rows(9, "test") + [{"sentence_a": "x", "sentence_b": "y", "gold": -1}])
    prepare_dataset("nli_local", _spec(tmp_path), seed=1, out_dir=tmp_path / "out")
    test = pq.read_table(tmp_path / "out" / "test.parquet")
    assert test.column_names == ["id", "premise", "hypothesis", "target"]
    rows = test.to_pylist()
    assert len(rows) == 9  # the unlabelled row (-1) is dropped
    assert rows[0] == {"id": "nli_local-test-000000", "premise": "test premise 0", "hypothesis": "hypothesis 0",
                       "target": "entailment"}
    assert rows[2]["target"] == "contradiction"
    # no validation file: one is held out of train, disjoint from what stays in train
    train = {r["id"] for r in pq.read_table(tmp_path / "out" / "train.parquet").to_pylist()}
    validation = {r["id"] for r in pq.read_table(tmp_path / "out" / "validation.parquet").to_pylist()}
    assert validation and not train & validation and len(train | validation) == 40


def test_sampling_is_seeded_and_keeps_order(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", _nli_rows(100, "train"))
    _write_jsonl(tmp_path / "test.jsonl", _nli_rows(50, "test"))
    spec = _spec(tmp_path, sample={"train": 10, "validation": 5, "test": 20})
    for out in ("a", "b"):
        prepare_dataset("nli_local", spec, seed=3, out_dir=tmp_path / out)
        assert pq.read_table(tmp_path / out / "test.parquet").num_rows == 20
    assert (tmp_path / "a" / "train.parquet").read_bytes() == (tmp_path / "b" / "train.parquet").read_bytes()
    ids = pq.read_table(tmp_path / "a" / "test.parquet").column("id").to_pylist()
    assert ids == sorted(ids)


def test_sampling_first_keeps_the_first_rows_of_the_source_before_any_is_dropped(tmp_path):
    """Yang et al.'s evaluate_cross.py scores prompt_lst[0:250] of each test file, unlabelled rows included."""
    test_rows = _nli_rows(12, "test")
    test_rows[2]["gold"] = -1  # dropped (drop_labels), counted, not replaced by row 5
    _write_jsonl(tmp_path / "train.jsonl", _nli_rows(40, "train"))
    _write_jsonl(tmp_path / "test.jsonl", test_rows)
    prepare_dataset("nli_local", _spec(tmp_path, sample={"test": 5}, sampling="first"), seed=3, out_dir=tmp_path / "out")
    test = pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()
    assert [r["premise"] for r in test] == ["test premise 0", "test premise 1", "test premise 3", "test premise 4"]
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["sampling"] == "first"
    assert meta["splits"]["test"] == {"source_rows": 12, "raw_rows": 5, "kept": 4, "written": 4,
                                      "dropped": {"label -1 (drop_labels)": 1}}
    prepare_dataset("nli_local", _spec(tmp_path, sample={"test": 5}), seed=3, out_dir=tmp_path / "random")
    assert json.loads((tmp_path / "random" / "meta.json").read_text())["sampling"] == "random"
    assert pq.read_table(tmp_path / "random" / "test.parquet").num_rows == 5  # five of the rows kept


def test_missing_column_names_dataset_split_and_column(tmp_path):
    rows = [{"premise": "a", "sentence_b": "b", "gold": 0}] * 3
    _write_jsonl(tmp_path / "train.jsonl", rows)
    _write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(DatasetError, match=r"dataset nli_local, split train: column\(s\) 'sentence_a' for field\(s\) premise"):
        prepare_dataset("nli_local", _spec(tmp_path), seed=1, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unknown_label_names_the_row(tmp_path):
    rows = _nli_rows(5, "train")
    rows[3]["gold"] = "sometimes"
    _write_jsonl(tmp_path / "train.jsonl", rows)
    _write_jsonl(tmp_path / "test.jsonl", _nli_rows(3, "test"))
    with pytest.raises(DatasetError, match=r"split train, row 3: label 'sometimes'"):
        prepare_dataset("nli_local", _spec(tmp_path), seed=1, out_dir=tmp_path / "out")


def test_label_map_verbalises_string_labels(tmp_path):
    rows = [{"sentence_a": f"p{i}", "sentence_b": "h", "gold": ["entails", "not_entails"][i % 2]} for i in range(6)]
    _write_jsonl(tmp_path / "train.jsonl", rows)
    _write_jsonl(tmp_path / "test.jsonl", rows)
    spec = _spec(tmp_path, labels=["yes", "no"], label_map={"entails": "yes", "not_entails": "no"})
    prepare_dataset("nli_local", spec, seed=1, out_dir=tmp_path / "out")
    assert pq.read_table(tmp_path / "out" / "test.parquet").column("target").to_pylist() == ["yes", "no"] * 3


# ----------------------------------------------------------------- field mappings, in the real datasets' layouts

def _dataset(task, source_files, **extra):
    config = validate_config({"models": {"m": {"source": "miniworld"}},
                              "datasets": {"d": {"task": task, "source": {"type": "local", "files": source_files},
                                                 **extra}}})
    return config["datasets"]["d"]


def _prepare(tmp_path, task, train_rows, test_rows, suffix=".jsonl", **extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, rows in (("train", train_rows), ("test", test_rows)):
        path = tmp_path / f"{split}{suffix}"
        if suffix == ".jsonl":
            _write_jsonl(path, rows)
        elif suffix == ".json":
            path.write_text(json.dumps(rows))
        elif suffix == ".csv":
            import csv

            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        else:
            import pyarrow as pa

            pq.write_table(pa.Table.from_pylist(rows), path)
        files[split] = str(path)
    spec = _dataset(task, files, **extra)
    prepare_dataset("d", spec, seed=1, out_dir=tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    return pq.read_table(tmp_path / "out" / "test.parquet").to_pylist(), meta


SOCIALIQA = [  # allenai/social_i_qa's columns; label "1" / "2" / "3" names the correct answer
    {"context": f"Tracy went shopping {i}.", "question": f"Why did Tracy go {i}?", "answerA": "to buy food",
     "answerB": "to sleep", "answerC": "to swim", "label": str(i % 3 + 1)} for i in range(6)]


def test_socialiqa_answer_is_the_column_its_label_names(tmp_path):
    rows, _ = _prepare(tmp_path, "question_generation", SOCIALIQA, SOCIALIQA, fields={
        "context": "context", "target": "question",
        "answer": {"by": "label", "columns": {"1": "answerA", "2": "answerB", "3": "answerC"}}})
    assert [r["answer"] for r in rows] == ["to buy food", "to sleep", "to swim"] * 2


def test_a_label_naming_no_column_is_refused_with_the_row(tmp_path):
    bad = [dict(r) for r in SOCIALIQA]
    bad[4]["label"] = "4"
    with pytest.raises(DatasetError, match=r"split train, row 4: column 'label' is '4', which names none of the columns"):
        _prepare(tmp_path, "question_generation", bad, SOCIALIQA, fields={
            "context": "context", "target": "question",
            "answer": {"by": "label", "columns": {"1": "answerA", "2": "answerB", "3": "answerC"}}})


# The paper's socialiqa prompt lists all three candidates (format_generalization.py, process_socialiqa).
CANDIDATES = {"template": "Answer A: {answerA} Answer B: {answerB}Answer C: {answerC}"}


def test_a_field_template_writes_several_columns_into_one_field_and_into_the_prompt(tmp_path):
    from amuro.formats import build_prompts

    _, meta = _prepare(tmp_path, "question_generation", SOCIALIQA, SOCIALIQA,
                       fields={"context": "context", "target": "question", "answer": CANDIDATES})
    test = pq.read_table(tmp_path / "out" / "test.parquet").to_pylist()
    assert test[0]["answer"] == "Answer A: to buy food Answer B: to sleepAnswer C: to swim"
    assert meta["fields"]["answer"] == CANDIDATES  # the data file records how its fields were made
    build_prompts("d", "question_generation", "default", tmp_path / "out", tmp_path / "prompts", [0], seed=0)
    prompt = pq.read_table(tmp_path / "prompts" / "test.parquet").to_pylist()[0]["prompt"]
    assert prompt == ("### Input: Tracy went shopping 0.\n"
                      "### Answer: Answer A: to buy food Answer B: to sleepAnswer C: to swim\n### Question:")


def test_a_null_in_a_template_column_makes_the_row_missing(tmp_path):
    rows = [dict(r) for r in SOCIALIQA]
    rows[1]["answerB"] = None
    test, meta = _prepare(tmp_path, "question_generation", SOCIALIQA, rows,
                          fields={"context": "context", "target": "question", "answer": CANDIDATES})
    assert len(test) == 5 and meta["splits"]["test"]["dropped"] == {"missing input or target (null)": 1}


def test_a_template_column_missing_from_the_data_names_the_column_and_field(tmp_path):
    with pytest.raises(DatasetError, match=r"column\(s\) 'answerD' for field\(s\) answer not found"):
        _prepare(tmp_path, "question_generation", SOCIALIQA, SOCIALIQA, fields={
            "context": "context", "target": "question", "answer": {"template": "A: {answerA} D: {answerD}"}})


@pytest.mark.parametrize("template, message", [
    ("Answer A: {} Answer B: {answerB}", r"not a valid template: '\{\}' is not a field name"),
    ("Answer A: {0}", r"not a valid template: '\{0\}' is not a field name"),
    ("Answer A: {answerA!r}", r"not a valid template: '\{answerA\}' has a format spec"),
    ("Answer A: {answer.text}", r"not a valid template: '\{answer.text\}' is not a field name"),
    ("Answer A: {answerA", r"not a valid template"),
    ("no column here", r"names no column"),
])
def test_a_bad_field_template_is_refused_at_config_load_naming_the_key(template, message):
    with pytest.raises(ConfigError, match=r"key 'datasets.d.fields.answer.template': " + message):
        _dataset("question_generation", {"train": "t.jsonl", "test": "t.jsonl"},
                 fields={"context": "context", "target": "question", "answer": {"template": template}})


def test_a_field_template_beside_other_rule_keys_is_refused_at_config_load():
    with pytest.raises(ConfigError, match=r"key 'datasets.d.fields.answer'"):
        _dataset("question_generation", {"train": "t.jsonl", "test": "t.jsonl"},
                 fields={"answer": {"template": "{answerA}", "column": "answerA"}})


TWEETQA = [  # ucsbnlp/tweet_qa's columns; Answer is a list of strings
    {"Tweet": f"tweet {i}", "Question": f"who {i}?", "Answer": ["Obama", "Barack Obama"], "qid": f"q{i}"}
    for i in range(4)]


def test_tweetqa_answer_list_gives_its_first_element_or_is_joined(tmp_path):
    rows, _ = _prepare(tmp_path / "a", "question_generation", TWEETQA, TWEETQA, fields={
        "context": "Tweet", "target": "Question", "id": "qid", "answer": {"column": "Answer", "index": 0}})
    assert rows[0] == {"id": "q0", "context": "tweet 0", "answer": "Obama", "target": "who 0?"}
    rows, _ = _prepare(tmp_path / "b", "question_generation", TWEETQA, TWEETQA, fields={
        "context": "Tweet", "target": "Question", "id": "qid", "answer": {"column": "Answer", "join": " / "}})
    assert rows[0]["answer"] == "Obama / Barack Obama"


def test_a_list_column_without_index_or_join_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"split train, row 0: the value is a list .*index: 0.*join"):
        _prepare(tmp_path, "question_generation", TWEETQA, TWEETQA,
                 fields={"context": "Tweet", "target": "Question", "id": "qid", "answer": "Answer"})


STSB = [  # nyu-mll/glue stsb's columns; label is a float similarity score in [0, 5]
    {"sentence1": f"a {i}", "sentence2": f"b {i}", "label": score, "idx": i}
    for i, score in enumerate([0.0, 3.5, 3.6, 5.0, 2.2])]


def test_stsb_score_is_a_paraphrase_label_by_threshold(tmp_path):
    rows, _ = _prepare(tmp_path, "paraphrase", STSB, STSB, labels=["no", "yes"], fields={"id": "idx", "target": "label"},
                       label_threshold={"value": 3.5, "above": "yes", "at_or_below": "no"})
    assert [r["target"] for r in rows] == ["no", "no", "yes", "yes", "no"]


def test_a_threshold_word_outside_the_labels_is_refused_at_config_load(tmp_path):
    with pytest.raises(ConfigError, match=r"datasets.d.label_threshold.above': 'similar' is not one of the labels"):
        _dataset("paraphrase", {"train": "t.jsonl", "test": "t.jsonl"}, labels=["no", "yes"],
                 label_threshold={"value": 3.5, "above": "similar", "at_or_below": "no"})


MNLI_RAW = [  # MNLI as distributed (multinli_1.0 jsonl): gold_label "-" where annotators did not agree
    {"pairID": f"p{i}", "sentence1": f"premise {i}", "sentence2": f"hypothesis {i}", "gold_label": g}
    for i, g in enumerate(["entailment", "-", "neutral", "contradiction", "-", "entailment"])]


def test_listed_labels_are_dropped_and_counted(tmp_path):
    rows, meta = _prepare(tmp_path, "nli", MNLI_RAW, MNLI_RAW, labels=["entailment", "neutral", "contradiction"],
                          fields={"premise": "sentence1", "hypothesis": "sentence2", "target": "gold_label",
                                  "id": "pairID"}, drop_labels=["-"])
    assert [r["id"] for r in rows] == ["p0", "p2", "p3", "p5"]
    assert meta["splits"]["test"]["dropped"] == {"label '-' (drop_labels)": 2}
    assert meta["splits"]["test"]["raw_rows"] == 6 and meta["splits"]["test"]["written"] == 4


def test_an_unlisted_label_outside_the_label_set_is_refused_with_the_row(tmp_path):
    with pytest.raises(DatasetError, match=r"split train, row 1: label '-' is neither one of .* drop_labels"):
        _prepare(tmp_path, "nli", MNLI_RAW, MNLI_RAW, labels=["entailment", "neutral", "contradiction"],
                 fields={"premise": "sentence1", "hypothesis": "sentence2", "target": "gold_label", "id": "pairID"})


YANG_NLI = [  # Yang et al.'s released files (data/inference/*.json): a top-level JSON list
    {"input_1": f"premise {i}", "input_2": f"hypothesis {i}", "output": ["entailment", "neutral"][i % 2], "idx": i}
    for i in range(6)]


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_local_files_of_every_format_load_and_are_hashed(tmp_path, suffix):
    rows, meta = _prepare(tmp_path, "nli", YANG_NLI, YANG_NLI, suffix=suffix,
                          labels=["entailment", "neutral", "contradiction"],
                          fields={"premise": "input_1", "hypothesis": "input_2", "target": "output", "id": "idx"})
    assert rows[1] == {"id": "1", "premise": "premise 1", "hypothesis": "hypothesis 1", "target": "neutral"}
    from amuro.hashing import sha256

    assert meta["source"]["files"]["test"]["sha256"] == sha256(tmp_path / f"test{suffix}")


def test_a_local_file_whose_sha256_differs_from_the_pinned_one_is_named(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps(YANG_NLI))
    (tmp_path / "test.json").write_text(json.dumps(YANG_NLI))
    from amuro.hashing import sha256

    files = {"train": str(tmp_path / "train.json"), "test": str(tmp_path / "test.json")}
    good = _dataset("nli", files, labels=["entailment", "neutral", "contradiction"],
                    fields={"premise": "input_1", "hypothesis": "input_2", "target": "output"})
    good["source"]["sha256"] = {"train": sha256(tmp_path / "train.json"), "test": sha256(tmp_path / "test.json")}
    prepare_dataset("d", good, seed=1, out_dir=tmp_path / "out")
    good["source"]["sha256"]["test"] = "0" * 64
    with pytest.raises(DatasetError, match=r"split test: file .*test.json has sha256 \w+, but the config expects 0{64}"):
        prepare_dataset("d", good, seed=1, out_dir=tmp_path / "out2")


def test_a_json_list_with_a_non_object_item_names_the_item(tmp_path):
    with pytest.raises(DatasetError, match=r"item 2 of the top-level list is not an object"):
        _prepare(tmp_path, "nli", YANG_NLI[:2] + ["oops"], YANG_NLI, suffix=".json",
                 labels=["entailment", "neutral", "contradiction"],
                 fields={"premise": "input_1", "hypothesis": "input_2", "target": "output"})


def test_a_parquet_export_without_config_metadata_loads_its_splits_by_directory(tmp_path):
    """EdinburghNLP/xsum and allenai/social_i_qa at refs/convert/parquet: default/{split}/0000.parquet, no README."""
    import pyarrow as pa

    from amuro.data import load_split

    for split, n in (("train", 20), ("validation", 5), ("test", 7)):
        (tmp_path / "default" / split).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist([{"id": f"{split}{i}", "document": "d", "summary": "s"} for i in range(n)]),
                       tmp_path / "default" / split / "0000.parquet")
    source = {"type": "hub", "path": "EdinburghNLP/xsum", "name": None, "revision": "refs/convert/parquet",
              "splits": {"train": "train[:-3]", "validation": "train[-3:]", "test": "test"}}
    sizes = {s: len(load_split("xsum", source, s, hub_dir=tmp_path)) for s in ("train", "validation", "test")}
    assert sizes == {"train": 17, "validation": 3, "test": 7}
