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
    "olmo1b_original_hf_4shots,imdb,0.5,0.01",  # line 5: unknown dataset
    "olmo1b_original_hf_4shots,sciq,n/a,0.01",  # line 6: non-numeric
    "olmo1b_hf_main_squad_3epoch_2e-6_4shots,sciq,0.2,0.01",  # line 7: unknown train dataset
    "olmo1b_original_hf_4shots,,0.5,0.01",  # line 8: empty field
)
BAD_LINES = (3, 5, 6, 7, 8)


def test_every_bad_row_is_reported_by_line(tmp_path):
    path = write_table(tmp_path, *BAD_TABLE)
    with pytest.raises(TableImportError) as err:
        import_amuro_char(path)
    message = str(err.value)
    for line in BAD_LINES:
        assert f"paper.csv:{line}:" in message
    assert "paper.csv:2:" not in message and "paper.csv:4:" not in message
    assert "model_id 'foo'" in message and "'imdb'" in message and "'squad'" in message and "'n/a'" in message


def test_skip_bad_rows_keeps_good_rows_and_logs_the_bad(tmp_path, caplog):
    path = write_table(tmp_path, *BAD_TABLE)
    with caplog.at_level(logging.WARNING, logger="amuro.importers"):
        table = import_amuro_char(path, skip_bad_rows=True)
    assert sorted(table["eval_dataset"].to_list()) == ["rte", "xsum"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for line in BAD_LINES:
        assert f"paper.csv:{line}:" in logged


def test_duplicate_cells_name_both_lines_and_the_differing_learning_rate(tmp_path):
    path = write_table(tmp_path, "olmo1b_hf_main_xsum_3epoch_2e-6_4shots,xsum,0.3,0.01",
                       "olmo1b_hf_main_xsum_3epoch_2e-7_4shots,xsum_instruct,0.2,0.01",
                       "olmo1b_hf_main_xsum_3epoch_2e-7_4shots,xsum,0.25,0.01")
    with pytest.raises(TableImportError, match=r"paper\.csv:4: same cell as line 2 .*lr 2e-6 vs 2e-7"):
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
        "olmo1b_hf_main_paws_3epoch_2e-6_4shots,paws,0.80,0.01",
        "olmo1b_hf_main_paws_3epoch_2e-5_4shots,paws,0.50,0.01",
    )
    with pytest.raises(TableImportError, match=r"--learning-rate"):
        import_amuro_char(path)
    rows = by_cell(import_amuro_char(path, learning_rates={"xsum": 2e-7, "*": 2e-6}))
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
    # The paper's own config names the steps as hub revisions.
    config = Path(__file__).parents[1] / "workflow_config.yaml"
    assert main(["import-table", str(path), str(tmp_path / "imported.parquet"), "--config", str(config)]) == 0
    for figure in ("pretraining_curves", "finetuned_vs_base", "cross_task", "transfer_heatmap"):
        assert main(["figure", figure, "--pdf", str(tmp_path / f"{figure}.pdf"), "--png", str(tmp_path / f"{figure}.png"),
                     str(tmp_path / "imported.parquet")]) == 0
        assert (tmp_path / f"{figure}.png").stat().st_size > 10_000
    import polars as pl

    imported = pl.read_parquet(tmp_path / "imported.parquet")
    assert set(imported["checkpoint"]) == {"step1000-tokens4B", "step738000-tokens3094B"}
    assert set(imported["tokens"]) == {4 * 10**9, 3094 * 10**9}


def test_a_malformed_learning_rate_choice_is_refused_by_the_command_line(tmp_path, capsys):
    from amuro.cli import main

    path = write_table(tmp_path, "olmo1b_original_hf_4shots,xsum,0.1,0.01")
    with pytest.raises(SystemExit):
        main(["import-table", str(path), str(tmp_path / "out.parquet"), "--learning-rate", "xsum:2e-7"])
    assert "'xsum:2e-7' is not DATASET=LR" in capsys.readouterr().err
    assert main(["import-table", str(path), str(tmp_path / "out.parquet"), "--learning-rate", "*=2e-6"]) == 0
