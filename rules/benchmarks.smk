# The paper's second arm: multiple-choice benchmarks through lm-evaluation-harness, for every pre-trained
# checkpoint ("base") and every instruction-tuned one; per-example scores like the other evaluations.


rule evaluate_benchmarks:
    input:
        model=benchmark_model_dir,
        data=benchmark_data,
        downloads=benchmark_downloads,
    output:
        benchmark_files(),
    params:
        plan=benchmark_plan,
        settings=benchmark_settings(),
        tasks=benchmark_tasks(),
        meta=benchmark_meta,
        # A pre-trained checkpoint is checked against its resolved.json first (instruction-tuned models have none).
        verify=lambda wc, input: f"python -m amuro verify-checkpoint {input.model} &&" if wc.train == "base" else "",
    threads: 1
    resources:
        runtime=120,
    log:
        "logs/evaluate_benchmarks/{model}/{checkpoint}/{train}.log",
    benchmark:
        "benchmarks/evaluate_benchmarks/{model}/{checkpoint}/{train}.tsv"
    shell:
        "({params.verify} python -m amuro benchmark --model-dir {input.model} --plan {params.plan:q}"
        " --settings {params.settings:q} --tasks {params.tasks:q} --meta {params.meta:q} --threads {threads}) > {log} 2>&1"
