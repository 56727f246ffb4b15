"""The study plan: the runs, paths and job settings each config implies, without Snakemake."""

import re

import pytest

from amuro.config import ConfigError, load_config, validate_config
from amuro.formats import main_format
from amuro.plan import BASE, PlanError, Run, Study
from conftest import DEMO_CONFIG, ROOT

TINY = ROOT / "tests" / "configs" / "tiny.yaml"
PAPER = ROOT / "workflow_config.yaml"


@pytest.fixture(scope="module")
def demo():
    return Study(load_config(DEMO_CONFIG))


@pytest.fixture(scope="module")
def tiny():
    return Study(load_config(TINY))


@pytest.fixture(scope="module")
def paper():
    return Study(load_config(PAPER))


def jobs_per_rule(study: Study) -> dict[str, int]:
    """How many jobs each rule runs for the whole study, counted from the plan's runs and files."""
    evaluated = [r for r in study.runs() if study.eval_requests(r)]
    return {
        "fetch_checkpoint": len(study.checkpoint_dirs()),
        "build_prompts": len(study.prompt_files()) // 3,
        "finetune": len(study.finetuned_runs()) + len(study.instruction_tuned_runs()),
        "evaluate_base": sum(r.is_base for r in evaluated),
        "evaluate_finetuned": (len({(r.model, r.checkpoint) for r in evaluated if not r.is_base})
                               if study.finetuned_per_checkpoint else sum(not r.is_base for r in evaluated)),
        "evaluate_benchmarks": len(study.benchmark_runs()),
        "summarize_predictions": len(study.summary_files()),
        "figure": len(study.drawable_figures()),
    }


def test_demo_plan_has_every_checkpoint_cell_and_instruction_tuned_run(demo):
    assert jobs_per_rule(demo) == {"fetch_checkpoint": 5, "build_prompts": 10 * 3, "finetune": 5 * 5 + 5,
                                   "evaluate_base": 5, "evaluate_finetuned": 5, "evaluate_benchmarks": 5 + 5,
                                   "summarize_predictions": 5 + 25 + 5, "figure": 10}


def test_tiny_plan(tiny):
    assert jobs_per_rule(tiny) == {"fetch_checkpoint": 3, "build_prompts": 3 * 2, "finetune": 3 * 2 + 3,
                                   "evaluate_base": 3, "evaluate_finetuned": 6, "evaluate_benchmarks": 3 + 3,
                                   "summarize_predictions": 3 + 6 + 3, "figure": 9}


def test_paper_plan_has_olmo_and_llama_cells_and_tulu_runs_for_olmo_only(paper):
    # 8 OLMo checkpoints + Llama-3-8B's final one; 4 train sets; Tulu v2 for each OLMo checkpoint.
    assert jobs_per_rule(paper) == {"fetch_checkpoint": 9, "build_prompts": len(paper.datasets) * 3,
                                    "finetune": 9 * 4 + 8, "evaluate_base": 9, "evaluate_finetuned": 9 * 4,
                                    "evaluate_benchmarks": 9 + 8, "summarize_predictions": 9 + 36 + 8, "figure": 10}
    assert {r.model for r in paper.instruction_tuned_runs()} == {"olmo1b"}


def test_a_run_has_one_id_one_directory_and_one_meta():
    base = Run("mini", "step20-tokens40K")
    cell = Run("mini", "step20-tokens40K", "people_nli", "default", "all")
    tuned = Run("mini", "step20-tokens40K", "chat_mix", "chat", "all")
    assert (base.id, base.dir) == (BASE, "results/checkpoints/mini/step20-tokens40K")
    assert cell.id == "people_nli-default-all"
    assert cell.dir == "results/finetuned/mini/step20-tokens40K/people_nli/default/all"
    assert tuned.is_instruction_tuned and not cell.is_instruction_tuned and base.is_base
    assert cell.meta == {"model": "mini", "checkpoint": "step20-tokens40K", "train": "people_nli-default-all",
                         "train_dataset": "people_nli", "train_format": "default", "train_size": "all"}
    assert base.meta["train"] == "base" and base.meta["train_dataset"] is None


def test_jobs_find_their_run_from_wildcards_and_unknown_runs_are_named(tiny):
    cell = Run("mini", "step150-tokens307K", "people_nli", "default", "all")
    wildcards = {"model": "mini", "checkpoint": "step150-tokens307K"}
    assert tiny.run_for({**wildcards, "train": "people_nli-default-all"}) == cell
    assert tiny.run_for({"model": "mini", "checkpoint": "step150-tokens307K", "train_dataset": "people_nli",
                         "train_format": "default", "train_size": "all"}) == cell
    assert tiny.run_for({"model": "mini", "checkpoint": "step150-tokens307K"}).is_base
    with pytest.raises(PlanError, match="'mini/step150-tokens307K/people_nli-io-all' is not a run of this study"):
        tiny.run("mini", "step150-tokens307K", "people_nli-io-all")


