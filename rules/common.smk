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
# The second arm: every checkpoint of these models tuned once on the instruction mix, and the benchmarks.
INSTRUCTIONS = config["instruction_tuning"]["name"]
IT_MODELS = study.instruction_tuned_models(config)
BENCHMARKS = sorted(config["benchmarks"]["tasks"])


wildcard_constraints:
    model="|".join(MODELS),
    dataset="|".join(DATASETS + [INSTRUCTIONS]),
    format="|".join(FORMATS),
    checkpoint=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    train_format="default|io|instruct|fticl|chat",
    size=r"all|\d+",
    train="base|(" + "|".join(DATASETS) + r")-(default|io|instruct|fticl)-(all|\d+)|" + f"{INSTRUCTIONS}-chat-all",
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


# An instruction-tuned checkpoint is a cell too: the mix, in chat format, all of it.
INSTRUCTION_CELL = cell_name(INSTRUCTIONS, "chat", "all")


def instruction_tuned_dirs():
    return [f"results/finetuned/{m}/{c}/{INSTRUCTIONS}/chat/all" for m in IT_MODELS
            for c in study.model_checkpoints(config, m)]


def benchmark_files(model="{{model}}", ckpt="{{checkpoint}}", train="{{train}}"):
    """lm-eval scores of one model (base or instruction-tuned) on every benchmark and shot count."""
    return expand(
        f"results/benchmarks/{model}/{ckpt}/{train}/{{benchmark}}/{{shots}}shot.parquet",
        benchmark=BENCHMARKS,
        shots=config["benchmarks"]["shots"],
    )


def benchmark_model_dir(wildcards):
    if wildcards.train == "base":
        return f"results/checkpoints/{wildcards.model}/{wildcards.checkpoint}"
    return f"results/finetuned/{wildcards.model}/{wildcards.checkpoint}/{INSTRUCTIONS}/chat/all"


def benchmark_data(wildcards):
    tasks = config["benchmarks"]["tasks"].values()
    return [f"{MINIWORLD}/benchmarks"] if any("miniworld" in t for t in tasks) else []


def benchmark_plan(wildcards, output):
    plan = []
    for path in output:
        # results/benchmarks/{model}/{checkpoint}/{train}/{benchmark}/{shots}shot.parquet
        benchmark, shot_file = path.split("/")[-2:]
        spec = config["benchmarks"]["tasks"][benchmark]
        plan.append({"benchmark": benchmark, "task": spec.get("task", f"amuro_{benchmark}"),
                     "shots": int(shot_file.removesuffix("shot.parquet")), "output": path,
                     # lm-eval tasks read their data offline from what the download stage recorded.
                     "download": f"results/downloads/benchmarks/{benchmark}.json" if "task" in spec else None})
    return as_json(plan)


def benchmark_tasks():
    """Task YAMLs amuro writes for benchmarks stored as local files (the mini-world's)."""
    return as_json({
        f"amuro_{name}": {"task": f"amuro_{name}",
                          "train": f"{MINIWORLD}/benchmarks/{spec['miniworld']}/train.jsonl",
                          "test": f"{MINIWORLD}/benchmarks/{spec['miniworld']}/test.jsonl"}
        for name, spec in config["benchmarks"]["tasks"].items() if "miniworld" in spec
    })


def benchmark_settings():
    b = config["benchmarks"]
    return as_json({"batch_size": b["batch_size"], "limit": b["limit"]})


def benchmark_meta(wildcards):
    tuned = wildcards.train != "base"
    return as_json({"model": wildcards.model, "checkpoint": wildcards.checkpoint, "train": wildcards.train,
                    "train_dataset": INSTRUCTIONS if tuned else None, "train_format": "chat" if tuned else None,
                    "train_size": "all" if tuned else None})


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
            files += base_prediction_files(m, c) + benchmark_files(m, c, "base")
            if m in IT_MODELS:
                files += benchmark_files(m, c, INSTRUCTION_CELL)
    for m, c, d, f, s in cells():
        files += finetuned_prediction_files(m, c, d, f, s)
    return files


def summary_file(model, ckpt, train):
    return f"results/tables/cells/{model}/{ckpt}/{train}.parquet"


def all_summaries():
    files = [summary_file(m, c, "base") for m in MODELS for c in study.model_checkpoints(config, m)]
    files += [summary_file(m, c, cell_name(d, f, s)) for m, c, d, f, s in cells()]
    files += [summary_file(m, c, INSTRUCTION_CELL) for m in IT_MODELS for c in study.model_checkpoints(config, m)]
    return files


def drawable_figures():
    """Figures the configured study can fill; others are left out of `all` (and fail if asked for by name)."""
    return [f for f in figure_registry.FIGURES if figure_registry.unmet_need(f, config) is None]


