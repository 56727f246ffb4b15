"""Resolve a checkpoint (a hub repo at a revision, a local directory, or a mini-world checkpoint) into
`results/checkpoints/{model}/{checkpoint}/`, an ordinary HF model directory, and record exactly what it is:
the resolved hub commit and the sha256 of every file, since hub revisions have been known to serve other weights.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from amuro.io import atomic_path, write_json

log = logging.getLogger(__name__)

# Enough to load a causal LM and its tokenizer; skips other frameworks' weights and training states.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
UNITS = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


class CheckpointError(ValueError):
    pass


def parse_revision(name: str) -> dict:
    """Step and token count from names like `step738000-tokens3095B`; None where the name has none (`main`)."""
    m = re.fullmatch(r"step(\d+)(?:-tokens(\d+)([KMBT])?)?", name)
    if not m:
        return {"step": None, "tokens": None}
    tokens = int(m.group(2)) * UNITS.get(m.group(3), 1) if m.group(2) else None
    return {"step": int(m.group(1)), "tokens": tokens}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _link_or_copy_tree(src: Path, dst: Path) -> None:
    """Hard-link files where the filesystem allows (checkpoints are large), copy otherwise."""
    for path in sorted(src.rglob("*")):
        if path.is_dir() or any(part.startswith(".") for part in path.relative_to(src).parts):
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        real = path.resolve()
        try:
            os.link(real, target)
        except OSError:
            shutil.copy2(real, target)


def _hub_snapshot(repo: str, revision: str) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=HUB_PATTERNS))
    # The snapshot directory of the HF cache is named after the commit the revision resolved to.
    return path, path.name


def resolve_checkpoint(model: str, spec: dict, checkpoint: str, out_dir: str | Path,
                       miniworld_dir: str | Path | None = None) -> None:
    """spec: the model's config entry (source hub / local / miniworld)."""
    commit = None
    if spec["source"] == "hub":
        src, commit = _hub_snapshot(spec["repo"], checkpoint)
    elif spec["source"] == "local":
        src = Path(spec["path"]) / checkpoint
    else:
        src = Path(miniworld_dir) / "pretrain" / checkpoint
    if not (src / "config.json").exists():
        raise CheckpointError(f"model {model}, checkpoint {checkpoint}: {src} is not a HF model directory "
                              f"(no config.json)")
    with atomic_path(out_dir, directory=True) as tmp:
        _link_or_copy_tree(src, tmp)
        files = {str(p.relative_to(tmp)): sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        if not any(name.endswith((".safetensors", ".bin")) for name in files):
            raise CheckpointError(f"model {model}, checkpoint {checkpoint}: {src} holds no weight files")
        write_json({
            "model": model, "checkpoint": checkpoint, "source": spec["source"], "repo": spec.get("repo"),
            "revision": checkpoint if spec["source"] == "hub" else None, "commit": commit,
            "origin": str(src), "files": files, **parse_revision(checkpoint),
        }, tmp / "resolved.json")
    log.info("model %s, checkpoint %s: %d files from %s (commit %s)", model, checkpoint, len(files), src, commit)
