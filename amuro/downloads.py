"""The download stage: the only jobs that reach the network. Every checkpoint, hub dataset, instruction mix and
lm-eval benchmark dataset is fetched once into the HF cache, at a revision resolved to a commit, and recorded in
`results/downloads/{kind}/{id}.json` (repo, revision asked for, commit, sha256 of every file fetched).

Every other job runs with HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1 (`go_offline`, called by `python -m amuro`
for every stage but these) and reads the recorded commit from the cache; what is missing is named together with
the command that fetches it. The HF cache (HF_HOME or HF_HUB_CACHE) must be the same directory for the download
stage and the compute jobs, e.g. on a shared filesystem.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import yaml

from amuro.hashing import files_under, hash_files, verify_files
from amuro.io import write_json

log = logging.getLogger(__name__)

OFFLINE_VARS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# Enough to load a causal LM and its tokenizer; skips other frameworks' weights and training states.
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
# For a revision without safetensors (older Pythia branches may hold only pytorch_model.bin).
TORCH_WEIGHTS = ["pytorch_model*.bin"]
FETCH_HINT = ("fetch it on a node with network access: `snakemake download` (the whole download stage) or "
              "`snakemake {record}`, with the same HF cache (HF_HOME / HF_HUB_CACHE) the compute jobs see")


class DownloadError(RuntimeError):
    """Something to fetch is not on the hub as configured, or missing / altered in the local cache."""


def go_offline() -> None:
    """Make every hub and datasets access of this process local-only (set before those libraries are imported)."""
    os.environ.update(OFFLINE_VARS)


def file_hashes(root: str | Path, patterns: list[str] | None = None) -> dict[str, str]:
    """sha256 of every file under `root` that `patterns` select (as huggingface_hub selects them); a snapshot in the
    cache can also hold files other downloads of the same commit fetched."""
    from huggingface_hub.utils import filter_repo_objects

    return hash_files(root, filter_repo_objects(files_under(root), allow_patterns=patterns))


# ----------------------------------------------------------------------------------------------------- checkpoints

def branch_for_step(repo: str, step: int, branches: list[str]) -> str:
    """The branch of `step`: `stepN` (Pythia) or `stepN-<suffix>` (OLMo's stepN-tokensM). A missing step fails with
    the nearest steps the repository has."""
    pattern = re.compile(rf"step{step}(?:-.+)?")
    found = sorted(b for b in branches if pattern.fullmatch(b))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DownloadError(f"{repo}: several branches for step {step}: {', '.join(found)}; name one in the config")
    steps = {}
    for b in branches:
        m = re.match(r"step(\d+)(?:-|$)", b)
        if m:
            steps[int(m.group(1))] = b
    if not steps:
        raise DownloadError(f"{repo}: no step{step} branch, and no stepN branches at all "
                            f"(branches: {', '.join(sorted(branches)[:10])})")
    # Two on each side: enough to see the spacing of the checkpoints around the step asked for.
    nearest = sorted(s for s in steps if s < step)[-2:] + sorted(s for s in steps if s > step)[:2]
    raise DownloadError(f"{repo}: no branch for step {step}; the nearest are "
                        f"{', '.join(steps[s] for s in sorted(nearest))} ({len(steps)} step branches in all)")


def list_branches(repo: str, repo_type: str = "model") -> list[str]:
    from huggingface_hub import HfApi

    return [ref.name for ref in HfApi().list_repo_refs(repo, repo_type=repo_type).branches]


def download_checkpoint(model: str, spec: dict, entry, out: str | Path) -> dict:
    """Fetch one checkpoint of a hub model into the HF cache and record its branch, commit and file hashes."""
    from huggingface_hub import snapshot_download

    repo = spec["repo"]
    if isinstance(entry, dict):
        revision = branch_for_step(repo, entry["step"], list_branches(repo))
    else:
        revision = entry
    patterns = MODEL_PATTERNS
    path = Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=patterns))
    files = file_hashes(path, patterns)
    if not any(name.endswith(".safetensors") for name in files):
        patterns = MODEL_PATTERNS + TORCH_WEIGHTS
        path = Path(snapshot_download(repo_id=repo, revision=revision, allow_patterns=patterns))
        files = file_hashes(path, patterns)
    if not any(name.endswith((".safetensors", ".bin")) for name in files):
        raise DownloadError(f"model {model}: {repo}@{revision} has no weight files (safetensors or pytorch_model.bin)")
    # The snapshot directory of the HF cache is named after the commit the revision resolved to.
    record = {"kind": "checkpoint", "model": model, "repo": repo, "requested": entry, "revision": revision,
              "commit": path.name, "patterns": patterns, "files": files}
    write_json(record, out)
    log.info("model %s: %s@%s = commit %s, %d files", model, repo, revision, path.name, len(files))
    return record


def local_snapshot(record: dict, repo_type: str, what: str, record_path: str = "results/downloads/...") -> Path:
    """The HF cache's snapshot of a recorded download, without any network access; missing: says how to fetch."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(repo_id=record["repo"], repo_type=repo_type, revision=record["commit"],
                                      allow_patterns=record["patterns"], local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError) as exc:
        raise DownloadError(f"{what}: {record['repo']} at commit {record['commit']} (revision "
                            f"{record['revision']}) is not in the HF cache {_cache_dir()}; "
                            + FETCH_HINT.format(record=record_path)) from exc
    missing = [name for name in record["files"] if not (path / name).is_file()]
    if missing:
        raise DownloadError(f"{what}: {record['repo']} at commit {record['commit']}: file(s) {', '.join(missing[:5])} "
                            f"missing from the HF cache {_cache_dir()}; " + FETCH_HINT.format(record=record_path))
    return path


