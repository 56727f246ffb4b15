# Canonical datasets, then every dataset in every prompt format with its k-shot demonstrations.


rule prepare_dataset:
    input:
        dataset_source,
        download=dataset_download,
    output:
        expand("results/data/{{dataset}}/{split}.parquet", split=study.SPLITS),
        "results/data/{dataset}/meta.json",
    params:
        spec=dataset_spec,
        seed=dataset_seed,
        miniworld=MINIWORLD,
        download=lambda wc, input: download_option(input.download),
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    shell:
        "python -m amuro prepare-data --dataset {wildcards.dataset} --spec {params.spec:q} --seed {params.seed}"
        " --out-dir results/data/{wildcards.dataset} --miniworld-dir {params.miniworld} {params.download} > {log} 2>&1"


rule build_prompts:
    input:
        expand("results/data/{{dataset}}/{split}.parquet", split=study.SPLITS),
    output:
        expand("results/prompts/{{dataset}}/{{format}}/{split}.parquet", split=study.SPLITS),
    params:
        task=dataset_task,
        shots=",".join(map(str, SHOTS)),
        seed=config["seed"],
        templates=lambda wc: as_json(config["datasets"][wc.dataset]["templates"]),
    log:
        "logs/build_prompts/{dataset}/{format}.log",
    benchmark:
        "benchmarks/build_prompts/{dataset}/{format}.tsv"
    shell:
        "python -m amuro build-prompts --dataset {wildcards.dataset} --task {params.task} --format {wildcards.format}"
        " --data-dir results/data/{wildcards.dataset} --out-dir results/prompts/{wildcards.dataset}/{wildcards.format}"
        " --shots {params.shots} --seed {params.seed} --templates {params.templates:q} > {log} 2>&1"
