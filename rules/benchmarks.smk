# The paper's second arm: multiple-choice benchmarks through lm-evaluation-harness, for every pre-trained
# checkpoint ("base") and every instruction-tuned one; per-example scores like the other evaluations.


rule evaluate_benchmarks:
    input:
        model=benchmark_model_dir,
        data=benchmark_data,
    output:
        benchmark_files(),
    params:
        plan=benchmark_plan,
        settings=benchmark_settings(),
        tasks=benchmark_tasks(),
        meta=benchmark_meta,
    threads: 1
    resources:
        gpu=1,
        runtime=per_model(120),
        mem_mb=per_model(32000),
    log:
        "logs/evaluate_benchmarks/{model}/{checkpoint}/{train}.log",
    benchmark:
        "benchmarks/evaluate_benchmarks/{model}/{checkpoint}/{train}.tsv"
    shell:
        "python -m amuro benchmark --model-dir {input.model} --plan {params.plan:q} --settings {params.settings:q}"
        " --tasks {params.tasks:q} --meta {params.meta:q} --threads {threads} > {log} 2>&1"
