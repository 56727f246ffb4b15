"""The study's configuration: schema validation with defaults filled in, checks across keys, typed access.

Snakemake validates the same schema with `snakemake.utils.validate`; `check_references` then catches what a
JSON-Schema cannot express (a train dataset that is not defined, a classification dataset without labels).
"""

from __future__ import annotations

import copy
import string
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from amuro.adapters import module_kinds, unmatched_targets
from amuro.tasks import TASKS

SCHEMA_PATH = Path(str(resources.files("amuro") / "schemas" / "config.schema.yaml"))
SPLITS = ("train", "validation", "test")


# Keys added to the schema after studies had already run, each with the schema default that does what those studies
# did. A job's params are its rerun triggers: at that default such a key stays out of them, so a finished study reruns
# nothing for a key it never set, while any other value is a param like the rest (tests/test_config.py checks these
# against the schema's defaults).
LATER_DEFAULTS = {
    "dataset": {"sampling": "random"},
    "hyperparameters": {"loss": "token_mean", "truncation": "left", "fticl_demonstrations": "sampled"},
}


def without_later_defaults(settings: dict, kind: str) -> dict:
    """`settings` (a dataset entry, or fine-tuning hyper-parameters) without the later keys at their defaults."""
    later = LATER_DEFAULTS[kind]
    return {k: v for k, v in settings.items() if k not in later or v != later[k]}


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


