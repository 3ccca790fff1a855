"""Collecting landed batches: validated whole before anything moves; moved file by file so a
kill leaves each file landed or in place; a rerun finishes the move."""

from __future__ import annotations

import shutil

import pytest

from dv365.data.synth_extend import extend
from dv365.errors import DataError
from dv365.pipeline.collect import collect, planned_files
from tests.cli.conftest import write_rated_log


@pytest.fixture
def data(generated, tmp_path):
    shutil.copytree(generated, tmp_path / "data")
    return tmp_path / "data"


def test_batches_move_into_the_data_folder_in_name_order(data, tmp_path):
    landing = tmp_path / "in"
    extend(data, 1, landing)
    extend(data, 2, landing)
    planned = planned_files(data, landing)
    old = sorted(p.name for p in (data / "events").iterdir())
    collected = collect(data, landing)
    assert collected.batches == ["ext-20260101-1d", "ext-20260102-2d"] and collected.files == 4
    assert list(landing.iterdir()) == []
    assert sorted(p.name for p in (data / "events").iterdir()) == old + [
        "part-ext-20260101-1d-00000.parquet", "part-ext-20260102-2d-00000.parquet"]
    assert (data / "truth" / "extensions" / "ext-20260101-1d.json").is_file()
    assert planned_files(data, landing) == planned  # the step's inputs, before and after
    assert collect(data, landing).files == 0


def test_a_move_cut_short_is_finished_by_the_rerun(data, tmp_path):
    landing = tmp_path / "in"
    batch = extend(data, 1, landing).batch
    landed = batch / "events" / "part-ext-20260101-1d-00000.parquet"
    shutil.copyfile(landed, data / "events" / landed.name)  # killed after the rename
    collected = collect(data, landing)
    assert collected.files == 2 and not batch.exists()


def test_a_bad_batch_is_refused_and_nothing_moves(data, tmp_path):
    landing = tmp_path / "in"
    extend(data, 1, landing)
    write_rated_log(landing / "other-vocabulary")
    before = sorted(p.name for p in (data / "events").iterdir())
    with pytest.raises(DataError, match="declare other dv365 metadata"):
        collect(data, landing)
    assert sorted(p.name for p in (data / "events").iterdir()) == before
    assert (landing / "ext-20260101-1d").is_dir()


def test_a_landed_name_that_exists_with_other_bytes_is_refused(data, tmp_path):
    landing = tmp_path / "in"
    batch = extend(data, 1, landing).batch
    landed = batch / "events" / "part-ext-20260101-1d-00000.parquet"
    (data / "events" / landed.name).write_bytes(b"other")
    with pytest.raises(DataError, match="exists with other content"):
        collect(data, landing)
    assert landed.is_file()
