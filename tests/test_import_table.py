import logging
from pathlib import Path

import pytest

from amuro.importers import TableImportError, import_amuro_char

HEADER = ",model_id,eval dataset,Performance,std\n"
Z = 1.959963984540054


def write_table(tmp_path, *rows: str, header: str = HEADER):
    path = tmp_path / "paper.csv"
    path.write_text(header + "".join(f"{i},{row}\n" for i, row in enumerate(rows)))
    return path


def by_cell(table) -> dict[tuple, dict]:
    return {(r["checkpoint"], r["train_dataset"], r["eval_dataset"], r["eval_format"]): r
            for r in table.iter_rows(named=True)}


def test_all_id_forms_and_eval_formats_become_long_rows(tmp_path):
    path = write_table(
        tmp_path,
        "olmo1b_hf_ckpt424000_socialiqa_3epoch_2e-6_4shots,socialiqa,0.41,0.01",
        "olmo1b_hf_ckpt424000_socialiqa_3epoch_2e-6_4shots,tweetqa_instruct,0.30,0.02",
        "olmo1b_hf_main_xsum_3epoch_2e-7_4shots,cnn_inputoutput,0.20,",
        "olmo1b_hf_main_mnli_matched_3epoch_2e-6_4shots,paws,0.55,0.005",
        "olmo1b_checkpoint-1000_original_hf_4shots,gpt3nli,0.33,0.01",
        "llama3_original_hf_0shots,xlsum,0.12,0.003",
    )
    rows = by_cell(import_amuro_char(path))
    assert len(rows) == 6

    in_domain = rows[("step424000", "socialiqa", "socialiqa", "default")]
    assert in_domain["model"] == "olmo1b" and in_domain["step"] == 424000 and in_domain["tokens"] is None
    assert in_domain["train_task"] == "question_generation" and in_domain["train_format"] == "default"
    assert in_domain["relation"] == "in-domain" and in_domain["metric"] == "rougeL" and in_domain["shots"] == 4
    assert in_domain["value"] == 0.41
    assert in_domain["ci_low"] == pytest.approx(0.41 - Z * 0.01)
    assert in_domain["ci_high"] == pytest.approx(0.41 + Z * 0.01)

    assert rows[("step424000", "socialiqa", "tweetqa", "instruct")]["relation"] == "cross-domain"

    no_std = rows[("main", "xsum", "cnn_dailymail", "io")]
    assert no_std["step"] is None and no_std["relation"] == "cross-domain"
    assert no_std["ci_low"] == no_std["ci_high"] == no_std["value"] == 0.20

    cross_task = rows[("main", "mnli_matched", "paws", "default")]
    assert cross_task["train_task"] == "nli" and cross_task["relation"] == "cross-task"
    assert cross_task["metric"] == "accuracy"

    base = rows[("step1000", None, "gpt3nli", "default")]
    assert base["step"] == 1000 and base["relation"] == "base" and base["metric"] == "accuracy"
    assert base["train_task"] is None and base["train_format"] is None and base["train_size"] is None

    final = rows[("main", None, "xlsum", "default")]
    assert final["model"] == "llama3" and final["shots"] == 0 and final["relation"] == "base"


def test_paper_name_mnli_is_our_mnli_matched(tmp_path):
    path = write_table(tmp_path, "olmo1b_hf_main_mnli_3epoch_2e-6_4shots,mnli_mismatched,0.6,0.01")
    row = import_amuro_char(path).row(0, named=True)
    assert row["train_dataset"] == "mnli_matched" and row["relation"] == "cross-domain"


