# Wiring between Snakemake and the study plan (amuro/plan.py): the config is validated, and every input, output,
# param and resource of a rule comes from a named function of the plan.
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from amuro import config as study_config
from amuro import plan
from amuro.figures import FIGURES

validate(config, "../amuro/schemas/config.schema.yaml")
study_config.check_references(config, "workflow config")

# Jobs run `python -m amuro`: the environment running Snakemake comes first, activated or not.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

STUDY = plan.Study(config)
MINIWORLD = plan.MINIWORLD


wildcard_constraints:
    **STUDY.wildcard_constraints(),


def of_run(method):
    """An input function (or param) of the run a job's wildcards name."""

    def from_wildcards(wildcards):
        return method(STUDY.run_for(wildcards))

    return from_wildcards


def as_json(param):
    """The same param as the JSON argument of an amuro stage."""

    def json_of(wildcards):
        return plan.as_json(param(wildcards))

    return json_of


def of_checkpoint(method):
    """An input function (or param) of the {model} and {checkpoint} a per-checkpoint job's wildcards name."""

    def from_wildcards(wildcards):
        return method(wildcards.model, wildcards.checkpoint)

    return from_wildcards


def job_size(stage, resource):
    """A resource request of the job's run that grows with the attempt (see plan.JOB_SIZE)."""

    def request(wildcards, attempt):
        return STUDY.job_size(STUDY.run_for(wildcards), stage, resource, attempt)

    return request


def checkpoint_job_size(resource):
    """A resource request of a per-checkpoint evaluation job, growing with the attempt."""

    def request(wildcards, attempt):
        return STUDY.checkpoint_job_size(wildcards.model, wildcards.checkpoint, resource, attempt)

    return request


def of_dataset(method):
    """An input function (or param) of the dataset a job's {dataset} wildcard names."""

    def from_wildcards(wildcards):
        return method(wildcards.dataset)

    return from_wildcards


def of_benchmark(method):
    """A param of the benchmark a job's {benchmark} wildcard names."""

    def from_wildcards(wildcards):
        return method(wildcards.benchmark)

    return from_wildcards


def download_option(wildcards, input):
    """A param: `--download <record>` when the job reads a hub source (its input `download`), else nothing."""
    return STUDY.download_option(input.download)


def figure_inputs(wildcards):
    try:
        return STUDY.figure_inputs(wildcards.figure)
    except plan.PlanError as exc:
        raise WorkflowError(str(exc)) from None


def figure_caption(wildcards):
    return FIGURES[wildcards.figure].caption
