# Canonical datasets, then every dataset in every prompt format with its k-shot demonstrations.


rule prepare_dataset:
    input:
        of_dataset(STUDY.data.dataset_inputs),
        download=of_dataset(STUDY.downloads.dataset_record),
    output:
        STUDY.data.dataset_outputs(),
    params:
        spec=of_dataset(STUDY.data.prepare_spec, to_json=True),
        seed=of_dataset(STUDY.data.dataset_seed),
        out_dir=paths.DATA_DIR,
        miniworld=MINIWORLD,
    localrule: True
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    shell:
        "python -m amuro prepare-dataset --dataset {wildcards.dataset} --spec {params.spec:q} --seed {params.seed}"
        " --out-dir {params.out_dir} --miniworld-dir {params.miniworld} --download {input.download} > {log} 2>&1"


rule build_prompts:
    input:
        paths.per_split(paths.DATA),
    output:
        paths.fill(paths.PROMPTS, split="train"),
        paths.fill(paths.PROMPTS, split="validation"),
    params:
        task=of_dataset(STUDY.data.dataset_task),
        seed=STUDY.seed,
        data_dir=paths.DATA_DIR,
        out_dir=paths.PROMPT_DIR,
        templates=of_dataset(STUDY.data.dataset_templates, to_json=True),
        demonstrations=as_json(STUDY.data.demonstrations()),
    localrule: True
    log:
        "logs/build_prompts/{dataset}/{format}.log",
    benchmark:
        "benchmarks/build_prompts/{dataset}/{format}.tsv"
    shell:
        "python -m amuro build-prompts --dataset {wildcards.dataset} --task {params.task} --format {wildcards.format}"
        " --data-dir {params.data_dir} --out-dir {params.out_dir} --splits train,validation --shots 0"
        " --seed {params.seed} --templates {params.templates:q} --demonstrations {params.demonstrations:q}"
        " > {log} 2>&1"


# The test split holds every shot count any model is evaluated with; apart from the train split, so that another
# shot count rewrites no train file (and reruns no fine-tune).
rule build_test_prompts:
    input:
        paths.per_split(paths.DATA),
    output:
        paths.fill(paths.PROMPTS, split="test"),
    params:
        task=of_dataset(STUDY.data.dataset_task),
        shots=of_dataset(STUDY.data.prompt_shots),
        seed=STUDY.seed,
        data_dir=paths.DATA_DIR,
        out_dir=paths.PROMPT_DIR,
        templates=of_dataset(STUDY.data.dataset_templates, to_json=True),
        demonstrations=as_json(STUDY.data.demonstrations()),
    localrule: True
    log:
        "logs/build_test_prompts/{dataset}/{format}.log",
    benchmark:
        "benchmarks/build_test_prompts/{dataset}/{format}.tsv"
    shell:
        "python -m amuro build-prompts --dataset {wildcards.dataset} --task {params.task} --format {wildcards.format}"
        " --data-dir {params.data_dir} --out-dir {params.out_dir} --splits test --shots {params.shots}"
        " --seed {params.seed} --templates {params.templates:q} --demonstrations {params.demonstrations:q}"
        " > {log} 2>&1"


# Every evaluation job reads the test prompts of every eval set; it depends on their index, one edge instead of one
# per set and format (the index changes whenever one of them does).
rule index_prompts:
    input:
        STUDY.evaluation.prompt_index_inputs(),
    output:
        paths.PROMPT_INDEX,
    localrule: True
    log:
        "logs/index_prompts.log",
    benchmark:
        "benchmarks/index_prompts.tsv"
    shell:
        "python -m amuro index-prompts --out {output} {input} > {log} 2>&1"


rule build_fticl_prompts:
    input:
        paths.per_split(paths.DATA),
    output:
        paths.fill(paths.PROMPTS, format="fticl", split="train"),
    params:
        task=of_dataset(STUDY.data.dataset_task),
        shots=of_dataset(STUDY.finetuning.fticl_shots),
        demonstrations=of_dataset(STUDY.finetuning.fticl_demonstrations),
        seed=STUDY.seed,
        data_dir=paths.DATA_DIR,
        templates=of_dataset(STUDY.data.dataset_templates, to_json=True),
    localrule: True
    log:
        "logs/build_fticl_prompts/{dataset}.log",
    benchmark:
        "benchmarks/build_fticl_prompts/{dataset}.tsv"
    shell:
        "python -m amuro build-fticl-prompts --dataset {wildcards.dataset} --task {params.task}"
        " --data-dir {params.data_dir} --out {output} --shots {params.shots} --seed {params.seed}"
        " --demonstrations {params.demonstrations} --templates {params.templates:q} > {log} 2>&1"


rule prepare_instructions:
    input:
        STUDY.data.instruction_inputs(),
        download=STUDY.downloads.instruction_records(),
    output:
        paths.INSTRUCTIONS,
    params:
        spec=as_json(STUDY.data.instruction_spec()),
        miniworld=MINIWORLD,
    localrule: True
    log:
        "logs/prepare_instructions/{dataset}.log",
    benchmark:
        "benchmarks/prepare_instructions/{dataset}.tsv"
    shell:
        "python -m amuro prepare-instructions --spec {params.spec:q} --out {output}"
        " --miniworld-dir {params.miniworld} --download {input.download} > {log} 2>&1"
