"""The download stage and the offline jobs after it, through the real huggingface_hub code: refs listed over HTTP
from a local stand-in of the hub, files served from an HF cache laid out as the client writes it, every other job
under HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1."""

import json
from pathlib import Path

import pytest
import torch
from transformers import OlmoConfig, OlmoForCausalLM

from amuro.downloads import DownloadError, branch_for_step
from amuro.hashing import sha256
from hf_fixtures import RefsServer, amuro_env, cache_repo, run_amuro

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLMO_BRANCHES = ["main", "step1000-tokens4B", "step10-tokens41B", "step18000-tokens75B", "step20000-tokens83B"]


@pytest.fixture(scope="module")
def tiny_model_files(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    OlmoForCausalLM(OlmoConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(d)
    return {p.name: p.read_bytes() for p in d.iterdir()}


def test_a_step_resolves_to_the_olmo_branch_that_carries_it():
    assert branch_for_step("allenai/OLMo-1B-hf", 18000, OLMO_BRANCHES) == "step18000-tokens75B"
    assert branch_for_step("allenai/OLMo-1B-hf", 10, OLMO_BRANCHES) == "step10-tokens41B"


def test_a_pythia_step_is_its_own_branch_and_not_a_prefix_of_another():
    branches = ["main", "step1", "step1000", "step10000", "step143000"]
    assert branch_for_step("EleutherAI/pythia-160m", 1000, branches) == "step1000"
    assert branch_for_step("EleutherAI/pythia-160m", 1, branches) == "step1"


def test_a_missing_step_fails_with_the_nearest_branches():
    with pytest.raises(DownloadError, match=r"no branch for step 19000; the nearest are step1000-tokens4B, "
                                            r"step18000-tokens75B, step20000-tokens83B"):
        branch_for_step("allenai/OLMo-1B-hf", 19000, OLMO_BRANCHES)


def test_download_lists_the_refs_resolves_the_step_and_records_commit_and_hashes(tiny_model_files, tmp_path):
    cache = tmp_path / "hub"
    cache_repo(cache, "model", "allenai/OLMo-1B-hf", COMMIT, tiny_model_files, refs=["step18000-tokens75B"])
    record = tmp_path / "downloads" / "step18000.json"
    with RefsServer({"allenai/OLMo-1B-hf": OLMO_BRANCHES}) as hub:
        run = run_amuro(["download-checkpoint", "--model", "olmo1b", "--spec", '{"repo": "allenai/OLMo-1B-hf"}',
                         "--entry", '{"step": 18000}', "--out", str(record)],
                        amuro_env(cache, offline=False, endpoint=hub.url))
    assert run.returncode == 0, run.stderr
    assert "GET /api/models/allenai/OLMo-1B-hf/refs" in hub.requests
    rec = json.loads(record.read_text())
    assert rec["revision"] == "step18000-tokens75B" and rec["commit"] == COMMIT and rec["requested"] == {"step": 18000}
    assert set(rec["files"]) == set(tiny_model_files) and all(len(h) == 64 for h in rec["files"].values())


def fetch_step_18000(tiny_model_files, tmp_path, branch: str) -> Path:
    """The checkpoint {step: 18000} of a repository whose branch for it is `branch`, downloaded and fetched."""
    cache = tmp_path / "hub"
    cache_repo(cache, "model", "allenai/OLMo-1B-hf", COMMIT, tiny_model_files, refs=[branch])
    record, out = tmp_path / "downloads" / "step18000.json", tmp_path / "results" / "olmo1b" / "step18000"
    with RefsServer({"allenai/OLMo-1B-hf": ["main", branch]}) as hub:
        run = run_amuro(["download-checkpoint", "--model", "olmo1b", "--spec", '{"repo": "allenai/OLMo-1B-hf"}',
                         "--entry", '{"step": 18000}', "--out", str(record)],
                        amuro_env(cache, offline=False, endpoint=hub.url))
    assert run.returncode == 0, run.stderr
    run = run_amuro(["fetch-checkpoint", "--model", "olmo1b", "--spec", '{"source": "hub", "repo": "allenai/OLMo-1B-hf"}',
                     "--checkpoint", "step18000", "--out", str(out), "--download", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    return out


def test_a_step_checkpoint_records_its_configured_step_whatever_its_branch_is_called(tiny_model_files, tmp_path):
    resolved = json.loads((fetch_step_18000(tiny_model_files, tmp_path, "step18000-unsharded")
                           / "resolved.json").read_text())
    assert (resolved["revision"], resolved["step"], resolved["tokens"]) == ("step18000-unsharded", 18000, None)


def test_a_step_checkpoint_reused_by_another_study_keeps_the_token_count_its_branch_gave(tiny_model_files, tmp_path):
    fetched = fetch_step_18000(tiny_model_files, tmp_path, "step18000-tokens75B")
    out = tmp_path / "other" / "reused" / "step18000"
    run = run_amuro(["fetch-checkpoint", "--model", "reused", "--spec",
                     json.dumps({"source": "local", "path": str(fetched.parent)}), "--checkpoint", "step18000",
                     "--out", str(out)], amuro_env(tmp_path / "hub"))
    assert run.returncode == 0, run.stderr
    resolved = json.loads((out / "resolved.json").read_text())
    assert (resolved["step"], resolved["tokens"]) == (18000, 75 * 10**9)


def test_download_of_a_missing_step_names_the_nearest(tmp_path):
    with RefsServer({"allenai/OLMo-1B-hf": OLMO_BRANCHES}) as hub:
        run = run_amuro(["download-checkpoint", "--model", "olmo1b", "--spec", '{"repo": "allenai/OLMo-1B-hf"}',
                         "--entry", '{"step": 19000}', "--out", str(tmp_path / "r.json")],
                        amuro_env(tmp_path / "hub", offline=False, endpoint=hub.url))
    assert run.returncode != 0
    assert "no branch for step 19000; the nearest are" in run.stderr and "step18000-tokens75B" in run.stderr
    assert not (tmp_path / "r.json").exists()


def _downloaded_checkpoint(tiny_model_files, tmp_path):
    cache = tmp_path / "hub"
    cache_repo(cache, "model", "allenai/OLMo-1B-hf", COMMIT, tiny_model_files, refs=["step10-tokens41B"])
    record = tmp_path / "record.json"
    # The download stage under the offline variables still works when the files are cached (as on a re-run).
    run = run_amuro(["download-checkpoint", "--model", "olmo1b", "--spec", '{"repo": "allenai/OLMo-1B-hf"}',
                     "--entry", '"step10-tokens41B"', "--out", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    return cache, record


def test_fetch_reads_the_recorded_commit_offline_and_resolved_json_keeps_it(tiny_model_files, tmp_path):
    cache, record = _downloaded_checkpoint(tiny_model_files, tmp_path)
    out = tmp_path / "results" / "step10-tokens41B"
    run = run_amuro(["fetch-checkpoint", "--model", "olmo1b", "--spec", '{"source": "hub", "repo": "allenai/OLMo-1B-hf"}',
                     "--checkpoint", "step10-tokens41B", "--out", str(out), "--download", str(record)],
                    amuro_env(cache))
    assert run.returncode == 0, run.stderr
    resolved = json.loads((out / "resolved.json").read_text())
    assert resolved["commit"] == COMMIT and resolved["revision"] == "step10-tokens41B"
    assert resolved["tokens"] == 41 * 10**9
    assert resolved["files"] == json.loads(record.read_text())["files"]
    assert run_amuro(["verify-model", str(out)], amuro_env(cache)).returncode == 0


def test_a_cache_file_changed_after_download_stops_the_fetch_naming_it(tiny_model_files, tmp_path):
    cache, record = _downloaded_checkpoint(tiny_model_files, tmp_path)
    (cache / "models--allenai--OLMo-1B-hf" / "snapshots" / COMMIT / "config.json").write_text("{}")
    run = run_amuro(["fetch-checkpoint", "--model", "olmo1b", "--spec", '{"source": "hub", "repo": "allenai/OLMo-1B-hf"}',
                     "--checkpoint", "step10-tokens41B", "--out", str(tmp_path / "out"), "--download", str(record)],
                    amuro_env(cache))
    assert run.returncode != 0
    assert "file config.json in the HF cache has sha256" in run.stderr
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_missing_from_the_cache_says_what_and_how_to_fetch_it(tiny_model_files, tmp_path):
    _, record = _downloaded_checkpoint(tiny_model_files, tmp_path)
    empty = tmp_path / "other-cache"
    run = run_amuro(["fetch-checkpoint", "--model", "olmo1b", "--spec", '{"source": "hub", "repo": "allenai/OLMo-1B-hf"}',
                     "--checkpoint", "step10-tokens41B", "--out", str(tmp_path / "out"), "--download", str(record)],
                    amuro_env(empty))
    assert run.returncode != 0
    message = run.stderr.strip().splitlines()[-1]
    assert f"allenai/OLMo-1B-hf at commit {COMMIT} (revision step10-tokens41B) is not in the HF cache {empty}" in message
    assert "snakemake download" in message


def test_every_stage_but_downloads_runs_offline(tmp_path):
    probe = ("import os, sys; from amuro import cli; "
             "sys.argv=['amuro','verify-model','/nonexistent']; "
             "import amuro.checkpoints as c; c.verify_model=lambda model_dir: print(os.environ.get('HF_HUB_OFFLINE'), "
             "os.environ.get('HF_DATASETS_OFFLINE')); cli.main()")
    import subprocess
    import sys

    env = amuro_env(tmp_path / "hub", offline=False)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "1"], out.stderr


# ----------------------------------------------------------------------------------------------------------- datasets
from hf_fixtures import parquet_bytes, readme_with_configs  # noqa: E402

DATA_COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def _xlsum_export(cache):
    """csebuetnlp/xlsum's parquet export: one directory per language, no config metadata (no README)."""
    files = {}
    for lang in ("english", "hindi"):
        for split, n in (("train", 30), ("validation", 5), ("test", 8)):
            rows = [{"id": f"{lang}-{split}-{i}", "url": "u", "title": "t", "summary": f"{lang} summary {i}",
                     "text": f"{lang} text {i}"} for i in range(n)]
            files[f"{lang}/{split}/0000.parquet"] = parquet_bytes(rows)
    cache_repo(cache, "dataset", "csebuetnlp/xlsum", DATA_COMMIT, files, refs=["refs/convert/parquet"])


XLSUM = {"task": "summarization", "fields": {"document": "text", "target": "summary", "id": "id"},
         "source": {"type": "hub", "path": "csebuetnlp/xlsum", "name": None, "revision": "refs/convert/parquet",
                    "data_dir": "english", "data_files": None,
                    "splits": {"train": "train", "validation": "validation", "test": "test"}},
         "labels": None, "label_map": {}, "drop_labels": [-1], "templates": {},
         "sample": {"train": None, "validation": None, "test": None}}


def _spec(spec):
    return {k: v for k, v in spec.items() if v is not None}


def test_xlsum_english_is_read_from_its_parquet_export_with_data_dir(tmp_path):
    cache = tmp_path / "hub"
    _xlsum_export(cache)
    record = tmp_path / "downloads" / "xlsum.json"
    run = run_amuro(["download-dataset", "--dataset", "xlsum", "--spec", json.dumps(_spec(XLSUM)),
                     "--out", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    rec = json.loads(record.read_text())
    assert rec["commit"] == DATA_COMMIT and rec["revision"] == "refs/convert/parquet"
    assert rec["patterns"] == ["README.md", "english/**"] and sorted(rec["files"]) == [
        "english/test/0000.parquet", "english/train/0000.parquet", "english/validation/0000.parquet"]
    run = run_amuro(["prepare-dataset", "--dataset", "xlsum", "--spec", json.dumps(_spec(XLSUM)), "--seed", "1",
                     "--out-dir", str(tmp_path / "data"), "--download", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    import pyarrow.parquet as pq

    test = pq.read_table(tmp_path / "data" / "test.parquet").to_pylist()
    assert len(test) == 8 and all(r["id"].startswith("english-test") for r in test)
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["source"] == {"type": "hub", "path": "csebuetnlp/xlsum", "revision": "refs/convert/parquet",
                              "commit": DATA_COMMIT, "name": None, "data_dir": "english"}


def _glue(cache):
    """nyu-mll/glue's layout: one directory per config, configs declared in the README; MNLI test labels are -1."""
    configs, files = [], {}
    for config, splits in (("mnli", ("train", "validation_matched", "test_matched")), ("rte", ("train", "validation"))):
        configs.append({"config_name": config, "data_files": [
            {"split": s, "path": f"{config}/{s}-*"} for s in splits]})
        for s in splits:
            rows = [{"premise": f"{config} {s} p{i}", "hypothesis": f"h{i}",
                     "label": -1 if s.startswith("test") else i % 3 if config == "mnli" else i % 2, "idx": i}
                    for i in range(12)]
            files[f"{config}/{s}-00000-of-00001.parquet"] = parquet_bytes(rows)
    files["README.md"] = readme_with_configs(configs)
    cache_repo(cache, "dataset", "nyu-mll/glue", DATA_COMMIT, files)


MNLI = {"task": "nli", "labels": ["entailment", "neutral", "contradiction"],
        "fields": {"premise": "premise", "hypothesis": "hypothesis", "target": "label", "id": "idx"},
        "source": {"type": "hub", "path": "nyu-mll/glue", "name": "mnli",
                   "splits": {"train": "train", "validation": "validation_matched", "test": "test_matched"}}}


def test_a_config_named_in_the_readme_fetches_only_its_files_and_unlabelled_rows_are_counted(tmp_path):
    from amuro.config import validate_config

    spec = validate_config({"models": {"m": {"source": "miniworld"}}, "datasets": {"mnli": MNLI}})["datasets"]["mnli"]
    cache = tmp_path / "hub"
    _glue(cache)
    record = tmp_path / "mnli.json"
    run = run_amuro(["download-dataset", "--dataset", "mnli", "--spec", json.dumps(spec), "--out", str(record)],
                    amuro_env(cache))
    assert run.returncode == 0, run.stderr
    assert all(f.startswith("mnli/") or f == "README.md" for f in json.loads(record.read_text())["files"])
    run = run_amuro(["prepare-dataset", "--dataset", "mnli", "--spec", json.dumps(spec), "--seed", "1",
                     "--out-dir", str(tmp_path / "data"), "--download", str(record)], amuro_env(cache))
    # Every test label is GLUE's hidden -1: dropped by the listed rule, counted, and the empty split refused.
    assert run.returncode != 0 and "dataset mnli, split test: no examples left" in run.stderr
    spec["source"]["splits"]["test"] = "validation_matched"
    run = run_amuro(["prepare-dataset", "--dataset", "mnli", "--spec", json.dumps(spec), "--seed", "1",
                     "--out-dir", str(tmp_path / "data"), "--download", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    meta = json.loads((tmp_path / "data" / "meta.json").read_text())
    assert meta["source"]["commit"] == DATA_COMMIT and meta["source"]["name"] == "mnli"
    assert meta["splits"]["test"]["written"] == 12


def test_a_dataset_missing_from_the_cache_says_what_and_how_to_fetch_it(tmp_path):
    cache = tmp_path / "hub"
    _xlsum_export(cache)
    record = tmp_path / "xlsum.json"
    assert run_amuro(["download-dataset", "--dataset", "xlsum", "--spec", json.dumps(_spec(XLSUM)),
                      "--out", str(record)], amuro_env(cache)).returncode == 0
    run = run_amuro(["prepare-dataset", "--dataset", "xlsum", "--spec", json.dumps(_spec(XLSUM)), "--seed", "1",
                     "--out-dir", str(tmp_path / "data"), "--download", str(record)], amuro_env(tmp_path / "empty"))
    assert run.returncode != 0
    assert (f"dataset xlsum: csebuetnlp/xlsum at commit {DATA_COMMIT} (revision refs/convert/parquet) is not in the "
            f"HF cache") in run.stderr and "results/downloads/datasets/xlsum.json" in run.stderr


def test_a_dataset_file_changed_after_download_is_named(tmp_path):
    cache = tmp_path / "hub"
    _xlsum_export(cache)
    record = tmp_path / "xlsum.json"
    assert run_amuro(["download-dataset", "--dataset", "xlsum", "--spec", json.dumps(_spec(XLSUM)),
                      "--out", str(record)], amuro_env(cache)).returncode == 0
    changed = cache / "datasets--csebuetnlp--xlsum" / "snapshots" / DATA_COMMIT / "english/test/0000.parquet"
    changed.write_bytes(parquet_bytes([{"id": "x", "url": "", "title": "", "summary": "s", "text": "t"}]))
    run = run_amuro(["prepare-dataset", "--dataset", "xlsum", "--spec", json.dumps(_spec(XLSUM)), "--seed", "1",
                     "--out-dir", str(tmp_path / "data"), "--download", str(record)], amuro_env(cache))
    assert run.returncode != 0 and "file english/test/0000.parquet has sha256" in run.stderr


# ------------------------------------------------------------------------------------------ lm-eval benchmark data
ARC_COMMIT = "210d026faf9955653af8916fad021475a3f00453"


def _ai2_arc(cache):
    """allenai/ai2_arc's layout: one directory per config, declared in the README, as lm-eval's arc_easy reads it."""
    configs, files = [], {}
    for config in ("ARC-Easy", "ARC-Challenge"):
        configs.append({"config_name": config, "data_files": [
            {"split": s, "path": f"{config}/{s}-*"} for s in ("train", "validation", "test")]})
        for split, n in (("train", 6), ("validation", 3), ("test", 5)):
            rows = [{"id": f"{config}-{split}-{i}", "question": f"{config} question {i}?",
                     "choices": {"text": ["red", "blue", "green", "grey"], "label": ["A", "B", "C", "D"]},
                     "answerKey": "ABCD"[i % 4]} for i in range(n)]
            files[f"{config}/{split}-00000-of-00001.parquet"] = parquet_bytes(rows)
    files["README.md"] = readme_with_configs(configs)
    cache_repo(cache, "dataset", "allenai/ai2_arc", ARC_COMMIT, files)


def test_an_lm_eval_task_reads_its_recorded_dataset_from_the_cache_offline(tmp_path):
    from conftest import write_tiny_olmo

    cache = tmp_path / "hub"
    _ai2_arc(cache)
    record = tmp_path / "downloads" / "arc_easy.json"
    run = run_amuro(["download-benchmark", "--benchmark", "arc_easy", "--task", "arc_easy", "--out", str(record)],
                    amuro_env(cache))
    assert run.returncode == 0, run.stderr
    rec = json.loads(record.read_text())
    assert rec["repo"] == "allenai/ai2_arc" and rec["commit"] == ARC_COMMIT and rec["dataset_name"] == "ARC-Easy"
    assert sorted(rec["files"]) == ["ARC-Easy/test-00000-of-00001.parquet", "ARC-Easy/train-00000-of-00001.parquet",
                                    "ARC-Easy/validation-00000-of-00001.parquet", "README.md"]
    model = write_tiny_olmo(tmp_path / "model", ["Question: what colour? Answer: red"] * 4, max_positions=128)
    # The record the benchmark job checks the model against, as a fetched checkpoint has it.
    (model / "resolved.json").write_text(json.dumps({"files": {p.name: sha256(p) for p in model.iterdir()}}))
    out = tmp_path / "arc_easy" / "1shot.parquet"
    plan = [{"benchmark": "arc_easy", "task": "arc_easy", "shots": 1, "output": str(out), "download": str(record)}]
    meta = {"model": "tiny", "checkpoint": "step0", "train": "base", "train_dataset": None, "train_format": None,
            "train_size": None}
    run = run_amuro(["evaluate-benchmarks", "--model-dir", str(model), "--requests", json.dumps(plan), "--settings",
                     json.dumps({"batch_size": 4, "limit": None}), "--meta", json.dumps(meta)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    acc = [r for r in rows if r["metric"] == "acc"]
    # The five ARC-Easy test rows of the fixture, not ARC-Challenge's and not the hub's.
    assert len(acc) == 5 and "ARC-Easy question 0?" in acc[0]["prompt"]
    assert [r["reference"] for r in acc] == ["red", "blue", "green", "grey", "red"]


# ------------------------------------------------------------------------------------------------- instruction mix
def test_the_instruction_mix_is_read_offline_at_its_recorded_commit(tmp_path):
    cache = tmp_path / "hub"
    chats = [{"dataset": "flan_v2", "id": f"flan_{i}", "messages": [
        {"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
        for i in range(5)]
    files = {"data/train-00000-of-00001.parquet": parquet_bytes(chats),
             "README.md": readme_with_configs([{"config_name": "default", "data_files": [
                 {"split": "train", "path": "data/train-*"}]}])}
    cache_repo(cache, "dataset", "allenai/tulu-v2-sft-mixture", DATA_COMMIT, files)
    source = {"type": "hub", "path": "allenai/tulu-v2-sft-mixture", "name": None, "revision": "main", "split": "train"}
    record = tmp_path / "tulu_v2.json"
    run = run_amuro(["download-instructions", "--name", "tulu_v2", "--source", json.dumps(source),
                     "--out", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    rec = json.loads(record.read_text())
    assert rec["commit"] == DATA_COMMIT and rec["revision"] == "main"
    spec = {"name": "tulu_v2", "source": source, "sample": 3, "seed": 0}
    run = run_amuro(["prepare-instructions", "--spec", json.dumps(spec), "--out", str(tmp_path / "mix.parquet"),
                     "--download", str(record)], amuro_env(cache))
    assert run.returncode == 0, run.stderr
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "mix.parquet").to_pylist()
    assert len(rows) == 3 and rows[0]["messages"][1]["role"] == "assistant"
    assert DATA_COMMIT in run.stderr  # the log names the commit the mix was read at


def test_a_revision_without_safetensors_is_fetched_with_its_torch_weights(tiny_model_files, tmp_path):
    """Older Pythia branches hold only pytorch_model.bin; the record says which patterns were used."""
    files = {name: data for name, data in tiny_model_files.items() if not name.endswith(".safetensors")}
    files["pytorch_model.bin"] = b"torch weights"
    files["flax_model.msgpack"] = b"other framework"
    cache = tmp_path / "hub"
    cache_repo(cache, "model", "EleutherAI/pythia-160m", COMMIT, files, refs=["step1000"])
    with RefsServer({"EleutherAI/pythia-160m": ["main", "step1000", "step10000"]}) as hub:
        run = run_amuro(["download-checkpoint", "--model", "pythia", "--spec", '{"repo": "EleutherAI/pythia-160m"}',
                         "--entry", '{"step": 1000}', "--out", str(tmp_path / "r.json")],
                        amuro_env(cache, offline=False, endpoint=hub.url))
    assert run.returncode == 0, run.stderr
    rec = json.loads((tmp_path / "r.json").read_text())
    assert rec["revision"] == "step1000" and "pytorch_model.bin" in rec["files"]
    assert "flax_model.msgpack" not in rec["files"]