def _cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


# ----------------------------------------------------------------------------------------------------------- datasets

def _readme_configs(readme: Path | None) -> list[dict]:
    if readme is None or not readme.is_file():
        return []
    text = readme.read_text(encoding="utf-8")
    m = re.match(r"---\s*\n(.*?)\n---\s*\n", text, re.S)
    if not m:
        return []
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError:
        return []
    return [c for c in meta.get("configs", []) if isinstance(c, dict)]


def _globs(data_files) -> list[str]:
    if data_files is None:
        return []
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return [g for v in data_files.values() for g in _globs(v)]
    out = []
    for item in data_files:
        out += _globs(item["path"]) if isinstance(item, dict) else _globs(item)
    return out


def dataset_patterns(source: dict, readme: Path | None) -> list[str] | None:
    """The repository files one dataset config needs (None: all of them), so that a 45-language repository is not
    fetched for its English part. From data_files / data_dir when given, else from the README's `configs`."""
    prefix = f"{source['data_dir'].strip('/')}/" if source.get("data_dir") else ""
    base = ["README.md"]
    if source.get("data_files") is not None:
        return base + [prefix + g for g in _globs(source["data_files"])]
    if prefix:
        return base + [prefix + "**"]
    configs = _readme_configs(readme)
    name = source.get("name")
    chosen = [c for c in configs if c.get("config_name") == name] if name else (
        [c for c in configs if c.get("default")] or [c for c in configs if c.get("config_name") == "default"]
        or (configs if len(configs) == 1 else []))
    if not chosen:
        return None
    config = chosen[0]
    if config.get("data_files") is not None:
        sub = f"{config['data_dir'].strip('/')}/" if config.get("data_dir") else ""
        return base + [sub + g for g in _globs(config["data_files"])]
    if config.get("data_dir"):
        return base + [f"{config['data_dir'].strip('/')}/**"]
    return None


def download_hub_dataset(kind: str, name: str, repo: str, revision: str | None, source: dict,
                         out: str | Path) -> dict:
    """Fetch the files of one hub dataset config into the HF cache and record the commit and their hashes."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        readme = Path(hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision))
    except EntryNotFoundError:
        readme = None
    patterns = dataset_patterns(source, readme)
    path = Path(snapshot_download(repo_id=repo, repo_type="dataset", revision=revision, allow_patterns=patterns))
    files = file_hashes(path, patterns)
    data = [f for f in files if f != "README.md" and not f.startswith(".")]
    if not data:
        raise DownloadError(f"{kind} {name}: {repo}@{revision or 'main'} has no files matching {patterns}")
    if any(f.endswith(".py") for f in files) and not any(f.endswith((".parquet", ".json", ".jsonl", ".csv", ".arrow"))
                                                         for f in files):
        raise DownloadError(f"{kind} {name}: {repo}@{revision or 'main'} holds only a loading script, which datasets "
                            f">= 4 refuses; use its parquet export (revision: refs/convert/parquet, and data_dir)")
    record = {"kind": kind, "name": name, "repo": repo, "revision": revision, "commit": path.name,
              "patterns": patterns, "files": files}
    write_json(record, out)
    log.info("%s %s: %s@%s = commit %s, %d files", kind, name, repo, revision or "main", path.name, len(files))
    return record


def download_dataset(name: str, spec: dict, out: str | Path) -> dict:
    source = spec["source"]
    return download_hub_dataset("dataset", name, source["path"], source["revision"], source, out)


def local_dataset_snapshot(name: str, record: dict) -> Path:
    """A recorded dataset's files in the HF cache, checked against their recorded hashes."""
    what, record_path = f"dataset {name}", f"results/downloads/datasets/{name}.json"
    path = local_snapshot(record, "dataset", what, record_path)
    verify_files(path, record["files"], what, record_path, DownloadError)
    return path


