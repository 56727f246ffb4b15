# Every cell: a pre-trained checkpoint fine-tuned on one train dataset, in one train format, at one train size.
# Instruction tuning is a cell too: the instruction mix in chat format, once per checkpoint.


rule prepare_instructions:
    input:
        STUDY.instruction_inputs(),
        download=STUDY.instruction_records(),
    output:
        plan.INSTRUCTIONS,
    params:
        spec=plan.as_json(STUDY.instruction_spec()),
        miniworld=MINIWORLD,
        download=download_option,
    log:
        "logs/prepare_instructions/{dataset}.log",
    benchmark:
        "benchmarks/prepare_instructions/{dataset}.tsv"
    shell:
        "python -m amuro prepare-instructions --spec {params.spec:q} --out {output}"
        " --miniworld-dir {params.miniworld} {params.download} > {log} 2>&1"


rule build_fticl_prompts:
    input:
        plan.per_split(plan.DATA),
    output:
        plan.fill(plan.PROMPTS, format="fticl", split="train"),
    params:
        task=of_dataset(STUDY.dataset_task),
        shots=of_dataset(STUDY.fticl_shots),
        seed=config["seed"],
        data_dir=plan.DATA_DIR,
        templates=as_json(of_dataset(STUDY.dataset_templates)),
    log:
        "logs/build_fticl_prompts/{dataset}.log",
    shell:
        "python -m amuro build-fticl-prompts --dataset {wildcards.dataset} --task {params.task}"
        " --data-dir {params.data_dir} --out {output} --shots {params.shots} --seed {params.seed}"
        " --templates {params.templates:q} > {log} 2>&1"


rule finetune:
    input:
        base=plan.CHECKPOINT,
        train=of_run(STUDY.train_prompts),
    output:
        directory(plan.FINETUNED),
    params:
        settings=as_json(of_run(STUDY.finetune_settings)),
        launcher=of_run(STUDY.launcher),
        verify=of_run(STUDY.verify_base),
        scratch=plan.SCRATCH,
    threads: 1
    resources:
        gpu=of_run(STUDY.gpus),
        runtime=job_size("finetune", "runtime"),
        mem_mb=job_size("finetune", "mem_mb"),
    log:
        "logs/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}.log",
    benchmark:
        "benchmarks/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}.tsv"
    shell:
        "({params.verify} {params.launcher} finetune --base {input.base} --train {input.train} --out {output}"
        " --settings {params.settings:q} --scratch {params.scratch} --threads {threads}) > {log} 2>&1"
