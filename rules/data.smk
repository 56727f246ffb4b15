# Canonical datasets, then every dataset in every prompt format with its k-shot demonstrations.


rule prepare_dataset:
    input:
        of_dataset(STUDY.dataset_inputs),
        download=of_dataset(STUDY.dataset_record),
    output:
        STUDY.data_outputs(),
    params:
        spec=as_json(of_dataset(STUDY.dataset_spec)),
        seed=of_dataset(STUDY.dataset_seed),
        out_dir=plan.DATA_DIR,
        miniworld=MINIWORLD,
        download=download_option,
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    shell:
        "python -m amuro prepare-data --dataset {wildcards.dataset} --spec {params.spec:q} --seed {params.seed}"
        " --out-dir {params.out_dir} --miniworld-dir {params.miniworld} {params.download} > {log} 2>&1"


rule build_prompts:
    input:
        plan.per_split(plan.DATA),
    output:
        plan.per_split(plan.PROMPTS),
    params:
        task=of_dataset(STUDY.dataset_task),
        shots=",".join(map(str, STUDY.prompt_shots)),
        seed=config["seed"],
        data_dir=plan.DATA_DIR,
        out_dir=plan.PROMPT_DIR,
        templates=as_json(of_dataset(STUDY.dataset_templates)),
    log:
        "logs/build_prompts/{dataset}/{format}.log",
    benchmark:
        "benchmarks/build_prompts/{dataset}/{format}.tsv"
    shell:
        "python -m amuro build-prompts --dataset {wildcards.dataset} --task {params.task} --format {wildcards.format}"
        " --data-dir {params.data_dir} --out-dir {params.out_dir} --shots {params.shots}"
        " --seed {params.seed} --templates {params.templates:q} > {log} 2>&1"
