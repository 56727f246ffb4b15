import re
import subprocess
import sys

import pytest
import yaml

from amuro.config import ConfigError, load_config, miniworld_checkpoints, validate_config
from conftest import DEMO_CONFIG, ROOT


def test_demo_and_paper_configs_are_valid():
    for path in (DEMO_CONFIG, ROOT / "workflow_config.yaml"):
        config = load_config(path)
        assert config["models"]


def test_defaults_are_filled_in(demo_config):
    config = validate_config(demo_config)
    assert config["metrics"]["rouge_stemmer"] is False  # the paper's choice
    assert config["metrics"]["bootstrap_resamples"] == 3000
    assert config["datasets"]["people_nli"]["sample"] == {"train": None, "validation": None, "test": None}
    assert config["finetune"]["hyperparameters"]["warmup_fraction"] == 0.03


def test_unknown_key_is_named(demo_config):
    demo_config["evaluation"]["shotz"] = [4]
    with pytest.raises(ConfigError, match=r"key 'evaluation'.*'shotz' was unexpected"):
        validate_config(demo_config)


def test_wrong_type_is_named(demo_config):
    demo_config["miniworld"]["pretrain"]["batch_size"] = "eight"
    with pytest.raises(ConfigError, match=r"key 'miniworld\.pretrain\.batch_size'"):
        validate_config(demo_config)


def test_unknown_task_is_named(demo_config):
    demo_config["datasets"]["people_qg"]["task"] = "translation"
    with pytest.raises(ConfigError, match=r"key 'datasets\.people_qg\.task'"):
        validate_config(demo_config)


def test_undefined_train_dataset_is_named(demo_config):
    demo_config["finetune"] = {"datasets": ["people_nli", "xsum"]}
    with pytest.raises(ConfigError, match=r"key 'finetune\.datasets\[1\]'.*'xsum' is not defined"):
        validate_config(demo_config)


def test_undefined_eval_format_is_named(demo_config):
    demo_config["formats"] = ["default", "chat"]
    with pytest.raises(ConfigError, match=r"key 'formats\[1\]'"):
        validate_config(demo_config)


def test_classification_dataset_needs_labels(demo_config):
    del demo_config["datasets"]["people_nli"]["labels"]
    with pytest.raises(ConfigError, match=r"key 'datasets\.people_nli\.labels'"):
        validate_config(demo_config)


def test_hub_model_needs_a_repo(demo_config):
    demo_config["models"]["olmo"] = {"source": "hub", "checkpoints": ["main"]}
    with pytest.raises(ConfigError, match=r"key 'models\.olmo\.repo'"):
        validate_config(demo_config)


def test_miniworld_checkpoints_are_named_like_hub_revisions(demo_config):
    names = miniworld_checkpoints(validate_config(demo_config))
    # 8 sequences of 512 tokens per step
    assert names == {"step25-tokens102K": 25, "step250-tokens1M": 250, "step325-tokens1M": 325,
                     "step400-tokens1M": 400, "step500-tokens2M": 500}


def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, demo_config):
    demo_config["finetune"] = {"datasets": ["nope"]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(demo_config))
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(bad), "-n", "--cores", "1"], capture_output=True, text=True)
    assert run.returncode != 0
    assert "finetune.datasets[0]" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()


def test_an_undefined_eval_dataset_is_named(demo_config):
    demo_config["evaluation"]["datasets"] = ["people_nli", "cnn"]
    with pytest.raises(ConfigError, match=r"key 'evaluation\.datasets\[1\]'.*'cnn' is not defined under 'datasets'"):
        validate_config(demo_config)


def test_a_template_that_leaves_out_a_field_is_named(demo_config):
    demo_config["datasets"]["people_nli"]["templates"] = {"default": "### Premise: {premise}\n### Inference:"}
    with pytest.raises(ConfigError, match=r"key 'datasets\.people_nli\.templates\.default': leaves out field\(s\) "
                                          r"hypothesis; a nli template must use \{premise\}, \{hypothesis\}"):
        validate_config(demo_config)


def test_a_fewshot_format_that_is_not_a_format_is_named(demo_config):
    demo_config["formats"] = ["default", "instruct"]
    demo_config["evaluation"]["fewshot_formats"] = ["default", "io"]
    with pytest.raises(ConfigError, match=r"evaluation\.fewshot_formats\[1\]': format 'io' is not one of formats"):
        validate_config(demo_config)


def test_the_later_keys_defaults_are_the_schemas():
    """A later key at its default stays out of a job's params (amuro.config.LATER_DEFAULTS): that default must be
    the one validation fills in, or a study that never set the key would run with another value than its params say."""
    from amuro.config import LATER_DEFAULTS, SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())["properties"]
    finetune = schema["finetune"]["properties"]["hyperparameters"]["properties"]
    dataset = schema["datasets"]["additionalProperties"]["properties"]
    assert {k: finetune[k]["default"] for k in LATER_DEFAULTS["hyperparameters"]} == LATER_DEFAULTS["hyperparameters"]
    assert {k: dataset[k]["default"] for k in LATER_DEFAULTS["dataset"]} == LATER_DEFAULTS["dataset"]
    it = schema["instruction_tuning"]["properties"]["hyperparameters"]["properties"]
    assert it["loss"]["default"] == LATER_DEFAULTS["hyperparameters"]["loss"]
    from amuro.finetune.settings import FinetuneSettings

    defaults = FinetuneSettings(1e-5, 1, 8, 8, 0.0, "linear", 0.0, 64, 1, "auto")
    assert (defaults.loss, defaults.truncation) == (LATER_DEFAULTS["hyperparameters"]["loss"],
                                                    LATER_DEFAULTS["hyperparameters"]["truncation"])


