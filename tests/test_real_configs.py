"""The two real studies as configured: both validate, and their dry runs plan exactly the jobs their axes imply,
the download stage included. (Counts are derived here from the axes by hand, not from the workflow's own code.)"""

from collections import Counter
from pathlib import Path

import pytest

from amuro.config import load_config

from jobs import FIGURES_LEFT_OUT, PAPER, YANG, expected_jobs, planned_jobs


@pytest.mark.workflow
def test_the_paper_study_plans_every_job_its_axes_imply(tmp_path):
    config = load_config(PAPER)
    assert [len(m["checkpoints"]) for m in config["models"].values()] == [8, 1]  # OLMo-1B: 7 steps + main; Llama-3
    jobs = planned_jobs(tmp_path, PAPER)
    assert jobs == expected_jobs(config, FIGURES_LEFT_OUT[PAPER])
    # 9 checkpoints x 4 train sets, and Tulu v2 on each of the 8 OLMo checkpoints.
    assert (jobs["finetune"], jobs["evaluate_benchmarks"], jobs.total()) == (9 * 4 + 8, 9 + 8, 304)


@pytest.mark.workflow
def test_the_paper_download_stage_is_its_own_target(tmp_path):
    assert planned_jobs(tmp_path, PAPER, "download") == Counter(
        download_checkpoint=9, download_dataset=13, download_instructions=1, download_benchmark=6, download=1)


def _yang_release(root: Path, config: dict) -> None:
    """Empty stand-ins for the released files at the configured paths (a dry run only needs them to exist)."""
    for ds in config["datasets"].values():
        for path in ds["source"]["files"].values():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).touch()


@pytest.mark.workflow
def test_the_generalization_study_plans_every_job_its_axes_imply(tmp_path):
    config = load_config(YANG)
    _yang_release(tmp_path, config)
    jobs = planned_jobs(tmp_path, YANG)
    assert jobs == expected_jobs(config, FIGURES_LEFT_OUT[YANG])
    # 5 train sets (amazon paws mnli socialiqa xsum) x default + fticl x 2000/4000/6000 examples, one checkpoint.
    assert (jobs["finetune"], jobs["build_fticl_prompts"], jobs.total()) == (5 * 2 * 3, 5, 205)


def test_the_generalization_study_pins_every_released_file_it_could_hash():
    config = load_config(YANG)
    unpinned = [(name, split) for name, ds in config["datasets"].items() for split in ds["source"]["files"]
                if split not in ds["source"].get("sha256", {})]
    assert unpinned == [("xsum", "train")]


@pytest.mark.parametrize("name, task, fields", [
    # format_generalization.py: process_socialiqa and format_single_sciq list every candidate answer.
    ("socialiqa", "question_generation",
     {"answer": {"template": "Answer A: {answerA} Answer B: {answerB}Answer C: {answerC}"}}),
    ("sciq", "question_generation",
     {"answer": {"template": "Answer A: {correct_answer} Answer B: {distractor1} Answer C: {distractor2}"
                             "Answer D: {distractor3}"}}),
    ("tweetqa", "question_generation", {"answer": {"column": "Answer", "index": 0}}),
])
def test_the_paper_config_maps_the_answers_as_the_paper_code_did(name, task, fields):
    ds = load_config(PAPER)["datasets"][name]
    assert ds["task"] == task and {k: ds["fields"][k] for k in fields} == fields


def test_the_paper_config_reads_xlsum_english_from_the_parquet_export_and_binarises_stsb():
    datasets = load_config(PAPER)["datasets"]
    assert {k: datasets["xlsum"]["source"][k] for k in ("name", "revision", "data_dir")} == {
        "name": None, "revision": "refs/convert/parquet", "data_dir": "english"}
    assert datasets["stsb"]["label_threshold"] == {"value": 3.5, "above": "yes", "at_or_below": "no"}