def download_instructions(name: str, source: dict, out: str | Path) -> dict:
    return download_hub_dataset("instruction mix", name, source["path"], source["revision"],
                                {"name": source["name"]}, out)


# ------------------------------------------------------------------------------------------------ lm-eval benchmarks

def benchmark_task_config(task: str, manager=None, resolve_functions: bool = False) -> dict:
    """An lm-eval task's YAML as lm-eval reads it (includes merged), without loading its data."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    manager = manager or TaskManager()
    entry = manager.task_index.get(task)
    if entry is None:
        raise DownloadError(f"lm-eval knows no task {task!r}")
    if entry.yaml_path is None or entry.kind.name != "TASK":
        raise DownloadError(f"lm-eval task {task!r} is a {entry.kind.name.lower()}, not a single task with a YAML file")
    return load_yaml(entry.yaml_path, resolve_func=resolve_functions)


def download_benchmark(benchmark: str, task: str, out: str | Path, revision: str | None = None,
                       data_dir: str | None = None) -> dict:
    """Fetch the hub dataset behind one lm-eval task and record it; the evaluation job then points the task at it.

    revision / data_dir override the task's own (e.g. a repository that still ships only a loading script, read
    from its parquet export: revision refs/convert/parquet, data_dir = the config's directory)."""
    config = benchmark_task_config(task)
    if "dataset_path" not in config:
        raise DownloadError(f"benchmark {benchmark}: lm-eval task {task} names no dataset_path")
    kwargs = dict(config.get("dataset_kwargs") or {})
    if Path(config["dataset_path"]).exists() or "data_files" in kwargs and config["dataset_path"] in (
            "json", "csv", "parquet", "text"):
        raise DownloadError(f"benchmark {benchmark}: lm-eval task {task} reads local files "
                            f"({config['dataset_path']}); nothing to download")
    data_dir = data_dir or kwargs.get("data_dir")
    # With a data_dir the files are found by their directory, not by the config name (the parquet export has none).
    name = None if data_dir else config.get("dataset_name")
    source = {"name": name, "data_dir": data_dir, "data_files": kwargs.get("data_files")}
    record = download_hub_dataset("benchmark", benchmark, config["dataset_path"], revision or kwargs.get("revision"),
                                  source, out)
    record.update({"lm_eval_task": task, "dataset_name": name, "data_dir": data_dir})
    write_json(record, out)
    return record


def local_benchmark_dataset(benchmark: str, record: dict) -> Path:
    what = f"benchmark {benchmark} (lm-eval task {record['lm_eval_task']})"
    record_path = f"results/downloads/benchmarks/{benchmark}.json"
    path = local_snapshot(record, "dataset", what, record_path)
    verify_files(path, record["files"], what, record_path, DownloadError)
    return path


def offline_task_config(benchmark: str, task: str, record_path: str | Path, manager) -> dict:
    """The lm-eval task's config with its dataset pointed at the recorded snapshot in the HF cache (read offline);
    lm-eval then loads exactly the recorded commit, with the task's own dataset_name, prompts and metrics."""
    import json

    record = json.loads(Path(record_path).read_text())
    if record.get("lm_eval_task") != task:
        raise DownloadError(f"benchmark {benchmark}: {record_path} records lm-eval task {record.get('lm_eval_task')!r}, "
                            f"not {task!r}; run the download stage again")
    config = benchmark_task_config(task, manager, resolve_functions=True)
    config["dataset_path"] = str(local_benchmark_dataset(benchmark, record))
    config["dataset_name"] = record["dataset_name"]
    kwargs = {k: v for k, v in (config.get("dataset_kwargs") or {}).items() if k not in ("revision", "data_dir")}
    if record.get("data_dir"):
        kwargs["data_dir"] = record["data_dir"]
    config["dataset_kwargs"] = kwargs
    return config
