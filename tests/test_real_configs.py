"""The two real studies as configured: both validate, and their dry runs plan exactly the jobs their axes imply,
the download stage included. (Counts are derived here from the axes by hand, not from the workflow's own code.)"""

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from amuro.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "workflow_config.yaml"
YANG = ROOT / "profiles" / "generalization" / "study.yaml"
FIGURES = 12  # amuro.figures.FIGURES


def dry_run(workdir: Path, configfile: Path, *targets: str) -> Counter:
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
                          "--configfile", str(configfile), "--cores", "1", *targets, "--dry-run", "--quiet", "rules"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", run.stdout, re.M) if m[1] != "total"})


def test_the_paper_study_plans_every_job_its_axes_imply(tmp_path):
    config = load_config(PAPER)
    assert [len(m["checkpoints"]) for m in config["models"].values()] == [8, 1]  # OLMo-1B: 7 steps + main; Llama-3
    checkpoints, datasets, formats, train_sets, benchmarks = 9, 13, 3, 4, 6
    tulu = 8  # every OLMo checkpoint instruction-tuned once
    cells = checkpoints * train_sets  # one train format, one size
    expected = Counter(
        download_checkpoint=checkpoints, download_dataset=datasets, download_instructions=1,
        download_benchmark=benchmarks, fetch_checkpoint=checkpoints, prepare_dataset=datasets,
        prepare_instructions=1, build_prompts=datasets * formats, finetune=cells + tulu,
        evaluate_base=checkpoints, evaluate_finetuned=cells, evaluate_benchmarks=checkpoints + tulu,
        summarize_predictions=checkpoints + cells + tulu, scoring_methods=1, results_table=1, tables=1,
        figure=FIGURES - 2,  # no train-size sweep, no FTICL
        all=1)
    assert dry_run(tmp_path, PAPER) == expected


def test_the_paper_download_stage_is_its_own_target(tmp_path):
    assert dry_run(tmp_path, PAPER, "download") == Counter(
        download_checkpoint=9, download_dataset=13, download_instructions=1, download_benchmark=6, download=1)


def _yang_release(root: Path, config: dict) -> None:
    """Empty stand-ins for the released files at the configured paths (a dry run only needs them to exist)."""
    for ds in config["datasets"].values():
        for path in ds["source"]["files"].values():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).touch()


def test_the_generalization_study_plans_every_job_its_axes_imply(tmp_path):
    config = load_config(YANG)
    _yang_release(tmp_path, config)
    checkpoints, datasets, formats = 1, 18, 2
    train_sets, train_formats, sizes = 5, 2, 3  # amazon paws mnli socialiqa xsum; default + fticl; 2000/4000/6000
    cells = checkpoints * train_sets * train_formats * sizes
    expected = Counter(
        download_checkpoint=1, fetch_checkpoint=1, prepare_dataset=datasets, build_prompts=datasets * formats,
        build_fticl_prompts=train_sets, finetune=cells, evaluate_base=checkpoints, evaluate_finetuned=cells,
        summarize_predictions=checkpoints + cells, scoring_methods=1, results_table=1, tables=1,
        figure=FIGURES - 1,  # no instruction-tuning arm
        all=1)
    assert dry_run(tmp_path, YANG) == expected


def test_the_generalization_study_pins_every_released_file_it_could_hash():
    config = load_config(YANG)
    unpinned = [(name, split) for name, ds in config["datasets"].items() for split in ds["source"]["files"]
                if split not in ds["source"].get("sha256", {})]
    assert unpinned == [("xsum", "train")]


@pytest.mark.parametrize("name, task, fields", [
    ("socialiqa", "question_generation", {"answer": {"by": "label", "columns": {"1": "answerA", "2": "answerB",
                                                                                "3": "answerC"}}}),
    ("tweetqa", "question_generation", {"answer": {"column": "Answer", "index": 0}}),
])
def test_the_paper_config_maps_the_answers_that_were_wrong(name, task, fields):
    ds = load_config(PAPER)["datasets"][name]
    assert ds["task"] == task and {k: ds["fields"][k] for k in fields} == fields


def test_the_paper_config_reads_xlsum_english_from_the_parquet_export_and_binarises_stsb():
    datasets = load_config(PAPER)["datasets"]
    assert {k: datasets["xlsum"]["source"][k] for k in ("name", "revision", "data_dir")} == {
        "name": None, "revision": "refs/convert/parquet", "data_dir": "english"}
    assert datasets["stsb"]["label_threshold"] == {"value": 3.5, "above": "yes", "at_or_below": "no"}
