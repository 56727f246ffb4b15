"""The study plan: the runs, paths and job settings each config implies, without Snakemake."""

import re

import pytest

from amuro.config import ConfigError, load_config, validate_config
from amuro.axes import main_eval_format
from amuro.study import BASE, PlanError, Run, Study
from conftest import DEMO_CONFIG
from jobs import FIGURES_LEFT_OUT, PAPER, TINY, expected_jobs


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
    evaluated = [r for r in study.runs() if study.evaluation.requests(r)]
    return {
        "fetch_checkpoint": len(study.data.checkpoint_dirs()),
        "build_prompts": len(study.data.prompt_files()) // 3,
        "finetune": (0 if study.finetuning.per_checkpoint else len(study.finetuned_runs()))
                    + len(study.instruction_tuned_runs()),
        "finetune_checkpoint": (len({(r.model, r.checkpoint) for r in study.finetuned_runs()})
                                if study.finetuning.per_checkpoint else 0),
        "evaluate_base": sum(r.is_base for r in evaluated),
        "evaluate_finetuned": (len({(r.model, r.checkpoint) for r in evaluated if not r.is_base})
                               if study.evaluation.per_checkpoint else sum(not r.is_base for r in evaluated)),
        "evaluate_benchmarks": len(study.benchmarking.runs()),
        "summarize_predictions": len(study.results.summary_files()),
        "figure": len(study.figures.drawable()),
    }


@pytest.mark.parametrize("configfile", [DEMO_CONFIG, TINY, PAPER])
def test_the_plan_has_every_job_the_configs_axes_imply(configfile):
    config = load_config(configfile)
    planned = jobs_per_rule(Study(config))
    expected = expected_jobs(config, FIGURES_LEFT_OUT[configfile])
    assert planned == {rule: expected[rule] for rule in planned}


def test_the_paper_plan_instruction_tunes_olmo_only(paper):
    assert {r.model for r in paper.instruction_tuned_runs()} == {"olmo1b"}


def test_a_run_has_one_id_one_directory_and_one_meta():
    base = Run("mini", "step20-tokens40K")
    cell = Run("mini", "step20-tokens40K", "people_nli", "default", "all", "lora", "3")
    tuned = Run("mini", "step20-tokens40K", "chat_mix", "chat", "all", "full", "42")
    assert (base.id, base.dir) == (BASE, "results/checkpoints/mini/step20-tokens40K")
    assert cell.id == "people_nli-default-all-lora-3"
    assert cell.dir == "results/finetuned/mini/step20-tokens40K/people_nli/default/all/lora/3"
    assert tuned.is_instruction_tuned and not cell.is_instruction_tuned and base.is_base
    assert cell.meta == {"model": "mini", "checkpoint": "step20-tokens40K", "train": "people_nli-default-all-lora-3",
                         "train_dataset": "people_nli", "train_format": "default", "train_size": "all",
                         "train_variant": "lora", "train_seed": "3"}
    assert base.meta["train"] == "base" and base.meta["train_dataset"] is None and base.meta["train_seed"] is None


def test_jobs_find_their_run_from_wildcards_and_unknown_runs_are_named(tiny):
    cell = Run("mini", "step150-tokens307K", "people_nli", "default", "all", "full", "42")
    wildcards = {"model": "mini", "checkpoint": "step150-tokens307K"}
    assert tiny.run_for({**wildcards, "train": "people_nli-default-all-full-42"}) == cell
    assert tiny.run_for({"model": "mini", "checkpoint": "step150-tokens307K", "train_dataset": "people_nli",
                         "train_format": "default", "train_size": "all", "variant": "full", "seed": "42"}) == cell
    assert tiny.run_for({"model": "mini", "checkpoint": "step150-tokens307K"}).is_base
    with pytest.raises(PlanError, match="'mini/step150-tokens307K/people_nli-io-all' is not a run of this study"):
        tiny.run("mini", "step150-tokens307K", "people_nli-io-all")


