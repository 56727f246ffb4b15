# Each model is loaded once and evaluated on every eval set, format and shot count; per-example predictions.
# Pre-trained checkpoints and fine-tuned models run the same command; only their shot counts (and so outputs) differ.


rule evaluate_base:
    input:
        model=of_run(STUDY.model_dir),
        prompts=of_run(STUDY.evaluation.prompts),
    output:
        STUDY.evaluation.output_patterns(base=True),
    params:
        jobs=of_run(STUDY.evaluation.jobs, to_json=True),
        settings=as_json(STUDY.evaluation.settings()),
    wildcard_constraints:
        train=BASE,
    threads: 1
    resources:
        gpu=1,
        runtime=job_size("evaluate", "runtime"),
        mem_mb=job_size("evaluate", "mem_mb"),
    log:
        "logs/evaluate/{model}/{checkpoint}/{train}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{checkpoint}/{train}.tsv"
    shell:
        "python -m amuro evaluate --jobs {params.jobs:q} --settings {params.settings:q} --threads {threads}"
        " > {log} 2>&1"


if not STUDY.evaluation.per_checkpoint:

    use rule evaluate_base as evaluate_finetuned with:
        output:
            STUDY.evaluation.output_patterns(base=False),
        wildcard_constraints:
            train=STUDY.id_pattern(STUDY.finetuned_runs()),

else:

    # evaluation.finetuned_jobs per_checkpoint: every fine-tuned model of a checkpoint in one process, in turn.
    rule evaluate_finetuned:
        input:
            unpack(of_checkpoint(STUDY.evaluation.checkpoint_inputs)),
        output:
            STUDY.evaluation.checkpoint_patterns(),
        params:
            jobs=of_checkpoint(STUDY.evaluation.checkpoint_jobs, to_json=True),
            settings=as_json(STUDY.evaluation.settings()),
        threads: 1
        resources:
            gpu=1,
            runtime=checkpoint_job_size("runtime"),
            mem_mb=checkpoint_job_size("mem_mb"),
        log:
            "logs/evaluate/{model}/{checkpoint}/finetuned.log",
        benchmark:
            "benchmarks/evaluate/{model}/{checkpoint}/finetuned.tsv"
        shell:
            "python -m amuro evaluate --jobs {params.jobs:q} --settings {params.settings:q} --threads {threads}"
            " > {log} 2>&1"