def _validator_filling_defaults():
    """A Draft 2020-12 validator that also writes schema defaults into the instance (as Snakemake's does)."""
    base = jsonschema.Draft202012Validator
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from check_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties})


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate_config(config: dict, source: str = "config") -> dict:
    """Validate `config` in place against the schema, fill defaults, check references; return it."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = _validator_filling_defaults()(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        # oneOf failures hide the useful message in their context; report the most specific one.
        err = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"{source}: key '{_key_path(err.absolute_path)}': {err.message}")
    check_references(config, source)
    return config


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return validate_config(config, str(path))


def check_references(config: dict, source: str = "config") -> None:
    """Cross-key checks: every name used must be defined, every dataset must fit its task."""

    def fail(key: str, message: str):
        raise ConfigError(f"{source}: key '{key}': {message}")

    datasets = config["datasets"]
    for name, ds in datasets.items():
        task = TASKS[ds["task"]]
        if task.is_classification and "labels" not in ds:
            fail(f"datasets.{name}.labels", f"a {task.name} dataset needs its label words")
        if not task.is_classification and "labels" in ds:
            fail(f"datasets.{name}.labels", f"a {task.name} dataset has no labels")
        for canonical in ds["fields"]:
            if canonical not in (*task.fields, "target", "id"):
                fail(f"datasets.{name}.fields.{canonical}",
                     f"not a field of task {task.name} (fields: {', '.join(task.fields)}, target, id)")
        if not isinstance(ds["fields"].get("id", ""), str):
            fail(f"datasets.{name}.fields.id", "the id must be a plain column name")
        for canonical, rule in ds["fields"].items():
            if isinstance(rule, dict) and "template" in rule:
                try:
                    columns = template_fields(rule["template"])
                except ValueError as exc:
                    fail(f"datasets.{name}.fields.{canonical}.template", f"not a valid template: {exc} (each "
                         f"placeholder is a raw column by name; write {{{{ and }}}} for literal braces)")
                if not columns:
                    fail(f"datasets.{name}.fields.{canonical}.template",
                         "names no column; write {column} for each raw column it puts in")
        threshold = ds.get("label_threshold")
        if threshold is not None:
            if not task.is_classification:
                fail(f"datasets.{name}.label_threshold", f"a {task.name} dataset has no labels")
            for key in ("above", "at_or_below"):
                if threshold[key] not in ds.get("labels", []):
                    fail(f"datasets.{name}.label_threshold.{key}",
                         f"'{threshold[key]}' is not one of the labels {ds.get('labels')}")
        for fmt, template in ds["templates"].items():
            try:
                used = template_fields(template)
            except ValueError as exc:
                fail(f"datasets.{name}.templates.{fmt}", f"not a valid template: {exc}")
            unknown = sorted(set(used) - set(task.fields))
            if unknown:
                fail(f"datasets.{name}.templates.{fmt}",
                     f"unknown field(s) {', '.join(unknown)}; a {task.name} template can use "
                     f"{', '.join('{' + f + '}' for f in task.fields)} (write {{{{ and }}}} for literal braces)")
            if not used:
                fail(f"datasets.{name}.templates.{fmt}", "uses none of the example's fields")
            left_out = [f for f in task.fields if f not in used]
            if left_out:  # the model would be asked about an input it never sees
                fail(f"datasets.{name}.templates.{fmt}",
                     f"leaves out field(s) {', '.join(left_out)}; a {task.name} template must use "
                     f"{', '.join('{' + f + '}' for f in task.fields)}")
    defined = sorted(datasets)
    for i, name in enumerate(config["finetune"]["datasets"]):
        if name not in datasets:
            fail(f"finetune.datasets[{i}]", f"dataset '{name}' is not defined under 'datasets' (defined: {', '.join(defined)})")
    for name in config["finetune"]["overrides"]:
        if name not in config["finetune"]["datasets"]:
            fail(f"finetune.overrides.{name}", f"'{name}' is not one of finetune.datasets")
    for model in config["models"]:
        for variant in variants(config):
            for dataset in variant_datasets(config, variant):
                _check_hyperparameters(hyperparameters(config, dataset, model, variant),
                                       lambda key: _hyperparameter_key(config, key, dataset, model, variant), fail)
    if "truncation" in config["instruction_tuning"]["hyperparameters"]:
        fail("instruction_tuning.hyperparameters.truncation",
             "a chat is always cut from the right (the key is for prompt files)")
    _check_hyperparameters(config["instruction_tuning"]["hyperparameters"],
                           lambda key: f"instruction_tuning.hyperparameters.{key}", fail)
    for name, variant in config["finetune"]["variants"].items():
        for i, dataset in enumerate(variant.get("datasets", [])):
            if dataset not in config["finetune"]["datasets"]:
                fail(f"finetune.variants.{name}.datasets[{i}]",
                     f"'{dataset}' is not one of finetune.datasets ({', '.join(config['finetune']['datasets'])})")
        if "fticl_shots" in variant["hyperparameters"]:  # the fticl train prompts are built once per train set
            fail(f"finetune.variants.{name}.hyperparameters.fticl_shots",
                 "every variant trains on the same prompts; set it in finetune.hyperparameters or finetune.overrides")
    for name, variant in config["finetune"]["variants"].items():
        targets = variant["lora"].get("target_modules", "all-linear") if variant["method"] == "lora" else "all-linear"
        if targets == "all-linear":
            continue
        for model in config["models"]:
            linear = model_linear_modules(config, model)
            for target in unmatched_targets(targets, linear) if linear is not None else []:
                fail(f"finetune.variants.{name}.lora.target_modules[{targets.index(target)}]",
                     f"'{target}' is not a linear module of model '{model}'; its linear modules are "
                     f"{module_kinds(linear)} (or all-linear)")
    # A cell's seed is its own axis (finetune.seeds): a seed set anywhere below the defaults would be overridden.
    seeded = [(f"finetune.overrides.{d}.seed", hp) for d, hp in config["finetune"]["overrides"].items()]
    seeded += [(f"models.{m}.hyperparameters.seed", spec["hyperparameters"]) for m, spec in config["models"].items()]
    seeded += [(f"finetune.variants.{v}.hyperparameters.seed", spec["hyperparameters"])
               for v, spec in config["finetune"]["variants"].items()]
    for key, hp in seeded:
        if "seed" in hp:
            fail(key, "the fine-tuning seed is an axis of the study: list seeds under finetune.seeds")
    if (config["evaluation"]["finetuned_other_formats"] == "own_task"
            and config["evaluation"]["finetuned_jobs"] != "per_checkpoint"):
        fail("evaluation.finetuned_other_formats", "own_task needs evaluation.finetuned_jobs: per_checkpoint")
    for i, fmt in enumerate(config["evaluation"]["fewshot_formats"]):
        if fmt not in config["formats"]:
            fail(f"evaluation.fewshot_formats[{i}]",
                 f"format '{fmt}' is not one of formats ({', '.join(config['formats'])})")
    for name in config["evaluation"]["shots_per_dataset"]:
        if name not in datasets:
            fail(f"evaluation.shots_per_dataset.{name}", f"dataset '{name}' is not defined under 'datasets' "
                                                         f"(defined: {', '.join(defined)})")
    demonstrations = config["evaluation"]["demonstrations"]
    if demonstrations["include_query"] and demonstrations["selection"] != "first_k":
        fail("evaluation.demonstrations.include_query",
             f"true needs selection first_k (selection {demonstrations['selection']} never shows a query its own "
             f"example)")
    for i, name in enumerate(config["evaluation"]["datasets"]):
        if name not in datasets:
            fail(f"evaluation.datasets[{i}]", f"dataset '{name}' is not defined under 'datasets' (defined: {', '.join(defined)})")
    for name, model in config["models"].items():
        if model["source"] == "hub":
            for key in ("repo", "checkpoints"):
                if key not in model:
                    fail(f"models.{name}.{key}", "required for source 'hub'")
        elif model["source"] == "local":
            for key in ("path", "checkpoints"):
                if key not in model:
                    fail(f"models.{name}.{key}", "required for source 'local'")
        elif "checkpoints" in model:
            fail(f"models.{name}.checkpoints", "a miniworld model's checkpoints come from miniworld.pretrain.checkpoint_steps")
        ids = [checkpoint_name(c) for c in model.get("checkpoints", [])]
        for i, entry in enumerate(model.get("checkpoints", [])):
            if isinstance(entry, dict) and model["source"] != "hub":
                fail(f"models.{name}.checkpoints[{i}]", "{step: N} needs source 'hub' (its branch is looked up there)")
            if ids.count(checkpoint_name(entry)) > 1:
                fail(f"models.{name}.checkpoints[{i}]", f"checkpoint '{checkpoint_name(entry)}' is listed twice")
    if sum(m["source"] == "miniworld" for m in config["models"].values()) > 1:
        fail("models", "at most one model can have source 'miniworld'")

    it = config["instruction_tuning"]
    for i, name in enumerate(it["models"]):
        if name not in config["models"]:
            fail(f"instruction_tuning.models[{i}]", f"model '{name}' is not defined under 'models'")
    if instruction_tuning_enabled(config) and it["name"] in datasets:
        fail("instruction_tuning.name", f"'{it['name']}' is also a dataset id; give the mix another name")
    from amuro.miniworld.benchmarks import BENCHMARKS

    for name, spec in config["benchmarks"]["tasks"].items():
        if name in datasets:
            fail(f"benchmarks.tasks.{name}", "a benchmark id must differ from every dataset id "
                                            "(both name eval sets in the results table)")
        if "miniworld" in spec and spec["miniworld"] not in BENCHMARKS:
            fail(f"benchmarks.tasks.{name}.miniworld",
                 f"no mini-world benchmark '{spec['miniworld']}' (known: {', '.join(sorted(BENCHMARKS))})")
        split = spec.get("split", config["benchmarks"]["split"])
        if "miniworld" in spec and split == "validation":
            key = f"benchmarks.tasks.{name}.split" if "split" in spec else "benchmarks.split"
            fail(key, f"mini-world benchmark '{name}' has no validation split (only train and test); give it "
                      f"split: default or test")
    known = set(eval_datasets(config)) | set(config["benchmarks"]["tasks"])
    for name in config["analysis"]["groups"]:
        if name not in known:
            fail(f"analysis.groups.{name}", "not an eval dataset or benchmark of this study")


def _check_hyperparameters(hp: dict, key_of, fail) -> None:
    """Settings that cannot be served together; key_of(name) is the key that set `name`."""
    if hp.get("loss") == "micro_batch_mean" and hp.get("recipe") == "paper":
        fail(key_of("loss"), "micro_batch_mean averages over micro-batches of micro_batch_size examples, which recipe "
                             "paper sets to 1 (that is example_mean); use recipe fast, or loss example_mean")


def model_linear_modules(config: dict, model: str) -> list[str] | None:
    """The names of a model's linear layers (what LoRA can adapt), from its architecture alone (built on the meta
    device): the mini-world's from its config, a local model's from its first checkpoint's config.json. None where
    it cannot be known before the workflow runs (a hub model: its fine-tune job checks its targets first)."""
    spec = config["models"][model]
    if spec["source"] == "miniworld":
        from transformers import OlmoConfig

        arch = config["miniworld"]["model"]
        architecture = OlmoConfig(vocab_size=config["miniworld"]["tokenizer"]["vocab_size"], eos_token_id=None,
                                  pad_token_id=None, bos_token_id=None, **arch)
    elif spec["source"] == "local" and (Path(spec["path"]) / checkpoint_name(spec["checkpoints"][0])
                                        / "config.json").is_file():
        from transformers import AutoConfig

        architecture = AutoConfig.from_pretrained(Path(spec["path"]) / checkpoint_name(spec["checkpoints"][0]))
    else:
        return None
    import torch
    from transformers import AutoModelForCausalLM

    from amuro.adapters import linear_modules

    with torch.device("meta"):
        return linear_modules(AutoModelForCausalLM.from_config(architecture))


def _hyperparameter_key(config: dict, key: str, dataset: str, model: str, variant: str) -> str:
    """The most specific key that sets one hyper-parameter of a cell: the variant's, the model's, the train set's, the
    default."""
    if key in config["finetune"]["variants"][variant]["hyperparameters"]:
        return f"finetune.variants.{variant}.hyperparameters.{key}"
    if key in config["models"][model]["hyperparameters"]:
        return f"models.{model}.hyperparameters.{key}"
    if key in config["finetune"]["overrides"].get(dataset, {}):
        return f"finetune.overrides.{dataset}.{key}"
    return f"finetune.hyperparameters.{key}"


def template_fields(template: str) -> list[str]:
    """The field names a str.format template uses; positional fields, attributes and format specs are refused."""
    names = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier():
            raise ValueError(f"'{{{field}}}' is not a field name")
        if spec or conversion:
            raise ValueError(f"'{{{field}}}' has a format spec or conversion; use the bare name")
        names.append(field)
    return names


def checkpoint_name(entry) -> str:
    """A configured checkpoint's id: the revision name as written, or `step{N}` for {step: N}."""
    return f"step{entry['step']}" if isinstance(entry, dict) else entry


