"""`python -m amuro <stage> ...`: the command line every Snakemake rule calls.

Settings that define a result arrive as one JSON argument (the rule's `params`, so Snakemake reruns the job
when they change); paths arrive as separate arguments. Heavy libraries are imported inside each stage so that
light stages start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def _learning_rate(text: str) -> tuple[str, float]:
    dataset, sep, rate = text.partition("=")
    try:
        if not (sep and dataset):
            raise ValueError
        return dataset, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not DATASET=LR (e.g. xsum=2e-7 or '*=2e-6')") from None


def _shots(text: str) -> int:
    try:
        shots = int(text)
        if shots < 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shot count (an integer >= 0)") from None
    return shots


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def miniworld_generate(args):
    from amuro.miniworld.generate import generate

    generate(args.settings, args.out)


def miniworld_tokenizer(args):
    from amuro.miniworld.tokenizer import train_tokenizer

    train_tokenizer(args.corpus, args.out, args.vocab_size, args.documents)


def miniworld_pretrain(args):
    from amuro.miniworld.pretrain import pretrain

    pretrain(args.settings, args.corpus_dir, args.tokenizer, args.out, threads=args.threads)


def fetch_checkpoint(args):
    from amuro.checkpoints import resolve_checkpoint

    resolve_checkpoint(args.model, args.spec, args.checkpoint, args.out, args.miniworld_dir, args.download)


def verify_checkpoint(args):
    from amuro.checkpoints import verify_checkpoint as run

    run(args.model_dir)


def download_checkpoint(args):
    from amuro.downloads import download_checkpoint as run

    run(args.model, args.spec, args.entry, args.out)


def download_dataset(args):
    from amuro.downloads import download_dataset as run

    run(args.dataset, args.spec, args.out)


def download_instructions(args):
    from amuro.downloads import download_instructions as run

    run(args.name, args.source, args.out)


def download_benchmark(args):
    from amuro.downloads import download_benchmark as run

    run(args.benchmark, args.task, args.out, args.revision, args.data_dir)


def prepare_data(args):
    from amuro.data import prepare_dataset

    prepare_dataset(args.dataset, args.spec, args.seed, args.out_dir, args.miniworld_dir, args.download)


def build_prompts(args):
    from amuro.formats import build_prompts as build

    build(args.dataset, args.task, args.format, args.data_dir, args.out_dir, args.shots, args.seed, args.templates)


def build_fticl_prompts(args):
    from amuro.formats import build_fticl_prompts as build

    build(args.dataset, args.task, args.data_dir, args.out, args.shots, args.seed, args.templates)


def free_port(args):
    from amuro.io import free_port as find

    print(find())


def prepare_instructions(args):
    from amuro.instructions import prepare_instructions as run

    s = args.spec
    run(s["name"], s["source"], s["sample"], s["seed"], args.out, args.miniworld_dir, args.download)


# A preempted fine-tune exits as a process killed by SIGTERM would (128 + 15): the job failed, and its retry resumes.
PREEMPTED_EXIT_CODE = 143


def finetune(args):
    from amuro.finetune import FinetuneSettings, Preempted, finetune as run

    try:
        run(args.base, args.train, args.out, FinetuneSettings.from_dict(args.settings), args.scratch, args.threads)
    except Preempted as exc:
        logging.getLogger("amuro.finetune").error("%s", exc)
        raise SystemExit(PREEMPTED_EXIT_CODE) from None


def bench(args):
    from amuro.bench import main as run

    overrides = {k: v for k, v in (("architecture", args.architecture), ("steps", args.steps),
                                   ("batching", args.batching)) if v is not None}
    run(args.quick, args.json, args.threads, args.work_dir, overrides)


def evaluate(args):
    from amuro.checkpoints import verify_finetuned
    from amuro.evaluate import EvalRequest, EvalSettings, evaluate as run

    one_model = [x is not None for x in (args.model_dir, args.requests, args.meta)]
    if not (all(one_model) if args.jobs is None else not any(one_model)):
        raise SystemExit("amuro evaluate: give either --model-dir, --requests and --meta, or --jobs")
    if args.jobs is None:
        args.jobs = [{"model_dir": args.model_dir, "requests": args.requests, "meta": args.meta}]
    # Each model is checked before any is scored, so a damaged one stops the job before it writes anything.
    for job in args.jobs:
        verify_finetuned(job["model_dir"])
    for job in args.jobs:
        run(job["model_dir"], [EvalRequest.from_dict(r) for r in job["requests"]], EvalSettings(**args.settings),
            job["meta"], threads=args.threads)


def benchmark(args):
    from amuro.benchmarks import benchmark_model
    from amuro.checkpoints import verify_finetuned

    verify_finetuned(args.model_dir)
    benchmark_model(args.model_dir, args.requests, args.settings, args.tasks, args.meta, threads=args.threads)


def summarize(args):
    from amuro.results import write_summary

    write_summary(args.predictions, args.settings, args.out)


def results_table(args):
    from amuro.results import write_results_table

    write_results_table(args.tables, args.out)


def scoring_methods(args):
    from amuro.scoring import write_method_comparison

    write_method_comparison(args.predictions, args.out, args.table3)


def matrices(args):
    from amuro.tables import write_summary_tables

    write_summary_tables([args.results], args.settings, {"transfer": args.transfer, "forgetting": args.forgetting,
                                                         "mrc": args.mrc, "group_gain": args.group_gain,
                                                         "findings": args.findings, "overview": args.overview})


def findings(args):
    import polars as pl

    from amuro import analysis
    from amuro.findings import findings_table, render
    from amuro.results import read_tables

    table = findings_table(analysis.headline(read_tables(args.tables), args.benchmark_metric), args.mrc_eval_sets,
                           args.shots)
    print(render(table))
    if args.strict and not table["holds"].all():
        missing = table.filter(~pl.col("holds"))
        print(f"{missing.height} finding(s) not shown: " + ", ".join(missing["finding"]), file=sys.stderr)
        return 1
    return 0


def tables(args):
    from amuro.tables import write_tables_for_config

    write_tables_for_config(args.tables, args.config, args.out_dir)


def figure(args):
    from amuro.figures.drawing import draw
    from amuro.results import read_tables

    s = args.settings
    draw(args.figure, read_tables(args.tables), args.pdf, args.png, confidence=s.get("confidence", 0.95),
         benchmark_metric=s.get("benchmark_metric", "acc"), groups=s.get("groups", {}))


def import_table(args):
    from amuro.importers import import_table as run

    run(args.source, args.out, config=args.config, skip_bad_rows=args.skip_bad_rows,
        learning_rates=dict(args.learning_rate), shots=args.shots, metric=args.metric)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amuro", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True)

    s = sub.add_parser("miniworld-generate", help="world, pre-training corpus and task datasets")
    s.add_argument("--settings", type=_json, required=True, help="the miniworld config section (JSON)")
    s.add_argument("--out", required=True)
    s.set_defaults(run=miniworld_generate)

    s = sub.add_parser("miniworld-tokenizer", help="train the BPE tokenizer on the corpus")
    s.add_argument("--corpus", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--vocab-size", type=int, required=True)
    s.add_argument("--documents", type=int, required=True)
    s.set_defaults(run=miniworld_tokenizer)

    s = sub.add_parser("miniworld-pretrain", help="pre-train the tiny OLMo model into checkpoints")
    s.add_argument("--settings", type=_json, required=True)
    s.add_argument("--corpus-dir", required=True)
    s.add_argument("--tokenizer", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(run=miniworld_pretrain)

    s = sub.add_parser("fetch-checkpoint", help="resolve one checkpoint into an HF directory + resolved.json")
    s.add_argument("--model", required=True)
    s.add_argument("--spec", type=_json, required=True, help="the model's config entry (JSON)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--miniworld-dir")
    s.add_argument("--download", help="the download stage's record of a hub checkpoint (read offline from the HF cache)")
    s.set_defaults(run=fetch_checkpoint)

    s = sub.add_parser("verify-checkpoint", help="check a checkpoint's files against its resolved.json")
    s.add_argument("model_dir")
    s.set_defaults(run=verify_checkpoint)

    s = sub.add_parser("download-checkpoint", help="fetch one hub checkpoint into the HF cache and record it")
    s.add_argument("--model", required=True)
    s.add_argument("--spec", type=_json, required=True, help="the model's config entry (JSON)")
    s.add_argument("--entry", type=_json, required=True, help='the checkpoint\'s config entry: "revision" or {"step": N}')
    s.add_argument("--out", required=True, help="the download record (JSON)")
    s.set_defaults(run=download_checkpoint)

    s = sub.add_parser("download-dataset", help="fetch one hub dataset into the HF cache and record it")
    s.add_argument("--dataset", required=True)
    s.add_argument("--spec", type=_json, required=True, help="the dataset's config entry (JSON)")
    s.add_argument("--out", required=True, help="the download record (JSON)")
    s.set_defaults(run=download_dataset)

    s = sub.add_parser("download-instructions", help="fetch the hub instruction mix into the HF cache and record it")
    s.add_argument("--name", required=True)
    s.add_argument("--source", type=_json, required=True, help="instruction_tuning.source (JSON)")
    s.add_argument("--out", required=True, help="the download record (JSON)")
    s.set_defaults(run=download_instructions)

    s = sub.add_parser("download-benchmark", help="fetch the hub dataset of one lm-eval task and record it")
    s.add_argument("--benchmark", required=True)
    s.add_argument("--task", required=True, help="the lm-eval task name")
    s.add_argument("--revision", help="the dataset revision to fetch instead of the task's own")
    s.add_argument("--data-dir", help="the dataset directory to read instead of the task's config")
    s.add_argument("--out", required=True, help="the download record (JSON)")
    s.set_defaults(run=download_benchmark)

    s = sub.add_parser("prepare-data", help="one dataset as canonical Parquet splits")
    s.add_argument("--dataset", required=True)
    s.add_argument("--spec", type=_json, required=True, help="the dataset's config entry (JSON)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--miniworld-dir")
    s.add_argument("--download", help="the download stage's record of a hub source (read offline from the HF cache)")
    s.set_defaults(run=prepare_data)

    s = sub.add_parser("build-prompts", help="one dataset in one prompt format, with k-shot demonstrations")
    s.add_argument("--dataset", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--format", required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--shots", type=_int_list, required=True, help="comma-separated, e.g. 0,4")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--templates", type=_json, default={}, help="the dataset's own templates by format (JSON)")
    s.set_defaults(run=build_prompts)

    s = sub.add_parser("build-fticl-prompts", help="the FTICL train split: fixed demonstrations before every example")
    s.add_argument("--dataset", required=True)
    s.add_argument("--task", required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--shots", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--templates", type=_json, default={}, help="the dataset's own templates by format (JSON)")
    s.set_defaults(run=build_fticl_prompts)

    s = sub.add_parser("prepare-instructions", help="the instruction mix as Parquet chats (id, messages)")
    s.add_argument("--spec", type=_json, required=True, help="name, source, sample, seed (JSON)")
    s.add_argument("--out", required=True)
    s.add_argument("--miniworld-dir", help="the mini-world's files (source type miniworld)")
    s.add_argument("--download", help="the download stage's record of a hub mix (read offline from the HF cache)")
    s.set_defaults(run=prepare_instructions)

    s = sub.add_parser("free-port", help="print a free TCP port (for the deepspeed launcher's --master_port)")
    s.set_defaults(run=free_port)

    s = sub.add_parser("finetune", help="fine-tune one cell (Trainer + DeepSpeed)")
    s.add_argument("--base", required=True, help="the pre-trained checkpoint directory")
    s.add_argument("--train", required=True, help="the train prompt file")
    s.add_argument("--out", required=True)
    s.add_argument("--settings", type=_json, required=True, help="hyper-parameters and train size (JSON)")
    s.add_argument("--scratch", required=True, help="Trainer checkpoints for resuming; removed on success")
    s.add_argument("--threads", type=int, default=1)
    # The `deepspeed` launcher appends --local_rank=N; the rank is read from the environment instead.
    s.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    s.set_defaults(run=finetune)

    s = sub.add_parser("evaluate", help="evaluate a model (or several, in turn) on all of its eval sets")
    s.add_argument("--model-dir")
    s.add_argument("--requests", type=_json,
                   help="list of {dataset, task, format, shots, prompts, output, labels} (JSON)")
    s.add_argument("--meta", type=_json, help="what identifies the model (JSON)")
    s.add_argument("--jobs", type=_json,
                   help="instead of the three above: several models in turn, a list of {model_dir, requests, meta} (JSON)")
    s.add_argument("--settings", type=_json, required=True, help="scoring settings (JSON)")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(run=evaluate)

    s = sub.add_parser("benchmark", help="score one model on multiple-choice benchmarks through lm-eval")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--requests", type=_json, required=True, help="list of {benchmark, task, shots, output} (JSON)")
    s.add_argument("--settings", type=_json, required=True, help="batch_size, limit, tasks_dir (JSON)")
    s.add_argument("--meta", type=_json, required=True, help="what identifies the model (JSON)")
    s.add_argument("--tasks", type=_json, help="local benchmarks: id -> {task, train, test} JSON-lines files (JSON)")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(run=benchmark)

    s = sub.add_parser("summarize", help="one evaluated model's prediction files as long-format rows")
    s.add_argument("--settings", type=_json, required=True, help="train_task, resamples, confidence, seed (JSON)")
    s.add_argument("--out", required=True)
    s.add_argument("predictions", nargs="+")
    s.set_defaults(run=summarize)

    s = sub.add_parser("results-table", help="concatenate long-format tables into the results table")
    s.add_argument("--out", required=True)
    s.add_argument("tables", nargs="+")
    s.set_defaults(run=results_table)

    s = sub.add_parser("scoring-methods", help="accuracy of every classification scoring method (the paper's Table 3)")
    s.add_argument("--out", required=True, help="one row per prediction file and method")
    s.add_argument("--table3", help="also write the Table 3 pivot: mean accuracy per eval set, model kind and method")
    s.add_argument("predictions", nargs="+", help="prediction files (generation sets are skipped)")
    s.set_defaults(run=scoring_methods)

    s = sub.add_parser("matrices", help="transfer and forgetting matrices from the results table")
    s.add_argument("--results", required=True)
    s.add_argument("--transfer", required=True)
    s.add_argument("--forgetting", required=True)
    s.add_argument("--mrc", required=True, help="mean ratio of change per checkpoint and direction")
    s.add_argument("--group-gain", required=True, help="Table 6: mean gain per checkpoint and pre-training group")
    s.add_argument("--findings", required=True, help="the paper's four findings checked on this study")
    s.add_argument("--settings", type=_json, required=True,
                   help="benchmark_metric, groups, mrc_eval_sets, shots (JSON; amuro.tables.settings_from_config)")
    s.add_argument("--overview", help="also write an HTML overview of the main tables")
    s.set_defaults(run=matrices)

    s = sub.add_parser("tables", help="the summary tables (transfer, forgetting, Table 6, MRC, HTML overview) from "
                                      "long-format tables, ours or imported")
    s.add_argument("--config", required=True, help="the workflow config whose analysis settings apply")
    s.add_argument("--out-dir", required=True, help="writes transfer.parquet, forgetting.parquet, "
                                                    "group_gain.parquet, mrc.parquet, findings.parquet and "
                                                    "overview.html there")
    s.add_argument("tables", nargs="+", help="long-format tables (results.parquet, imported tables)")
    s.set_defaults(run=tables)

    s = sub.add_parser("findings", help="check the paper's four findings on long-format tables and print them")
    s.add_argument("tables", nargs="+", help="long-format tables (results.parquet, imported tables)")
    s.add_argument("--benchmark-metric", default="acc", choices=["acc", "acc_norm"])
    s.add_argument("--mrc-eval-sets", default="cross_task", choices=["cross_task", "train_sets"])
    s.add_argument("--shots", type=_shots, help="compare tuned and base models at this shot count")
    s.add_argument("--strict", action="store_true", help="exit 1 unless every finding holds")
    s.set_defaults(run=findings)

    s = sub.add_parser("figure", help="draw one figure from long-format tables (ours or imported ones)")
    s.add_argument("figure", help="figure id")
    s.add_argument("--pdf", required=True)
    s.add_argument("--png", required=True)
    s.add_argument("--settings", type=_json, default={},
                   help='JSON: "confidence" of the tables\' intervals (0.95), "benchmark_metric" shown for '
                        'benchmarks (acc or acc_norm), "groups": eval set -> "learned in pre-training" or "not '
                        'learned in pre-training" (sets not named are grouped from the base curves)')
    s.add_argument("tables", nargs="+")
    s.set_defaults(run=figure)

    s = sub.add_parser("bench", help="fine-tuning and evaluation speed of the fast paths against the paper's settings")
    s.add_argument("--quick", action="store_true", help="the mini-world architecture on CPU, in minutes (default: "
                                                        "OLMo-1B's, for a GPU)")
    s.add_argument("--architecture", choices=["olmo-1b", "miniworld"], help="override the preset's architecture")
    s.add_argument("--steps", type=int, help="optimizer steps per fine-tuning run (override the preset)")
    s.add_argument("--batching", choices=["auto", "packed", "padded"],
                   help="micro-batches of the fast recipe (default packed: the same examples per step as the paper's)")
    s.add_argument("--json", help="also write the full results (per-step losses included) here")
    s.add_argument("--threads", type=int, default=1, help="CPU threads per process")
    s.add_argument("--work-dir", help="where the temporary model and runs go (default: the system's temp dir)")
    s.set_defaults(run=bench)

    s = sub.add_parser("import-table", help="convert a results CSV released with Amuro & Char into the long format")
    s.add_argument("source", help="the per-cell table (columns ,model_id,eval dataset,Performance,std) or the "
                                  "benchmark table (,model_id,eval dataset,Performance); told apart by the header")
    s.add_argument("out", help="long-format Parquet to write")
    s.add_argument("--config", help="a workflow config whose checkpoint names (stepN-tokensM) the steps map to, and "
                                    "whose instruction_tuning.name names the Tulu v2 rows (when that arm is on)")
    s.add_argument("--skip-bad-rows", action="store_true",
                   help="write the rows that parse and log the others (default: refuse the whole file)")
    s.add_argument("--learning-rate", type=_learning_rate, action="append", default=[], metavar="DATASET=LR",
                   help="per-cell table only: keep fine-tuned runs of DATASET at LR only ('*=LR' for the rest); "
                        "for tables with a sweep")
    s.add_argument("--shots", type=_shots, help="benchmark table only: the shot count of every row, which the "
                                               "table does not record (default 4, the paper's few-shot setting)")
    s.add_argument("--metric", choices=["acc", "acc_norm"],
                   help="benchmark table only: what Performance is, which the table does not say (default acc)")
    s.set_defaults(run=import_table)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not args.stage.startswith("download-"):
        # Only the download stage reaches the network; every other job reads what it recorded.
        from amuro.downloads import go_offline

        go_offline()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args) or 0