def test_an_evaluation_job_reads_exactly_the_prompt_files_it_scores(tiny):
    cell = tiny.run("mini", "step150-tokens307K", "people_nli-default-all")
    assert tiny.eval_prompts(cell) == [f"results/prompts/{d}/{f}/test.parquet"
                                       for d in ("diary_summary", "people_nli", "product_sentiment")
                                       for f in ("default", "instruct")]
    requests = tiny.eval_requests(cell)
    assert len(requests) == 3 * 2 * 1  # eval sets x formats x fine-tuned shot counts
    assert requests[2] == {
        "dataset": "people_nli", "task": "nli", "format": "default", "shots": 0,
        "prompts": "results/prompts/people_nli/default/test.parquet",
        "output": "results/predictions/mini/step150-tokens307K/people_nli-default-all/people_nli/default/0shot.parquet",
        "labels": ["yes", "maybe", "no"]}
    base = tiny.run("mini", "step150-tokens307K")
    assert [r["shots"] for r in tiny.eval_requests(base)][:2] == [0, 2] and len(tiny.eval_requests(base)) == 12
    # Instruction-tuned models are scored on the benchmarks only.
    tuned = tiny.run("mini", "step150-tokens307K", "chat_mix-chat-all")
    assert tiny.eval_requests(tuned) == [] and tiny.prediction_files(tuned) == []
    assert tiny.benchmark_files(tuned) == [
        "results/benchmarks/mini/step150-tokens307K/chat_mix-chat-all/city_country/2shot.parquet",
        "results/benchmarks/mini/step150-tokens307K/chat_mix-chat-all/passage_check/2shot.parquet"]
    assert tiny.benchmark_requests(cell) == []


def test_demonstrations_are_scored_only_in_the_fewshot_formats(demo_config):
    demo_config["evaluation"].update(base_shots=[0, 4], fewshot_formats=["default"])
    study = Study(validate_config(demo_config))
    base = study.run("miniworld", study.checkpoints("miniworld")[0])
    grid = {(r["dataset"], r["format"], r["shots"]) for r in study.eval_requests(base)}
    datasets = study.eval_datasets
    assert grid == ({(d, f, 0) for d in datasets for f in ("default", "io", "instruct")}
                    | {(d, "default", 4) for d in datasets})
    assert sorted(study.prediction_patterns(base=True)) == sorted(r["output"].replace(
        f"miniworld/{base.checkpoint}/base", "{model}/{checkpoint}/{train}") for r in study.eval_requests(base))
    demo_config["evaluation"]["fewshot_formats"] = []  # empty: every format
    assert len(Study(validate_config(demo_config)).eval_requests(base)) == len(datasets) * 3 * 2


def test_a_per_checkpoint_job_scores_every_cell_of_its_checkpoint_and_other_formats_on_its_own_task(demo_config):
    demo_config["evaluation"].update(finetuned_jobs="per_checkpoint", finetuned_other_formats="own_task")
    study = Study(validate_config(demo_config))
    checkpoint = study.checkpoints("miniworld")[-1]
    jobs = study.checkpoint_eval_jobs("miniworld", checkpoint)
    cells = [r for r in study.finetuned_runs() if r.checkpoint == checkpoint]
    assert [j["model_dir"] for j in jobs] == [r.dir for r in cells] and len(jobs) == 5
    nli = next(j for j in jobs if j["meta"]["train_dataset"] == "people_nli")
    grid = {(r["dataset"], r["format"]) for r in nli["requests"]}
    nli_sets = {"people_nli", "product_nli"}
    assert grid == ({(d, "default") for d in study.eval_datasets}
                    | {(d, f) for d in nli_sets for f in ("io", "instruct")})
    # The job's outputs are exactly its cells' prediction files, with {model} and {checkpoint} as wildcards.
    files = sorted(r["output"] for j in jobs for r in j["requests"])
    patterns = study.checkpoint_prediction_patterns()
    assert sorted(p.format(model="miniworld", checkpoint=checkpoint) for p in patterns) == files
    assert study.checkpoint_eval_inputs("miniworld", checkpoint)["models"] == [r.dir for r in cells]
    assert study.checkpoint_job_size("miniworld", checkpoint, "runtime") == 5 * 120
    # Base checkpoints are still scored in every format, the shared base of every comparison.
    base = study.run("miniworld", checkpoint)
    assert {r["format"] for r in study.eval_requests(base) if r["dataset"] == "diary_summary"} == {
        "default", "io", "instruct"}


def test_own_task_formats_need_per_checkpoint_jobs(demo_config):
    demo_config["evaluation"].update(finetuned_jobs="per_cell", finetuned_other_formats="own_task")
    with pytest.raises(ConfigError, match="evaluation.finetuned_other_formats': own_task needs"):
        validate_config(demo_config)


