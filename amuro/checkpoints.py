"""Resolve a checkpoint (a hub repo at a revision, a local directory, or a mini-world checkpoint) into
`results/checkpoints/{model}/{checkpoint}/`, an ordinary HF model directory, and record exactly what it is:
the resolved hub commit and the sha256 of every file, since hub revisions have been known to serve other weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import zipfile
from pathlib import Path

from amuro.hashing import check_hashes, files_under, hash_files, verify_files
from amuro.io import atomic_path, write_json

log = logging.getLogger(__name__)

UNITS = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}
# What amuro records about a directory it made (a fetched checkpoint, a fine-tuned model): never a model file, so a
# directory fetched from one of these (another study's checkpoint as a `local` source) gets its own record only.
RECORDS = ("resolved.json", "train_meta.json")


class CheckpointError(ValueError):
    pass


def parse_revision(name: str) -> dict:
    """Step and token count from names like `step738000-tokens3095B`; None where the name has none (`main`)."""
    m = re.fullmatch(r"step(\d+)(?:-tokens(\d+)([KMBT])?)?", name)
    if not m:
        return {"step": None, "tokens": None}
    tokens = int(m.group(2)) * UNITS.get(m.group(3), 1) if m.group(2) else None
    return {"step": int(m.group(1)), "tokens": tokens}


def checkpoint_position(checkpoint: str, checkpoint_dir: str | Path | None = None) -> dict:
    """Step and tokens of a pre-trained checkpoint: as the resolved.json in `checkpoint_dir` records them (a {step: N}
    checkpoint's id has no token count; the branch it resolved to had), else as the id says (no directory given)."""
    if checkpoint_dir is None:
        return parse_revision(checkpoint)
    path = Path(checkpoint_dir) / "resolved.json"
    if not path.is_file():
        raise CheckpointError(f"{checkpoint_dir}: no resolved.json, so no step and token count for checkpoint "
                              f"{checkpoint}")
    record = json.loads(path.read_text())
    if record.get("checkpoint", checkpoint) != checkpoint:
        raise CheckpointError(f"{path} records checkpoint {record['checkpoint']}, not {checkpoint}")
    return {"step": record.get("step"), "tokens": record.get("tokens")}


def _link_or_copy_tree(src: Path, dst: Path, names: set[str] | None = None) -> None:
    """Hard-link files where the filesystem allows (checkpoints are large), copy otherwise; only `names` if given;
    never amuro's records (RECORDS)."""
    for name in files_under(src):
        if name in RECORDS or (names is not None and name not in names):
            continue
        target = dst / name
        target.parent.mkdir(parents=True, exist_ok=True)
        real = (src / name).resolve()
        try:
            os.link(real, target)
        except OSError:
            shutil.copy2(real, target)


def origin_records(src: Path) -> dict[str, dict]:
    """The records amuro wrote in a directory it made, by file name ({} for a directory it did not make)."""
    records = {}
    for name in RECORDS:
        if (src / name).is_file():
            try:
                records[name] = json.loads((src / name).read_text())
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{src / name}: not a JSON record ({exc})") from exc
    return records


def check_weight_file(path: Path) -> None:
    """Refuse a weight file that cannot be whole, without reading its tensors: a safetensors file must be exactly as
    long as its header says (a cut copy or download is shorter), a PyTorch .bin (a zip) must have its directory."""
    size = path.stat().st_size
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            head = f.read(8)
            header_len = int.from_bytes(head, "little") if len(head) == 8 else None
            try:
                header = json.loads(f.read(header_len)) if header_len and header_len < size else None
            except (UnicodeDecodeError, json.JSONDecodeError):
                header = None
        if not isinstance(header, dict):
            raise CheckpointError(f"{path}: not a safetensors file (its header does not parse); the file is "
                                  f"truncated or corrupted")
        ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
        expected = 8 + header_len + max(ends, default=0)
        if size != expected:
            raise CheckpointError(f"{path}: {size} bytes, but its header describes {expected}; the file is "
                                  f"{'truncated' if size < expected else 'corrupted'}")
    elif path.suffix == ".bin" and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a complete PyTorch weight file (no zip directory); the file is truncated "
                              f"or corrupted")


