import json

from snakemake.utils import validate

from amuro import config as study

validate(config, "../amuro/schemas/config.schema.yaml")
study.check_references(config, "workflow config")

MINIWORLD = "results/miniworld"
MODELS = sorted(config["models"])
DATASETS = sorted(config["datasets"])
FORMATS = config["formats"]
# Every shot count any model is evaluated with; prompt files hold them all.
SHOTS = sorted(set(config["evaluation"]["base_shots"]) | set(config["evaluation"]["finetuned_shots"]))


wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(DATASETS),
    format="|".join(FORMATS),
    checkpoint=r"[A-Za-z0-9][A-Za-z0-9._-]*",


def as_json(obj):
    """A config fragment as the JSON argument of an amuro stage (sorted, so params compare stably)."""
    return json.dumps(obj, sort_keys=True)


def model_checkpoint_dirs():
    return [
        f"results/checkpoints/{m}/{c}"
        for m in MODELS
        for c in study.model_checkpoints(config, m)
    ]


def prompt_files():
    return expand(
        "results/prompts/{dataset}/{format}/{split}.parquet",
        dataset=DATASETS,
        format=FORMATS,
        split=study.SPLITS,
    )


def final_outputs():
    return model_checkpoint_dirs() + prompt_files()


def uses_miniworld():
    return any(m["source"] == "miniworld" for m in config["models"].values()) or any(
        d["source"]["type"] == "miniworld" for d in config["datasets"].values()
    )


def miniworld_settings(section=None):
    mw = config["miniworld"]
    return as_json(mw if section is None else {k: mw[k] for k in section})


def checkpoint_source(wildcards):
    """A mini-world checkpoint needs the pre-training run; hub and local ones need nothing from the workflow."""
    if config["models"][wildcards.model]["source"] == "miniworld":
        return f"{MINIWORLD}/pretrain"
    return []


def dataset_source(wildcards):
    source = config["datasets"][wildcards.dataset]["source"]
    if source["type"] == "miniworld":
        return f"{MINIWORLD}/datasets"
    if source["type"] == "local":
        return list(source["files"].values())
    return []


def model_spec(wildcards):
    return as_json(config["models"][wildcards.model])


def dataset_spec(wildcards):
    return as_json(config["datasets"][wildcards.dataset])


def dataset_seed(wildcards):
    return study.dataset_seed(config, wildcards.dataset)


def dataset_task(wildcards):
    return config["datasets"][wildcards.dataset]["task"]
