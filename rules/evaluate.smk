# Each model is loaded once and evaluated on every eval set, format and shot count; per-example predictions.
# Pre-trained checkpoints and fine-tuned models run the same job; only their shot counts (and so outputs) differ.


rule evaluate_base:
    input:
        model=of_run(STUDY.model_dir),
        prompts=of_run(STUDY.eval_prompts),
    output:
        STUDY.prediction_patterns(base=True),
    params:
        requests=as_json(of_run(STUDY.eval_requests)),
        settings=plan.as_json(STUDY.eval_settings()),
        meta=as_json(of_run(STUDY.run_meta)),
        verify=of_run(STUDY.verify_evaluated),
    wildcard_constraints:
        train=plan.BASE,
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
        "({params.verify} python -m amuro evaluate --model-dir {input.model} --requests {params.requests:q}"
        " --settings {params.settings:q} --meta {params.meta:q} --threads {threads}) > {log} 2>&1"


if not STUDY.finetuned_per_checkpoint:

    use rule evaluate_base as evaluate_finetuned with:
        output:
            STUDY.prediction_patterns(base=False),
        wildcard_constraints:
            train=STUDY.id_pattern(STUDY.finetuned_runs()),

else:

    # evaluation.finetuned_jobs per_checkpoint: every fine-tuned model of a checkpoint in one process, in turn.
    rule evaluate_finetuned:
        input:
            unpack(of_checkpoint(STUDY.checkpoint_eval_inputs)),
        output:
            STUDY.checkpoint_prediction_patterns(),
        params:
            jobs=as_json(of_checkpoint(STUDY.checkpoint_eval_jobs)),
            settings=plan.as_json(STUDY.eval_settings()),
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