def fetch_checkpoint(model: str, spec: dict, checkpoint: str, out_dir: str | Path,
                       miniworld_dir: str | Path | None = None, download: str | Path | None = None) -> None:
    """spec: the model's config entry (source hub / local / miniworld).

    A hub checkpoint is read offline from the HF cache at the commit the download stage recorded (`download`, its
    JSON record), and each file must still have the sha256 recorded then.
    """
    commit = revision = record = requested = None
    if spec["source"] == "hub":
        from amuro.downloads import local_snapshot

        if download is None:
            raise CheckpointError(f"model {model}, checkpoint {checkpoint}: a hub checkpoint needs its download "
                                  f"record (results/downloads/checkpoints/{model}/{checkpoint}.json)")
        record = json.loads(Path(download).read_text())
        src = local_snapshot(record, "model", f"model {model}, checkpoint {checkpoint}",
                             f"results/downloads/checkpoints/{model}/{checkpoint}.json")
        commit, revision, requested = record["commit"], record["revision"], record.get("requested")
    elif spec["source"] == "local":
        src = Path(spec["path"]) / checkpoint
    else:
        src = Path(miniworld_dir) / "pretrain" / checkpoint
    if not (src / "config.json").exists():
        raise CheckpointError(f"model {model}, checkpoint {checkpoint}: {src} is not a HF model directory "
                              f"(no config.json)")
    origins = origin_records(src)
    with atomic_path(out_dir, directory=True) as tmp:
        # A cached snapshot can hold files other downloads of the commit fetched: take the recorded ones only.
        _link_or_copy_tree(src, tmp, set(record["files"]) if record is not None else None)
        files = hash_files(tmp)
        weights = [name for name in files if name.endswith((".safetensors", ".bin"))]
        if not weights:
            raise CheckpointError(f"model {model}, checkpoint {checkpoint}: {src} holds no weight files "
                                  f"(*.safetensors or *.bin)")
        for name in weights:
            check_weight_file(src / name)
        if record is not None:
            expected = {name: digest for name, digest in record["files"].items() if name not in RECORDS}
            check_hashes(files, expected, f"model {model}, checkpoint {checkpoint}", str(download),
                         CheckpointError, where=" in the HF cache")
        # A {step: N} checkpoint is named stepN; its branch (stepN-tokensM) also tells the tokens.
        position = parse_revision(revision or checkpoint)
        if isinstance(requested, dict) and "step" in requested:
            position["step"] = requested["step"]  # the config's own step, whatever the branch is called
        # A directory amuro made knows what its id may not: a checkpoint's own, a fine-tuned model's base's.
        known = origins.get("resolved.json") or (origins.get("train_meta.json") or {}).get("base_checkpoint") or {}
        for key in ("step", "tokens"):
            if position[key] is None:
                position[key] = known.get(key)
        write_json({
            "model": model, "checkpoint": checkpoint, "source": spec["source"], "repo": spec.get("repo"),
            "revision": revision, "commit": commit, "origin": str(src), "files": files, **position,
            "origin_records": origins,
        }, tmp / "resolved.json")
    log.info("model %s, checkpoint %s: %d files from %s (commit %s)", model, checkpoint, len(files), src, commit)


def verify_model(model_dir: str | Path) -> dict:
    """Check every file of a model directory against the hashes recorded when it was made, before a job uses it: a
    resolved checkpoint's resolved.json, or a fine-tuned model's train_meta.json.

    Raises CheckpointError naming the first file that is missing, altered, or a weight file nobody recorded.
    """
    model_dir = Path(model_dir)
    for name in ("resolved.json", "train_meta.json"):
        path = model_dir / name
        if path.is_file():
            record = json.loads(path.read_text())
            break
    else:
        raise CheckpointError(f"{model_dir}: no resolved.json (a checkpoint) or train_meta.json (a fine-tuned model); "
                              f"make it through the workflow (rule fetch_checkpoint or finetune) before using it")
    if "files" not in record:  # a model fine-tuned by an older amuro: keep it, unchecked, rather than redo it
        log.warning("%s records no file hashes: %s is not checked", path, model_dir)
        return record
    verify_files(model_dir, record["files"], str(model_dir), path.name, CheckpointError)
    extra = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")
                   if p.is_file() and p.suffix in (".safetensors", ".bin")
                   and str(p.relative_to(model_dir)) not in record["files"])
    if extra:
        raise CheckpointError(f"{model_dir}: weight file {extra[0]} is not recorded in {path.name}")
    log.info("%s: %d files match %s (commit %s)", model_dir, len(record["files"]), path.name, record.get("commit"))
    if record.get("method") == "lora":
        verify_base(model_dir, record)
    return record


def verify_base(adapter_dir: Path, record: dict) -> None:
    """A LoRA cell is its adapter over a checkpoint: that checkpoint must be the one it was trained on (its
    resolved.json as hashed at training) and whole (verify_model)."""
    from amuro.hashing import sha256

    base = Path(record["base_dir"])
    resolved = base / "resolved.json"
    if not resolved.is_file():
        raise CheckpointError(f"{adapter_dir}: a LoRA adapter over {base}, which has no resolved.json; fetch the "
                              f"checkpoint (rule fetch_checkpoint) before using the adapter")
    if record.get("base_record_sha256") not in (None, sha256(resolved)):
        raise CheckpointError(f"{adapter_dir}: a LoRA adapter trained on another {base}: its resolved.json has "
                              f"sha256 {sha256(resolved)}, train_meta.json records {record['base_record_sha256']}; "
                              f"fine-tune the cell again")
    verify_model(base)
