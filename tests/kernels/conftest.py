"""A fixed small case (one spec, several users) for tests that should compile only once."""

from __future__ import annotations

import os

import torch

# CUDA kernels run in Numba's simulator unless a real GPU is there (`pytest -m gpu` on the
# H200) or DV365_REAL_GPU=1 asks for it.
if not (os.environ.get("DV365_REAL_GPU") or torch.cuda.is_available()):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    import numba

    numba.config.reload_config()

import numpy as np
import pytest

from dv365.data.schema import DEFAULT_VOCAB
from dv365.slices import ir as I
from tests.kernels.cases import canonical
from tests.strategies import DAY_MS, T0_MS, ColumnStore, debiased_score, watch_ratio


def small_ir(dim: int = 4) -> I.SpecIR:
    """Every kind of slice the reels family has, at a small scale (and every hashing)."""
    tables = (
        I.Table(name="media", id_column="media_id", num_rows=37, dim=dim,
                hashing=I.Hashing(kind="hash", seed=11)),
        I.Table(name="author", id_column="author_id", num_rows=13, dim=dim),
        I.Table(name="topic", id_column="topic_id", num_rows=48, dim=dim,
                hashing=I.Hashing(kind="identity")),
    )
    wr = watch_ratio(0.5)
    slices = []
    for table in tables:
        for w in (None, 7 * DAY_MS, 2 * DAY_MS):
            tag = f"{table.name}_{w or 'all'}"
            common = dict(window_ms=w, id_column=table.id_column, table=table.name)
            slices += [
                I.Slice(name=f"like_{tag}", timeline="explicit",
                        predicate=I.Member(field="action", values=("like", "share")), **common),
                I.Slice(name=f"notlike_{tag}", timeline="explicit",
                        predicate=I.Member(field="action", values=("like",), negated=True),
                        **common),
                I.Slice(name=f"wr_{tag}", timeline="implicit",
                        predicate=I.Compare(expr=wr, op=">=", value=0.5), **common),
                I.Slice(name=f"deb_{tag}", timeline="implicit", pooling="weighted_mean",
                        predicate=I.Compare(expr=debiased_score(0.8), op=">", value=0.5),
                        weight=debiased_score(0.8), **common),
                I.Slice(name=f"sum_{tag}", timeline="implicit", pooling="sum",
                        predicate=I.Or(args=(
                            I.Member(field="surface", values=("reels",)),
                            I.Compare(expr=I.FieldRef(field="dwell_time"), op="<", value=3.0))),
                        **common),
            ]
    return I.SpecIR(gap_ms=DAY_MS, tables=tables, slices=tuple(slices),
                    vocab={k: tuple(v) for k, v in DEFAULT_VOCAB.items()})


def small_store(n_users: int = 5, seed: int = 0, max_events: int = 120) -> ColumnStore:
    rng = np.random.default_rng(seed)
    users = []
    for u in range(n_users):
        n = int(rng.integers(0, max_events))
        tl = rng.integers(0, 2, n).astype(np.int8)
        users.append({
            "ts": np.sort(T0_MS + rng.integers(0, 12 * DAY_MS, n)).astype(np.int64),
            "timeline": tl,
            "media_id": rng.integers(-1000, 10**9, n).astype(np.int64),
            "author_id": rng.integers(-20, 500, n).astype(np.int64),
            "topic_id": rng.integers(0, 48, n).astype(np.int64),
            "media_type": rng.integers(0, 3, n).astype(np.int8),
            "surface": rng.integers(0, 4, n).astype(np.int8),
            "action": np.where(tl == 0, rng.integers(0, 8, n), -1).astype(np.int8),
            "video_duration": np.where(rng.random(n) < 0.2, np.nan,
                                       rng.random(n) * 60 + 0.5).astype(np.float32),
            "dwell_time": np.where(tl == 1, rng.random(n) * 90, np.nan).astype(np.float32),
        })
    return canonical(ColumnStore.from_users(users))


@pytest.fixture(autouse=True)
def _serial_kernels(monkeypatch):
    # Serial CPU kernels compile about 4x faster; tests of the parallel build unset it.
    monkeypatch.setenv("DV365_KERNEL_SERIAL", "1")


@pytest.fixture(scope="session")
def small_case():
    ir = small_ir()
    store = small_store()
    rng = np.random.default_rng(3)
    users = np.array([0, 1, 2, 3, 4, 2], dtype=np.int64)
    times = (T0_MS + rng.integers(3 * DAY_MS, 13 * DAY_MS, len(users))).astype(np.int64)
    tables = {t.name: rng.standard_normal((t.num_rows, t.dim)).astype(np.float32)
              for t in ir.tables}
    return ir, store, users, times, tables
