# Every cell: a pre-trained checkpoint fine-tuned on one train dataset, in one train format, at one train size.
# Instruction tuning is a cell too: the instruction mix in chat format, once per checkpoint.


rule prepare_instructions:
    input:
        instruction_source,
        download=instruction_download,
    output:
        "results/instructions/{dataset}/train.parquet",
    params:
        spec=instruction_spec,
        miniworld=MINIWORLD,
        download=lambda wc, input: download_option(input.download),
    log:
        "logs/prepare_instructions/{dataset}.log",
    benchmark:
        "benchmarks/prepare_instructions/{dataset}.tsv"
    shell:
        "python -m amuro prepare-instructions --spec {params.spec:q} --out {output}"
        " --miniworld-dir {params.miniworld} {params.download} > {log} 2>&1"


rule build_fticl_prompts:
    input:
        expand("results/data/{{dataset}}/{split}.parquet", split=study.SPLITS),
    output:
        "results/prompts/{dataset}/fticl/train.parquet",
    params:
        task=dataset_task,
        shots=fticl_shots,
        seed=config["seed"],
        templates=lambda wc: as_json(config["datasets"][wc.dataset]["templates"]),
    log:
        "logs/build_fticl_prompts/{dataset}.log",
    shell:
        "python -m amuro build-fticl-prompts --dataset {wildcards.dataset} --task {params.task}"
        " --data-dir results/data/{wildcards.dataset} --out {output} --shots {params.shots}"
        " --seed {params.seed} --templates {params.templates:q} > {log} 2>&1"


rule finetune:
    input:
        base="results/checkpoints/{model}/{checkpoint}",
        train=train_prompts,
    output:
        directory("results/finetuned/{model}/{checkpoint}/{dataset}/{train_format}/{size}"),
    params:
        settings=finetune_settings,
        launcher=finetune_launcher,
        # Trainer checkpoints live outside the output, so a killed job resumes instead of starting over.
        scratch="results/scratch/finetune/{model}/{checkpoint}/{dataset}/{train_format}/{size}",
    threads: 1
    resources:
        runtime=240,
        gpu=finetune_gpus,
    log:
        "logs/finetune/{model}/{checkpoint}/{dataset}/{train_format}/{size}.log",
    benchmark:
        "benchmarks/finetune/{model}/{checkpoint}/{dataset}/{train_format}/{size}.tsv"
    shell:
        "(python -m amuro verify-checkpoint {input.base} && {params.launcher} finetune --base {input.base}"
        " --train {input.train} --out {output} --settings {params.settings:q} --scratch {params.scratch}"
        " --threads {threads}) > {log} 2>&1"