def test_checkpoint_names_give_revision_and_tokens(tmp_path):
    path = write_table(tmp_path, "olmo1b_hf_ckpt424000_xsum_3epoch_2e-6_4shots,xsum,0.3,0.01",
                       "olmo1b_checkpoint-1000_original_hf_4shots,xsum,0.1,0.01")
    table = import_amuro_char(path, checkpoint_names={424000: "step424000-tokens1777B"})
    rows = {r["step"]: r for r in table.iter_rows(named=True)}
    assert rows[424000]["checkpoint"] == "step424000-tokens1777B" and rows[424000]["tokens"] == 1777 * 10**9
    assert rows[1000]["checkpoint"] == "step1000" and rows[1000]["tokens"] is None


BAD_TABLE = (
    "olmo1b_original_hf_4shots,xsum,0.1,0.01",  # line 2
    "foo,xsum,0.1,0.01",  # line 3: unparseable id
    "olmo1b_original_hf_4shots,rte,0.5,0.01",  # line 4
    "olmo1b_original_hf_4shots,imdb,0.5,0.01",  # line 5: a set outside the paper's list: imported, task unknown
    "olmo1b_original_hf_4shots,sciq,n/a,0.01",  # line 6: non-numeric
    "olmo1b_hf_main_squad_3epoch_2e-6_4shots,sciq,0.2,0.01",  # line 7: a train set outside the list: imported
    "olmo1b_original_hf_4shots,,0.5,0.01",  # line 8: empty field
    "olmo1b_hf_main_xsum_3epoch_fast_4shots,xsum,0.2,0.01",  # line 9: a learning rate that is not a number
)
BAD_LINES = (3, 6, 8, 9)


def test_every_bad_row_is_reported_by_line(tmp_path):
    path = write_table(tmp_path, *BAD_TABLE)
    with pytest.raises(TableImportError) as err:
        import_amuro_char(path)
    message = str(err.value)
    for line in BAD_LINES:
        assert f"paper.csv:{line}:" in message
    for line in (2, 4, 5, 7):
        assert f"paper.csv:{line}:" not in message
    assert "model_id 'foo'" in message and "'n/a'" in message and "empty field(s) eval dataset" in message


