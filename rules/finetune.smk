# Every cell: a pre-trained checkpoint fine-tuned on one train dataset, in one train format, at one train size, with
# one variant of the fine-tuning settings (full, LoRA, ...) and one seed. Instruction tuning is a cell too: the
# instruction mix in chat format, once per checkpoint, fully fine-tuned with its own settings and seed.


rule finetune:
    input:
        base=paths.CHECKPOINT,
        train=of_run(STUDY.finetuning.train_prompts),
    output:
        directory(paths.FINETUNED),
    wildcard_constraints:
        # finetune.jobs per_checkpoint: supervised cells train in finetune_checkpoint, instruction tuning here.
        train_format=INSTRUCTION_FORMAT if STUDY.finetuning.per_checkpoint else WILDCARDS["train_format"],
    params:
        settings=of_run(STUDY.finetuning.settings, to_json=True),
        run=of_run(STUDY.run_meta, to_json=True),
        launcher=launcher,
        scratch=paths.SCRATCH,
    threads: 1
    resources:
        gpu=of_run(STUDY.finetuning.gpus),
        runtime=job_size("finetune", "runtime"),
        mem_mb=job_size("finetune", "mem_mb"),
    log:
        "logs/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}/{variant}/{seed}.log",
    benchmark:
        "benchmarks/finetune/{model}/{checkpoint}/{train_dataset}/{train_format}/{train_size}/{variant}/{seed}.tsv"
    shell:
        "{params.launcher} finetune --base {input.base} --train {input.train} --out {output}"
        " --settings {params.settings:q} --run {params.run:q} --scratch {params.scratch} --threads {threads} > {log} 2>&1"


if STUDY.finetuning.per_checkpoint:

    # finetune.jobs per_checkpoint: every supervised cell of a checkpoint in one process, in turn (a laptop's choice:
    # starting torch, transformers and DeepSpeed costs about as much as training a tiny model). A rerun keeps each
    # cell already trained with the same settings, so the outputs are updated, not deleted first.
    rule finetune_checkpoint:
        input:
            unpack(of_checkpoint(STUDY.finetuning.checkpoint_inputs)),
        output:
            updatable(directory(cell) for cell in STUDY.finetuning.checkpoint_patterns()),
        params:
            cells=of_checkpoint(STUDY.finetuning.checkpoint_jobs, to_json=True),
            launcher=launcher,
        threads: 1
        resources:
            gpu=of_run(STUDY.finetuning.gpus),
            runtime=checkpoint_job_size("finetune", "runtime"),
            mem_mb=job_size("finetune", "mem_mb"),
        log:
            "logs/finetune/{model}/{checkpoint}/cells.log",
        benchmark:
            "benchmarks/finetune/{model}/{checkpoint}/cells.tsv"
        shell:
            "{params.launcher} finetune-cells --base {input.base} --cells {params.cells:q} --threads {threads}"
            " > {log} 2>&1"
