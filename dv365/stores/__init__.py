"""The stores: versioned snapshots of exported user records, chosen by URI scheme.

This module is the built-in store plugin: it registers the ``lmdb``, ``redis``,
``rediss``, ``redis+cluster`` and ``parquet`` schemes through ``dv365_register_stores``
(the same hook outside stores use), importing each backend only when a store is opened.
"""

from __future__ import annotations

from dv365.hookspecs import RegisterStore, hookimpl


def _redis(uri):
    from dv365.stores.redis_store import RedisStore

    return RedisStore(uri)


@hookimpl
def dv365_register_stores(register: RegisterStore) -> None:
    register("redis", _redis, doc="Redis server: redis://[user:pass@]HOST:PORT/DB")
    register("rediss", _redis, doc="Redis server over TLS: rediss://[user:pass@]HOST:PORT/DB")
    register("redis+cluster", _redis, doc="Redis Cluster: redis+cluster://HOST:PORT")


def open_store(uri: str, *, plugins=None, where: str | None = None):
    """Open the store a URI names (its scheme picks the registered store)."""
    from dv365.plugins import get_plugins
    from dv365.stores.uri import parse_store_uri

    parsed = parse_store_uri(uri, where=where)
    registration = (plugins or get_plugins()).stores.get(parsed.scheme, where=where)
    return registration.factory(parsed)
