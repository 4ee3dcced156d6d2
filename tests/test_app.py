from __future__ import annotations

import asyncio
import gc
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message

from edge_personalizer import create_app, load_settings
from edge_personalizer.errors import GeoDatabaseError, RuleError, SettingsError
from edge_personalizer.learn.store import open_store, sqlite_url
from edge_personalizer.rules.tree import DATA_MARKER
from edge_personalizer.serving import SERVER_PID_ENV

from .conftest import ADMIN_TOKEN, PROFILE_KEY
from .servers import Server

ROOT = Path(__file__).resolve().parent.parent


def test_app_opens_rules_and_geo_at_build_time() -> None:
    app = create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=ROOT / "rules",
                                   geo_db=ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    assert app.rules is not None and app.geo is not None


def test_bad_rules_or_geo_fail_at_build_time(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("nonsense: 1\n")
    with pytest.raises(RuleError):
        create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=tmp_path))
    with pytest.raises(GeoDatabaseError):
        create_app(load_settings({}, origin_url="http://127.0.0.1:9", geo_db=tmp_path / "x"))


def test_a_data_dir_among_the_rules_fails_at_build_time_with_nothing_written_there(
        tmp_path: Path) -> None:
    # What the app writes in data_dir (the store, the rule files' parses, each worker's
    # state) would count as edits of the rules. Settings with such a data_dir are made
    # (explain and preview-link, which write nothing, read with them); the app refuses them.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("rules: []\n")
    settings = load_settings({"EP_ORIGIN_URL": "http://127.0.0.1:9",
                              "EP_RULES_DIR": str(rules),
                              "EP_DATA_DIR": str(rules / "ep-data"),
                              "EP_PROFILE_KEYS": "test-profile-key-0123456789abcdef"})
    with pytest.raises(SettingsError, match=re.escape(
            f"data_dir ({rules / 'ep-data'}) lies inside rules_dir ({rules}): what the "
            "server writes there would count as edits of the rules")):
        create_app(settings)
    assert [path.name for path in rules.iterdir()] == ["r.yaml"]


def test_the_learning_loop_reads_the_store_as_often_as_set(tmp_path: Path) -> None:
    settings = load_settings({}, origin_url="http://127.0.0.1:9", data_dir=tmp_path,
                             store_poll_interval=30)
    app = create_app(settings)
    assert (app.weights.interval, app.model.interval, app.trainer.tick) == (30, 30, 30)
    default = create_app(load_settings({}, origin_url="http://127.0.0.1:9", data_dir=tmp_path))
    assert (default.weights.interval, default.model.interval, default.trainer.tick) == (1, 1, 1)


def test_user_agent_parser_is_built_by_the_serving_process_only() -> None:
    # A supervisor of several workers builds the app only to check the settings.
    app = create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=ROOT / "rules"))
    assert not app.classifier.devices.loaded

    async def lifespan() -> list[str]:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        sent: list[str] = []
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})

        async def send(message: Message) -> None:
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                assert app.classifier.devices.loaded

        await app({"type": "lifespan"}, inbox.get, send)
        return sent

    assert asyncio.run(lifespan()) == ["lifespan.startup.complete",
                                       "lifespan.shutdown.complete"]


def test_a_table_in_the_store_that_does_not_decode_stops_neither_startup_nor_counting(
        tmp_path: Path) -> None:
    # The readers' first poll raised anything but ValueError (here an OverflowError) out of
    # the lifespan: granian went on without it, and the server served with no flusher,
    # trainer, readers or rules watcher; at shutdown the waiting counts went without a word.
    app = create_app(load_settings({}, origin_url="http://127.0.0.1:9", data_dir=tmp_path,
                                   store_poll_interval=30))
    bad = (b'{"experiments":{"hero":{"version":1e400,"updated_at":0,"holdout":0,'
           b'"starting":[["bold",1]],"cells":{}}}}')

    async def lifespan() -> tuple[list[str], dict[str, Any]]:
        await app.store.publish("bandit-weights", bad)
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        inbox.put_nowait({"type": "lifespan.startup"})
        sent: list[str] = []

        async def send(message: Message) -> None:
            sent.append(message["type"])

        running = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
        while not sent:
            if running.done():
                running.result()   # (the lifespan's error, if it ended with one)
                raise AssertionError("the lifespan ended without starting")
            await asyncio.sleep(0.01)
        app.counters.expose("hero", "bold", day="2026-12-02")
        learning = app.trainer.health()
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await running
        return sent, learning

    sent, learning = asyncio.run(lifespan())
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert learning["status"] == "failing"
    (trouble,) = learning["troubles"]
    assert trouble["what"] == "table bandit-weights"
    assert trouble["detail"].startswith("version 1 does not decode (OverflowError: ")
    assert app.background.health() == {"status": "ok"}
    assert b"ep_background_restarting 0.0" in app.metrics.render()

    async def exposed() -> int:
        store = open_store(sqlite_url(tmp_path / "ep.db"))
        try:
            return sum(t.exposures for t in (await store.totals("hero")).values())
        finally:
            await store.close()

    assert asyncio.run(exposed()) == 1   # the flusher's last write at shutdown


