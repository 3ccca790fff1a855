"""The launch seam: one prepared launch per (spec, store, batch), plans memoized."""

from __future__ import annotations

import numpy as np
import pytest

from dv365.data.vocabulary import Vocabulary
from dv365.kernels.backend import Backend, launcher_for
from dv365.kernels.cache import CACHES
from dv365.kernels.launch import plan_for, prepare


def test_plans_are_memoized_by_spec_and_vocabulary(small_case):
    ir, store, *_ = small_case
    plan = plan_for(ir, store)
    assert plan_for(ir, store) is plan
    assert plan_for(ir.model_copy(), store) is plan  # same content, another object
    other = store.meta.model_copy(update={"vocab": {**store.meta.vocab,
                                                    "action": list(reversed(
                                                        store.meta.vocab["action"]))}})

    class Relabelled:  # the same events under another vocabulary order
        user_ids, offsets, columns, meta = store.user_ids, store.offsets, store.columns, other

    assert Vocabulary.of_store(Relabelled()) != Vocabulary.of_store(store)
    assert plan_for(ir, Relabelled()) is not plan


def test_prepare_checks_and_keeps_what_a_launcher_needs(small_case):
    ir, store, users, times, _ = small_case
    launch = prepare(ir, store, users, times)
    assert launch.plan is plan_for(ir, store) and launch.store is store
    assert np.array_equal(launch.batch.users, users)
    assert "offsets" in CACHES.checked.of(store)


def test_the_cpu_launcher_gives_both_outputs_of_one_launch(small_case):
    from dv365.kernels.fused import pool_fused
    from dv365.kernels.jagged import slice_jagged
    from tests.kernels.cases import assert_jagged_equal

    ir, store, users, times, tables = small_case
    pooled, counts, jag = launcher_for(Backend.cpu).pooled_and_jagged(
        prepare(ir, store, users, times), tables)
    want_pooled, want_counts = pool_fused(ir, store, users, times, tables, "cpu")
    assert np.array_equal(pooled, want_pooled) and np.array_equal(counts, want_counts)
    assert_jagged_equal(jag, slice_jagged(ir, store, users, times, "cpu"))


def test_the_reference_has_no_launcher():
    with pytest.raises(ValueError, match="no launcher"):
        launcher_for(Backend.reference)