def test_an_evaluation_job_reads_exactly_the_prompt_files_it_scores(tiny):
    cell = tiny.run("mini", "step150-tokens307K", "people_nli-default-all-full-42")
    requests = tiny.evaluation.requests(cell)
    assert list(dict.fromkeys(r["prompts"] for r in requests)) == [
        f"results/prompts/{d}/{f}/test.parquet" for d in ("diary_summary", "people_nli", "product_sentiment")
        for f in ("default", "instruct")]
    assert len(requests) == 3 * 2 * 1  # eval sets x formats x fine-tuned shot counts
    assert requests[2] == {
        "dataset": "people_nli", "task": "nli", "format": "default", "shots": 0,
        "prompts": "results/prompts/people_nli/default/test.parquet",
        "output": ("results/predictions/mini/step150-tokens307K/people_nli-default-all-full-42/people_nli/default/"
                   "0shot.parquet"),
        "labels": ["yes", "maybe", "no"]}
    base = tiny.run("mini", "step150-tokens307K")
    assert [r["shots"] for r in tiny.evaluation.requests(base)][:2] == [0, 2]
    assert len(tiny.evaluation.requests(base)) == 12
    # Instruction-tuned models are scored on the benchmarks only.
    tuned = tiny.run("mini", "step150-tokens307K", "chat_mix-chat-all-full-42")
    assert tiny.evaluation.requests(tuned) == [] and tiny.evaluation.prediction_files(tuned) == []
    assert tiny.benchmarking.files(tuned) == [
        "results/benchmarks/mini/step150-tokens307K/chat_mix-chat-all-full-42/city_country/2shot.parquet",
        "results/benchmarks/mini/step150-tokens307K/chat_mix-chat-all-full-42/passage_check/2shot.parquet"]
    assert tiny.benchmarking.requests(cell) == []


def test_demonstrations_are_scored_only_in_the_fewshot_formats(demo_config):
    demo_config["evaluation"].update(base_shots=[0, 4], fewshot_formats=["default"])
    study = Study(validate_config(demo_config))
    base = study.run("miniworld", study.checkpoints("miniworld")[0])
    grid = {(r["dataset"], r["format"], r["shots"]) for r in study.evaluation.requests(base)}
    datasets = study.eval_datasets
    assert grid == ({(d, f, 0) for d in datasets for f in ("default", "io", "instruct")}
                    | {(d, "default", 4) for d in datasets})
    assert sorted(study.evaluation.output_patterns(base=True)) == sorted(r["output"].replace(
        f"miniworld/{base.checkpoint}/base", "{model}/{checkpoint}/{train}") for r in study.evaluation.requests(base))
    demo_config["evaluation"]["fewshot_formats"] = []  # empty: every format
    assert len(Study(validate_config(demo_config)).evaluation.requests(base)) == len(datasets) * 3 * 2


def test_shot_lists_per_task_and_per_dataset_decide_each_sets_prompts_and_requests(demo_config):
    """Yang et al.'s shot counts per task (every model, base and fine-tuned), a set's own list above its task's."""
    demo_config["evaluation"].update(shots_per_task={"nli": [0, 3, 5], "sentiment": [0, 2]},
                                     shots_per_dataset={"product_nli": [0, 1]}, fewshot_formats=["default"])
    study = Study(validate_config(demo_config))
    base = study.run("miniworld", study.checkpoints("miniworld")[0])
    cell = study.finetuned_runs()[0]
    for run in (base, cell):
        shots = {}
        for r in study.evaluation.requests(run):
            shots.setdefault(r["dataset"], set()).add(r["shots"])
        assert shots["people_nli"] == {0, 3, 5} and shots["product_nli"] == {0, 1}
        assert shots["product_sentiment"] == {0, 2} and shots["people_qg"] == ({0, 4} if run is base else {0})
    assert [study.data.prompt_shots(d) for d in ("people_nli", "product_nli", "people_qg")] == ["0,3,5", "0,1", "0,4"]


def test_the_demonstration_choice_is_a_param_of_the_prompt_jobs(demo_config):
    assert Study(validate_config(demo_config)).data.demonstrations() == {
        "selection": "per_query", "split": "train", "include_query": False, "separator": "\n\n"}
    demo_config["evaluation"]["demonstrations"] = {"selection": "first_k", "split": "test", "separator": "\n"}
    assert Study(validate_config(demo_config)).data.demonstrations() == {
        "selection": "first_k", "split": "test", "include_query": False, "separator": "\n"}


