"""Local stand-ins for the Hugging Face hub, so the real client code runs without a network.

- `cache_repo` lays out a repository in an HF hub cache exactly as huggingface_hub writes it (snapshots/{commit},
  refs/{revision}), so `snapshot_download` / `hf_hub_download` with HF_HUB_OFFLINE=1 serve it.
- `RefsServer` answers the hub's refs endpoint (what `HfApi.list_repo_refs` calls) on localhost; every other request
  gets 403, so downloads fall back to the cache as they would for a gated repo whose files are already cached.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def cache_repo(cache: Path, repo_type: str, repo_id: str, commit: str, files: dict[str, bytes],
               refs: list[str] = ("main",)) -> Path:
    """Write `files` as the snapshot of `commit` and point every ref at it; returns the snapshot directory."""
    folder = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = folder / "snapshots" / commit
    for name, data in files.items():
        path = snapshot / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for ref in refs:
        ref_file = folder / "refs" / ref
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        ref_file.write_text(commit)
    return snapshot


def parquet_bytes(rows: list[dict]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def readme_with_configs(configs: list[dict]) -> bytes:
    import yaml

    return ("---\n" + yaml.safe_dump({"configs": configs}, sort_keys=False) + "---\n# test dataset\n").encode()


class RefsServer:
    """GET /api/{models,datasets}/{org}/{name}/refs -> the branches given; anything else -> 403."""

    def __init__(self, branches: dict[str, list[str]]):
        self.branches = branches
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                outer.requests.append(f"{self.command} {self.path}")
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")
                if len(parts) == 5 and parts[0] == "api" and parts[4] == "refs":
                    repo = f"{parts[2]}/{parts[3]}"
                    if repo in outer.branches:
                        body = json.dumps({"branches": [{"name": b, "ref": f"refs/heads/{b}",
                                                         "targetCommit": "0" * 40} for b in outer.branches[repo]],
                                           "tags": [], "converts": []}).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        if self.command == "GET":
                            self.wfile.write(body)
                        return
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = _answer
            do_HEAD = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def amuro_env(cache: Path, offline: bool = True, endpoint: str | None = None) -> dict:
    """The environment of an `amuro` subprocess using `cache` as its HF cache (and no other)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update({"HF_HOME": str(cache.parent / "hf_home"), "HF_HUB_CACHE": str(cache),
                "HF_DATASETS_CACHE": str(cache.parent / "datasets_cache"), "HF_HUB_DISABLE_TELEMETRY": "1"})
    if offline:
        env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    if endpoint:
        env["HF_ENDPOINT"] = endpoint
    return env


def run_amuro(args: list[str], env: dict):
    import subprocess

    return subprocess.run([sys.executable, "-m", "amuro", *args], env=env, capture_output=True, text=True)
