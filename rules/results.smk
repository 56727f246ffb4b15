# From per-example predictions to the long-format table, the matrices and the figures. Light jobs (no torch):
# local rules on a cluster.


localrules:
    summarize_predictions,
    results_table,
    matrices,
    scoring_methods,
    figure,


rule summarize_predictions:
    input:
        predictions=of_run(STUDY.evaluated_files),
        # Its resolved.json holds the step and tokens (a {step: N} checkpoint's id has no token count).
        checkpoint=plan.CHECKPOINT,
    output:
        plan.SUMMARY,
    params:
        settings=as_json(of_run(STUDY.summary_settings)),
    log:
        "logs/summarize_predictions/{model}/{checkpoint}/{train}.log",
    shell:
        "python -m amuro summarize --settings {params.settings:q} --checkpoint {input.checkpoint} --out {output}"
        " {input.predictions} > {log} 2>&1"


rule results_table:
    input:
        STUDY.summary_files(),
    output:
        STUDY.table("results.parquet"),
    log:
        "logs/results_table.log",
    shell:
        "python -m amuro results-table --out {output} {input} > {log} 2>&1"


rule matrices:
    input:
        rules.results_table.output,
    output:
        transfer=STUDY.table("transfer.parquet"),
        forgetting=STUDY.table("forgetting.parquet"),
        mrc=STUDY.table("mrc.parquet"),
        group_gain=STUDY.table("group_gain.parquet"),
        findings=STUDY.table("findings.parquet"),
        overview=report(
            STUDY.table("overview.html"),
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "overview"},
        ),
    params:
        settings=plan.as_json(STUDY.analysis_settings()),
    log:
        "logs/matrices.log",
    shell:
        "python -m amuro matrices --results {input} --settings {params.settings:q} --transfer {output.transfer}"
        " --forgetting {output.forgetting} --mrc {output.mrc} --group-gain {output.group_gain}"
        " --findings {output.findings}"
        " --overview {output.overview} > {log} 2>&1"


# The paper's Table 3: every classification scoring method (free / constrained generation, TokenProb, loglik)
# from the per-example predictions, which keep each method's label.
rule scoring_methods:
    input:
        STUDY.classification_prediction_files(),
    output:
        methods=STUDY.table("scoring_methods.parquet"),
        table3=STUDY.table("table3.parquet"),
    log:
        "logs/scoring_methods.log",
    shell:
        "python -m amuro scoring-methods --out {output.methods} --table3 {output.table3} {input} > {log} 2>&1"


# Each figure reads only the evaluations it shows, so asking for one schedules only the runs behind it.
rule figure:
    input:
        cells=figure_inputs,
    output:
        pdf=plan.fill(plan.FIGURE, ext="pdf"),
        png=report(
            plan.fill(plan.FIGURE, ext="png"),
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    params:
        # The caption is the figure's definition in words; the report shows it under the figure.
        caption=figure_caption,
        settings=plan.as_json(STUDY.figure_settings()),
    log:
        "logs/figure/{figure}.log",
    shell:
        "python -m amuro figure {wildcards.figure} --pdf {output.pdf} --png {output.png} --settings {params.settings:q}"
        " {input.cells} > {log} 2>&1"
