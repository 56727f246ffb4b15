"""Every output path of the study, once, as a template whose fields are the study's axes.

A job's inputs are computed from its run and these templates, never by taking a path apart.
"""

from __future__ import annotations

from amuro.config import SPLITS

MINIWORLD = "results/miniworld"
CHECKPOINT = "results/checkpoints/{model}/{checkpoint}"
DATA_DIR = "results/data/{dataset}"
DATA = DATA_DIR + "/{split}.parquet"
DATA_META = DATA_DIR + "/meta.json"
PROMPT_DIR = "results/prompts/{dataset}/{format}"
PROMPTS = PROMPT_DIR + "/{split}.parquet"
# Every evaluation job reads the test prompts of every eval set: one index of them stands for them all.
PROMPT_INDEX = "results/prompts/index.json"
INSTRUCTIONS = "results/instructions/{dataset}/train.parquet"
FINETUNED = "results/finetuned/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}/{variant}/{seed}"
# Trainer checkpoints live outside the output, so a killed job resumes instead of starting over.
SCRATCH = "results/scratch/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}/{variant}/{seed}"
PREDICTIONS = "results/predictions/{model}/{checkpoint}/{train}/{eval_dataset}/{eval_format}/{shots}shot.parquet"
BENCHMARK_SCORES = "results/benchmarks/{model}/{checkpoint}/{train}/{benchmark}/{shots}shot.parquet"
# What an evaluation (benchmark) job wrote for one model, with hashes: what its summary reads.
PREDICTION_INDEX = "results/predictions/{model}/{checkpoint}/{train}/index.json"
BENCHMARK_INDEX = "results/benchmarks/{model}/{checkpoint}/{train}/index.json"
SUMMARY = "results/tables/cells/{model}/{checkpoint}/{train}.parquet"
# The download stage's records: what was fetched from the hub (commit, file hashes); jobs then read it offline.
CHECKPOINT_RECORD = "results/downloads/checkpoints/{model}/{checkpoint}.json"
DATASET_RECORD = "results/downloads/datasets/{dataset}.json"
INSTRUCTIONS_RECORD = "results/downloads/instructions/{dataset}.json"
BENCHMARK_RECORD = "results/downloads/benchmarks/{benchmark}.json"
TABLE = "results/tables/{name}"
FIGURE = "results/figures/{figure}.{ext}"

SUMMARY_TABLES = ("results.parquet", "transfer.parquet", "forgetting.parquet", "mrc.parquet",
                  "group_gain.parquet", "findings.parquet", "seeds.parquet", "overview.html")
SCORING_TABLES = ("scoring_methods.parquet", "table3.parquet")


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, **values) -> str:
    """`template` with the given fields filled in and every other field left as a wildcard."""
    return template.format_map(_KeepMissing(values))


def per_split(template: str) -> list[str]:
    """One path per split (train, validation, test) of a template with a {split} field."""
    return [fill(template, split=split) for split in SPLITS]


def table(name: str) -> str:
    return fill(TABLE, name=name)
