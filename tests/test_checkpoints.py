import json
import shutil

import pytest
import torch
from transformers import OlmoConfig, OlmoForCausalLM

from amuro.checkpoints import CheckpointError, parse_revision, fetch_checkpoint, verify_model
from amuro.hashing import sha256


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
    fetch_checkpoint("tiny", spec, "step10-tokens41K", tmp_path / "out")
    resolved = json.loads((tmp_path / "out" / "resolved.json").read_text())
    assert resolved["step"] == 10 and resolved["source"] == "local" and resolved["commit"] is None
    weights = tmp_path / "out" / "model.safetensors"
    assert resolved["files"]["model.safetensors"] == sha256(weights)
    assert OlmoForCausalLM.from_pretrained(tmp_path / "out").num_parameters() > 0


def test_a_directory_without_a_model_is_refused(tmp_path):
    (tmp_path / "src" / "step1").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="step1.*no config.json"):
        fetch_checkpoint("m", {"source": "local", "path": str(tmp_path / "src")}, "step1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_verify_checkpoint_accepts_an_unchanged_checkpoint_and_names_a_changed_file(tiny_model_dir, tmp_path):
    fetch_checkpoint("tiny", {"source": "local", "path": str(tiny_model_dir.parent)}, "step10-tokens41K",
                       tmp_path / "out")
    assert verify_model(tmp_path / "out")["step"] == 10
    weights = tmp_path / "out" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.unlink()  # a hard link to the source: replace it rather than write through it
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"file model.safetensors has sha256 \w+, but resolved.json records"):
        verify_model(tmp_path / "out")


def test_verify_checkpoint_refuses_an_unrecorded_weight_file(tiny_model_dir, tmp_path):
    fetch_checkpoint("tiny", {"source": "local", "path": str(tiny_model_dir.parent)}, "step10-tokens41K",
                       tmp_path / "out")
    (tmp_path / "out" / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="weight file extra.safetensors is not recorded"):
        verify_model(tmp_path / "out")


def fetch_twice(tiny_model_dir, tmp_path):
    """The tiny model fetched by one study, then that study's checkpoint directory fetched by another as `local`."""
    first = tmp_path / "a" / "checkpoints" / "tiny" / "step10-tokens41K"
    fetch_checkpoint("tiny", {"source": "local", "path": str(tiny_model_dir.parent)}, "step10-tokens41K", first)
    second = tmp_path / "b" / "checkpoints" / "reused" / "step10-tokens41K"
    fetch_checkpoint("reused", {"source": "local", "path": str(first.parent)}, "step10-tokens41K", second)
    return second


def test_a_checkpoint_amuro_made_is_a_local_source_another_study_can_verify(tiny_model_dir, tmp_path):
    assert verify_model(fetch_twice(tiny_model_dir, tmp_path))["model"] == "reused"


def test_a_reused_checkpoint_keeps_its_origins_record_apart_from_its_files(tiny_model_dir, tmp_path):
    record = json.loads((fetch_twice(tiny_model_dir, tmp_path) / "resolved.json").read_text())
    assert "resolved.json" not in record["files"]
    assert record["origin_records"]["resolved.json"]["model"] == "tiny"


def test_a_checkpoint_directory_without_weights_is_refused(tiny_model_dir, tmp_path):
    (tmp_path / "src" / "step1").mkdir(parents=True)
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "src" / "step1")
    with pytest.raises(CheckpointError, match=r"checkpoint step1: .*step1 holds no weight files"):
        fetch_checkpoint("m", {"source": "local", "path": str(tmp_path / "src")}, "step1", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-1000], r"model.safetensors: \d+ bytes, but its header describes \d+; the file is truncated"),
    (lambda data: data[:8] + b"\xff" * 64 + data[72:], r"model.safetensors: not a safetensors file"),
], ids=["truncated", "header overwritten"])
def test_a_truncated_or_corrupted_safetensors_file_is_refused_by_name(tiny_model_dir, tmp_path, damage, message):
    src = tmp_path / "src" / "step1"
    shutil.copytree(tiny_model_dir, src)
    weights = src / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        fetch_checkpoint("m", {"source": "local", "path": str(src.parent)}, "step1", tmp_path / "out")
    assert not (tmp_path / "out").exists() and weights.exists()  # nothing is deleted, nothing half-made
