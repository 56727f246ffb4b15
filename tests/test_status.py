"""`amuro status`: each job's state read from the plan and the files on disk (no Snakemake DAG): on hand-made
directories, against Snakemake's own dry run, and through a tiny study that runs, is killed, reruns and fails."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from amuro.cli import main
from amuro.config import load_config, validate_config
from amuro.status import Status
from amuro.status.disk import incomplete_markers, last_error_line, marker_path
from amuro.status.jobs import RULES, STATES, plan_jobs, prediction_files
from amuro.study import Run, Study
from conftest import DEMO_CONFIG
from jobs import FIGURES_LEFT_OUT, PAPER, TINY, expected_jobs, snakemake, snakemake_command, snakemake_env
from test_workflow import tiny_study  # noqa: F401  (the tiny study, run once for this module)

CELL = Run("mini", "step20-tokens40K", "people_nli", "default", "all", "full", "42")
TRACEBACK = """INFO loading the model
Traceback (most recent call last):
  File "amuro/finetune/trainer.py", line 41, in accumulation_steps
    raise FinetuneError(
amuro.finetune.FinetuneError: batch_size 15 is not a multiple of micro_batch_size x world size (16 x 1 = 16)
"""


def tiny_plan() -> Study:
    return Study(load_config(TINY))


def states_of(status: Status, run: Run) -> dict[str, str]:
    return {stage: job.state for stage, job in status.by_run[run].items()}


def totals_by_state(status: Status) -> Counter:
    return Counter({state: sum(c[state] for c in status.totals().values()) for state in STATES})


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def mark_incomplete(root: Path, output: str, external_jobid: str | None = None) -> Path:
    """Snakemake's own incomplete marker for `output`, written by its file persistence; its path."""
    from snakemake.persistence.file import FilePersistence

    persistence = FilePersistence(path=root / ".snakemake")
    persistence._mark_incomplete(output, external_jobid)
    return Path(persistence._record_path(persistence._incomplete_path, output))


def make_done(root: Path, job) -> None:
    for output in job.outputs:
        if job.stage in ("fetch", "finetune"):
            (root / output).mkdir(parents=True, exist_ok=True)
        else:
            write(root / output)


# --- The plan, without Snakemake ---

@pytest.mark.parametrize("configfile", [TINY, DEMO_CONFIG, PAPER])
def test_a_study_not_begun_has_every_job_not_started_and_as_many_as_snakemake_runs(configfile, tmp_path):
    status = Status.read(Study(load_config(configfile)), tmp_path)
    jobs = expected_jobs(load_config(configfile), FIGURES_LEFT_OUT[configfile])
    assert {stage: counts["jobs"] for stage, counts in status.totals().items()} == {
        stage: sum(jobs[rule] for rule in rules) for stage, rules in RULES.items() if any(jobs[r] for r in rules)}
    assert all(counts["not_started"] == counts["jobs"] for counts in status.totals().values())
    assert status.run_state() == "none" and not any(status.to_json()["jobs"].values())


@pytest.mark.parametrize("configfile", [TINY, DEMO_CONFIG, PAPER])
def test_each_run_gets_the_prediction_files_the_plan_gives_it(configfile):
    study = Study(load_config(configfile))
    files = prediction_files(study)
    for run in study.runs():
        expected = study.evaluation.prediction_files(run) + study.evaluation.index(run)  # the job's index last
        assert list(files(run, run.fields)) == expected, run


def test_a_per_checkpoint_evaluation_is_one_job_for_every_cell_of_its_checkpoint():
    study = Study(load_config(DEMO_CONFIG))  # evaluation.finetuned_jobs: per_checkpoint
    _, by_run = plan_jobs(study)
    checkpoint = study.checkpoints("miniworld")[0]
    cells = [r for r in study.finetuned_runs() if r.checkpoint == checkpoint]
    job = by_run[cells[0]]["evaluate"]
    assert all(by_run[cell]["evaluate"] is job for cell in cells) and job.runs == cells
    assert job.log == f"logs/evaluate/miniworld/{checkpoint}/finetuned.log"
    assert list(job.outputs) == [f for cell in cells
                                 for f in study.evaluation.prediction_files(cell) + study.evaluation.index(cell)]


# --- Each state, on a hand-made directory ---

def test_done_failed_and_not_started_come_from_the_outputs_and_the_log(tmp_path):
    study = tiny_plan()
    _, by_run = plan_jobs(study)
    jobs = by_run[CELL]
    make_done(tmp_path, jobs["finetune"])
    # Snakemake removed the failed evaluation's outputs and kept its log.
    write(tmp_path / jobs["evaluate"].log, TRACEBACK + "\n")
    # One prediction file of another cell is missing: that evaluation is not done.
    other = by_run[Run("mini", "step20-tokens40K", "diary_summary", "default", "all", "full", "42")]["evaluate"]
    make_done(tmp_path, other)
    (tmp_path / next(iter(other.outputs))).unlink()

    status = Status.read(study, tmp_path)
    assert states_of(status, CELL) == {"finetune": "done", "evaluate": "failed", "summary": "not_started"}
    failed = status.by_run[CELL]["evaluate"]
    assert failed.error.startswith("amuro.finetune.FinetuneError: batch_size 15")
    assert status.by_run[other.runs[0]]["evaluate"].state == "not_started"
    assert status.totals()["finetune"]["done"] == 1 and status.totals()["evaluate"]["failed"] == 1
    entry = next(r for r in status.to_json()["runs"] if r["run"] == CELL.id and r["checkpoint"] == CELL.checkpoint)
    assert entry["stages"]["evaluate"] == {"state": "failed", "log": failed.log, "error": failed.error}
    assert entry["stages"]["finetune"] == {"state": "done"}


def test_a_marked_job_runs_while_snakemake_works_in_the_directory_and_is_interrupted_once_it_is_gone(tmp_path):
    study = tiny_plan()
    _, by_run = plan_jobs(study)
    finetune, evaluate = by_run[CELL]["finetune"], by_run[CELL]["evaluate"]
    write(tmp_path / ".snakemake" / "locks" / "0.output.lock", finetune.outputs.ends()[0] + "\n")
    # A Snakemake process whose working directory is the study's (a stand-in: `sleep` named snakemake).
    process = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while Status.read(study, tmp_path).run_state() != "going_on":
            assert time.monotonic() < deadline, "the stand-in Snakemake process was not seen"
            time.sleep(0.05)
        time.sleep(0.05)
        mark_incomplete(tmp_path, finetune.outputs.ends()[0], external_jobid="4242")
        write(tmp_path / finetune.log, "step 3 loss 2.1\n")
        # An evaluation marked by an earlier run, before this one started: interrupted, not this run's.
        old = mark_incomplete(tmp_path, next(iter(evaluate.outputs)))
        os.utime(old, (time.time() - 3600, time.time() - 3600))
        status = Status.read(study, tmp_path)
        assert states_of(status, CELL) == {"finetune": "running", "evaluate": "interrupted", "summary": "not_started"}
        assert status.by_run[CELL]["finetune"].external_jobid == "4242"
        assert status.to_json()["snakemake"]["processes"] == [process.pid]
    finally:
        process.kill()
        process.wait()
    status = Status.read(study, tmp_path)
    assert states_of(status, CELL)["finetune"] == "interrupted"
    assert status.by_run[CELL]["finetune"].error == "step 3 loss 2.1"
    assert status.run_state() == "lock_left" and "snakemake --unlock" in status.snakemake.summary()


def test_a_marked_output_stays_interrupted_even_once_it_exists(tmp_path):
    study = tiny_plan()
    _, by_run = plan_jobs(study)
    evaluate = by_run[CELL]["evaluate"]
    make_done(tmp_path, evaluate)  # a killed job may leave its outputs; Snakemake redoes it (--rerun-incomplete)
    mark_incomplete(tmp_path, list(evaluate.outputs)[-1])
    assert Status.read(study, tmp_path).by_run[CELL]["evaluate"].state == "interrupted"


def test_marks_of_jobs_outside_the_grid_are_listed_apart(tmp_path):
    mark_incomplete(tmp_path, "results/miniworld/pretrain")
    status = Status.read(tiny_plan(), tmp_path)
    assert status.outside_grid() == {"running": [], "interrupted": ["results/miniworld/pretrain"]}
    assert "interrupted outside the grid: results/miniworld/pretrain" in status.text()


def test_markers_are_named_as_snakemake_names_them_long_paths_split_included(tmp_path):
    incomplete = tmp_path / ".snakemake" / "incomplete"
    long = "results/" + "/".join(["a_rather_long_directory_name"] * 12) + "/0shot.parquet"
    markers = {output: mark_incomplete(tmp_path, output) for output in (long, "results/finetuned/mini/s/d/f/all")}
    assert markers[long].parent.name.startswith("@")
    assert incomplete_markers(incomplete) == markers
    assert {output: marker_path(incomplete, output) for output in markers} == markers


def test_a_log_gives_its_last_error_line_else_its_last_line(tmp_path):
    log = write(tmp_path / "a.log", TRACEBACK + "INFO the process group ends\n\n")
    assert last_error_line(log).startswith("amuro.finetune.FinetuneError: batch_size 15")
    log = write(tmp_path / "b.log", "loading\nslurmstepd: error: *** JOB 17 CANCELLED DUE TO TIME LIMIT ***\n")
    assert last_error_line(log) == "slurmstepd: error: *** JOB 17 CANCELLED DUE TO TIME LIMIT ***"
    assert last_error_line(write(tmp_path / "c.log", "step 1\r step 2\n  \n")) == "step 2"
    assert last_error_line(write(tmp_path / "d.log", "")) == "(empty log)"
    assert last_error_line(write(tmp_path / "e.log", "x" * 1000)).endswith(" ...")


# --- As a page and for scripts ---

def test_the_page_has_a_grid_per_model_and_lists_each_failure_with_its_log_and_error(tmp_path):
    study = tiny_plan()
    _, by_run = plan_jobs(study)
    write(tmp_path / by_run[CELL]["finetune"].log, TRACEBACK)
    page = Status.read(study, tmp_path).html()
    assert page.count("<table class='grid'>") == len(study.models) and "<h2>mini</h2>" in page
    # rows: checkpoints; columns: base, the cells (train set, format, size), the instruction-tuned run
    assert all(f"<tr><th>{c}</th>" in page for c in study.checkpoints("mini"))
    assert "<th colspan='1'>people_nli</th>" in page and "chat_mix (instruction-tuned)" in page
    assert "title='finetune: failed\nlogs/finetune/mini/step20-tokens40K/people_nli/default/all/full/42.log\n" in page
    assert "<h2>failed (1)</h2>" in page and "<code>logs/finetune/mini/step20-tokens40K/people_nli/default/all/full/42.log" \
                                                 "</code>" in page
    assert "FinetuneError: batch_size 15 is not a multiple" in page


def test_the_command_prints_a_json_document_and_writes_the_page(tmp_path, capsys):
    page = tmp_path / "status.html"
    main(["status", "--config", str(TINY), "--dir", str(tmp_path), "--json", "--html", str(page)])
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"format", "directory", "checked", "snakemake", "states", "stages", "totals", "models",
                             "runs", "jobs", "outside_grid"}
    assert document["states"] == ["done", "running", "interrupted", "failed", "not_started"]
    assert document["totals"]["finetune"] == {"jobs": 9, "done": 0, "running": 0, "interrupted": 0, "failed": 0,
                                              "not_started": 9}
    assert document["models"]["mini"]["runs"] == ["base", "diary_summary-default-all-full-42",
                                                  "people_nli-default-all-full-42", "chat_mix-chat-all-full-42"]
    assert len(document["runs"]) == 3 * 4 and document["snakemake"]["run"] == "none"
    assert page.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(SystemExit, match="give the study's config"):
        main(["status", "--dir", str(tmp_path)])


