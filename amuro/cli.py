"""`amuro <command> ...` (or `python -m amuro`): the command line every Snakemake rule calls, and a researcher's tools.

One table, COMMANDS: each command's name, the function it runs and its arguments. A command a rule calls has the
rule's name (dashes for underscores) and runs the function of that name. Settings that define a result arrive as one
JSON argument (the rule's `params`, so Snakemake reruns the job when they change); paths arrive as separate
arguments. The function's module is imported only when its command runs, so light commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from dataclasses import dataclass


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


def arg(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    return flags, options


@dataclass(frozen=True)
class Command:
    name: str
    function: str  # "module:function"; its parameters are the arguments' dests
    help: str
    arguments: tuple = ()
    online: bool = False  # only the download stage reaches the network


# Arguments several commands share.
SETTINGS = arg("--settings", type=_json, required=True, help="settings (JSON)")
THREADS = arg("--threads", type=int, default=1, help="CPU threads")
MINIWORLD_DIR = arg("--miniworld-dir", help="the mini-world's files (source type miniworld)")
# A rule passes its (possibly empty) download input: `--download` alone means none.
DOWNLOAD = arg("--download", nargs="?", help="the download stage's record of a hub source (read offline from the HF "
                                              "cache)")
TABLES = arg("tables", nargs="+", help="long-format tables (results.parquet, imported tables)")
RECORD_OUT = arg("--out", required=True, help="the download record (JSON)")

COMMANDS = (
    # --- The mini-world ---
    Command("miniworld-generate", "amuro.miniworld.generate:generate", "world, pre-training corpus and task datasets", (
        arg("--settings", type=_json, required=True, help="the miniworld config section (JSON)"),
        arg("--out", dest="out_dir", required=True))),
    Command("miniworld-tokenizer", "amuro.miniworld.tokenizer:train_tokenizer", "train the BPE tokenizer on the corpus", (
        arg("--corpus", required=True), arg("--out", dest="out_dir", required=True),
        arg("--vocab-size", type=int, required=True), arg("--documents", type=int, required=True))),
    Command("miniworld-pretrain", "amuro.miniworld.pretrain:pretrain", "pre-train the tiny OLMo model into checkpoints", (
        SETTINGS, arg("--corpus-dir", required=True), arg("--tokenizer", dest="tokenizer_dir", required=True),
        arg("--out", dest="out_dir", required=True), THREADS)),
    # --- Downloads (the only commands that reach the network) ---
    Command("download-checkpoint", "amuro.downloads:download_checkpoint",
            "fetch one hub checkpoint into the HF cache and record it", (
                arg("--model", required=True), arg("--spec", type=_json, required=True, help="{repo} (JSON)"),
                arg("--entry", type=_json, required=True,
                    help='the checkpoint\'s config entry: "revision" or {"step": N}'), RECORD_OUT), online=True),
    Command("download-dataset", "amuro.downloads:download_dataset", "fetch one hub dataset into the HF cache and record it", (
        arg("--dataset", dest="name", required=True), arg("--spec", type=_json, required=True, help="{source} (JSON)"),
        RECORD_OUT), online=True),
    Command("download-instructions", "amuro.downloads:download_instructions",
            "fetch the hub instruction mix into the HF cache and record it", (
                arg("--name", required=True),
                arg("--source", type=_json, required=True, help="instruction_tuning.source (JSON)"), RECORD_OUT),
            online=True),
    Command("download-benchmark", "amuro.downloads:download_benchmark",
            "fetch the hub dataset of one lm-eval task and record it", (
                arg("--benchmark", required=True), arg("--task", required=True, help="the lm-eval task name"),
                arg("--revision", help="the dataset revision to fetch instead of the task's own"),
                arg("--data-dir", help="the dataset directory to read instead of the task's config"), RECORD_OUT),
            online=True),
    # --- Checkpoints and data ---
    Command("fetch-checkpoint", "amuro.checkpoints:fetch_checkpoint",
            "resolve one checkpoint into an HF directory + resolved.json", (
                arg("--model", required=True),
                arg("--spec", type=_json, required=True, help="the model's source, repo and path (JSON)"),
                arg("--checkpoint", required=True), arg("--out", dest="out_dir", required=True), MINIWORLD_DIR,
                DOWNLOAD)),
    Command("verify-model", "amuro.checkpoints:verify_model",
            "check a model directory's files against its record (resolved.json or train_meta.json)", (
                arg("model_dir"),)),
    Command("prepare-dataset", "amuro.data:prepare_dataset", "one dataset as canonical Parquet splits", (
        arg("--dataset", dest="name", required=True),
        arg("--spec", type=_json, required=True, help="the dataset's config entry (JSON)"),
        arg("--seed", type=int, required=True), arg("--out-dir", required=True), MINIWORLD_DIR, DOWNLOAD)),
    Command("build-prompts", "amuro.formats:build_prompts",
            "one dataset in one prompt format, with k-shot demonstrations", (
                arg("--dataset", required=True), arg("--task", required=True),
                arg("--format", dest="fmt", required=True), arg("--data-dir", required=True),
                arg("--out-dir", required=True),
                arg("--shots", type=_int_list, required=True, help="comma-separated, e.g. 0,4"),
                arg("--seed", type=int, required=True),
                arg("--templates", type=_json, default={}, help="the dataset's own templates by format (JSON)"),
                arg("--demonstrations", type=_json, default={},
                    help="selection, split, include_query, separator (JSON; evaluation.demonstrations)"),
                arg("--splits", dest="write_splits", type=lambda text: text.split(","),
                    default=["train", "validation", "test"],
                    help="comma-separated, e.g. train,validation (default all three)"))),
    Command("index-prompts", "amuro.formats:index_prompts",
            "the index of the test prompts every evaluation job reads (paths and sha256)", (
                arg("--out", required=True), arg("prompts", nargs="+"))),
    Command("build-fticl-prompts", "amuro.formats:build_fticl_prompts",
            "the FTICL train split: fixed demonstrations before every example", (
                arg("--dataset", required=True), arg("--task", required=True), arg("--data-dir", required=True),
                arg("--out", dest="out_file", required=True), arg("--shots", type=int, required=True),
                arg("--seed", type=int, required=True),
                arg("--demonstrations", choices=("sampled", "validation_first"), default="sampled",
                    help="drawn from the train split, or the validation split's first rows"),
                arg("--templates", type=_json, default={}, help="the dataset's own templates by format (JSON)"))),
    Command("prepare-instructions", "amuro.instructions:prepare_instructions_from_spec",
            "the instruction mix as Parquet chats (id, messages)", (
                arg("--spec", type=_json, required=True, help="name, source, sample, seed (JSON)"),
                arg("--out", required=True), MINIWORLD_DIR, DOWNLOAD)),
    # --- Fine-tuning and evaluation ---
    Command("finetune", "amuro.finetune:finetune_cell", "fine-tune one cell (Trainer + DeepSpeed)", (
        arg("--base", dest="base_dir", required=True, help="the pre-trained checkpoint directory"),
        arg("--train", dest="train_prompts", required=True, help="the train prompt file"),
        arg("--out", dest="out_dir", required=True),
        arg("--settings", type=_json, required=True,
            help="hyper-parameters, method (full or lora, and its settings), seed and train size (JSON)"),
        arg("--run", type=_json, help="what identifies the cell (JSON), recorded in train_meta.json"),
        arg("--scratch", dest="scratch_dir", required=True,
            help="Trainer checkpoints for resuming; removed on success"), THREADS,
        # The `deepspeed` launcher appends --local_rank=N; the rank is read from the environment instead.
        arg("--local_rank", "--local-rank", dest="_local_rank", type=int, help=argparse.SUPPRESS))),
    Command("finetune-cells", "amuro.finetune:finetune_cells",
            "fine-tune several cells of one checkpoint in turn, in one process (finetune.jobs per_checkpoint)", (
        arg("--base", dest="base_dir", required=True, help="the pre-trained checkpoint directory"),
        arg("--cells", type=_json, required=True,
            help="a JSON list of cells: train_prompts, out_dir, settings, run, scratch_dir (each as for finetune)"),
        THREADS,
        arg("--local_rank", "--local-rank", dest="_local_rank", type=int, help=argparse.SUPPRESS))),
    Command("free-port", "amuro.io:print_free_port",
            "print a free TCP port (for the deepspeed launcher's --master_port)"),
    Command("evaluate", "amuro.evaluate:evaluate_models", "evaluate models, in turn, on all of their eval sets", (
        arg("--jobs", type=_json, required=True, help="list of {model_dir, requests, meta} (JSON); requests: list "
                                                       "of {dataset, task, format, shots, prompts, output, labels}"),
        SETTINGS, THREADS)),
    Command("evaluate-benchmarks", "amuro.benchmarks:evaluate_benchmarks",
            "score one model on multiple-choice benchmarks through lm-eval", (
                arg("--model-dir", required=True),
                arg("--requests", type=_json, required=True, help="list of {benchmark, task, shots, output} (JSON)"),
                arg("--settings", type=_json, required=True, help="batch_size, limit (JSON)"),
                arg("--meta", type=_json, required=True, help="what identifies the model (JSON)"),
                arg("--tasks", dest="local_tasks", type=_json,
                    help="local benchmarks: id -> {task, train, test} JSON-lines files (JSON)"),
                arg("--index", help="also list the score files written here, with their hashes (JSON)"), THREADS)),
    # --- Results, tables and figures ---
    Command("summarize-predictions", "amuro.results:summarize_predictions",
            "one evaluated model's prediction files as long-format rows", (
                arg("--settings", type=_json, required=True, help="train_task, resamples, confidence, seed (JSON)"),
                arg("--checkpoint", dest="checkpoint_dir",
                    help="the pre-trained checkpoint directory the model comes from: its resolved.json gives step and "
                         "tokens (without it, they are read from the checkpoint id)"),
                arg("--out", required=True),
                arg("predictions", nargs="+", help="prediction files, or the indexes the evaluation jobs wrote"))),
    Command("results-table", "amuro.results:results_table", "concatenate long-format tables into the results table", (
        arg("--out", required=True), arg("tables", nargs="+"))),
    Command("scoring-methods", "amuro.scoring:scoring_methods",
            "accuracy of every classification scoring method (the paper's Table 3)", (
                arg("--out", required=True, help="one row per prediction file and method"),
                arg("--table3", dest="table3_out",
                    help="also write the Table 3 pivot: mean accuracy per eval set, model kind and method"),
                arg("--eval-format", help="of indexes, read the classification files of this eval format only"),
                arg("predictions", nargs="+",
                    help="prediction files or the indexes evaluation jobs wrote (generation sets are skipped)"))),
    Command("tables", "amuro.tables:write_tables",
            "the summary tables (transfer, forgetting, Table 6, MRC, findings, HTML overview) from long-format "
            "tables, ours or imported", (
                arg("--config", help="a workflow config whose analysis settings apply"),
                arg("--settings", type=_json, help="instead of --config: benchmark_metric, groups, mrc_eval_sets, "
                                                   "shots (JSON; amuro.config.analysis_settings)"),
                arg("--out-dir", required=True, help="writes transfer.parquet, forgetting.parquet, group_gain.parquet, "
                                                     "mrc.parquet, findings.parquet, seeds.parquet and overview.html there"),
                TABLES)),
    Command("findings", "amuro.findings:print_findings",
            "check the paper's four findings on long-format tables and print them", (
                TABLES, arg("--benchmark-metric", default="acc", choices=["acc", "acc_norm"]),
                arg("--mrc-eval-sets", default="cross_task", choices=["cross_task", "train_sets"]),
                arg("--shots", type=_shots, help="compare tuned and base models at this shot count"),
                arg("--strict", action="store_true", help="exit 1 unless every finding holds"))),
    Command("figure", "amuro.figures.drawing:draw_figure",
            "draw one figure from long-format tables (ours or imported ones)", (
                arg("figure_id", metavar="figure", help="figure id"), arg("--pdf", required=True),
                arg("--png", required=True),
                arg("--settings", type=_json, default={},
                    help='JSON: "confidence" of the tables\' intervals (0.95), "benchmark_metric" shown for '
                         'benchmarks (acc or acc_norm), "groups": eval set -> "learned in pre-training" or "not '
                         'learned in pre-training" (sets not named are grouped from the base curves)'),
                arg("tables", nargs="+"))),
    Command("import-table", "amuro.importers:import_table",
            "convert a results CSV released with Amuro & Char into the long format", (
                arg("source", help="the per-cell table (columns ,model_id,eval dataset,Performance,std) or the "
                                   "benchmark table (,model_id,eval dataset,Performance); told apart by the header"),
                arg("out", help="long-format Parquet to write"),
                arg("--config", help="a workflow config whose checkpoint names (stepN-tokensM) the steps map to, "
                                     "and whose instruction_tuning.name names the Tulu v2 rows (when that arm is on)"),
                arg("--skip-bad-rows", action="store_true",
                    help="write the rows that parse and log the others (default: refuse the whole file)"),
                arg("--learning-rate", dest="learning_rates", type=_learning_rate, action="append", default=[],
                    metavar="DATASET=LR", help="per-cell table only: keep fine-tuned runs of DATASET at LR only "
                                               "('*=LR' for the rest); for tables with a sweep"),
                arg("--shots", type=_shots, help="benchmark table only: the shot count of every row, which the "
                                                 "table does not record (default 4, the paper's few-shot setting)"),
                arg("--metric", choices=["acc", "acc_norm"],
                    help="benchmark table only: what Performance is, which the table does not say (default acc)"))),
    Command("status", "amuro.status:show_status",
            "each run's state per stage (done, running, interrupted, failed with its log's error line, not started) "
            "from the plan and the files on disk, without Snakemake's DAG", (
                arg("--config", dest="config_file", help="the study's workflow config (YAML)"),
                arg("--config-json", type=_json, help="instead of --config: the config itself (JSON; the status rule's)"),
                arg("--dir", dest="directory", default=".", help="the study's directory (default: this one)"),
                arg("--json", dest="as_json", action="store_true", help="print a JSON document for scripts"),
                arg("--html", dest="html_out", metavar="FILE", help="also write the state as an HTML page"))),
    Command("bench", "amuro.bench:run_bench",
            "fine-tuning and evaluation speed of the fast paths against the paper's settings", (
                arg("--quick", action="store_true",
                    help="the mini-world architecture on CPU, in minutes (default: OLMo-1B's, for a GPU)"),
                arg("--architecture", choices=["olmo-1b", "miniworld"], help="override the preset's architecture"),
                arg("--steps", type=int, help="optimizer steps per fine-tuning run (override the preset)"),
                arg("--batching", choices=["auto", "packed", "padded"],
                    help="micro-batches of the fast recipe (default packed: the same examples per step as the "
                         "paper's)"),
                arg("--json", dest="json_out", help="also write the full results (per-step losses included) here"),
                arg("--threads", type=int, default=1, help="CPU threads per process"),
                arg("--work-dir", help="where the temporary model and runs go (default: the system's temp dir)"),
                arg("--plan", action="store_true",
                    help="instead: dry-run the paper's study grown to about 500, 5,000 and 20,000 jobs (jobs, "
                         "seconds, peak memory), and Snakemake's floor (the 20,000-job shape without amuro)"),
                arg("--studies", nargs="+", choices=["500", "5000", "20000", "floor"],
                    help="with --plan: only these"),
                arg("--config", help="with --plan: the study to grow (default: workflow_config.yaml)"))),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="amuro", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command_name", metavar="command", required=True)
    for command in COMMANDS:
        s = sub.add_parser(command.name, help=command.help, description=command.help)
        for flags, options in command.arguments:
            s.add_argument(*flags, **options)
        s.set_defaults(_command=command)
    return p


def run(command: Command, arguments: dict):
    module, function = command.function.split(":")
    return getattr(importlib.import_module(module), function)(**arguments)


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    command = args["_command"]
    arguments = {k: v for k, v in args.items() if not k.startswith("_") and k != "command_name"}
    if not command.online:
        # Only the download stage reaches the network; every other job reads what it recorded.
        from amuro.downloads import go_offline

        go_offline()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status = run(command, arguments)
    return status if isinstance(status, int) else 0  # a function's exit status, or success
