# Each checkpoint once, as an HF directory with its resolved revision and file hashes (resolved.json).


rule fetch_checkpoint:
    input:
        of_run(STUDY.checkpoint_inputs),
        download=of_run(STUDY.checkpoint_record),
    output:
        directory(plan.CHECKPOINT),
    params:
        spec=as_json(of_run(STUDY.model_spec)),
        miniworld=MINIWORLD,
        download=download_option,
    log:
        "logs/fetch_checkpoint/{model}/{checkpoint}.log",
    benchmark:
        "benchmarks/fetch_checkpoint/{model}/{checkpoint}.tsv"
    shell:
        "python -m amuro fetch-checkpoint --model {wildcards.model} --spec {params.spec:q}"
        " --checkpoint {wildcards.checkpoint} --out {output} --miniworld-dir {params.miniworld} {params.download}"
        " > {log} 2>&1"