# --- Against Snakemake ---

def dry_run_jobs(workdir: Path, configfile: Path) -> set[tuple[str, str, frozenset]]:
    """(rule, log, outputs) of every job of the dry run."""
    out = snakemake(workdir, configfile, "--dry-run").stdout
    jobs = set()
    for block in re.split(r"^(?:local)?rule ", out, flags=re.M)[1:]:
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        if "log" in fields:
            # Predictions are update() outputs, which the dry run prints with " (update)" after them.
            outputs = {o.removesuffix(" (update)") for o in fields["output"].split(", ")}
            jobs.add((block.split(":", 1)[0], fields["log"], frozenset(outputs)))
    return jobs


@pytest.mark.workflow
@pytest.mark.parametrize("per_checkpoint", [(), ("evaluation",), ("evaluation", "finetune")])
def test_the_plan_names_each_jobs_outputs_and_log_as_snakemake_does(per_checkpoint, tmp_path):
    config = yaml.safe_load(TINY.read_text())
    if "evaluation" in per_checkpoint:
        config["evaluation"]["finetuned_jobs"] = "per_checkpoint"
    if "finetune" in per_checkpoint:
        config["finetune"]["jobs"] = "per_checkpoint"
    configfile = tmp_path / "study.yaml"
    configfile.write_text(yaml.safe_dump(config))
    stage_of = {rule: stage for stage, rules in RULES.items() for rule in rules}
    snakemakes = {(stage_of[rule], log, outputs) for rule, log, outputs in dry_run_jobs(tmp_path, configfile)
                  if rule in stage_of}
    jobs, _ = plan_jobs(Study(validate_config(config)))
    assert {(job.stage, job.log, frozenset(job.outputs)) for job in jobs} == snakemakes


