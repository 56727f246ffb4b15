# The embedded mini-world: world + corpus + task datasets, a tokenizer, and a pre-trained tiny OLMo model.


rule miniworld_generate:
    output:
        world=f"{MINIWORLD}/world.json",
        corpus=directory(f"{MINIWORLD}/corpus"),
        datasets=directory(f"{MINIWORLD}/datasets"),
        benchmarks=directory(f"{MINIWORLD}/benchmarks"),
        instructions=directory(f"{MINIWORLD}/instructions"),
    params:
        settings=as_json(
            STUDY.data.miniworld_settings("seed", "world", "corpus", "tasks", "benchmarks", "instructions")
        ),
        out_dir=MINIWORLD,
    log:
        "logs/miniworld_generate.log",
    benchmark:
        "benchmarks/miniworld_generate.tsv"
    shell:
        "python -m amuro miniworld-generate --settings {params.settings:q} --out {params.out_dir} > {log} 2>&1"


rule miniworld_tokenizer:
    input:
        corpus=f"{MINIWORLD}/corpus",
    output:
        directory(f"{MINIWORLD}/tokenizer"),
    params:
        vocab_size=STUDY.data.miniworld_tokenizer["vocab_size"],
        documents=STUDY.data.miniworld_tokenizer["train_documents"],
    log:
        "logs/miniworld_tokenizer.log",
    benchmark:
        "benchmarks/miniworld_tokenizer.tsv"
    shell:
        "python -m amuro miniworld-tokenizer --corpus {input.corpus}/train.jsonl --out {output}"
        " --vocab-size {params.vocab_size} --documents {params.documents} > {log} 2>&1"


rule miniworld_pretrain:
    input:
        corpus=f"{MINIWORLD}/corpus",
        tokenizer=f"{MINIWORLD}/tokenizer",
    output:
        directory(f"{MINIWORLD}/pretrain"),
    params:
        settings=as_json(STUDY.data.miniworld_settings("seed", "model", "pretrain")),
    threads: workflow.cores
    resources:
        runtime=60,
    log:
        "logs/miniworld_pretrain.log",
    benchmark:
        "benchmarks/miniworld_pretrain.tsv"
    shell:
        "python -m amuro miniworld-pretrain --settings {params.settings:q} --corpus-dir {input.corpus}"
        " --tokenizer {input.tokenizer} --out {output} --threads {threads} > {log} 2>&1"
