"""Exact incremental refresh (dv365.export.refresh and ``export_snapshot(since=...)``): after a
day of events is appended, a refresh equals a full export byte for byte while computing only
the users whose embedding can have changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dv365.data.timeline import TimelineStore
from dv365.durations import DAY_MS
from dv365.errors import UsageError
from dv365.export.job import export_snapshot
from dv365.export.refresh import changed_users, events_in, request_relative, windows_of
from dv365.model.foundation import load_foundation_model
from dv365.slices.ir import Compare, FieldRef, Slice
from tests.export.test_job import PLUGINS, fresh_store, all_records, export, split
from tests.model.conftest import tiny_spec

SHARED_FIXTURES = (split,)  # the data and checkpoint of tests/export/test_job.py


def _times(split, after_end: int = 0) -> tuple[int, int, TimelineStore, TimelineStore]:
    """T0 and T1 at each dataset's end (last event + 1 ms) plus ``after_end``; the stores."""
    old, new = split.store("old"), split.store("new")
    return (int(old.ts.max()) + 1 + after_end, int(new.ts.max()) + 1 + after_end, old, new)


@pytest.mark.parametrize("after_end", [0, DAY_MS], ids=["at-end", "at-end-plus-gap"])
def test_a_refresh_after_a_day_of_events_equals_a_full_export_byte_for_byte(split, after_end):
    # At end + gap every appended event enters the history (on this data every user acts on
    # the last day: all are recomputed); at the end, the history moves by the day before.
    t0, t1, old, new = _times(split, after_end)
    sink = fresh_store()
    parent = export(split, old, t0, sink, shard_size=48).manifest
    refreshed = export(split, new, t1, sink, since=parent.id, shard_size=48)
    full_sink = fresh_store()
    full = export(split, new, t1, full_sink, shard_size=48).manifest
    m = refreshed.manifest
    assert m.parent == parent.id and sink.current_version() == m.id
    assert all_records(sink, m.id) == all_records(full_sink)
    assert (m.checksum, m.users, m.bytes) == (full.checksum, full.users, full.bytes)
    # The refresh computed the users the rule names and the newcomers, no one else.
    rule = changed_users(split_ir(split), new, t0, t1, parent_store=old)
    is_new = ~np.isin(new.user_ids, old.user_ids)
    newcomers = int(is_new.sum())
    assert newcomers >= 3
    assert m.recomputed == refreshed.computed == int((rule.recompute | is_new).sum())
    assert 0 < m.recomputed < m.users if after_end == 0 else m.recomputed == m.users
    print(f"refresh recomputed {m.recomputed} of {m.users} users "
          f"({rule.entered} entered, {rule.left_window} left a window, {newcomers} new)")


def split_ir(split):
    return load_foundation_model(split.checkpoint, plugins=PLUGINS).ir


def test_a_refresh_at_the_same_time_on_the_same_data_copies_everyone(split):
    _, t1, _, new = _times(split)
    sink = fresh_store()
    parent = export(split, new, t1, sink).manifest
    again = export(split, new, t1, sink, since=parent.id)
    assert again.computed == 0 and again.copied == new.num_users
    assert again.manifest.checksum == parent.checksum


def test_the_changed_users_are_those_with_an_event_entering_or_leaving_a_window(split):
    _, _, _, new = _times(split)
    ir = tiny_spec(gap_ms=DAY_MS)
    t0 = int(new.ts.max()) + 1 - 3 * DAY_MS
    t1 = t0 + DAY_MS
    got = changed_users(ir, new, t0, t1)
    week = 7 * DAY_MS
    entered = events_in(new, t0 - DAY_MS, t1 - DAY_MS) > 0
    left = events_in(new, t0 - week, t1 - week) > 0
    assert windows_of(ir) == (week,)
    assert np.array_equal(got.recompute, entered | left)
    # Brute force over one user's events: an event changes membership in some slice.
    for u in np.flatnonzero(~got.recompute)[:20]:
        ts = new.ts[new.offsets[u]:new.offsets[u + 1]]
        assert not ((ts >= t0 - DAY_MS) & (ts < t1 - DAY_MS)).any()
        assert not ((ts >= t0 - week) & (ts < t1 - week)).any()
    assert got.count == entered.sum() + (left & ~entered).sum() and got.everyone is None


def test_users_whose_old_events_changed_are_recomputed_when_the_parents_data_is_known(split):
    t0, t1, old, new = _times(split)
    without = changed_users(tiny_spec(), new, t0, t1)
    with_parent = changed_users(tiny_spec(), new, t0, t1, parent_store=old)
    # The newcomers' whole history is "late" in the sense that it is new; users present in
    # both stores with the same events before the cutoff are not counted.
    assert with_parent.rewritten == 0
    assert np.array_equal(without.recompute, with_parent.recompute)


def test_a_request_relative_field_recomputes_everyone():
    ir = tiny_spec()
    assert request_relative(ir) == ()
    aged = ir.model_copy(update={"slices": (*ir.slices, Slice(
        name="recent", timeline="implicit", id_column="media_id", table="media",
        predicate=Compare(expr=FieldRef.model_construct(field="age_hours"), op="<",
                          value=24.0)))})
    assert request_relative(aged) == ("age_hours",)


def test_a_refresh_refuses_another_checkpoint_or_codec_or_an_earlier_time(split, tmp_path):
    t0, t1, old, new = _times(split)
    sink = fresh_store()
    parent = export(split, old, t0, sink).manifest
    with pytest.raises(UsageError, match="another codec"):
        export(split, new, t1, sink, since=parent.id, codec="fp16")
    with pytest.raises(UsageError, match="a refresh only moves forward"):
        export(split, old, t0 - 1, sink, since=parent.id)
    other = tmp_path / "other.pt"
    raw = torch.load(split.checkpoint, weights_only=True)
    raw["step"] = int(raw["step"]) + 1  # another checkpoint of the same model and spec
    torch.save(raw, other)
    with pytest.raises(UsageError, match="another checkpoint") as caught:
        export_snapshot(other, new, t1, sink, since=parent.id, plugins=PLUGINS)
    assert "export in full" in caught.value.hint
    assert sink.current_version() == parent.id and sink.staged() == []
