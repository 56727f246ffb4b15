# From per-example predictions to the long-format table, the summary tables and the figures. Light jobs (no torch):
# local rules on a cluster.


rule summarize_predictions:
    input:
        predictions=of_run(STUDY.results.evaluated_files),
        # Its resolved.json holds the step and tokens (a {step: N} checkpoint's id has no token count).
        checkpoint=paths.CHECKPOINT,
    output:
        paths.SUMMARY,
    params:
        settings=of_run(STUDY.results.summary_settings, to_json=True),
    localrule: True
    log:
        "logs/summarize_predictions/{model}/{checkpoint}/{train}.log",
    benchmark:
        "benchmarks/summarize_predictions/{model}/{checkpoint}/{train}.tsv"
    shell:
        "python -m amuro summarize-predictions --settings {params.settings:q} --checkpoint {input.checkpoint}"
        " --out {output} {input.predictions} > {log} 2>&1"


rule results_table:
    input:
        STUDY.results.summary_files(),
    output:
        paths.table("results.parquet"),
    localrule: True
    log:
        "logs/results_table.log",
    benchmark:
        "benchmarks/results_table.tsv"
    shell:
        "python -m amuro results-table --out {output} {input} > {log} 2>&1"


rule tables:
    input:
        rules.results_table.output,
    output:
        transfer=paths.table("transfer.parquet"),
        forgetting=paths.table("forgetting.parquet"),
        mrc=paths.table("mrc.parquet"),
        group_gain=paths.table("group_gain.parquet"),
        findings=paths.table("findings.parquet"),
        seeds=paths.table("seeds.parquet"),
        overview=report(
            paths.table("overview.html"),
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "overview"},
        ),
    params:
        settings=as_json(STUDY.results.table_settings()),
    localrule: True
    log:
        "logs/tables.log",
    benchmark:
        "benchmarks/tables.tsv"
    shell:
        "python -m amuro tables --settings {params.settings:q} --out-dir results/tables {input} > {log} 2>&1"


# The paper's Table 3: every classification scoring method (free / constrained generation, TokenProb, loglik)
# from the per-example predictions, which keep each method's label.
rule scoring_methods:
    input:
        STUDY.evaluation.indexes(),
    output:
        methods=paths.table("scoring_methods.parquet"),
        table3=paths.table("table3.parquet"),
    params:
        eval_format=STUDY.evaluation.main_format,
    localrule: True
    log:
        "logs/scoring_methods.log",
    benchmark:
        "benchmarks/scoring_methods.tsv"
    shell:
        "python -m amuro scoring-methods --eval-format {params.eval_format} --out {output.methods}"
        " --table3 {output.table3} {input} > {log} 2>&1"


# Each figure reads only the evaluations it shows, so asking for one schedules only the runs behind it.
rule figure:
    input:
        cells=figure_inputs,
    output:
        pdf=paths.fill(paths.FIGURE, ext="pdf"),
        png=report(
            paths.fill(paths.FIGURE, ext="png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    params:
        # The caption is the figure's definition in words; the report shows it under the figure.
        caption=figure_caption,
        settings=as_json(STUDY.figures.settings()),
    localrule: True
    log:
        "logs/figure/{figure}.log",
    benchmark:
        "benchmarks/figure/{figure}.tsv"
    shell:
        "python -m amuro figure {wildcards.figure} --pdf {output.pdf} --png {output.png} --settings {params.settings:q}"
        " {input.cells} > {log} 2>&1"


# The study's state as a page (`amuro status --html`), made only when asked for by name, never by `all`. It reads
# no file Snakemake tracks, so once written Snakemake takes it as up to date: `snakemake -f results/status.html`
# makes it again. `amuro status --config CONFIG` prints the same in a second, also while this run goes on.
rule status:
    output:
        "results/status.html",
    params:
        # The plan the page reads (config files and --config overrides merged); it changes only with the config.
        config=as_json(config),
    localrule: True
    log:
        "logs/status.log",
    benchmark:
        "benchmarks/status.tsv"
    shell:
        "python -m amuro status --config-json {params.config:q} --html {output} > {log} 2>&1"
