# Each model is loaded once and evaluated on every eval set, format and shot count; per-example predictions, and an
# index of them that the summary reads. Pre-trained checkpoints and fine-tuned models run the same command; only
# their shot counts (and so outputs) differ. Predictions are updated in place, not deleted before the job: a job
# rerun because the study grew (another eval set, format or shot count) keeps every prediction whose prompts, model
# and settings are unchanged, and scores only the rest.


rule evaluate_base:
    input:
        unpack(of_run(STUDY.model_inputs)),
        prompts=STUDY.evaluation.prompt_index(),
    output:
        updatable(STUDY.evaluation.output_patterns(base=True)),
        index=STUDY.evaluation.index_pattern(),
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
            updatable(STUDY.evaluation.output_patterns(base=False)),
            index=STUDY.evaluation.index_pattern(),
        wildcard_constraints:
            train=STUDY.id_pattern(STUDY.finetuned_runs()),

else:

    # evaluation.finetuned_jobs per_checkpoint: every fine-tuned model of a checkpoint in one process, in turn.
    rule evaluate_finetuned:
        input:
            unpack(of_checkpoint(STUDY.evaluation.checkpoint_inputs)),
        output:
            updatable(STUDY.evaluation.checkpoint_patterns()),
            STUDY.evaluation.checkpoint_index_patterns(),
        params:
            jobs=of_checkpoint(STUDY.evaluation.checkpoint_jobs, to_json=True),
            settings=as_json(STUDY.evaluation.settings()),
        threads: 1
        resources:
            gpu=1,
            runtime=checkpoint_job_size("evaluate", "runtime"),
            mem_mb=checkpoint_job_size("evaluate", "mem_mb"),
        log:
            "logs/evaluate/{model}/{checkpoint}/finetuned.log",
        benchmark:
            "benchmarks/evaluate/{model}/{checkpoint}/finetuned.tsv"
        shell:
            "python -m amuro evaluate --jobs {params.jobs:q} --settings {params.settings:q} --threads {threads}"
            " > {log} 2>&1"
