"""open_store: the store_url forms operators write, and clear errors for the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.config.checks import STORE_FORMS, STORE_KINDS
from edge_personalizer.errors import StoreError
from edge_personalizer.learn.counters import CountKey, Tally
from edge_personalizer.learn.store import open_store, sqlite_url
from edge_personalizer.learn.store.redis import RedisStore
from edge_personalizer.learn.store.sqlite import SqliteStore

from ...servers import RedisServer

pytestmark = pytest.mark.anyio
KEY = CountKey("hero", "bold", "", "all", "2026-12-02")


async def test_an_sqlite_url_opens_that_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/var/ep.db")
    assert isinstance(store, SqliteStore) and (tmp_path / "var" / "ep.db").exists()
    assert store.location == f"sqlite://{tmp_path}/var/ep.db"
    await store.close()
    store = open_store(sqlite_url(tmp_path / "var" / "ep.db"))
    await store.close()
    store = open_store(f"sqlite://{tmp_path}/my%20data/ep.db")   # percent-escapes decoded
    assert (tmp_path / "my data" / "ep.db").exists()
    await store.close()


async def test_a_relative_sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:data/ep.db")
    assert (tmp_path / "data" / "ep.db").exists()
    await store.close()


async def test_a_redis_url_opens_that_server(redis_server: RedisServer) -> None:
    store = open_store(redis_server.url)
    assert isinstance(store, RedisStore)
    await store.flush({KEY: Tally(1)})
    assert await store.totals() == {KEY: Tally(1)}
    await store.close()


async def test_a_redis_prefix_keeps_one_site_s_keys_apart(redis_server: RedisServer) -> None:
    shop, staging = open_store(redis_server.url + "?prefix=shop"), \
        open_store(redis_server.url + "?prefix=staging")
    await shop.flush({KEY: Tally(2)})
    await staging.flush({KEY: Tally(5)})
    assert await shop.totals() == {KEY: Tally(2)}
    assert await staging.totals() == {KEY: Tally(5)}
    assert shop.location == f"{redis_server.url} (prefix shop)"
    default = open_store(redis_server.url)   # ep:
    assert await default.totals() == {}
    for store in (shop, staging, default):
        await store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:9/0?prefix=",
                                 "redis://127.0.0.1:9/0?prefix=a:b",
                                 "redis://127.0.0.1:9/0?prefix=a&prefix=b"])
def test_a_redis_prefix_is_one_plain_name(url: str) -> None:
    with pytest.raises(StoreError, match="store_url's prefix must be one name"):
        open_store(url)


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite://", "no file named"),
    ("sqlite://host/ep.db", "no file named"),
    ("sqlite:///ep.db?mode=ro", "no file named"),
    ("postgres://user:s3cret@db/ep", "unknown kind 'postgres'"),
    ("/var/lib/ep/ep.db", "'/var/lib/ep/ep.db' names no kind of store"),
    ("redis://127.0.0.1:notaport/0", "not a usable Redis URL"),
])
def test_other_urls_are_refused_with_the_forms_expected(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        open_store(url)
    assert "sqlite:///path/to/ep.db or redis://host:port/db" in str(caught.value) or (
        "Redis URL" in str(caught.value))
    assert "s3cret" not in str(caught.value)


async def test_the_settings_check_knows_the_kinds_of_store_open_store_opens(
        tmp_path: Path) -> None:
    # config may not import learn: the settings check keeps the store kinds of its own,
    # and must agree with what open_store opens and says.
    for kind in STORE_KINDS:
        url = f"{kind}://{tmp_path}/ep.db" if kind == "sqlite" else f"{kind}://127.0.0.1:9/0"
        await open_store(url).close()
    with pytest.raises(StoreError, match=STORE_FORMS):
        open_store("mysql://db/ep")
