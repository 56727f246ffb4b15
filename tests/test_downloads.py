"""The download stage and the offline jobs after it, through the real huggingface_hub code: refs listed over HTTP
from a local stand-in of the hub, files served from an HF cache laid out as the client writes it, every other job
under HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1."""

import json

import pytest
import torch
from transformers import OlmoConfig, OlmoForCausalLM

from amuro.downloads import DownloadError, branch_for_step
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
    assert run_amuro(["verify-checkpoint", str(out)], amuro_env(cache)).returncode == 0


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
             "sys.argv=['amuro','verify-checkpoint','/nonexistent']; "
             "import amuro.checkpoints as c; c.verify_checkpoint=lambda d: print(os.environ.get('HF_HUB_OFFLINE'), "
             "os.environ.get('HF_DATASETS_OFFLINE')); cli.main()")
    import subprocess
    import sys

    env = amuro_env(tmp_path / "hub", offline=False)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["1", "1"], out.stderr
