import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from amuro import config as study
from amuro import figures as figure_registry

validate(config, "../amuro/schemas/config.schema.yaml")
study.check_references(config, "workflow config")

# Jobs run `python -m amuro`: the environment running Snakemake comes first, activated or not.
os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])

MINIWORLD = "results/miniworld"
MODELS = sorted(config["models"])
DATASETS = sorted(config["datasets"])
FORMATS = config["formats"]
# Every shot count any model is evaluated with; prompt files hold them all.
SHOTS = sorted(set(config["evaluation"]["base_shots"]) | set(config["evaluation"]["finetuned_shots"]))
EVAL_DATASETS = study.eval_datasets(config)
TRAIN_DATASETS = config["finetune"]["datasets"]
TRAIN_FORMATS = config["finetune"]["formats"]
TRAIN_SIZES = [str(size) for size in config["finetune"]["sizes"]]


wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(DATASETS),
    format="|".join(FORMATS),
    checkpoint=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    train_format="default|io|instruct|fticl",
    size=r"all|\d+",
    train="base|(" + "|".join(DATASETS) + r")-(default|io|instruct|fticl)-(all|\d+)",
    figure="|".join(figure_registry.FIGURES),


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


def cells():
    """Every fine-tuning run: (model, checkpoint, train dataset, train format, train size)."""
    return [
        (m, c, d, f, s)
        for m in MODELS
        for c in study.model_checkpoints(config, m)
        for d in TRAIN_DATASETS
        for f in TRAIN_FORMATS
        for s in TRAIN_SIZES
    ]


def cell_name(dataset, train_format, size):
    """How a fine-tuned model is named in prediction paths (a pre-trained checkpoint is "base")."""
    return f"{dataset}-{train_format}-{size}"


def base_prediction_files(model="{{model}}", ckpt="{{checkpoint}}"):
    return expand(
        f"results/predictions/{model}/{ckpt}/base/{{eval}}/{{format}}/{{shots}}shot.parquet",
        eval=EVAL_DATASETS,
        format=FORMATS,
        shots=config["evaluation"]["base_shots"],
    )


def finetuned_prediction_files(
    model="{{model}}",
    ckpt="{{checkpoint}}",
    dataset="{{dataset}}",
    train_format="{{train_format}}",
    size="{{size}}",
):
    cell = cell_name(dataset, train_format, size)
    return expand(
        f"results/predictions/{model}/{ckpt}/{cell}/{{eval}}/{{format}}/{{shots}}shot.parquet",
        eval=EVAL_DATASETS,
        format=FORMATS,
        shots=config["evaluation"]["finetuned_shots"],
    )


def all_predictions():
    files = []
    for m in MODELS:
        for c in study.model_checkpoints(config, m):
            files += base_prediction_files(m, c)
    for m, c, d, f, s in cells():
        files += finetuned_prediction_files(m, c, d, f, s)
    return files


def summary_file(model, ckpt, train):
    return f"results/tables/cells/{model}/{ckpt}/{train}.parquet"


def all_summaries():
    files = [summary_file(m, c, "base") for m in MODELS for c in study.model_checkpoints(config, m)]
    files += [summary_file(m, c, cell_name(d, f, s)) for m, c, d, f, s in cells()]
    return files


def drawable_figures():
    """Figures the configured study can fill; others are left out of `all` (and fail if asked for by name)."""
    return [f for f in figure_registry.FIGURES if figure_registry.unmet_need(f, config) is None]


def final_outputs():
    tables = expand("results/tables/{table}", table=["results.parquet", "transfer.parquet", "forgetting.parquet",
                                                    "overview.html"])
    figures = expand("results/figures/{figure}.{ext}", figure=drawable_figures(), ext=["pdf", "png"])
    return model_checkpoint_dirs() + prompt_files() + all_predictions() + tables + figures


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


def train_prompts(wildcards):
    return f"results/prompts/{wildcards.dataset}/{wildcards.train_format}/train.parquet"


