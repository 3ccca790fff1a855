"""Shared helpers of the kernel tests: canonical stores and backend-vs-reference checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dv365.slices import ir as I
from dv365.slices.reference import Events
from tests.strategies import ColumnStore

ROOT = Path(__file__).resolve().parents[2]
# The paper profile's table rows (media 2^21, author 2^19, topic 2^14).
PAPER_ROWS = {"media_id": 2**21, "author_id": 2**19, "topic_id": 2**14}

# Pooled float32 kernels against the float64 reference: float32 accumulation of a few dozen
# unit-normal rows (and float32 bag weights) stays well inside this.
POOL_ATOL = 2e-5
POOL_RTOL = 1e-4


def canonical(store: ColumnStore) -> ColumnStore:
    """The store with each user's events in the reference's canonical order.

    Kernels list a bag's rows in storage order; the reference in (time, other columns)
    order. Both are time order; sorting ties the reference's way makes rows comparable
    one by one.
    """
    users = []
    for u in range(len(store.offsets) - 1):
        lo, hi = store.offsets[u], store.offsets[u + 1]
        cols = {c: v[lo:hi] for c, v in store.columns.items()}
        order = Events(cols).order
        users.append({c: v[order] for c, v in cols.items()})
    return ColumnStore.from_users(users, user_ids=store.user_ids, meta=store.meta)


def assert_jagged_equal(got, want) -> None:
    assert got.keys == want.keys
    assert torch.equal(got.counts, want.counts)
    assert torch.equal(got.lengths, want.lengths)
    assert torch.equal(got.values, want.values)
    torch.testing.assert_close(got.weights, want.weights, rtol=1e-6, atol=1e-7)


def assert_pooled_close(got, want) -> None:
    # On a real GPU `got` is on the device; comparing across devices raises, and under
    # hypothesis that error looked like a hang (every example failing, shrinking compiling
    # spec after spec).
    pooled, counts = (t.cpu() for t in got)
    ref_pooled, ref_counts = (t.cpu() for t in want)
    assert torch.equal(counts, ref_counts)
    torch.testing.assert_close(pooled, ref_pooled, rtol=POOL_RTOL, atol=POOL_ATOL)


def request_batch(store: ColumnStore, data) -> tuple[np.ndarray, np.ndarray]:
    """Users (with repeats) and request times near their events, drawn by hypothesis."""
    from hypothesis import strategies as st

    from tests.strategies import DAY_MS, T0_MS

    n_users = len(store.offsets) - 1
    users = np.array(data.draw(st.lists(st.integers(0, n_users - 1), min_size=1, max_size=5)),
                     dtype=np.int64)
    ts = store.columns["ts"]
    edges = sorted(set(int(t) for t in ts[:50])) or [T0_MS]
    times = [data.draw(st.one_of(
        st.integers(T0_MS, T0_MS + 20 * DAY_MS),
        st.builds(lambda t, dt: t + dt, st.sampled_from(edges),
                  st.sampled_from([0, 1, 3_600_000, 3_600_001, DAY_MS, DAY_MS + 1,
                                   3 * DAY_MS, 7 * DAY_MS, 7 * DAY_MS + 1]))))
        for _ in users]
    return users, np.array(times, dtype=np.int64)


def reels_ir(dim: int) -> I.SpecIR:
    """``slices/reels.slice`` with every table ``dim`` wide and the paper profile's rows."""
    from dv365.slices.compile import compile_spec

    ir = compile_spec(ROOT / "slices" / "reels.slice")
    tables = tuple(t.model_copy(update={"dim": dim,
                                        "num_rows": PAPER_ROWS.get(t.id_column, t.num_rows)})
                   for t in ir.tables)
    return ir.model_copy(update={"tables": tables})
