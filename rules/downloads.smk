# The download stage: the only jobs that reach the network (local rules: on a cluster they run where Snakemake runs,
# e.g. the login node). Each fetches one thing into the HF cache and records its commit and file hashes under
# results/downloads/; the jobs that read it depend on that record and run offline (HF_HUB_OFFLINE=1,
# HF_DATASETS_OFFLINE=1, set by `python -m amuro` for every other stage). `snakemake download` runs only this stage.


def hub_checkpoint_records():
    return [f"results/downloads/checkpoints/{m}/{c}.json" for m in MODELS if config["models"][m]["source"] == "hub"
            for c in study.model_checkpoints(config, m)]


def hub_dataset_records():
    return [f"results/downloads/datasets/{d}.json" for d in DATASETS
            if config["datasets"][d]["source"]["type"] == "hub"]


def hub_instruction_records():
    source = config["instruction_tuning"].get("source", {})
    if IT_MODELS and source.get("type") == "hub":
        return [f"results/downloads/instructions/{INSTRUCTIONS}.json"]
    return []


def hub_benchmark_records():
    return [f"results/downloads/benchmarks/{b}.json" for b in BENCHMARKS if "task" in config["benchmarks"]["tasks"][b]]


def all_download_records():
    return hub_checkpoint_records() + hub_dataset_records() + hub_instruction_records() + hub_benchmark_records()


def checkpoint_download(wildcards):
    """The download record a hub checkpoint is read from (nothing for local and mini-world checkpoints)."""
    if config["models"][wildcards.model]["source"] == "hub":
        return f"results/downloads/checkpoints/{wildcards.model}/{wildcards.checkpoint}.json"
    return []


def dataset_download(wildcards):
    if config["datasets"][wildcards.dataset]["source"]["type"] == "hub":
        return f"results/downloads/datasets/{wildcards.dataset}.json"
    return []


def instruction_download(wildcards):
    return hub_instruction_records()


def benchmark_downloads(wildcards):
    return hub_benchmark_records()


def download_option(records):
    """`--download <record>` when there is a record, else nothing."""
    return f"--download {records}" if records else ""


rule download:
    input:
        all_download_records(),
    localrule: True


rule download_checkpoint:
    output:
        "results/downloads/checkpoints/{model}/{checkpoint}.json",
    params:
        # Only what decides the files: a model's gpus or hyper-parameters must not refetch (and rerun) anything.
        spec=lambda wc: as_json({"repo": config["models"][wc.model]["repo"]}),
        entry=lambda wc: as_json(study.checkpoint_entry(config, wc.model, wc.checkpoint)),
    localrule: True
    log:
        "logs/download_checkpoint/{model}/{checkpoint}.log",
    shell:
        "python -m amuro download-checkpoint --model {wildcards.model} --spec {params.spec:q}"
        " --entry {params.entry:q} --out {output} > {log} 2>&1"


rule download_dataset:
    output:
        "results/downloads/datasets/{dataset}.json",
    params:
        spec=lambda wc: as_json({"source": config["datasets"][wc.dataset]["source"]}),
    localrule: True
    log:
        "logs/download_dataset/{dataset}.log",
    shell:
        "python -m amuro download-dataset --dataset {wildcards.dataset} --spec {params.spec:q} --out {output} > {log} 2>&1"


rule download_instructions:
    output:
        "results/downloads/instructions/{dataset}.json",
    params:
        source=lambda wc: as_json(config["instruction_tuning"]["source"]),
    localrule: True
    log:
        "logs/download_instructions/{dataset}.log",
    shell:
        "python -m amuro download-instructions --name {wildcards.dataset} --source {params.source:q} --out {output}"
        " > {log} 2>&1"


rule download_benchmark:
    output:
        "results/downloads/benchmarks/{benchmark}.json",
    params:
        task=lambda wc: config["benchmarks"]["tasks"][wc.benchmark]["task"],
        overrides=lambda wc: " ".join(f"--{key.replace('_', '-')} {value}" for key, value in
                                      config["benchmarks"]["tasks"][wc.benchmark].items() if key != "task"),
    localrule: True
    log:
        "logs/download_benchmark/{benchmark}.log",
    shell:
        "python -m amuro download-benchmark --benchmark {wildcards.benchmark} --task {params.task} {params.overrides}"
        " --out {output} > {log} 2>&1"