def format_tokens(tokens: int) -> str:
    """1_310_720 -> '1M', 4_194_304_000 -> '4B': the token count as hub revision names write it."""
    for unit, size in (("B", 10**9), ("M", 10**6), ("K", 10**3)):
        if tokens >= size:
            return f"{tokens // size}{unit}"
    return str(tokens)


def miniworld_checkpoints(config: dict) -> dict[str, int]:
    """Checkpoint name -> step for the mini-world model, named like OLMo revisions (step25-tokens102K)."""
    pre = config["miniworld"]["pretrain"]
    tokens_per_step = pre["seq_len"] * pre["batch_size"]
    steps = sorted(pre["checkpoint_steps"])
    return {f"step{s}-tokens{format_tokens(s * tokens_per_step)}": s for s in steps}


def model_checkpoints(config: dict, model: str) -> list[str]:
    spec = config["models"][model]
    if spec["source"] == "miniworld":
        return list(miniworld_checkpoints(config))
    return [checkpoint_name(c) for c in spec["checkpoints"]]


def checkpoint_entry(config: dict, model: str, checkpoint: str):
    """The config entry behind a checkpoint id: a revision name, or {step: N} (resolved by listing the hub's refs)."""
    for entry in config["models"][model].get("checkpoints", []):
        if checkpoint_name(entry) == checkpoint:
            return entry
    raise ConfigError(f"model {model} has no checkpoint {checkpoint}")


