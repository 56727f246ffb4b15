"""A job killed (SIGKILL) in the middle of writing its output leaves nothing a later run would take as done, and the
later run of the same job cleans up what the killed one left. (The fine-tuned model directory: test_finetune.py.)"""

import json
import os
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amuro.cli import main
from amuro.formats import PROMPT_SCHEMA
from amuro.results import write_table
from amuro.hashing import sha256
from conftest import ROOT, write_tiny_olmo

# `python -m amuro ...` whose Parquet and figure writers put half a file on disk, then hang until killed.
KILLED_WRITE = """
import os, sys, time
import matplotlib.figure
import pyarrow.parquet as pq

def hang(path):
    with open(path, "r+b") as f:  # half of the file, as a write cut off would leave it
        f.truncate(os.path.getsize(path) // 2)
    print("writing", path, flush=True)
    time.sleep(600)

def write_table(table, where, *args, _write=pq.write_table, **kwargs):
    _write(table, where, *args, **kwargs)
    hang(where)

def savefig(self, where, *args, _savefig=matplotlib.figure.Figure.savefig, **kwargs):
    _savefig(self, where, *args, **kwargs)
    hang(where)

pq.write_table, matplotlib.figure.Figure.savefig = write_table, savefig
from amuro.cli import main
main(sys.argv[1:])
"""


def kill_while_writing(args: list[str]) -> str:
    """Run the stage until it is half-way through a write, SIGKILL it; returns the path it was writing."""
    run = subprocess.Popen([sys.executable, "-c", KILLED_WRITE, *args], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    line = run.stdout.readline()
    run.send_signal(signal.SIGKILL)
    _, err = run.communicate()
    assert line.startswith("writing "), err[-3000:]
    return line.split(" ", 1)[1].strip()


def predictions_job(tmp_path) -> tuple[list[str], str]:
    model = write_tiny_olmo(tmp_path / "model", ["the cat sat on the mat"] * 20, max_positions=64)
    # The record an evaluation checks the model against, as a fetched checkpoint has it.
    files = {p.name: sha256(p) for p in model.iterdir()}
    (model / "resolved.json").write_text(json.dumps({"files": files}))
    prompts = tmp_path / "test.parquet"
    rows = [{"id": f"ex{i}", "shots": 0, "prompt": f"the cat {i}", "completion": " sat", "target": "sat",
             "demo_ids": []} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows, schema=PROMPT_SCHEMA), prompts)
    out = tmp_path / "predictions" / "0shot.parquet"
    request = {"dataset": "d", "task": "summarization", "format": "default", "shots": 0, "prompts": str(prompts),
               "output": str(out)}
    job = {"model_dir": str(model), "requests": [request], "meta": {"model": "m"}}
    return ["evaluate", "--jobs", json.dumps([job]), "--settings", json.dumps({"max_new_tokens_generation": 3})], str(out)


def summary(tmp_path):
    from test_results import write_predictions

    predictions = write_predictions(tmp_path / "predictions.parquet", [1, 0, 1, 1])
    path = tmp_path / "summary.parquet"
    settings = {"train_task": None, "resamples": 100, "confidence": 0.95, "seed": 1}
    assert main(["summarize-predictions", "--settings", json.dumps(settings), "--out", str(path), str(predictions)]) == 0
    return path


def results_table_job(tmp_path) -> tuple[list[str], str]:
    out = tmp_path / "tables" / "results.parquet"
    return ["results-table", "--out", str(out), str(summary(tmp_path))], str(out)


def figure_job(tmp_path) -> tuple[list[str], str]:
    from test_figures import synthetic_table

    table = tmp_path / "results.parquet"
    write_table(synthetic_table(), table)
    out = tmp_path / "figures" / "cross_task.pdf"
    return ["figure", "cross_task", "--pdf", str(out), "--png", str(out.with_suffix(".png")), str(table)], str(out)


@pytest.mark.parametrize("job", [predictions_job, results_table_job, figure_job])
def test_a_job_killed_mid_write_leaves_no_output_and_its_rerun_no_leftovers(job, tmp_path):
    args, out = job(tmp_path)
    out_dir = os.path.dirname(out)
    writing = kill_while_writing(args)
    assert os.path.dirname(writing) == out_dir and os.path.basename(writing).startswith("." + os.path.basename(out))
    assert os.path.exists(writing)  # the half-written file is there, under a name no rule asks for
    assert not os.path.exists(out) and not os.path.exists(out.replace(".pdf", ".png"))

    assert main(args) == 0
    assert os.path.getsize(out) > 0
    assert not [name for name in os.listdir(out_dir) if name.endswith(".tmp")]


def test_clean_scratch_removes_only_what_a_later_run_rebuilds_and_waits_for_a_running_workflow(tmp_path):
    kept = ["results/tables/results.parquet", "results/finetuned/m/step1/nli/default/all/model.safetensors",
            "results/predictions/m/step1/base/nli/default/0shot.parquet", "results/figures/cross_task.pdf"]
    removed = ["results/scratch/finetune/m/step1/nli/default/all/checkpoint-50/trainer_state.json",
               "results/predictions/m/step1/base/nli/default/.4shot.parquet.a1b2c3d4.tmp",
               "results/finetuned/m/step1/sst/default/.all.x9y8z7w6.tmp/model.safetensors"]
    for rel in kept + removed:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    lock = tmp_path / ".snakemake" / "locks" / "0.input.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")

    def clean():
        return subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "clean-scratch"], cwd=tmp_path,
                              capture_output=True, text=True)

    refused = clean()
    assert refused.returncode != 0 and "a snakemake run holds this directory" in refused.stdout + refused.stderr
    assert all((tmp_path / rel).exists() for rel in kept + removed)
    lock.unlink()
    assert clean().returncode == 0
    assert all((tmp_path / rel).exists() for rel in kept)
    assert not (tmp_path / "results/scratch").exists()
    assert not [p for p in (tmp_path / "results").rglob("*.tmp")]
