# From per-example predictions to the long-format table, the matrices and the figures. Light jobs (no torch):
# local rules on a cluster.


localrules:
    summarize_predictions,
    results_table,
    matrices,
    figure,


rule summarize_predictions:
    input:
        evaluated_prediction_files,
    output:
        "results/tables/cells/{model}/{checkpoint}/{train}.parquet",
    params:
        settings=summary_settings,
    log:
        "logs/summarize_predictions/{model}/{checkpoint}/{train}.log",
    shell:
        "python -m amuro summarize --settings {params.settings:q} --out {output} {input} > {log} 2>&1"


rule results_table:
    input:
        all_summaries(),
    output:
        "results/tables/results.parquet",
    log:
        "logs/results_table.log",
    shell:
        "python -m amuro results-table --out {output} {input} > {log} 2>&1"


rule matrices:
    input:
        "results/tables/results.parquet",
    output:
        transfer="results/tables/transfer.parquet",
        forgetting="results/tables/forgetting.parquet",
        overview=report(
            "results/tables/overview.html",
            caption="../report/tables.rst",
            category="Tables",
            labels={"table": "overview"},
        ),
    log:
        "logs/matrices.log",
    shell:
        "python -m amuro matrices --results {input} --transfer {output.transfer}"
        " --forgetting {output.forgetting} --overview {output.overview} > {log} 2>&1"


# Each figure reads only the evaluations it shows, so asking for one schedules only the cells behind it.
rule figure:
    input:
        cells=figure_inputs,
    output:
        pdf="results/figures/{figure}.pdf",
        png=report(
            "results/figures/{figure}.png",
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    params:
        # The caption is the figure's definition in words; the report shows it under the figure.
        caption=figure_caption,
        confidence=config["metrics"]["confidence"],
    log:
        "logs/figure/{figure}.log",
    shell:
        "python -m amuro figure {wildcards.figure} --pdf {output.pdf} --png {output.png}"
        " --confidence {params.confidence} {input.cells} > {log} 2>&1"