# A worker serving pages: its settings, its startup, then a dashboard page.
_WORKER = """
import asyncio, json, sys, tempfile
from edge_personalizer import create_app, load_settings

app = create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=sys.argv[1],
                               data_dir=tempfile.mkdtemp(),
                               admin_token="a-long-random-dashboard-token-0123"))
loaded = {}

async def main():
    inbox = asyncio.Queue()
    started = asyncio.Event()

    async def on_lifespan(message):
        started.set()

    inbox.put_nowait({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan"}, inbox.get, on_lifespan))
    await started.wait()
    loaded["serving"] = sorted({"jinja2", "websockets"} & set(sys.modules))
    sent = []

    async def nothing():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def collect(message):
        sent.append(message)

    await app({"type": "http", "method": "GET", "path": "/__ep/dashboard/login",
               "raw_path": b"/__ep/dashboard/login", "query_string": b"", "headers": [],
               "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
               "scheme": "http", "http_version": "1.1"}, nothing, collect)
    loaded["dashboard"] = sent[0]["status"]
    loaded["after"] = sorted({"jinja2", "websockets"} & set(sys.modules))
    inbox.put_nowait({"type": "lifespan.shutdown"})
    await lifespan

asyncio.run(main())
print(json.dumps(loaded))
"""


def test_dashboard_templates_and_websocket_client_load_when_first_needed() -> None:
    # Each worker keeps in memory only what it uses: jinja2 once the dashboard is asked
    # for, the WebSocket client once a WebSocket is relayed (not here).
    out = subprocess.run([sys.executable, "-c", _WORKER, str(ROOT / "rules")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert json.loads(out) == {"serving": [], "dashboard": 200, "after": ["jinja2"]}


def test_a_proxied_request_leaves_nothing_for_the_garbage_collector(origin: Server,
                                                                     tmp_path: Path) -> None:
    # Without rules, through every stage (client address, access log, endpoints,
    # personalization, the origin proxy and its pooled connection): a request's objects go
    # when it ends; in a reference cycle they would wait for the garbage collector, whose
    # passes every request then pays.
    app = create_app(load_settings({}, origin_url=origin.url, data_dir=tmp_path))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def proxied() -> int:
        scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http",
                 "path": "/page/a", "raw_path": b"/page/a", "query_string": b"goal=signup",
                 "root_path": "", "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8080),
                 "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"Mozilla/5.0")]}
        try:
            await app(dict(scope), receive, send)   # (the connection and caches it builds stay)
            gc.collect()
            gc.disable()
            try:
                sent.clear()
                for _ in range(3):
                    await app(dict(scope), receive, send)
                return gc.collect()
            finally:
                gc.enable()
        finally:
            await app.aclose()

    assert asyncio.run(proxied()) == 0
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 3
    assert sent[-1]["body"].endswith(b"<p>page</p>")
    assert not any(name == b"x-ep-goal" for m in sent if m["type"] == "http.response.start"
                   for name, _ in m["headers"])   # the origin's goal header never leaves


def test_the_data_dir_is_marked_with_or_without_profile_keys(tmp_path: Path) -> None:
    # Rules that come to reach the data directory (a folder link, a mount) are refused by
    # its mark; without profile keys (no parse cache, which marked it) it went unmarked.
    settings = load_settings({"EP_ORIGIN_URL": "http://127.0.0.1:9",
                              "EP_RULES_DIR": str(ROOT / "rules"),
                              "EP_DATA_DIR": str(tmp_path / "data")})
    assert not settings.profile_keys
    create_app(settings)
    assert (tmp_path / "data" / DATA_MARKER).exists()


def test_an_app_not_run_by_serve_reloads_its_own_rules(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The admin reload asks the server only when the server named itself and is this
    # process's parent: an app run some other way (embedded, another ASGI server) with the
    # name in its environment would signal whatever its parent is.
    monkeypatch.setenv(SERVER_PID_ENV, "1")   # named, but not this process's parent
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    app = create_app(load_settings({"EP_ADMIN_TOKEN": ADMIN_TOKEN,
                                    "EP_PROFILE_KEYS": PROFILE_KEY},
                                   origin_url="http://127.0.0.1:9", rules_dir=rules,
                                   data_dir=tmp_path / "data"))
    assert app.admin.server_pid is None
    assert app.rules is not None
    before = app.rules.current.version
    (rules / "more.yaml").write_text("rules: []\n")

    async def reload() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://app") as client:
            return await client.post("/__ep/reload",
                                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    answer = asyncio.run(reload())
    assert answer.status_code == 200 and answer.json()["reloaded"] is True
    assert app.rules.current.version != before