@pytest.mark.workflow
def test_the_status_page_is_a_target_asked_for_by_name_and_not_part_of_the_study(tmp_path):
    assert "status" not in {rule for rule, _, _ in dry_run_jobs(tmp_path, TINY)}
    snakemake(tmp_path, TINY, "results/status.html")
    page = (tmp_path / "results" / "status.html").read_text()
    # The run that writes the page is not taken for a run of the study.
    assert "no Snakemake run is going on" in page and "<h2>mini</h2>" in page
    assert (tmp_path / "logs" / "status.log").read_text().startswith("amuro status of")
    again = snakemake(tmp_path, TINY, "results/status.html")
    assert "Nothing to be done" in again.stdout + again.stderr
    forced = snakemake(tmp_path, TINY, "-f", "results/status.html")
    assert "rule status:" in forced.stdout + forced.stderr


# --- Through a tiny study ---

@pytest.mark.slow
def test_a_finished_study_is_done_everywhere(tiny_study):  # noqa: F811
    status = Status.read(tiny_plan(), tiny_study)
    assert totals_by_state(status) == Counter(done=len(status.jobs))
    assert status.run_state() == "none" and status.outside_grid() == {"running": [], "interrupted": []}


def cell_state(workdir: Path, config: Path = TINY) -> tuple[dict[str, str], Status]:
    status = Status.read(Study(load_config(config)), workdir)
    return states_of(status, CELL), status