def instruction_source(wildcards):
    source = config["instruction_tuning"]["source"]
    if source["type"] == "miniworld":
        return f"{MINIWORLD}/instructions"
    return [source["file"]] if source["type"] == "local" else []


def instruction_spec(wildcards):
    it = config["instruction_tuning"]
    return as_json({"name": it["name"], "source": it["source"], "sample": it["sample"],
                    "seed": it.get("seed", config["seed"])})


def instruction_outputs():
    if not IT_MODELS:
        return []
    return [f"results/instructions/{INSTRUCTIONS}/train.parquet"] + instruction_tuned_dirs()


def final_outputs():
    tables = expand("results/tables/{table}", table=["results.parquet", "transfer.parquet", "forgetting.parquet",
                                                    "mrc.parquet", "group_gain.parquet", "overview.html"])
    if classification_prediction_files():
        tables += ["results/tables/scoring_methods.parquet", "results/tables/table3.parquet"]
    figures = expand("results/figures/{figure}.{ext}", figure=drawable_figures(), ext=["pdf", "png"])
    return model_checkpoint_dirs() + prompt_files() + instruction_outputs() + all_predictions() + tables + figures


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
    if wildcards.train_format == "chat":
        return f"results/instructions/{wildcards.dataset}/train.parquet"
    return f"results/prompts/{wildcards.dataset}/{wildcards.train_format}/train.parquet"


def finetune_settings(wildcards):
    if wildcards.train_format == "chat":
        return as_json(study.instruction_hyperparameters(config))
    settings = study.hyperparameters(config, wildcards.dataset, wildcards.model)
    settings["size"] = None if wildcards.size == "all" else int(wildcards.size)
    return as_json(settings)


def finetune_gpus(wildcards):
    return config["models"][wildcards.model]["gpus"]


def finetune_launcher(wildcards):
    """One process, or on several GPUs the `deepspeed` launcher as one task that sees them all, on a free port."""
    gpus = finetune_gpus(wildcards)
    if gpus == 1:
        return "python -m amuro"
    free_port = "$(python -c 'import socket; s = socket.socket(); s.bind((\"\", 0)); print(s.getsockname()[1])')"
    # --no_local_rank: the rank comes from the environment, and `--local_rank=N` would precede the subcommand.
    return f"deepspeed --num_gpus {gpus} --master_port {free_port} --no_local_rank --module amuro"


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
    """The prediction files of one evaluated model: a pre-trained checkpoint ("base"), a fine-tuned cell or an
    instruction-tuned checkpoint (benchmarks only)."""
    if wildcards.train == "base":
        return base_prediction_files(wildcards.model, wildcards.checkpoint) + benchmark_files(
            wildcards.model, wildcards.checkpoint, "base")
    if wildcards.train == INSTRUCTION_CELL:
        return benchmark_files(wildcards.model, wildcards.checkpoint, INSTRUCTION_CELL)
    dataset, train_format, size = wildcards.train.rsplit("-", 2)
    return finetuned_prediction_files(wildcards.model, wildcards.checkpoint, dataset, train_format, size)


def summary_settings(wildcards):
    train_dataset = None if wildcards.train == "base" else wildcards.train.rsplit("-", 2)[0]
    if wildcards.train == INSTRUCTION_CELL:
        train_task = "instruction"
    else:
        train_task = config["datasets"][train_dataset]["task"] if train_dataset else None
    metrics = config["metrics"]
    return as_json(
        {
            "train_task": train_task,
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
        models = IT_MODELS if f == "chat" else MODELS
        files += [summary_file(m, c, cell_name(d, f, s)) for m in models for c in study.model_checkpoints(config, m)]
    return files


def figure_settings():
    """What a figure needs besides the table: the interval level, the benchmark metric, configured groups."""
    return as_json({"confidence": config["metrics"]["confidence"], "benchmark_metric": config["benchmarks"]["metric"],
                    "groups": config["analysis"]["groups"]})


def analysis_settings():
    return as_json({"benchmark_metric": config["benchmarks"]["metric"], "groups": config["analysis"]["groups"],
                    "mrc_eval_sets": config["analysis"]["mrc_eval_sets"]})


def classification_prediction_files():
    """Classification predictions in the main eval format: the data of the scoring-method comparison (Table 3)."""
    main = "default" if "default" in FORMATS else FORMATS[0]
    return [p for p in all_predictions() if p.startswith("results/predictions/") and p.split("/")[-2] == main
            and study.is_classification(config, p.split("/")[-3])]


def figure_caption(wildcards):
    return figure_registry.FIGURES[wildcards.figure].caption
