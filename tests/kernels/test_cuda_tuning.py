"""The CUDA tuning value: checked on construction, and a cache key that names every field."""

from __future__ import annotations

import dataclasses

import pytest

from dv365.kernels.cuda_tuning import DEFAULT_TUNING, CudaTuning


def test_every_field_changes_the_key():
    keys = {DEFAULT_TUNING.key()}
    for f in dataclasses.fields(CudaTuning):
        value = getattr(DEFAULT_TUNING, f.name)
        other = (not value if isinstance(value, bool) else
                 "" if isinstance(value, str) else max(1, value - 1))
        keys.add(dataclasses.replace(DEFAULT_TUNING, **{f.name: other}).key())
    assert len(keys) == len(dataclasses.fields(CudaTuning)) + 1
    assert CudaTuning().key() == DEFAULT_TUNING.key()


@pytest.mark.parametrize("changes,match", [
    ({"staged_entries": 0}, "staged_entries must be at least 1"),
    ({"segment_slots": 21}, "segment_slots is at most 20"),
    ({"mark_max_registers": -1}, "cannot be negative"),
])
def test_impossible_values_are_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        CudaTuning(**changes)


def test_tuning_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_TUNING.staged_entries = 3  # type: ignore[misc]
