# The download stage: the only jobs that reach the network (local rules: on a cluster they run where Snakemake runs,
# e.g. the login node). Each fetches one thing into the HF cache and records its commit and file hashes under
# results/downloads/; the jobs that read it depend on that record and run offline (HF_HUB_OFFLINE=1,
# HF_DATASETS_OFFLINE=1, set by `python -m amuro` for every other stage). `snakemake download` runs only this stage.


rule download:
    input:
        STUDY.downloads.records(),
    localrule: True


rule download_checkpoint:
    output:
        paths.CHECKPOINT_RECORD,
    params:
        spec=of_run(STUDY.downloads.checkpoint_spec, to_json=True),
        entry=of_run(STUDY.downloads.checkpoint_entry, to_json=True),
    localrule: True
    log:
        "logs/download_checkpoint/{model}/{checkpoint}.log",
    benchmark:
        "benchmarks/download_checkpoint/{model}/{checkpoint}.tsv"
    shell:
        "python -m amuro download-checkpoint --model {wildcards.model} --spec {params.spec:q}"
        " --entry {params.entry:q} --out {output} > {log} 2>&1"


rule download_dataset:
    output:
        paths.DATASET_RECORD,
    params:
        spec=of_dataset(STUDY.downloads.dataset_spec, to_json=True),
    localrule: True
    log:
        "logs/download_dataset/{dataset}.log",
    benchmark:
        "benchmarks/download_dataset/{dataset}.tsv"
    shell:
        "python -m amuro download-dataset --dataset {wildcards.dataset} --spec {params.spec:q} --out {output}"
        " > {log} 2>&1"


rule download_instructions:
    output:
        paths.INSTRUCTIONS_RECORD,
    params:
        source=as_json(STUDY.instruction_source),
    localrule: True
    log:
        "logs/download_instructions/{dataset}.log",
    benchmark:
        "benchmarks/download_instructions/{dataset}.tsv"
    shell:
        "python -m amuro download-instructions --name {wildcards.dataset} --source {params.source:q} --out {output}"
        " > {log} 2>&1"


rule download_benchmark:
    output:
        paths.BENCHMARK_RECORD,
    params:
        options=of_benchmark(STUDY.downloads.benchmark_options),
    localrule: True
    log:
        "logs/download_benchmark/{benchmark}.log",
    benchmark:
        "benchmarks/download_benchmark/{benchmark}.tsv"
    shell:
        "python -m amuro download-benchmark --benchmark {wildcards.benchmark} {params.options} --out {output}"
        " > {log} 2>&1"