def finetune_settings(wildcards):
    settings = study.hyperparameters(config, wildcards.dataset)
    settings["size"] = None if wildcards.size == "all" else int(wildcards.size)
    return as_json(settings)


def fticl_shots(wildcards):
    return study.hyperparameters(config, wildcards.dataset)["fticl_shots"]


def eval_prompt_files(wildcards):
    return expand("results/prompts/{eval}/{format}/test.parquet", eval=EVAL_DATASETS, format=FORMATS)


def _eval_plan(outputs, shots):
    plan = []
    for path in outputs:
        # results/predictions/{model}/{checkpoint}/{train}/{eval}/{format}/{shots}shot.parquet
        eval_dataset, fmt, shot_file = path.split("/")[-3:]
        spec = config["datasets"][eval_dataset]
        plan.append(
            {
                "dataset": eval_dataset,
                "task": spec["task"],
                "format": fmt,
                "shots": int(shot_file.removesuffix("shot.parquet")),
                "prompts": f"results/prompts/{eval_dataset}/{fmt}/test.parquet",
                "output": path,
                "labels": spec.get("labels"),
            }
        )
    return as_json(plan)


def base_eval_plan(wildcards, output):
    return _eval_plan(output, config["evaluation"]["base_shots"])


def finetuned_eval_plan(wildcards, output):
    return _eval_plan(output, config["evaluation"]["finetuned_shots"])


def eval_settings():
    evaluation = config["evaluation"]
    return as_json(
        {
            "classification": evaluation["classification"],
            "max_new_tokens_generation": evaluation["max_new_tokens"]["generation"],
            "max_new_tokens_classification": evaluation["max_new_tokens"]["classification"],
            "batch_size": evaluation["batch_size"],
            "rouge_stemmer": config["metrics"]["rouge_stemmer"],
        }
    )


def base_meta(wildcards):
    return as_json({"model": wildcards.model, "checkpoint": wildcards.checkpoint, "train": "base",
                    "train_dataset": None, "train_format": None, "train_size": None})


def finetuned_meta(wildcards):
    return as_json({"model": wildcards.model, "checkpoint": wildcards.checkpoint,
                    "train": cell_name(wildcards.dataset, wildcards.train_format, wildcards.size),
                    "train_dataset": wildcards.dataset, "train_format": wildcards.train_format,
                    "train_size": wildcards.size})


def evaluated_prediction_files(wildcards):
    """The prediction files of one evaluated model: a pre-trained checkpoint ("base") or a fine-tuned cell."""
    if wildcards.train == "base":
        return base_prediction_files(wildcards.model, wildcards.checkpoint)
    dataset, train_format, size = wildcards.train.rsplit("-", 2)
    return finetuned_prediction_files(wildcards.model, wildcards.checkpoint, dataset, train_format, size)


def summary_settings(wildcards):
    train_dataset = None if wildcards.train == "base" else wildcards.train.rsplit("-", 2)[0]
    metrics = config["metrics"]
    return as_json(
        {
            "train_task": config["datasets"][train_dataset]["task"] if train_dataset else None,
            "resamples": metrics["bootstrap_resamples"],
            "confidence": metrics["confidence"],
            "seed": config["seed"],
        }
    )


def figure_inputs(wildcards):
    reason = figure_registry.unmet_need(wildcards.figure, config)
    if reason:
        raise WorkflowError(f"figure '{wildcards.figure}' cannot be drawn from this study: {reason}")
    files = [summary_file(m, c, "base") for m in MODELS for c in study.model_checkpoints(config, m)]
    for d, f, s in figure_registry.finetuned_cells(wildcards.figure, config):
        files += [summary_file(m, c, cell_name(d, f, s)) for m in MODELS for c in study.model_checkpoints(config, m)]
    return files


def figure_caption(wildcards):
    return figure_registry.FIGURES[wildcards.figure].caption
