# The download stage: the only jobs that reach the network (local rules: on a cluster they run where Snakemake runs,
# e.g. the login node). Each fetches one thing into the HF cache and records its commit and file hashes under
# results/downloads/; the jobs that read it depend on that record and run offline (HF_HUB_OFFLINE=1,
# HF_DATASETS_OFFLINE=1, set by `python -m amuro` for every other stage). `snakemake download` runs only this stage.


rule download:
    input:
        STUDY.download_records(),
    localrule: True


rule download_checkpoint:
    output:
        plan.CHECKPOINT_RECORD,
    params:
        spec=as_json(of_run(STUDY.checkpoint_download_spec)),
        entry=as_json(of_run(STUDY.checkpoint_entry)),
    localrule: True
    log:
        "logs/download_checkpoint/{model}/{checkpoint}.log",
    shell:
        "python -m amuro download-checkpoint --model {wildcards.model} --spec {params.spec:q}"
        " --entry {params.entry:q} --out {output} > {log} 2>&1"


rule download_dataset:
    output:
        plan.DATASET_RECORD,
    params:
        spec=as_json(of_dataset(STUDY.dataset_download_spec)),
    localrule: True
    log:
        "logs/download_dataset/{dataset}.log",
    shell:
        "python -m amuro download-dataset --dataset {wildcards.dataset} --spec {params.spec:q} --out {output}"
        " > {log} 2>&1"


rule download_instructions:
    output:
        plan.INSTRUCTIONS_RECORD,
    params:
        source=plan.as_json(STUDY.instruction_source()),
    localrule: True
    log:
        "logs/download_instructions/{dataset}.log",
    shell:
        "python -m amuro download-instructions --name {wildcards.dataset} --source {params.source:q} --out {output}"
        " > {log} 2>&1"


rule download_benchmark:
    output:
        plan.BENCHMARK_RECORD,
    params:
        options=of_benchmark(STUDY.benchmark_download_options),
    localrule: True
    log:
        "logs/download_benchmark/{benchmark}.log",
    shell:
        "python -m amuro download-benchmark --benchmark {wildcards.benchmark} {params.options} --out {output}"
        " > {log} 2>&1"
