# The paper's second arm: multiple-choice benchmarks through lm-evaluation-harness, for every pre-trained
# checkpoint ("base") and every instruction-tuned one; per-example scores like the other evaluations.


rule evaluate_benchmarks:
    input:
        unpack(of_run(STUDY.model_inputs)),
        data=STUDY.benchmarking.inputs(),
        downloads=STUDY.downloads.benchmark_records(),
    output:
        STUDY.benchmarking.output_patterns(),
        index=STUDY.benchmarking.index_pattern(),
    params:
        requests=of_run(STUDY.benchmarking.requests, to_json=True),
        settings=as_json(STUDY.benchmarking.settings()),
        tasks=as_json(STUDY.benchmarking.task_files()),
        meta=of_run(STUDY.run_meta, to_json=True),
    wildcard_constraints:
        train=STUDY.id_pattern(STUDY.benchmarking.runs()),
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
        "python -m amuro evaluate-benchmarks --model-dir {input.model} --requests {params.requests:q}"
        " --settings {params.settings:q} --tasks {params.tasks:q} --meta {params.meta:q} --index {output.index}"
        " --threads {threads}"
        " > {log} 2>&1"