@pytest.mark.parametrize("where, key", [
    ({"finetune": {"hyperparameters": {"loss": "micro_batch_mean"}}, "model": {"recipe": "paper"}},
     "finetune.hyperparameters.loss"),
    ({"finetune": {"overrides": {"people_nli": {"loss": "micro_batch_mean", "recipe": "paper"}}}},
     "finetune.overrides.people_nli.loss"),
    ({"model": {"loss": "micro_batch_mean", "recipe": "paper"}}, "models.miniworld.hyperparameters.loss"),
])
def test_micro_batch_mean_with_the_paper_recipe_is_refused_naming_the_key(demo_config, where, key):
    for section, values in where.get("finetune", {}).items():
        demo_config["finetune"].setdefault(section, {}).update(values)
    demo_config["models"]["miniworld"]["hyperparameters"] = where.get("model", {})
    with pytest.raises(ConfigError, match=rf"key '{re.escape(key)}': micro_batch_mean averages over micro-batches"):
        validate_config(demo_config)


def test_a_truncation_for_the_instruction_mix_is_refused(demo_config):
    demo_config["instruction_tuning"]["hyperparameters"]["truncation"] = "right"
    with pytest.raises(ConfigError, match=r"key 'instruction_tuning.hyperparameters.truncation': a chat is always cut"):
        validate_config(demo_config)


# Fine-tuning variants and seeds


def test_without_variants_or_seeds_a_study_has_one_full_variant_and_the_hyperparameters_seed(demo_config):
    from amuro.config import finetune_seeds, variant_method, variants

    demo_config["finetune"].pop("variants")  # the demo's own: full and LoRA
    config = validate_config(demo_config)
    assert variants(config) == ["full"] and variant_method(config, "full") == {"method": "full"}
    assert finetune_seeds(config) == [config["finetune"]["hyperparameters"]["seed"]] == [42]


def test_a_lora_variant_gets_the_default_lora_settings(demo_config):
    from amuro.config import variant_method

    demo_config["finetune"]["variants"] = {"full": {}, "lora": {"method": "lora", "lora": {"r": 4}}}
    config = validate_config(demo_config)
    assert variant_method(config, "lora") == {"method": "lora", "lora": {"r": 4, "alpha": 16, "dropout": 0.05,
                                                                         "target_modules": "all-linear"}}


@pytest.mark.parametrize("variants, seeds, key, message", [
    ({"qlora": {"method": "qlora"}}, None, r"finetune\.variants\.qlora\.method", "'qlora' is not one of"),
    ({"lora": {"method": "lora", "lora": {"r": 0}}}, None, r"finetune\.variants\.lora\.lora\.r",
     "less than the minimum of 1"),
    ({"lora-r8": {"method": "lora"}}, None, r"finetune\.variants", "'lora-r8' does not match"),
    ({"Full": {}}, None, r"finetune\.variants", "'Full' does not match"),
    ({"lora": {"method": "lora", "datasets": ["people_nli", "xsum"]}}, None, r"finetune\.variants\.lora\.datasets\[1\]",
     "'xsum' is not one of finetune.datasets"),
    ({"lora": {"method": "lora", "hyperparameters": {"seed": 3}}}, None,
     r"finetune\.variants\.lora\.hyperparameters\.seed", "list seeds under finetune.seeds"),
    ({"lora": {"method": "lora", "hyperparameters": {"fticl_shots": 2}}}, None,
     r"finetune\.variants\.lora\.hyperparameters\.fticl_shots", "every variant trains on the same prompts"),
    (None, [1, 2, 1], r"finetune\.seeds", "non-unique elements"),
    (None, [-1], r"finetune\.seeds\[0\]", "less than the minimum of 0"),
])
def test_a_bad_variant_or_seed_is_named(demo_config, variants, seeds, key, message):
    if variants is not None:
        demo_config["finetune"]["variants"] = variants
    if seeds is not None:
        demo_config["finetune"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=rf"key '{key}': .*{re.escape(message)}"):
        validate_config(demo_config)


def test_a_seed_below_the_defaults_is_refused_since_the_seed_is_an_axis(demo_config):
    demo_config["finetune"]["overrides"] = {"people_nli": {"seed": 5}}
    with pytest.raises(ConfigError, match=r"key 'finetune\.overrides\.people_nli\.seed': the fine-tuning seed is an "
                                          r"axis of the study"):
        validate_config(demo_config)


def test_a_lora_target_the_model_does_not_have_is_named_at_load_with_the_models_linear_modules(demo_config):
    demo_config["finetune"]["variants"] = {"full": {}, "lora": {"method": "lora", "lora": {
        "target_modules": ["q_proj", "c_attn"]}}}
    with pytest.raises(ConfigError, match=r"key 'finetune\.variants\.lora\.lora\.target_modules\[1\]': 'c_attn' is not "
                                          r"a linear module of model 'miniworld'; its linear modules are down_proj, "
                                          r"gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj"):
        validate_config(demo_config)
    demo_config["finetune"]["variants"]["lora"]["lora"]["target_modules"] = ["q_proj", "v_proj"]
    validate_config(demo_config)


def test_a_variant_may_list_its_own_seeds(demo_config):
    from amuro.config import finetune_seeds

    config = validate_config(demo_config)
    assert finetune_seeds(config, "lora") == [42, 43] and finetune_seeds(config, "full") == [42]
