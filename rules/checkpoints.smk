# Each checkpoint once, as an HF directory with its resolved revision and file hashes (resolved.json).


rule fetch_checkpoint:
    input:
        checkpoint_source,
        download=checkpoint_download,
    output:
        directory("results/checkpoints/{model}/{checkpoint}"),
    params:
        spec=model_spec,
        miniworld=MINIWORLD,
        download=lambda wc, input: download_option(input.download),
    log:
        "logs/fetch_checkpoint/{model}/{checkpoint}.log",
    benchmark:
        "benchmarks/fetch_checkpoint/{model}/{checkpoint}.tsv"
    shell:
        "python -m amuro fetch-checkpoint --model {wildcards.model} --spec {params.spec:q}"
        " --checkpoint {wildcards.checkpoint} --out {output} --miniworld-dir {params.miniworld} {params.download} > {log} 2>&1"
