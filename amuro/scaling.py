"""`amuro bench --plan`: how long Snakemake takes to plan a study, and how much memory it needs, as the study grows.

The paper's config is grown to about 500, 5,000 and 20,000 jobs (more checkpoints, every dataset as a train set,
three train formats, three train sizes) and each is dry-run (`snakemake -n`) in an empty directory, as a researcher
does before every run, rerun or single figure. Reported per study: jobs, seconds, peak memory, and time per job.

`floor` is Snakemake's own share: bench/floor/Snakefile, the 20,000-job study's shape (its checkpoints, cells per
checkpoint and prediction files per evaluation job) with no amuro code, dry-run the same way.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FLOOR = ROOT / "bench" / "floor" / "Snakefile"

# name -> (OLMo-1B checkpoints, train formats, train sizes); every dataset of the config is a train set.
STUDIES = {
    "500": (8, ["default"], ["all"]),
    "5000": (64, ["default"], ["all"]),
    "20000": (64, ["default", "io", "instruct"], [2000, 4000, "all"]),
}

# Runs the dry run in a process of its own, so that its peak memory is the dry run's alone.
MEASURE = ("import resource, subprocess, sys; "
           "run = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "sys.stdout.write(run.stdout); sys.stderr.write(run.stderr); "
           "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(run.returncode)")


def grown_config(config: dict, checkpoints: int, formats: list[str], sizes: list) -> dict:
    """The paper's study with `checkpoints` OLMo-1B steps (1000 apart), every dataset a train set, in `formats` at
    `sizes`."""
    grown = copy.deepcopy(config)
    grown["models"]["olmo1b"]["checkpoints"] = [{"step": 1000 * (i + 1)} for i in range(checkpoints)]
    grown["finetune"].update(datasets=sorted(grown["datasets"]), formats=formats, sizes=sizes)
    return grown


def floor_config(config: dict) -> dict:
    """The floor Snakefile's --config for a (validated) study: its checkpoints, cells per checkpoint and prediction
    files per fine-tuned and per pre-trained evaluation job."""
    from amuro.study import Study

    study = Study(config)
    checkpoints = len(study.base_runs())
    return {"checkpoints": checkpoints, "cells": len(study.finetuned_runs()) // checkpoints,
            "outputs": len(study.evaluation.output_patterns(base=False)),
            "base_outputs": len(study.evaluation.output_patterns(base=True))}


def dry_run(configfile: Path | None, work_dir: Path, snakefile: Path = ROOT / "Snakefile",
            config: dict | None = None) -> dict:
    """One dry run: jobs planned, wall seconds and peak memory (GB) of the snakemake process."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "snakemake", "-s", str(snakefile),
               "-d", str(work_dir), "--cores", "1", "--dry-run", "--quiet", "rules"]
    command += ["--configfile", str(configfile)] if configfile else []
    command += ["--config", *(f"{k}={v}" for k, v in config.items())] if config else []
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise RuntimeError(f"dry run of {configfile} failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    jobs = int(re.search(r"^total\s+(\d+)$", run.stdout, re.M).group(1))
    peak_kb = int(re.search(r"^maxrss_kb (\d+)$", run.stdout, re.M).group(1))
    return {"jobs": jobs, "seconds": round(seconds, 1), "peak_gb": round(peak_kb / 2**20, 2),
            "ms_per_job": round(1000 * seconds / jobs, 2)}


def plan_bench(config: str | Path | None = None, studies: list[str] | None = None,
               json_out: str | Path | None = None) -> list[dict]:
    base = yaml.safe_load(Path(config or ROOT / "workflow_config.yaml").read_text())
    results = []
    with tempfile.TemporaryDirectory(prefix="amuro-plan-") as tmp:
        for name in studies or [*STUDIES, "floor"]:
            work_dir = Path(tmp) / f"work{name}"
            work_dir.mkdir()
            if name == "floor":
                from amuro.config import validate_config

                checkpoints, formats, sizes = STUDIES["20000"]
                shape = floor_config(validate_config(grown_config(base, checkpoints, formats, sizes)))
                result = {"study": name, **shape, **dry_run(None, work_dir, FLOOR, shape)}
            else:
                checkpoints, formats, sizes = STUDIES[name]
                configfile = Path(tmp) / f"study{name}.yaml"
                configfile.write_text(yaml.safe_dump(grown_config(base, checkpoints, formats, sizes)))
                result = {"study": name, "checkpoints": checkpoints, "train_sets": len(base["datasets"]),
                          "formats": len(formats), "sizes": len(sizes), **dry_run(configfile, work_dir)}
            print("{study:>6} jobs {jobs:>6}  {seconds:>7.1f} s  {peak_gb:>5.2f} GB  {ms_per_job:>5.2f} ms/job"
                  .format(**result), flush=True)
            results.append(result)
    if json_out:
        Path(json_out).write_text(json.dumps(results, indent=2) + "\n")
    return results
