"""Replay: a log of requests run through the whole pipeline (classify, decide, goals,
counting) into the store, without an origin.

Each line is one request as JSON: `{"url": ..., "method": ..., "headers": {...}, "ip": ...,
"time": ..., "visitor": ..., "status": ..., "response_headers": {...}}`; only `url` is
needed; `time` is epoch seconds or ISO 8601 (1970 to 9999), and a header whose value is
null is one the request did not have, as `classify` reads them. Each
visitor (`visitor`, else address and User-Agent) keeps a cookie jar from response to
request, so profiles, sticky variants and attribution work as on the live site. The
stand-in site answers every request with a page holding each marker slot of the rules,
with the status and headers the line gives (an `X-EP-Goal` header, a 201...).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
from starlette.types import Message, Receive, Scope, Send

from .app import EdgeApp
from .config import Settings
from .errors import SettingsError, StoreError
from .report import log_headers, log_line, log_text, log_time, url_problem
from .rewrite.bypass import marker_slot
from .rules.fields import as_written

_LINE = "edge_personalizer.replay_line"   # the scope key the stand-in site answers from
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")   # an HTTP method (RFC 9110 token)


@dataclass(frozen=True)
class LoggedRequest:
    """One line of a request log."""

    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    ip: str | None = None
    time: float | None = None
    visitor: str | None = None
    status: int = 200
    response_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, line: str, number: int) -> LoggedRequest:
        try:
            data = log_line(line)
            return cls(url=_url(data["url"]), method=_method(data.get("method")),
                       headers=_texts(data.get("headers"), "headers"),
                       ip=log_text(data, "ip"), time=_time(data.get("time")),
                       visitor=log_text(data, "visitor"), status=_status(data.get("status", 200)),
                       response_headers=_texts(data.get("response_headers"),
                                               "response_headers"))
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"line {number}: {exc}") from exc

    def jar_key(self) -> str:
        return self.visitor or f"{self.ip}|{self.headers.get('user-agent', '')}"


def _url(url: str) -> str:
    """A URL the stand-in site is asked for: a path, or an http(s) URL whose host a Host
    header can carry."""
    try:
        problem = url_problem(url)
        _encodable(urlsplit(url).netloc, "latin-1",
                   "cannot be sent in a Host header: write the host in punycode (xn--...)")
    except ValueError as exc:   # (urlsplit's: a bracket left open)
        raise ValueError(f"url {url!r}: {exc}") from None
    if problem is not None:
        raise ValueError(f"url {url!r} {problem}")
    return url


def _encodable(text: str, encoding: str, why: str) -> None:
    try:
        text.encode(encoding)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{exc.object[exc.start:exc.end]!r} {why}") from None


def _method(value: Any) -> str:
    if value is None:
        return "GET"
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ValueError(f"method {as_written(value)} is no HTTP method (GET, POST, ...)")
    return value.upper()


def _texts(value: Any, name: str) -> dict[str, str]:
    """`headers` or `response_headers`, by lower-case name."""
    headers = log_headers(value, name)
    for header, text in headers.items():
        try:
            _encodable(header + text, "latin-1", "cannot be sent in an HTTP header")
        except ValueError as exc:
            raise ValueError(f"{name}: {header!r}: {exc}") from None
    return {header.lower(): text for header, text in headers.items()}


def _status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) \
            or not str(value).isdigit() or not 100 <= int(value) <= 599:
        raise ValueError(f"status {value!r} is not an HTTP status code (100 to 599)")
    return int(value)


def _time(value: Any) -> float | None:
    return None if value is None else log_time(value)


class StandInSite:
    """Answers like a site whose every page has every marker slot of the rules."""

    def __init__(self, slots: Iterable[tuple[str, str]]) -> None:
        """`slots`: (name, element) of each marker slot."""
        markers = "".join(f'<{tag} data-ep-slot="{name}">{name}</{tag}>' for name, tag in slots)
        self.page = f"<!doctype html><html><head></head><body>{markers}</body></html>".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logged: LoggedRequest = scope[_LINE]
        headers = [(b"content-type", b"text/html; charset=utf-8"),
                   (b"content-length", str(len(self.page)).encode())]
        headers += [(k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in logged.response_headers.items()]
        await send({"type": "http.response.start", "status": logged.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": self.page})


@dataclass(frozen=True)
class Replayed:
    """What the visitor of one logged request got."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class ReplaySummary:
    requests: int = 0
    visitors: int = 0
    exposures: int = 0
    conversions: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    store: str = ""   # where the counts went (without a password)