def test_skip_bad_rows_keeps_good_rows_and_logs_the_bad(tmp_path, caplog):
    path = write_table(tmp_path, *BAD_TABLE)
    with caplog.at_level(logging.WARNING, logger="amuro.importers"):
        table = import_amuro_char(path, skip_bad_rows=True)
    assert sorted(table["eval_dataset"].to_list()) == ["imdb", "rte", "sciq", "xsum"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for line in BAD_LINES:
        assert f"paper.csv:{line}:" in logged


# The released per-cell table's other row kinds: ids without a shot suffix, `original` without `_hf`, the short
# `checkpoint-STEP_Kshots`, Tulu-tuned models on supervised sets and LLMBar's subsets, and a 7-shot stray pair.
RELEASED_FORMS = (
    "olmo1b_original_hf,rte,0.015,0.002",  # line 2: base, no shot suffix -> 0 shots
    "olmo1b_checkpoint-18000_original,socialiqa,0.03,0.001",  # line 3: `original` without _hf, 0 shots
    "olmo1b_hf_ckpt592000_mnli_3epoch_2e-6,mnli_matched,0.82,0.004",  # line 4: fine-tuned, 0 shots
    "olmo1b_hf_ckpt505000_tulu_5epoch_2e-6_4shots,mnli_matched_instruct,0.53,0.005",  # line 5: Tulu on NLI
    "olmo1b_hf_main_tulu_5epoch_2e-6_4shots,llmbar_Natural,0.40,0.05",  # line 6: Tulu on LLMBar
    "olmo1b_original_hf_4shots,llmbar_Adversarial_Manual,0.34,0.07",  # line 7: base on LLMBar
    "checkpoint-1000_4shots,paws,0.55,0.005",  # line 8: the short form (OLMo-1B)
    "olmo1b_hf_main_paws_3epoch_2e-6_7shots,paws,0.77,0.005",  # line 9: 7 shots
    "olmo1b_hf_main_squad_3epoch_2e-6_4shots,llmbar_Natural,0.5,0.05",  # line 10: both sets unknown
)


def test_every_released_row_kind_is_imported_with_what_the_file_states(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="amuro.importers"):
        table = import_amuro_char(write_table(tmp_path, *RELEASED_FORMS))
    assert table.height == len(RELEASED_FORMS)
    rows = {(r["checkpoint"], r["train_dataset"], r["eval_dataset"], r["eval_format"], r["shots"]): r
            for r in table.iter_rows(named=True)}
    assert rows[("main", None, "rte", "default", 0)]["relation"] == "base"
    assert rows[("step18000", None, "socialiqa", "default", 0)]["model"] == "olmo1b"
    assert rows[("step592000", "mnli_matched", "mnli_matched", "default", 0)]["relation"] == "in-domain"

    tulu = rows[("step505000", "tulu_v2", "mnli_matched", "instruct", 4)]
    assert (tulu["relation"], tulu["train_task"], tulu["train_format"], tulu["train_size"]) == (
        "instruction-tuned", "instruction", "chat", "all")
    assert tulu["eval_task"] == "nli" and tulu["metric"] == "accuracy"

    llmbar = rows[("main", "tulu_v2", "llmbar_Natural", "default", 4)]
    assert llmbar["eval_task"] is None and llmbar["metric"] == "performance" and llmbar["value"] == 0.40
    assert rows[("main", None, "llmbar_Adversarial_Manual", "default", 4)]["relation"] == "base"

    short = rows[("step1000", None, "paws", "default", 4)]
    assert short["model"] == "olmo1b" and short["relation"] == "base"
    assert rows[("main", "paws", "paws", "default", 7)]["relation"] == "in-domain"

    unknown = rows[("main", "squad", "llmbar_Natural", "default", 4)]
    assert unknown["train_task"] is None and unknown["relation"] == "unknown"
    assert "task unknown: llmbar_Adversarial_Manual, llmbar_Natural" in caplog.text


def test_the_tulu_rows_take_the_configured_mix_name(tmp_path):
    path = write_table(tmp_path, RELEASED_FORMS[3])
    assert import_amuro_char(path, instruction_mix="tulu")["train_dataset"].to_list() == ["tulu"]


def test_a_second_number_for_one_cell_is_left_out_only_when_the_table_says_which_is_the_papers(tmp_path, caplog):
    path = write_table(
        tmp_path,
        "olmo1b_hf_main_mnli_3epoch_2e-6,rte,0.65,0.01",  # line 2: the paper's rate for mnli
        "olmo1b_hf_main_mnli_3epoch_2e-5,rte,0.43,0.01",  # line 3: a sweep run of the same cell
        "olmo1b_checkpoint-1000_original_hf_4shots,socialiqa,0.018466,0.0007",  # line 4
        "checkpoint-1000_4shots,socialiqa,0.018451,0.0007",  # line 5: the same evaluation, short id
    )
    with caplog.at_level(logging.WARNING, logger="amuro.importers"):
        table = import_amuro_char(path)
    assert sorted(table["value"].to_list()) == [0.018466, 0.65]
    assert "paper.csv:3: 'olmo1b_hf_main_mnli_3epoch_2e-5' (0.43) states the same cell as line 2" in caplog.text
    assert "paper.csv:5: 'checkpoint-1000_4shots'" in caplog.text and "lines 3, 5" in caplog.text
    # An explicit choice wins over the paper's rate.
    chosen = import_amuro_char(path, learning_rates={"mnli_matched": 2e-5})
    assert 0.43 in chosen["value"].to_list() and 0.65 not in chosen["value"].to_list()
    # A config's rates are the preference when given.
    preferred = import_amuro_char(path, preferred_rates={"*": 2e-5})
    assert 0.43 in preferred["value"].to_list()


def test_duplicate_cells_name_both_lines_and_the_differing_learning_rate(tmp_path):
    # Neither run is at the paper's rate for xsum (2e-7): nothing says which is the cell's number.
    path = write_table(tmp_path, "olmo1b_hf_main_xsum_3epoch_2e-6_4shots,xsum,0.3,0.01",
                       "olmo1b_hf_main_xsum_3epoch_2e-5_4shots,xsum_instruct,0.2,0.01",
                       "olmo1b_hf_main_xsum_3epoch_2e-5_4shots,xsum,0.25,0.01")
    with pytest.raises(TableImportError, match=r"paper\.csv:4: same cell as line 2 .*lr 2e-6 vs 2e-5"):
        import_amuro_char(path)


def test_missing_column_is_named(tmp_path):
    path = write_table(tmp_path, "olmo1b_original_hf_4shots,xsum,0.1",
                       header=",model_id,eval dataset,Performance\n")
    with pytest.raises(TableImportError, match=r"paper\.csv.*missing: std"):
        import_amuro_char(path)


def test_a_learning_rate_sweep_imports_once_a_rate_is_chosen_per_train_set(tmp_path):
    path = write_table(
        tmp_path,
        "olmo1b_hf_main_xsum_3epoch_2e-6_4shots,xsum,0.20,0.01",
        "olmo1b_hf_main_xsum_3epoch_2e-7_4shots,xsum,0.25,0.01",
        "olmo1b_hf_main_paws_3epoch_2e-4_4shots,paws,0.80,0.01",
        "olmo1b_hf_main_paws_3epoch_2e-5_4shots,paws,0.50,0.01",
    )
    with pytest.raises(TableImportError, match=r"--learning-rate"):
        import_amuro_char(path)
    rows = by_cell(import_amuro_char(path, learning_rates={"xsum": 2e-7, "*": 2e-4}))
    assert rows[("main", "xsum", "xsum", "default")]["value"] == 0.25
    assert rows[("main", "paws", "paws", "default")]["value"] == 0.80


def test_figures_draw_from_an_imported_table_through_the_command_line(tmp_path):
    from amuro.cli import main

    rows = []
    for step in (1000, 738000):
        for eval_dataset, base in (("xsum", 0.05), ("paws", 0.55), ("mnli_matched", 0.33)):
            rows.append(f"olmo1b_checkpoint-{step}_original_hf_4shots,{eval_dataset},{base},0.01")
            gain = 0.2 if eval_dataset == "paws" else -0.05
            rows.append(f"olmo1b_hf_ckpt{step}_paws_3epoch_2e-6_4shots,{eval_dataset},{base + gain:.2f},0.01")
    path = write_table(tmp_path, *rows)
    # The paper's own config names the steps (ids stepN).
    config = Path(__file__).parents[1] / "workflow_config.yaml"
    assert main(["import-table", str(path), str(tmp_path / "imported.parquet"), "--config", str(config)]) == 0
    for figure in ("pretraining_curves", "finetuned_vs_base", "cross_task", "transfer_heatmap"):
        assert main(["figure", figure, "--pdf", str(tmp_path / f"{figure}.pdf"), "--png", str(tmp_path / f"{figure}.png"),
                     str(tmp_path / "imported.parquet")]) == 0
        assert (tmp_path / f"{figure}.png").stat().st_size > 10_000
    import polars as pl

    imported = pl.read_parquet(tmp_path / "imported.parquet")
    # The config's ids ({step: N}): the step is known, the token count (in the hub branch name only) is not.
    assert set(imported["checkpoint"]) == {"step1000", "step738000"}
    assert set(imported["step"]) == {1000, 738000} and imported["tokens"].null_count() == imported.height


def test_a_malformed_learning_rate_choice_is_refused_by_the_command_line(tmp_path, capsys):
    from amuro.cli import main

    path = write_table(tmp_path, "olmo1b_original_hf_4shots,xsum,0.1,0.01")
    with pytest.raises(SystemExit):
        main(["import-table", str(path), str(tmp_path / "out.parquet"), "--learning-rate", "xsum:2e-7"])
    assert "'xsum:2e-7' is not DATASET=LR" in capsys.readouterr().err
    assert main(["import-table", str(path), str(tmp_path / "out.parquet"), "--learning-rate", "*=2e-6"]) == 0


# The benchmark table of the instruction-tuning arm: OLMo-1B checkpoints before and after Tulu v2 tuning.
BENCHMARK_HEADER = ",model_id,eval dataset,Performance\n"
BENCHMARK_TABLE = (
    "checkpoint-1000,arc_easy,0.40",  # line 2
    "olmo1b_hf_ckpt1000_tulu_5epoch_2e-6,ARC-Easy,0.42",
    "checkpoint-738000,Hellaswag,0.55",
    "olmo1b_hf_ckpt738000_tulu_5epoch_2e-6,hellaswag,0.57",
    "olmo1b_original_hf,sciq,0.80",
    "olmo1b_hf_main_tulu_5epoch_2e-6,SciQ,0.85",
    "olmo1b_original_hf,ARC Challenge,0.25",
    "olmo1b_original_hf,OpenBookQA,0.30",
    "olmo1b_original_hf,BoolQ,0.60",  # line 10
)


def write_benchmarks(tmp_path, *rows: str, header: str = BENCHMARK_HEADER):
    return write_table(tmp_path, *rows, header=header)


def test_benchmark_table_becomes_base_and_instruction_tuned_rows(tmp_path):
    from amuro.importers import import_benchmark_table

    table = import_benchmark_table(write_benchmarks(tmp_path, *BENCHMARK_TABLE))
    assert table.height == len(BENCHMARK_TABLE)
    rows = by_cell(table)

    base = rows[("step1000", None, "arc_easy", "default")]
    assert base == {
        "model": "olmo1b", "checkpoint": "step1000", "step": 1000, "tokens": None,
        "train_dataset": None, "train_task": None, "train_format": None, "train_size": None,
        "train_variant": None, "train_seed": None,
        "eval_dataset": "arc_easy", "eval_task": "multiple_choice", "eval_format": "default", "shots": 4,
        "relation": "base", "metric": "acc", "value": 0.40, "ci_low": None, "ci_high": None, "n_examples": None,
    }
    tuned = rows[("step1000", "tulu_v2", "arc_easy", "default")]
    assert tuned == {**base, "train_dataset": "tulu_v2", "train_task": "instruction", "train_format": "chat",
                     "train_size": "all", "relation": "instruction-tuned", "value": 0.42}

    assert rows[("step738000", "tulu_v2", "hellaswag", "default")]["value"] == 0.57
    final = rows[("main", None, "sciq_mc", "default")]
    assert final["step"] is None and final["relation"] == "base" and final["value"] == 0.80
    final_tuned = rows[("main", "tulu_v2", "sciq_mc", "default")]
    assert final_tuned["step"] is None and final_tuned["relation"] == "instruction-tuned"
    assert {r["eval_dataset"] for r in table.iter_rows(named=True) if r["checkpoint"] == "main"} == {
        "sciq_mc", "arc_challenge", "openbookqa", "boolq"}


def test_benchmark_shots_metric_and_mix_name_are_arguments(tmp_path):
    from amuro.importers import import_benchmark_table

    path = write_benchmarks(tmp_path, *BENCHMARK_TABLE[:2])
    table = import_benchmark_table(path, shots=0, metric="acc_norm", train_dataset="tulu",
                                   checkpoint_names={1000: "step1000-tokens4B"})
    assert set(table["shots"]) == {0} and set(table["metric"]) == {"acc_norm"}
    assert set(table["checkpoint"]) == {"step1000-tokens4B"} and set(table["tokens"]) == {4 * 10**9}
    assert table["train_dataset"].to_list() == ["tulu", None]
    with pytest.raises(ValueError, match="acc or acc_norm"):
        import_benchmark_table(path, metric="accuracy")


def test_benchmark_table_through_the_command_line_with_and_without_config(tmp_path, capsys):
    import polars as pl
    import yaml

    from amuro.cli import main

    path = write_benchmarks(tmp_path, *BENCHMARK_TABLE)
    out = tmp_path / "benchmarks.parquet"
    assert main(["import-table", str(path), str(out)]) == 0
    assert set(pl.read_parquet(out)["checkpoint"]) == {"step1000", "step738000", "main"}

    config = Path(__file__).parents[1] / "workflow_config.yaml"
    assert main(["import-table", str(path), str(out), "--config", str(config), "--shots", "0",
                 "--metric", "acc_norm"]) == 0
    table = pl.read_parquet(out)
    steps = {r["checkpoint"]: (r["step"], r["tokens"]) for r in table.iter_rows(named=True)}
    # The paper config names its OLMo checkpoints {step: N}: ids stepN, whose token count is not in the name.
    assert steps == {"step1000": (1000, None), "step738000": (738000, None),
                     "main": (None, None)}
    assert set(table["shots"]) == {0} and set(table["metric"]) == {"acc_norm"}
    # Without an instruction-tuning arm in the config the mix keeps its own name ...
    assert set(table["train_dataset"].drop_nulls()) == {"tulu_v2"}

    # ... with one, the arm's name, so that the imported rows meet our own.
    with_arm = yaml.safe_load(config.read_text())
    with_arm["instruction_tuning"] = {"name": "tulu",
                                      "source": {"type": "hub", "path": "allenai/tulu-v2-sft-mixture"}}
    (tmp_path / "arm.yaml").write_text(yaml.safe_dump(with_arm))
    assert main(["import-table", str(path), str(out), "--config", str(tmp_path / "arm.yaml")]) == 0
    assert set(pl.read_parquet(out)["train_dataset"].drop_nulls()) == {"tulu"}

    with pytest.raises(SystemExit):
        main(["import-table", str(path), str(out), "--shots", "-1"])
    assert "'-1' is not a shot count" in capsys.readouterr().err


BAD_BENCHMARKS = (
    "checkpoint-1000,arc_easy,0.40",  # line 2
    "checkpoint-1000,mmlu,0.30",  # line 3: outside the paper's benchmarks: imported, task unknown
    "olmo1b_hf_ckpt1000_alpaca_5epoch_2e-6,arc_easy,0.40",  # line 4: not a Tulu run
    "checkpoint-1000,boolq,62.0",  # line 5: a percentage among fractions
    "checkpoint-1000,sciq,n/a",  # line 6: not a number
    "checkpoint-1000,openbookqa",  # line 7: a field short
    "olmo1b_original_hf,boolq,0.6",  # line 8
)
BAD_BENCHMARK_LINES = (4, 5, 6, 7)


def test_bad_benchmark_rows_are_reported_by_line_or_skipped(tmp_path, caplog):
    from amuro.importers import import_benchmark_table

    path = write_benchmarks(tmp_path, *BAD_BENCHMARKS)
    with pytest.raises(TableImportError) as err:
        import_benchmark_table(path)
    message = str(err.value)
    for line in BAD_BENCHMARK_LINES:
        assert f"paper.csv:{line}:" in message
    assert "paper.csv:2:" not in message and "paper.csv:3:" not in message and "paper.csv:8:" not in message
    assert "'olmo1b_hf_ckpt1000_alpaca_5epoch_2e-6'" in message and "not a fraction in [0, 1]" in message

    with caplog.at_level(logging.WARNING, logger="amuro.importers"):
        table = import_benchmark_table(path, skip_bad_rows=True)
    assert sorted(table["eval_dataset"].to_list()) == ["arc_easy", "boolq", "mmlu"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for line in BAD_BENCHMARK_LINES:
        assert f"paper.csv:{line}:" in logged


def test_benchmark_rows_outside_the_papers_benchmarks_keep_their_name_with_task_unknown(tmp_path):
    from amuro.importers import import_benchmark_table

    # The released benchmark table also holds RTE and QQP (lm-eval, base checkpoints only).
    table = import_benchmark_table(write_benchmarks(tmp_path, "checkpoint-1000,rte,0.527", "checkpoint-1000,qqp,0.47",
                                                    "checkpoint-1000,boolq,0.6"))
    rows = {r["eval_dataset"]: r for r in table.iter_rows(named=True)}
    assert rows["rte"]["eval_task"] is None and rows["rte"]["relation"] == "base" and rows["rte"]["metric"] == "acc"
    assert rows["qqp"]["value"] == 0.47 and rows["boolq"]["eval_task"] == "multiple_choice"


def test_a_benchmark_table_in_percent_is_refused_not_rescaled(tmp_path):
    from amuro.importers import import_benchmark_table

    path = write_benchmarks(tmp_path, "checkpoint-1000,arc_easy,40.1", "olmo1b_original_hf,boolq,62.0")
    for skip in (False, True):
        with pytest.raises(TableImportError, match=r"paper\.csv: every Performance value is above 1 .*line 2: 40\.1.*"
                                                   r"percentages.*divide the column by 100"):
            import_benchmark_table(path, skip_bad_rows=skip)


def test_tuned_rows_must_share_one_epoch_and_learning_rate_setting(tmp_path, caplog):
    from amuro.importers import import_benchmark_table

    # Any Nepoch_LR suffix is read; it is logged, not stored.
    with caplog.at_level(logging.INFO, logger="amuro.importers"):
        table = import_benchmark_table(write_benchmarks(tmp_path, "olmo1b_hf_ckpt1000_tulu_3epoch_1e-5,arc_easy,0.4"))
    assert table.row(0, named=True)["relation"] == "instruction-tuned"
    assert "tuned 3 epochs at lr 1e-05" in caplog.text

    path = write_benchmarks(tmp_path, "olmo1b_hf_ckpt1000_tulu_5epoch_2e-6,arc_easy,0.4",
                            "checkpoint-1000,arc_easy,0.4",
                            "olmo1b_hf_main_tulu_3epoch_2e-5,arc_easy,0.5")
    with pytest.raises(TableImportError, match=r"paper\.csv:4: 'olmo1b_hf_main_tulu_3epoch_2e-5' was tuned 3 epochs "
                                               r"at lr 2e-05, but line 2 .* 5 epochs at lr 2e-06"):
        import_benchmark_table(path)


def test_duplicate_benchmark_rows_name_both_lines(tmp_path):
    from amuro.importers import import_benchmark_table

    path = write_benchmarks(tmp_path, "checkpoint-1000,arc_easy,0.40", "checkpoint-1000,boolq,0.6",
                            "checkpoint-1000,ARC-Easy,0.41")
    with pytest.raises(TableImportError, match=r"paper\.csv:4: same cell as line 2 .*eval arc_easy"):
        import_benchmark_table(path)


def test_the_command_line_tells_the_two_tables_apart_by_header(tmp_path):
    import polars as pl

    from amuro.cli import main
    from amuro.importers import BENCHMARKS, PER_CELL, table_kind

    benchmarks = write_benchmarks(tmp_path, *BENCHMARK_TABLE[:2])
    benchmarks = benchmarks.rename(tmp_path / "benchmarks.csv")
    per_cell = write_table(tmp_path, "olmo1b_checkpoint-1000_original_hf_4shots,xsum,0.1,0.01")
    assert table_kind(benchmarks) == BENCHMARKS and table_kind(per_cell) == PER_CELL
    # A table saved without the pandas index is recognised too.
    no_index = tmp_path / "no_index.csv"
    no_index.write_text("model_id,eval dataset,Performance\ncheckpoint-1000,boolq,0.6\n")
    assert table_kind(no_index) == BENCHMARKS

    assert main(["import-table", str(benchmarks), str(tmp_path / "b.parquet")]) == 0
    assert main(["import-table", str(per_cell), str(tmp_path / "p.parquet")]) == 0
    assert set(pl.read_parquet(tmp_path / "b.parquet")["eval_task"]) == {"multiple_choice"}
    assert set(pl.read_parquet(tmp_path / "p.parquet")["eval_task"]) == {"summarization"}

    # Options of the other table are refused rather than ignored.
    with pytest.raises(TableImportError, match=r"benchmarks\.csv is a benchmarks table, which --learning-rate cannot"):
        main(["import-table", str(benchmarks), str(tmp_path / "b.parquet"), "--learning-rate", "*=2e-6"])
    with pytest.raises(TableImportError, match=r"paper\.csv is a per-cell table, which --shots and --metric cannot"):
        main(["import-table", str(per_cell), str(tmp_path / "p.parquet"), "--shots", "0", "--metric", "acc"])

    other = tmp_path / "other.csv"
    other.write_text(",model,dataset,score\n0,x,y,1\n")
    with pytest.raises(TableImportError) as err:
        main(["import-table", str(other), str(tmp_path / "o.parquet")])
    assert str(other) in str(err.value)
    assert "',model_id,eval dataset,Performance,std'" in str(err.value)
    assert "',model_id,eval dataset,Performance'" in str(err.value)
    assert not (tmp_path / "o.parquet").exists()


def test_a_benchmark_import_combines_with_a_per_cell_import(tmp_path):
    from amuro.importers import import_benchmark_table
    from amuro.results import combine

    names = {1000: "step1000-tokens4B"}
    per_cell = import_amuro_char(write_table(tmp_path, "olmo1b_checkpoint-1000_original_hf_4shots,xsum,0.1,0.01",
                                             "olmo1b_hf_ckpt1000_xsum_3epoch_2e-6_4shots,xsum,0.3,0.01"),
                                 checkpoint_names=names)
    benchmarks = import_benchmark_table(write_benchmarks(tmp_path, *BENCHMARK_TABLE), checkpoint_names=names)
    both = combine([per_cell, benchmarks])
    assert both.height == per_cell.height + benchmarks.height
    assert both.filter(both["checkpoint"] == "step1000-tokens4B")["relation"].value_counts().sort("relation").rows() \
        == [("base", 2), ("in-domain", 1), ("instruction-tuned", 1)]


def test_figures_6_8_and_9_draw_from_an_imported_benchmark_table(tmp_path):
    from amuro.cli import main

    rows = []
    for step, rise in ((1000, 0.0), (738000, 0.2)):
        for benchmark, base in (("arc_easy", 0.40), ("hellaswag", 0.30), ("boolq", 0.55)):
            learned = benchmark != "boolq"
            rows.append(f"checkpoint-{step},{benchmark},{base + rise * learned:.2f}")
            rows.append(f"olmo1b_hf_ckpt{step}_tulu_5epoch_2e-6,{benchmark},"
                        f"{base + rise * learned + (0.01 if learned else 0.15):.2f}")
    path = write_benchmarks(tmp_path, *rows)
    config = Path(__file__).parents[1] / "workflow_config.yaml"
    assert main(["import-table", str(path), str(tmp_path / "tulu.parquet"), "--config", str(config)]) == 0
    for figure in ("pretraining_curves", "group_gain", "instruction_tuned"):
        assert main(["figure", figure, "--pdf", str(tmp_path / f"{figure}.pdf"), "--png", str(tmp_path / f"{figure}.png"),
                     str(tmp_path / "tulu.parquet")]) == 0
        assert (tmp_path / f"{figure}.png").stat().st_size > 10_000
