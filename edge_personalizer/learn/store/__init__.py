"""Where counts and published tables live: `open_store(store_url)` gives a `Store`.

In: batches of counts from the flusher, tables from background tasks. Out: totals for
reports and statistics, the newest version of a table. Never called on a page's way; a
store that fails raises StoreError quickly and the caller keeps its counts.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ...errors import StoreError
from .base import BatchId, Store, Table, decoded, read_table
from .sqlite import SqliteStore, sqlite_url

__all__ = ["BatchId", "Store", "Table", "decoded", "open_store", "read_table", "sqlite_url"]

_EXPECTED = "expected sqlite:///path/to/ep.db or redis://host:port/db"


def open_store(url: str, *, timeout: float | None = None) -> Store:
    """The store named by `url`.

    `sqlite:///var/lib/ep/ep.db` (an absolute path after `sqlite://`; `sqlite:data/ep.db` is
    relative to the working directory): the file and its directory are created if missing.
    `redis://[user:password@]host:port/db` or `rediss://...` (TLS): connects on first use;
    `?prefix=shop` puts its keys under `shop:` instead of `ep:` (sites sharing a database).
    `timeout`: how long one call may wait (default 2 s for SQLite's lock, 0.5 s for Redis).
    Raises StoreError for a URL of another form or an SQLite file that cannot be opened.
    """
    scheme, colon, _ = url.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise StoreError(f"store_url {url!r} names no kind of store; {_EXPECTED}")
    if scheme == "sqlite":
        parts = urlsplit(url)
        if parts.netloc or not parts.path or parts.query or parts.fragment:
            raise StoreError(f"store_url {url!r}: no file named; {_EXPECTED}")
        return SqliteStore(Path(unquote(parts.path)), timeout=2.0 if timeout is None else timeout)
    if scheme in ("redis", "rediss"):
        from .redis import RedisStore  # only a Redis user pays for importing the client

        url, prefix = _without_prefix(url)
        return RedisStore(url, prefix=prefix, timeout=0.5 if timeout is None else timeout)
    # The URL itself is not repeated: a mistyped scheme may still carry a password.
    raise StoreError(f"store_url of unknown kind {scheme!r}; {_EXPECTED}")


_PREFIX: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _without_prefix(url: str) -> tuple[str, str]:
    """A Redis URL without its `prefix=` (the client would take it for a connection
    option), and that prefix (`ep` when none is given)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = [value for name, value in query if name == "prefix"]
    if not given:
        return url, "ep"
    if len(given) > 1 or not _PREFIX.fullmatch(given[0]):
        raise StoreError(f"store_url's prefix must be one name of 1 to 64 letters, digits "
                         f"and '_.-', got {', '.join(repr(g) for g in given)}")
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), given[0]