def eval_datasets(config: dict) -> list[str]:
    return list(config["evaluation"]["datasets"]) or sorted(config["datasets"])


def hyperparameters(config: dict, train_dataset: str, model: str | None = None, variant: str | None = None) -> dict:
    """Fine-tuning settings of one cell: the defaults, then the train set's override, then the model's own, then the
    variant's."""
    hp = dict(config["finetune"]["hyperparameters"])
    hp.update(config["finetune"]["overrides"].get(train_dataset, {}))
    if model is not None:
        hp.update(config["models"][model]["hyperparameters"])
    if variant is not None:
        hp.update(config["finetune"]["variants"][variant]["hyperparameters"])
    return hp


# The one variant of a study without finetune.variants, and the kind of fine-tuning instruction tuning does.
DEFAULT_VARIANT = "full"


def variants(config: dict) -> list[str]:
    """The fine-tuning variants, in the config's order."""
    return list(config["finetune"]["variants"])


def variant_datasets(config: dict, variant: str) -> list[str]:
    """The train sets a variant fine-tunes on, in finetune.datasets' order (all of them unless it lists some)."""
    chosen = config["finetune"]["variants"][variant].get("datasets")
    return [d for d in config["finetune"]["datasets"] if chosen is None or d in chosen]


def variant_method(config: dict, variant: str) -> dict:
    """How a variant fine-tunes: {method: full} or {method: lora, lora: {r, alpha, dropout, target_modules}}."""
    spec = config["finetune"]["variants"][variant]
    return {"method": "lora", "lora": dict(spec["lora"])} if spec["method"] == "lora" else {"method": "full"}