class Replay:
    """The product with a stand-in site, fed one logged request at a time."""

    def __init__(self, settings: Settings) -> None:
        self.now = time.time()
        slots = []
        if settings.rules_dir is not None:
            from .rules.book import load_rules

            ruleset = load_rules(settings.rules_dir)
            slots = [(name, slot.selector.partition("[")[0] or "div")
                     for name, slot in ruleset.slots.items() if marker_slot(slot.selector)]
        # A log being replayed is no traffic to log again, one line a request.
        quiet = dataclasses.replace(settings, access_log=False)
        # The stand-in pages hold only the marker slots: what a page of the site has is
        # not learned from them (every choice counts, as on pages that have its slot).
        self.app = EdgeApp(quiet, site=StandInSite(slots), clock=lambda: self.now,
                           learn_slots=False)
        self.jars: dict[str, dict[str, str]] = {}
        self.summary = ReplaySummary()
        # A new visitor's id is made from their key in the log, so a log replays to the
        # same ids, and so the same buckets, every time (ids are random on the live site).
        self._visitor = ""
        self._read_tables = False   # the store's published tables, read before the first
        if self.app.classifier.profiles is not None:
            self.app.classifier.profiles.new_id = self._visitor_id

    def _visitor_id(self) -> str:
        digest = hashlib.blake2b(self._visitor.encode(), digest_size=12,
                                 person=b"ep-replay").digest()
        return base64.urlsafe_b64encode(digest).decode()

    async def request(self, logged: LoggedRequest) -> Replayed:
        if not self._read_tables:   # as a serving worker reads them before it serves
            self._read_tables = True
            for reader in (self.app.weights, self.app.model, self.app.catalog):
                await reader.refresh()
        if logged.time is not None:
            self.now = logged.time
        self._visitor = logged.jar_key()
        jar = self.jars.setdefault(self._visitor, {})
        parts = urlsplit(logged.url)
        headers = {"accept": "text/html", **logged.headers}
        if parts.netloc:
            headers.setdefault("host", parts.netloc)
        if jar:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        scope: Scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": logged.method, "scheme": parts.scheme or "https", "path": parts.path or "/",
            "raw_path": (parts.path or "/").encode(), "query_string": parts.query.encode(),
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
            "client": (logged.ip or "192.0.2.1", 0), "server": ("replay", 443),
            _LINE: logged}
        status = 0
        response_headers: list[tuple[bytes, bytes]] = []
        body: list[bytes] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers.extend(message.get("headers", ()))
                for name, value in response_headers:
                    if name.lower() == b"set-cookie":
                        cookie, _, _ = value.decode("latin-1").partition(";")
                        key, _, val = cookie.partition("=")
                        jar[key.strip()] = val.strip()
            elif message["type"] == "http.response.body":
                body.append(bytes(message.get("body", b"")))

        await self.app(scope, receive, send)
        self.summary.requests += 1
        self.summary.statuses[status] = self.summary.statuses.get(status, 0) + 1
        return Replayed(status, response_headers, b"".join(body))

    async def finish(self) -> ReplaySummary:
        """Writes every count to the store and closes it."""
        await self.app.flusher.flush()
        await self.app.aclose()
        return self.summarize()

    def summarize(self) -> ReplaySummary:
        attribution = self.app.learning.attribution
        self.summary.visitors = len(self.jars)
        self.summary.exposures = attribution.exposures
        self.summary.conversions = attribution.conversions
        self.summary.store = self.app.store.location
        return self.summary


REPLAYED_TABLE = "replayed-logs"   # the digest of each log replayed into a store, and when


async def replay(settings: Settings, lines: Iterable[str], *,
                 again: bool = False) -> ReplaySummary:
    """Every request of `lines` (JSON, one a line; blank lines skipped) into the store.

    The whole log is read and checked first: a bad line stops the replay before anything
    is counted, naming the line. A log already replayed into the same store (the same
    lines) is refused unless `again`: its counts are there already. The counts are written
    at the end, all together; a log holding more distinct counts than a worker keeps is
    refused then, with nothing written (split it, by day for example)."""
    digest = hashlib.sha256()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        for number, line in enumerate(lines, 1):
            if line.strip():
                LoggedRequest.parse(line, number)
                spool.write(line if line.endswith("\n") else line + "\n")
                digest.update(line.rstrip("\n").encode() + b"\n")
        spool.seek(0)
        replayer = Replay(settings)
        try:
            replayed = await _replayed_logs(replayer)
            when = replayed.get(digest.hexdigest())
            if when is not None and not again:
                raise SettingsError(
                    f"this log was replayed into {replayer.app.store.location} on "
                    f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))}: its counts "
                    "are there already (pass --again to count it once more)")
            for number, line in enumerate(spool, 1):
                await replayer.request(LoggedRequest.parse(line, number))
            dropped = replayer.app.counters.dropped
            if dropped:
                raise SettingsError(
                    f"nothing was counted: this log holds more distinct counts than a worker "
                    f"keeps ({replayer.app.counters.max_keys:,}; {dropped:,} events over): "
                    "replay it in parts, a day at a time for example")
            replayed[digest.hexdigest()] = time.time()
            try:   # marked first: counts written without their mark could be doubled
                await replayer.app.store.publish(REPLAYED_TABLE,
                                                 json.dumps(replayed).encode())
                await replayer.app.trainer.record_goals()   # as a serving worker would
            except StoreError as exc:
                raise SettingsError(f"nothing was counted: {exc}") from exc
            await _write_once(replayer)
            return replayer.summarize()
        finally:
            await replayer.app.aclose()


async def _write_once(replayer: Replay, tries: int = 5) -> None:
    """Every count of the log in one write to the store (all or none), sent again as it
    was while the store does not confirm it: a write that timed out after the store
    applied it is applied once (the flusher's batch id)."""
    flusher = replayer.app.flusher
    flusher.batch_keys = sys.maxsize
    for attempt in range(tries):
        if await flusher.flush():
            return
        if attempt + 1 < tries:
            await anyio.sleep(1.0)
    raise SettingsError(
        f"the store {replayer.app.store.location} did not confirm the counts after {tries} "
        "tries; the log is marked as replayed, and its counts may or may not be there: "
        "look with `edge-personalizer report` before replaying it with --again")


async def _replayed_logs(replayer: Replay) -> dict[str, float]:
    """The logs replayed into the replayer's store so far: digest -> when (the newest
    1,000)."""
    table = await replayer.app.store.table(REPLAYED_TABLE)
    logs: dict[str, float] = json.loads(table.payload) if table is not None else {}
    return dict(sorted(logs.items(), key=lambda item: item[1])[-1000:])
