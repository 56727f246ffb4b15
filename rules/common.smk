# Wiring between Snakemake and the study (amuro/study): the config is validated, and every input, output, param and
# resource of a rule comes from a named function of the plan's stages. Rules read no config key themselves.
import inspect
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from amuro import config as study_config
from amuro.figures import FIGURES
from amuro.study import Study, PlanError, paths
from amuro.study.runs import BASE, INSTRUCTION_FORMAT

validate(config, "../amuro/schemas/config.schema.yaml")
study_config.check_references(config, "workflow config")

# Jobs run `python -m amuro`: the environment running Snakemake comes first, activated or not.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

STUDY = Study(config)
MINIWORLD = paths.MINIWORLD


WILDCARDS = STUDY.wildcard_constraints()


wildcard_constraints:
    **WILDCARDS,


try:
    from snakemake.common import FUNC_OVERWRITE_PARAMS_ATTR
except ImportError:  # a Snakemake without it inspects each function on each call, as before
    FUNC_OVERWRITE_PARAMS_ATTR = None


def known_params(func):
    """`func`, its parameters told to Snakemake once: otherwise it reads them (inspect.signature) twice for every job
    and every input, param and resource function, 6% of a 20,000-job dry run."""
    if FUNC_OVERWRITE_PARAMS_ATTR:
        setattr(func, FUNC_OVERWRITE_PARAMS_ATTR, inspect.signature(func).parameters)
    return func


def as_json(obj):
    """A settings object as the JSON argument of an amuro command (sorted, so Snakemake's params compare stably)."""
    return json.dumps(obj, sort_keys=True)


def of_run(method, to_json=False):
    """An input function (or param) of the run a job's wildcards name."""

    def from_wildcards(wildcards):
        value = method(STUDY.run_for(wildcards))
        return as_json(value) if to_json else value

    return known_params(from_wildcards)


def of_checkpoint(method, to_json=False):
    """An input function (or param) of the {model} and {checkpoint} a per-checkpoint job's wildcards name."""

    def from_wildcards(wildcards):
        value = method(wildcards.model, wildcards.checkpoint)
        return as_json(value) if to_json else value

    return known_params(from_wildcards)


def of_dataset(method, to_json=False):
    """An input function (or param) of the dataset a job's {dataset} wildcard names."""

    def from_wildcards(wildcards):
        value = method(wildcards.dataset)
        return as_json(value) if to_json else value

    return known_params(from_wildcards)


def of_benchmark(method):
    """A param of the benchmark a job's {benchmark} wildcard names."""

    def from_wildcards(wildcards):
        return method(wildcards.benchmark)

    return known_params(from_wildcards)


def updatable(outputs):
    """Outputs a rerun of their job updates in place instead of Snakemake deleting them first (update())."""
    return [update(f) for f in outputs]


@known_params
def figure_inputs(wildcards):
    try:
        return STUDY.figures.inputs(wildcards.figure)
    except PlanError as exc:
        raise WorkflowError(str(exc)) from None


@known_params
def figure_caption(wildcards):
    return FIGURES[wildcards.figure].caption
