# Each checkpoint once, as an HF directory with its resolved revision and file hashes (resolved.json).


rule fetch_checkpoint:
    input:
        of_run(STUDY.data.checkpoint_inputs),
        download=of_run(STUDY.downloads.checkpoint_record),
    output:
        directory(paths.CHECKPOINT),
    params:
        spec=of_run(STUDY.data.fetch_spec, to_json=True),
        miniworld=MINIWORLD,
    localrule: True
    log:
        "logs/fetch_checkpoint/{model}/{checkpoint}.log",
    benchmark:
        "benchmarks/fetch_checkpoint/{model}/{checkpoint}.tsv"
    shell:
        "python -m amuro fetch-checkpoint --model {wildcards.model} --spec {params.spec:q}"
        " --checkpoint {wildcards.checkpoint} --out {output} --miniworld-dir {params.miniworld}"
        " --download {input.download} > {log} 2>&1"
