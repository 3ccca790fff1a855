"""The stores: versioned snapshots of exported user records, chosen by URI scheme.

This module is the built-in store plugin: it registers the ``lmdb``, ``redis``,
``rediss``, ``redis+cluster`` and ``parquet`` schemes through ``dv365_register_stores``
(the same hook outside stores use), importing each backend only when a store is opened.
"""

from __future__ import annotations

from dv365.hookspecs import RegisterStore, hookimpl


def _lmdb(uri):
    from dv365.stores.lmdb_store import LmdbStore

    return LmdbStore(uri)


def _parquet(uri):
    from dv365.stores.parquet_store import ParquetStore

    return ParquetStore(uri)


@hookimpl
def dv365_register_stores(register: RegisterStore) -> None:
    register("lmdb", _lmdb, doc="embedded LMDB environment in a folder: lmdb://PATH")
    register("parquet", _parquet, doc="warehouse: a Parquet dataset a version: parquet://PATH")


def open_store(uri: str, *, plugins=None, where: str | None = None):
    """Open the store a URI names (its scheme picks the registered store); an unknown scheme
    is a :class:`~dv365.errors.UsageError` listing the registered ones."""
    from dv365.errors import UsageError
    from dv365.plugins import get_plugins
    from dv365.stores.uri import parse_store_uri

    parsed = parse_store_uri(uri, where=where)
    stores = (plugins or get_plugins()).stores
    if parsed.scheme not in stores:
        raise UsageError(f"unknown store scheme {parsed.scheme + '://'!r}",
                         where=where or parsed.display,
                         hint=f"registered: {', '.join(s + '://' for s in stores.names())}; "
                              "see `dv365 plugins`")
    return stores.get(parsed.scheme, where=where).factory(parsed)
