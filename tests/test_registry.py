import json

import pyarrow.parquet as pq
import pytest

from amuro.config import validate_config
from amuro.registry import DatasetError, prepare_dataset


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