def finetune_seeds(config: dict, variant: str | None = None) -> list[int]:
    """The fine-tuning seeds (of one variant: its own `seeds` if it lists some): finetune.seeds, or the one seed of
    finetune.hyperparameters when it is not set."""
    if variant is not None and "seeds" in config["finetune"]["variants"][variant]:
        return list(config["finetune"]["variants"][variant]["seeds"])
    seeds = config["finetune"]["seeds"]
    return list(seeds) if seeds is not None else [config["finetune"]["hyperparameters"]["seed"]]


def instruction_tuning_enabled(config: dict) -> bool:
    return "source" in config["instruction_tuning"]


def instruction_tuned_models(config: dict) -> list[str]:
    """Models whose checkpoints are instruction-tuned (none when the arm is off)."""
    if not instruction_tuning_enabled(config):
        return []
    return list(config["instruction_tuning"]["models"]) or sorted(config["models"])


def instruction_hyperparameters(config: dict) -> dict:
    it = config["instruction_tuning"]
    return {**it["hyperparameters"], "chat_template": it["chat_template"]}


def is_classification(config: dict, dataset: str) -> bool:
    return TASKS[config["datasets"][dataset]["task"]].is_classification


def dataset_seed(config: dict, dataset: str) -> int:
    return config["datasets"][dataset].get("seed", config["seed"])


def analysis_settings(config: dict) -> dict:
    """The summary tables' settings of a (validated) workflow config (amuro.tables)."""
    return {"benchmark_metric": config["benchmarks"]["metric"], "groups": config["analysis"]["groups"],
            "mrc_eval_sets": config["analysis"]["mrc_eval_sets"], "shots": config["analysis"]["shots"]}
