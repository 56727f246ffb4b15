import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import OlmoConfig, OlmoForCausalLM

from amuro.checkpoints import CheckpointError, parse_revision, resolve_checkpoint, sha256


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny") / "step10-tokens41K"
    torch.manual_seed(0)
    OlmoForCausalLM(OlmoConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32)).save_pretrained(d)
    return d


def test_revision_names_give_step_and_tokens():
    assert parse_revision("step738000-tokens3094B") == {"step": 738000, "tokens": 3094 * 10**9}
    assert parse_revision("step25-tokens102K") == {"step": 25, "tokens": 102000}
    assert parse_revision("step1000") == {"step": 1000, "tokens": None}
    assert parse_revision("main") == {"step": None, "tokens": None}


def test_local_checkpoint_is_resolved_with_file_hashes(tiny_model_dir, tmp_path):
    spec = {"source": "local", "path": str(tiny_model_dir.parent)}
    resolve_checkpoint("tiny", spec, "step10-tokens41K", tmp_path / "out")
    resolved = json.loads((tmp_path / "out" / "resolved.json").read_text())
    assert resolved["step"] == 10 and resolved["source"] == "local" and resolved["commit"] is None
    weights = tmp_path / "out" / "model.safetensors"
    assert resolved["files"]["model.safetensors"] == sha256(weights)
    assert OlmoForCausalLM.from_pretrained(tmp_path / "out").num_parameters() > 0


def test_a_directory_without_a_model_is_refused(tmp_path):
    (tmp_path / "src" / "step1").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="step1.*no config.json"):
        resolve_checkpoint("m", {"source": "local", "path": str(tmp_path / "src")}, "step1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hub_revision_resolves_through_the_hf_cache_offline(tiny_model_dir, tmp_path):
    """The real hub code path (snapshot_download), served from a cache laid out as the hub client writes it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--allenai--OLMo-1B-hf"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "step10-tokens41B").write_text(commit)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    spec = json.dumps({"source": "hub", "repo": "allenai/OLMo-1B-hf"})
    run = subprocess.run([sys.executable, "-m", "amuro", "fetch-checkpoint", "--model", "olmo1b", "--spec", spec,
                          "--checkpoint", "step10-tokens41B", "--out", str(tmp_path / "out")],
                         env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    resolved = json.loads((tmp_path / "out" / "resolved.json").read_text())
    assert resolved["commit"] == commit
    assert resolved["revision"] == "step10-tokens41B" and resolved["tokens"] == 41 * 10**9