@pytest.mark.parametrize("evaluation, message", [
    ({"demonstrations": {"include_query": True}},
     r"key 'evaluation.demonstrations.include_query': true needs selection first_k"),
    ({"shots_per_dataset": {"xsum": [0, 4]}}, r"key 'evaluation.shots_per_dataset.xsum': dataset 'xsum' is not "
                                              r"defined"),
    ({"shots_per_task": {"translation": [0]}}, r"key 'evaluation.shots_per_task'"),
    ({"demonstrations": {"separator": ""}}, r"key 'evaluation.demonstrations.separator'"),
])
def test_a_demonstration_setting_it_cannot_serve_is_refused_naming_the_key(demo_config, evaluation, message):
    demo_config["evaluation"].update(evaluation)
    with pytest.raises(ConfigError, match=message):
        validate_config(demo_config)


def test_a_per_checkpoint_job_scores_every_cell_of_its_checkpoint_and_other_formats_on_its_own_task(demo_config):
    demo_config["evaluation"].update(finetuned_jobs="per_checkpoint", finetuned_other_formats="own_task")
    study = Study(validate_config(demo_config))
    checkpoint = study.checkpoints("miniworld")[-1]
    jobs = study.evaluation.checkpoint_jobs("miniworld", checkpoint)
    cells = [r for r in study.finetuned_runs() if r.checkpoint == checkpoint]
    assert [j["model_dir"] for j in jobs] == [r.dir for r in cells] and len(jobs) == 5 + 2 * 2  # full, LoRA x 2 seeds
    nli = next(j for j in jobs if j["meta"]["train_dataset"] == "people_nli")
    grid = {(r["dataset"], r["format"]) for r in nli["requests"]}
    nli_sets = {"people_nli", "product_nli"}
    assert grid == ({(d, "default") for d in study.eval_datasets}
                    | {(d, f) for d in nli_sets for f in ("io", "instruct")})
    # The job's outputs are exactly its cells' prediction files, with {model} and {checkpoint} as wildcards.
    files = sorted(r["output"] for j in jobs for r in j["requests"])
    patterns = study.evaluation.checkpoint_patterns()
    assert sorted(p.format(model="miniworld", checkpoint=checkpoint) for p in patterns) == files
    # LoRA cells are adapters: their job reads the checkpoint they adapt too.
    models = study.evaluation.checkpoint_inputs("miniworld", checkpoint)["models"]
    assert models == [r.dir for r in cells] + [cells[0].base.dir]
    # Base checkpoints are still scored in every format, the shared base of every comparison.
    base = study.run("miniworld", checkpoint)
    assert {r["format"] for r in study.evaluation.requests(base) if r["dataset"] == "diary_summary"} == {
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
    in_results = {r["format"] for run in study.runs() for r in study.evaluation.requests(run)}
    assert study.evaluation.main_format == main_eval_format(in_results)


def test_the_rule_output_patterns_are_the_plans_files(tiny):
    for run in tiny.runs():
        if tiny.evaluation.requests(run):
            patterns = tiny.evaluation.output_patterns(base=run.is_base)
            assert [p.format(**run.fields) for p in patterns] == tiny.evaluation.prediction_files(run)
        if tiny.benchmarking.requests(run):
            assert [p.format(**run.fields) for p in tiny.benchmarking.output_patterns()] == tiny.benchmarking.files(run)


def test_a_llama_cell_gets_its_model_hyperparameters_and_gpus(paper):
    llama = paper.run("llama3_8b", "main", "xsum-default-all-full-42")
    settings = paper.finetuning.settings(llama)
    assert (settings["learning_rate"], settings["epochs"], settings["batch_size"], settings["deepspeed"]) == (
        5e-6, 2, 16, "zero3")
    assert settings["size"] is None
    assert paper.finetuning.gpus(llama) == 4
    olmo = paper.run("olmo1b", "step1000", "xsum-default-all-full-42")
    assert paper.finetuning.gpus(olmo) == 1
    assert paper.finetuning.settings(olmo)["learning_rate"] == 2e-7  # xsum's own rate (the paper's choice)
    tulu = paper.instruction_tuned("olmo1b", "step1000")
    assert paper.finetuning.train_prompts(tulu) == "results/instructions/tulu_v2/train.parquet"
    assert paper.finetuning.settings(tulu)["epochs"] == 5 and paper.finetuning.train_prompts(olmo) == (
        "results/prompts/xsum/default/train.parquet")


def test_a_later_key_at_its_default_stays_out_of_a_jobs_params_and_any_other_value_is_in(demo_config):
    """Adding a key to the schema must not rerun a finished study's jobs: its default does what they did."""
    demo = Study(validate_config(demo_config))
    cell = demo.finetuned_runs()[0]
    assert not {"loss", "truncation", "fticl_demonstrations"} & set(demo.finetuning.settings(cell))
    assert "loss" not in demo.finetuning.settings(demo.instruction_tuned_runs()[0])
    assert "sampling" not in demo.data.prepare_spec("people_nli")
    demo_config["finetune"]["hyperparameters"].update(loss="example_mean", truncation="right")
    demo_config["datasets"]["people_nli"].update(sample={"test": 50}, sampling="first")
    changed = Study(validate_config(demo_config))
    assert {k: changed.finetuning.settings(cell)[k] for k in ("loss", "truncation")} == {
        "loss": "example_mean", "truncation": "right"}
    assert changed.data.prepare_spec("people_nli")["sampling"] == "first"


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
        return {(r.train_format, r.train_size) for r in study.figures.runs(figure) if not r.is_base}

    assert tuned("pretraining_curves") == set()
    assert tuned("finetuned_vs_base") == {("default", "all")}
    assert tuned("train_size") == {("default", "100"), ("default", "all")}
    assert tuned("fticl") == {("default", "all"), ("fticl", "all")}
    assert tuned("group_gain") == {("default", "all"), ("chat", "all")}
    assert len([r for r in study.figures.runs("pretraining_curves") if r.is_base]) == 5
    first = study.figures.inputs("finetuned_vs_base")[0]
    assert first == "results/tables/cells/miniworld/step25-tokens102K/base.parquet"


def test_the_config_decides_which_figures_a_study_can_draw(demo):
    assert demo.figures.problem("pretraining_curves") is None
    assert demo.figures.problem("cross_domain") is None
    assert "two train sizes" in demo.figures.problem("train_size")
    assert "fticl" in demo.figures.problem("fticl")
    assert "unknown figure" in demo.figures.problem("figure_99")
    with pytest.raises(PlanError, match="figure 'fticl' cannot be drawn from this study"):
        demo.figures.inputs("fticl")
    assert "fticl" not in demo.figures.drawable() and "transfer_heatmap" in demo.figures.drawable()


def test_final_outputs_hold_every_run_table_and_drawable_figure(demo):
    outputs = demo.final_outputs()
    assert len(outputs) == len(set(outputs))
    # A run's summary stands for its predictions and benchmark scores (it reads their indexes).
    assert set(demo.results.summary_files()) <= set(outputs)
    assert not any(o.endswith("shot.parquet") for o in outputs)
    assert "results/tables/results.parquet" in outputs and "results/tables/table3.parquet" in outputs
    assert "results/figures/cross_task.png" in outputs and "results/figures/fticl.pdf" not in outputs


# Variants and seeds: axes of the study


def tiny_with(**finetune) -> Study:
    config = load_config(TINY)
    config["finetune"].update(finetune)
    return Study(validate_config(config, "tiny"))


def job_params(study: Study, run: Run) -> dict:
    """What the jobs of one run get: their params are their rerun triggers."""
    params = {"finetune": None if run.is_base else study.finetuning.settings(run),
              "evaluate": study.evaluation.jobs(run), "benchmarks": study.benchmarking.requests(run),
              "summary": study.results.summary_settings(run), "inputs": study.model_inputs(run)}
    return params


LORA = {"method": "lora", "lora": {"r": 4}, "hyperparameters": {"learning_rate": 0.01}}


@pytest.mark.parametrize("grown, new", [
    ({"seeds": [42, 43]}, {"seed": "43"}),
    ({"variants": {"full": {}, "lora": {**LORA, "datasets": ["people_nli"]}}}, {"variant": "lora"}),
])
def test_a_seed_or_variant_added_to_a_finished_study_plans_only_its_new_cells(tiny, grown, new):
    study = tiny_with(**grown)
    before, after = set(tiny.runs()), set(study.runs())
    added = after - before
    assert before < after and added and all(all(getattr(r, k) == v for k, v in new.items()) for r in added)
    assert all(not r.is_base and not r.is_instruction_tuned for r in added)
    # Every run of the finished study keeps the params of all of its jobs: nothing of it reruns.
    assert all(job_params(study, run) == job_params(tiny, run) for run in before)
    if "variants" in grown:  # the new variant trains on its own train set only, once per checkpoint
        assert {r.train_dataset for r in added} == {"people_nli"} and len(added) == len(study.base_runs())


def test_changing_one_variants_settings_changes_only_its_cells_params():
    study = tiny_with(variants={"full": {}, "lora": LORA})
    changed = tiny_with(variants={"full": {}, "lora": {**LORA, "hyperparameters": {"learning_rate": 0.02}}})
    assert study.runs() == changed.runs()
    differ = {run.variant for run in study.finetuned_runs()
              if study.finetuning.settings(run) != changed.finetuning.settings(run)}
    assert differ == {"lora"}


def test_a_cells_settings_hold_its_variant_its_seed_and_its_train_sets_sample_seed(tiny):
    study = tiny_with(variants={"full": {}, "lora": LORA}, seeds=[1, 2])
    lora = study.run("mini", "step20-tokens40K", "people_nli-default-all-lora-2")
    settings = study.finetuning.settings(lora)
    assert (settings["method"], settings["lora"]["r"], settings["lora"]["alpha"]) == ("lora", 4, 16)
    assert (settings["learning_rate"], settings["seed"], settings["sample_seed"]) == (0.01, 2, 7)  # study seed 7
    assert settings["epochs"] == 2  # the rest as finetune.hyperparameters
    full = study.run("mini", "step20-tokens40K", "people_nli-default-all-full-1")
    assert study.finetuning.settings(full) == {**tiny.finetuning.settings(tiny.run(
        "mini", "step20-tokens40K", "people_nli-default-all-full-42")), "seed": 1}
    assert "lora" not in study.finetuning.settings(full)
    # A LoRA cell is scored as its adapter merged into its checkpoint: its evaluation reads both directories.
    assert study.model_inputs(lora) == {"model": lora.dir, "base": "results/checkpoints/mini/step20-tokens40K"}
    assert study.model_inputs(full) == {"model": full.dir}
    assert study.evaluation.checkpoint_inputs("mini", "step20-tokens40K")["models"][-1] == lora.base.dir
    # The instruction-tuned run is of its own kind: one run per checkpoint, its own settings and seed.
    tuned = study.instruction_tuned("mini", "step20-tokens40K")
    assert (tuned.id, study.finetuning.settings(tuned)["seed"]) == ("chat_mix-chat-all-full-42", 42)
    assert len(study.instruction_tuned_runs()) == len(study.base_runs())


def test_variants_and_seeds_multiply_the_cells_and_their_jobs():
    config = load_config(TINY)
    config["finetune"].update(variants={"full": {}, "lora": {**LORA, "datasets": ["people_nli"]}}, seeds=[1, 2, 3])
    study = Study(validate_config(config))
    # 3 checkpoints x (2 train sets full + 1 lora) x 3 seeds
    assert len(study.finetuned_runs()) == 3 * 3 * 3
    planned = jobs_per_rule(study)
    expected = expected_jobs(config, FIGURES_LEFT_OUT[TINY] - {"full_vs_lora"})  # it has a LoRA variant now
    assert planned == {rule: expected[rule] for rule in planned}
    constraints = study.wildcard_constraints()
    assert all(re.fullmatch(constraints["train"], run.id) for run in study.runs())
    assert re.fullmatch(constraints["variant"], "lora") and not re.fullmatch(constraints["variant"], "qlora")
