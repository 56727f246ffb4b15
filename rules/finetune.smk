# Every cell: a pre-trained checkpoint fine-tuned on one train dataset, in one train format, at one train size.


rule build_fticl_prompts:
    input:
        expand("results/data/{{dataset}}/{split}.parquet", split=study.SPLITS),
    output:
        "results/prompts/{dataset}/fticl/train.parquet",
    params:
        task=dataset_task,
        shots=fticl_shots,
        seed=config["seed"],
    log:
        "logs/build_fticl_prompts/{dataset}.log",
    shell:
        "python -m amuro build-fticl-prompts --dataset {wildcards.dataset} --task {params.task}"
        " --data-dir results/data/{wildcards.dataset} --out {output} --shots {params.shots}"
        " --seed {params.seed} > {log} 2>&1"


rule finetune:
    input:
        base="results/checkpoints/{model}/{checkpoint}",
        train=train_prompts,
    output:
        directory("results/finetuned/{model}/{checkpoint}/{dataset}/{train_format}/{size}"),
    params:
        settings=finetune_settings,
        # Trainer checkpoints live outside the output, so a killed job resumes instead of starting over.
        scratch="results/scratch/finetune/{model}/{checkpoint}/{dataset}/{train_format}/{size}",
    threads: 1
    resources:
        runtime=240,
    log:
        "logs/finetune/{model}/{checkpoint}/{dataset}/{train_format}/{size}.log",
    benchmark:
        "benchmarks/finetune/{model}/{checkpoint}/{dataset}/{train_format}/{size}.tsv"
    shell:
        "python -m amuro finetune --base {input.base} --train {input.train} --out {output}"
        " --settings {params.settings:q} --scratch {params.scratch} --threads {threads} > {log} 2>&1"
