"""The state database: a step is done only when its row says so; one runner at a time."""

from __future__ import annotations

import pytest

from dv365.errors import DataError, UsageError
from dv365.pipeline.state import PipelineState, inputs_hash


def test_a_step_is_done_only_once_its_outputs_are_recorded(tmp_path):
    with PipelineState(tmp_path / "state" / "pipeline.sqlite") as state:
        cycle = state.new_cycle(1_000)
        state.start_step(cycle.id, "export", 2, {"at_ms": 5})
        row = state.step(cycle.id, "export")
        assert (row.status, row.finished, row.outputs, row.attempts) == (
            "running", False, None, 1)
        assert row.inputs_hash == inputs_hash({"at_ms": 5})
        state.finish_step(cycle.id, "export", {"version": "v1"})
        assert state.step(cycle.id, "export").outputs == {"version": "v1"}
        state.start_step(cycle.id, "export", 2, {"at_ms": 6})  # started again: not done
        again = state.step(cycle.id, "export")
        assert (again.status, again.outputs, again.attempts) == ("running", None, 2)


def test_the_newest_cycle_is_unfinished_until_it_is_done(tmp_path):
    path = tmp_path / "pipeline.sqlite"
    with PipelineState(path) as state:
        first = state.new_cycle(1)
        assert state.unfinished_cycle() == first
        state.fail_cycle(first.id, "verify: broken", 2)
        assert state.unfinished_cycle().status == "failed"
    with PipelineState(path) as state:  # what was committed survives the process
        state.reopen_cycle(first.id)
        state.finish_cycle(first.id, "v1", 3)
        assert state.unfinished_cycle() is None
        assert state.cycle(first.id).snapshot == "v1"
        second = state.new_cycle(4)
        assert state.done_cycles_from(0) == 1 and state.done_cycles_from(second.id) == 0


def test_inputs_hash_ignores_key_order_and_sees_values():
    assert inputs_hash({"a": 1, "b": [1, 2]}) == inputs_hash({"b": [1, 2], "a": 1})
    assert inputs_hash({"a": 1}) != inputs_hash({"a": 2})


def test_a_second_runner_is_refused_while_the_first_holds_the_lock(tmp_path):
    path = tmp_path / "pipeline.sqlite"
    with PipelineState(path) as first, first.exclusive():
        with PipelineState(path) as second:
            with pytest.raises(UsageError, match="another pipeline cycle is running"):
                with second.exclusive():
                    pass
    with PipelineState(path) as state, state.exclusive():  # released
        pass


def test_a_file_that_is_no_state_database_is_one_error(tmp_path):
    path = tmp_path / "pipeline.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DataError, match="not a pipeline state database"):
        PipelineState(path)
