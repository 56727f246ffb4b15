# Each model is loaded once and evaluated on every eval set, format and shot count; per-example predictions.


rule evaluate_base:
    input:
        model="results/checkpoints/{model}/{checkpoint}",
        prompts=eval_prompt_files,
    output:
        base_prediction_files(),
    params:
        plan=base_eval_plan,
        settings=eval_settings(),
        meta=base_meta,
    threads: 1
    resources:
        runtime=120,
    log:
        "logs/evaluate/{model}/{checkpoint}/base.log",
    benchmark:
        "benchmarks/evaluate/{model}/{checkpoint}/base.tsv"
    shell:
        "(python -m amuro verify-checkpoint {input.model} && python -m amuro evaluate --model-dir {input.model}"
        " --plan {params.plan:q} --settings {params.settings:q} --meta {params.meta:q} --threads {threads}) > {log} 2>&1"


rule evaluate_finetuned:
    input:
        model="results/finetuned/{model}/{checkpoint}/{dataset}/{train_format}/{size}",
        prompts=eval_prompt_files,
    output:
        finetuned_prediction_files(),
    params:
        plan=finetuned_eval_plan,
        settings=eval_settings(),
        meta=finetuned_meta,
    threads: 1
    resources:
        runtime=120,
    log:
        "logs/evaluate/{model}/{checkpoint}/{dataset}-{train_format}-{size}.log",
    benchmark:
        "benchmarks/evaluate/{model}/{checkpoint}/{dataset}-{train_format}-{size}.tsv"
    shell:
        "python -m amuro evaluate --model-dir {input.model} --plan {params.plan:q} --settings {params.settings:q}"
        " --meta {params.meta:q} --threads {threads} > {log} 2>&1"
