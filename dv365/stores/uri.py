"""Store URIs: ``lmdb://PATH``, ``redis://[user:pass@]HOST:PORT/DB``, ``rediss://...``,
``redis+cluster://HOST:PORT``, ``parquet://PATH``; the scheme picks the registered store.

A parsed URI never shows its password: :attr:`StoreUri.display` (what every message, log
line and listing prints) has it replaced by ``***``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from dv365.errors import UsageError

MASK = "***"


@dataclass(frozen=True)
class StoreUri:
    """A parsed store URI. ``path`` is the local path of file stores (``lmdb``,
    ``parquet``); network stores use ``host``, ``port`` and ``path`` (``/DB``)."""

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    query: tuple[tuple[str, str], ...] = ()

    @property
    def options(self) -> dict[str, str]:
        """The query string as a dict (``?prefix=dv365&grace=60``)."""
        return dict(self.query)

    @property
    def display(self) -> str:
        """The URI as the user wrote it, password masked."""
        if self.host is None:
            text = f"{self.scheme}://{self.path}"
        else:
            auth = ""
            if self.username or self.password:
                auth = (self.username or "") + (f":{MASK}" if self.password else "") + "@"
            port = f":{self.port}" if self.port is not None else ""
            text = f"{self.scheme}://{auth}{self.host}{port}{self.path}"
        if self.query:
            text += "?" + "&".join(f"{k}={MASK if _secret(k) else v}" for k, v in self.query)
        return text

    def __str__(self) -> str:
        return self.display


def _secret(key: str) -> bool:
    return key.lower() in ("password", "pass", "secret", "token")


FILE_SCHEMES = ("lmdb", "parquet")


def parse_store_uri(text: str, *, where: str | None = None) -> StoreUri:
    """Parse ``text``; a :class:`UsageError` (naming ``where``, password masked) when it is
    not a URI."""
    if "://" not in text:
        raise UsageError(f"{text!r} is not a store URI", where=where,
                         hint="write SCHEME://..., for example lmdb://build/store or "
                              "redis://localhost:6379/0")
    scheme, rest = text.split("://", 1)
    scheme = scheme.lower()
    if scheme in FILE_SCHEMES:
        path, _, query = rest.partition("?")
        if not path:
            raise UsageError(f"{scheme}:// needs a path", where=where,
                             hint=f"for example {scheme}://build/store")
        return StoreUri(scheme, path=unquote(path), query=tuple(parse_qsl(query)))
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"the port of {_masked(text)} is not a number", where=where) from None
    if not parts.hostname:
        raise UsageError(f"{_masked(text)} names no host", where=where,
                         hint=f"for example {scheme}://localhost:6379/0")
    return StoreUri(scheme, host=parts.hostname, port=port, path=parts.path,
                    username=unquote(parts.username) if parts.username else None,
                    password=unquote(parts.password) if parts.password else None,
                    query=tuple(parse_qsl(parts.query)))


def _masked(text: str) -> str:
    """``text`` with the password of a ``scheme://user:pass@host`` URI masked."""
    scheme, _, rest = text.partition("://")
    netloc, sep, tail = rest.partition("/")
    if "@" in netloc:
        auth, _, host = netloc.rpartition("@")
        user, colon, _ = auth.partition(":")
        netloc = f"{user}{':' + MASK if colon else ''}@{host}"
    return f"{scheme}://{netloc}{sep}{tail}"
