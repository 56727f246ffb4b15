"""Outputs written through a temporary sibling get the modes a plain write would under the process's umask, so a lab
sharing a results directory can read them (mkstemp/mkdtemp alone make them private to the writer)."""

import os
import stat

import polars as pl
import pytest

from amuro.io import atomic_path, write_json
from amuro.results import write_table


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(params=[(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)], ids=["umask022", "umask027"])
def umask(request):
    """The umask set for the test, and the file and directory modes a plain write gives under it."""
    mask, file_mode, dir_mode = request.param
    old = os.umask(mask)
    yield file_mode, dir_mode
    os.umask(old)


def test_a_written_table_has_the_mode_a_plain_write_would(umask, tmp_path):
    file_mode, _ = umask
    write_table(pl.DataFrame({"value": [1.0]}), tmp_path / "results.parquet")
    assert mode(tmp_path / "results.parquet") == file_mode


def test_a_directory_written_whole_and_the_files_in_it_have_the_modes_a_plain_write_would(umask, tmp_path):
    file_mode, dir_mode = umask
    with atomic_path(tmp_path / "model", directory=True) as tmp:
        (tmp / "config.json").write_text("{}")
        write_json({"files": {}}, tmp / "resolved.json")
    assert mode(tmp_path / "model") == dir_mode
    assert mode(tmp_path / "model" / "config.json") == mode(tmp_path / "model" / "resolved.json") == file_mode
