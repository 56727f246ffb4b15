"""The study as data, cut by stage: the path templates (paths), the runs (runs), typed config views (settings), and
per stage the jobs with their inputs, outputs and settings; Study (plan) ties them to one config.

Pure Python (no Snakemake, no torch, no polars): `rules/*.smk` only wire it to Snakemake, and the tests call it
directly.
"""

from amuro.study.plan import Study
from amuro.study.runs import BASE, PlanError, Run

__all__ = ["BASE", "PlanError", "Run", "Study"]