def test_the_plan_reads_the_main_format_the_analysis_picks_from_the_results(demo_config):
    """The analysis sees only the formats a results table holds, not their order in the config."""
    demo_config["formats"] = ["io", "instruct"]
    demo_config["evaluation"]["fewshot_formats"] = []
    study = Study(validate_config(demo_config))
    in_results = {r["format"] for run in study.runs() for r in study.eval_requests(run)}
    assert study.main_format == main_format(in_results)


def test_the_rule_output_patterns_are_the_plans_files(tiny):
    for run in tiny.runs():
        if tiny.eval_requests(run):
            patterns = tiny.prediction_patterns(base=run.is_base)
            assert [p.format(**run.fields) for p in patterns] == tiny.prediction_files(run)
        if tiny.benchmark_requests(run):
            assert [p.format(**run.fields) for p in tiny.benchmark_patterns()] == tiny.benchmark_files(run)


def test_a_llama_cell_gets_its_model_hyperparameters_and_the_deepspeed_launcher(paper):
    llama = paper.run("llama3_8b", "main", "xsum-default-all")
    settings = paper.finetune_settings(llama)
    assert (settings["learning_rate"], settings["epochs"], settings["batch_size"], settings["deepspeed"]) == (
        5e-6, 2, 16, "zero3")
    assert settings["size"] is None
    assert paper.gpus(llama) == 4
    assert paper.launcher(llama) == ("deepspeed --num_gpus 4 --master_port $(python -m amuro free-port)"
                                     " --no_local_rank --module amuro")
    olmo = paper.run("olmo1b", "step1000", "xsum-default-all")
    assert paper.launcher(olmo) == "python -m amuro" and paper.gpus(olmo) == 1
    # An 8B model on 4 GPUs asks for 4 times a 1B model's time and memory, and a retry for more again.
    assert paper.job_size(llama, "finetune", "runtime", attempt=2) == 4 * 2 * paper.job_size(olmo, "finetune", "runtime")
    assert paper.job_size(olmo, "evaluate", "mem_mb", attempt=3) == 3 * paper.job_size(olmo, "evaluate", "mem_mb")
    assert paper.finetune_settings(olmo)["learning_rate"] == 2e-7  # xsum's own rate (the paper's choice)
    tulu = paper.instruction_tuned("olmo1b", "step1000")
    assert paper.train_prompts(tulu) == "results/instructions/tulu_v2/train.parquet"
    assert paper.finetune_settings(tulu)["epochs"] == 5 and paper.train_prompts(olmo) == (
        "results/prompts/xsum/default/train.parquet")


def test_wildcard_constraints_match_exactly_the_studys_values(tiny):
    constraints = tiny.wildcard_constraints()

    def matches(wildcard, value):
        return re.fullmatch(constraints[wildcard], value) is not None

    assert all(matches("train", run.id) for run in tiny.runs())
    assert not matches("train", "people_nli-io-all") and not matches("train", "base-x")
    assert matches("eval_dataset", "people_nli") and not matches("eval_dataset", "chat_mix")
    assert matches("dataset", "chat_mix") and matches("train_size", "2000")
    assert not matches("benchmark", "people_nli")


def test_a_figure_reads_only_the_runs_it_shows(demo_config):
    demo_config["finetune"].update(formats=["default", "fticl"], sizes=[100, "all"])
    study = Study(validate_config(demo_config, "demo"))

    def tuned(figure):
        return {(r.train_format, r.train_size) for r in study.figure_runs(figure) if not r.is_base}

    assert tuned("pretraining_curves") == set()
    assert tuned("finetuned_vs_base") == {("default", "all")}
    assert tuned("train_size") == {("default", "100"), ("default", "all")}
    assert tuned("fticl") == {("default", "all"), ("fticl", "all")}
    assert tuned("group_gain") == {("default", "all"), ("chat", "all")}
    assert len([r for r in study.figure_runs("pretraining_curves") if r.is_base]) == 5
    first = study.figure_inputs("finetuned_vs_base")[0]
    assert first == "results/tables/cells/miniworld/step25-tokens102K/base.parquet"


def test_the_config_decides_which_figures_a_study_can_draw(demo):
    assert demo.figure_problem("pretraining_curves") is None
    assert demo.figure_problem("cross_domain") is None
    assert "two train sizes" in demo.figure_problem("train_size")
    assert "fticl" in demo.figure_problem("fticl")
    assert "unknown figure" in demo.figure_problem("figure_99")
    with pytest.raises(PlanError, match="figure 'fticl' cannot be drawn from this study"):
        demo.figure_inputs("fticl")
    assert "fticl" not in demo.drawable_figures() and "transfer_heatmap" in demo.drawable_figures()


def test_final_outputs_hold_every_run_table_and_drawable_figure(demo):
    outputs = demo.final_outputs()
    assert len(outputs) == len(set(outputs))
    for run in demo.runs():
        assert set(demo.evaluated_files(run)) <= set(outputs)
    assert "results/tables/results.parquet" in outputs and "results/tables/table3.parquet" in outputs
    assert "results/figures/cross_task.png" in outputs and "results/figures/fticl.pdf" not in outputs
