"""Every in-process cache of the kernels, in one place, each bounded.

What the kernels remember between calls, and why:

* ``ir_hashes``: an IR object's content hash (hashing its JSON costs milliseconds a batch);
* ``plans``: the kernel plan of (IR hash, vocabulary);
* ``layouts``: the CUDA layout of (plan, tuning);
* ``modules``: imported generated kernel modules by their cache tag (plan, backend, table
  element, tuning); an evicted module is also dropped from ``sys.modules``;
* ``checked``: per event store object, which input checks it passed (weakly keyed: a store
  that is gone takes its entry with it);
* ``device_columns``: per event store object, its columns copied to the GPU (weakly keyed,
  and only the most recent stores: these hold device memory);
* ``packed_tables``: the embedding tables packed into one device buffer (one set: tables
  can be gigabytes);
* ``plan_arrays``: a plan's small lookup arrays on the device.

:data:`CACHES` is the one instance; ``CACHES.clear()`` forgets everything (tests, or to give
device memory back).
"""

from __future__ import annotations

import sys
import weakref
from collections import OrderedDict
from typing import Any, Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class Lru(Generic[V]):
    """A mapping that keeps its ``capacity`` most recently used entries."""

    def __init__(self, capacity: int, on_evict: Callable[[Hashable, V], None] | None = None):
        self.capacity = capacity
        self.on_evict = on_evict
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Hashable, value: V) -> V:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            old_key, old = self._items.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(old_key, old)
        return value

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        found = self.get(key)
        return found if found is not None else self.put(key, make())

    def clear(self) -> None:
        while self._items:
            key, old = self._items.popitem(last=False)
            if self.on_evict is not None:
                self.on_evict(key, old)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items


class PerStore(Generic[V]):
    """A value per event store *object*, weakly keyed, for at most ``capacity`` stores.

    Stores that cannot be weakly referenced get a fresh value each time (nothing is kept)."""

    def __init__(self, make: Callable[[], V], capacity: int | None = None):
        self.make = make
        self.capacity = capacity
        self._items: "weakref.WeakKeyDictionary[Any, V]" = weakref.WeakKeyDictionary()
        self._order: list[weakref.ref] = []

    def of(self, store: Any) -> V:
        try:
            value = self._items.get(store)
        except TypeError:  # not weak-referenceable
            return self.make()
        if value is None:
            value = self._items[store] = self.make()
        if self.capacity is not None:
            self._order = [r for r in self._order if r() is not None and r() is not store]
            self._order.append(weakref.ref(store))
            while len(self._order) > self.capacity:
                old = self._order.pop(0)()
                if old is not None:
                    self._items.pop(old, None)
        return value

    def clear(self) -> None:
        self._items = weakref.WeakKeyDictionary()
        self._order = []

    def __len__(self) -> int:
        return len(self._items)


def _drop_module(_tag: Hashable, module: Any) -> None:
    sys.modules.pop(getattr(module, "__name__", ""), None)


class KernelCaches:
    """The kernels' caches (see the module docstring)."""

    def __init__(self) -> None:
        self.ir_hashes: Lru[tuple] = Lru(64)
        self.plans: Lru[Any] = Lru(64)
        self.layouts: Lru[Any] = Lru(64)
        self.modules: Lru[Any] = Lru(64, on_evict=_drop_module)
        self.checked: PerStore[set] = PerStore(set)
        self.device_columns: PerStore[dict] = PerStore(dict, capacity=2)
        self.packed_tables: Lru[tuple] = Lru(1)
        self.plan_arrays: Lru[Any] = Lru(32)

    def clear(self) -> None:
        for cache in vars(self).values():
            cache.clear()


CACHES = KernelCaches()
