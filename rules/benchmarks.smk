# The paper's second arm: multiple-choice benchmarks through lm-evaluation-harness, for every pre-trained
# checkpoint ("base") and every instruction-tuned one; per-example scores like the other evaluations.


rule evaluate_benchmarks:
    input:
        model=of_run(STUDY.model_dir),
        data=STUDY.benchmark_inputs(),
        downloads=STUDY.benchmark_records(),
    output:
        STUDY.benchmark_patterns(),
    params:
        requests=as_json(of_run(STUDY.benchmark_requests)),
        settings=plan.as_json(STUDY.benchmark_settings()),
        tasks=plan.as_json(STUDY.benchmark_task_files()),
        meta=as_json(of_run(STUDY.run_meta)),
        verify=of_run(STUDY.verify_evaluated),
    wildcard_constraints:
        train=STUDY.id_pattern(STUDY.benchmark_runs()),
    threads: 1
    resources:
        gpu=1,
        runtime=job_size("evaluate", "runtime"),
        mem_mb=job_size("evaluate", "mem_mb"),
    log:
        "logs/evaluate_benchmarks/{model}/{checkpoint}/{train}.log",
    benchmark:
        "benchmarks/evaluate_benchmarks/{model}/{checkpoint}/{train}.tsv"
    shell:
        "({params.verify} python -m amuro benchmark --model-dir {input.model} --requests {params.requests:q}"
        " --settings {params.settings:q} --tasks {params.tasks:q} --meta {params.meta:q} --threads {threads})"
        " > {log} 2>&1"
