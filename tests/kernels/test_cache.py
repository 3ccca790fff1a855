"""The kernels' caches are bounded, per store where they hold store data, and clearable."""

from __future__ import annotations

import gc
import sys
import types

from dv365.kernels.cache import CACHES, Lru, PerStore


def test_lru_keeps_the_most_recently_used():
    lru = Lru(2)
    lru.put("a", 1)
    lru.put("b", 2)
    assert lru.get("a") == 1  # a is now the most recent
    lru.put("c", 3)
    assert "b" not in lru and lru.get("a") == 1 and lru.get("c") == 3 and len(lru) == 2


def test_lru_makes_a_value_once():
    lru, made = Lru(4), []
    for _ in range(3):
        lru.get_or_make("k", lambda: made.append(1) or "v")
    assert made == [1]


def test_evicted_modules_leave_sys_modules():
    module = types.ModuleType("dv365_kernel_test_evict")
    sys.modules[module.__name__] = module
    modules = type(CACHES.modules)(1, on_evict=CACHES.modules.on_evict)
    modules.put("one", module)
    modules.put("two", types.ModuleType("dv365_kernel_other"))
    assert module.__name__ not in sys.modules


class _Store:
    pass


def test_per_store_values_follow_the_store_object_and_its_bound():
    memo = PerStore(set, capacity=2)
    a, b, c = _Store(), _Store(), _Store()
    memo.of(a).add("checked")
    assert memo.of(a) == {"checked"}
    memo.of(b)
    memo.of(c)  # a was the least recent of three: dropped
    assert memo.of(a) == set()
    del b, c
    gc.collect()
    assert len(memo) <= 1  # gone stores take their entries with them (a was just re-added)


def test_stores_that_cannot_be_weakly_referenced_are_not_remembered():
    memo = PerStore(set)
    value = memo.of(7)
    value.add("x")
    assert memo.of(7) == set()


def test_clear_forgets_everything():
    CACHES.plans.put("k", object())
    CACHES.checked.of(_Store())
    CACHES.clear()
    assert len(CACHES.plans) == 0 and len(CACHES.modules) == 0