@pytest.mark.slow
def test_status_follows_a_cell_through_a_run_a_kill_a_rerun_and_a_failure(tiny_study, tmp_path):  # noqa: F811
    """One cell made again: running while Snakemake fine-tunes it (nothing failed meanwhile), interrupted once the
    whole run is SIGKILLed (its lock left behind), done after --unlock and --rerun-incomplete; then made again with a
    batch size the fine-tune refuses: failed, with its log and the log's error line."""
    workdir = tmp_path / "study"
    shutil.copytree(tiny_study, workdir)
    target = f"results/tables/cells/{CELL.model}/{CELL.checkpoint}/{CELL.id}.parquet"

    def remove_cell():
        _, by_run = plan_jobs(tiny_plan())
        for job in by_run[CELL].values():
            for output in job.outputs:
                shutil.rmtree(workdir / output) if (workdir / output).is_dir() else (workdir / output).unlink()
            (workdir / job.log).unlink()

    remove_cell()
    states, status = cell_state(workdir)
    assert states == {"finetune": "not_started", "evaluate": "not_started", "summary": "not_started"}
    assert totals_by_state(status)["done"] == len(status.jobs) - 3

    run = subprocess.Popen(snakemake_command(workdir, TINY, target), env=snakemake_env(), start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while states["finetune"] != "running":
        assert run.poll() is None and time.monotonic() < deadline
        states, status = cell_state(workdir)
        assert totals_by_state(status)["failed"] == totals_by_state(status)["interrupted"] == 0
        time.sleep(0.2)
    assert status.run_state() == "going_on" and run.pid in status.snakemake.processes
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    states, status = cell_state(workdir)
    assert states == {"finetune": "interrupted", "evaluate": "not_started", "summary": "not_started"}
    assert status.run_state() == "lock_left" and totals_by_state(status)["running"] == 0
    assert [job["runs"] for job in status.to_json()["jobs"]["interrupted"]] == [[f"mini/{CELL.checkpoint}/{CELL.id}"]]

    snakemake(workdir, TINY, "--unlock")
    snakemake(workdir, TINY, target, "--rerun-incomplete")
    states, status = cell_state(workdir)
    assert totals_by_state(status) == Counter(done=len(status.jobs)) and status.run_state() == "none"

    # The cell once more, with a batch size (15) its micro-batches (16) cannot make up: the fine-tune fails.
    remove_cell()
    config = yaml.safe_load(TINY.read_text())
    config["finetune"]["overrides"] = {"people_nli": {"batch_size": 15}}
    failing = tmp_path / "failing.yaml"
    failing.write_text(yaml.safe_dump(config))
    assert snakemake(workdir, failing, target, "--keep-going", check=False).returncode != 0
    states, status = cell_state(workdir, failing)
    assert states == {"finetune": "failed", "evaluate": "not_started", "summary": "not_started"}
    failed = status.to_json()["jobs"]["failed"]
    assert [(job["log"], job["runs"]) for job in failed] == [
        (f"logs/finetune/mini/{CELL.checkpoint}/people_nli/default/all/full/42.log", [f"mini/{CELL.checkpoint}/{CELL.id}"])]
    assert "batch_size 15 is not a multiple of micro_batch_size" in failed[0]["error"]
    assert f"log: logs/finetune/mini/{CELL.checkpoint}/people_nli/default/all/full/42.log" in status.text()
