"""Health for anyone (its details behind the admin token); metrics and reload behind it."""

from __future__ import annotations

import functools
import hmac
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import anyio
from starlette.types import Receive, Scope, Send

from ..classify.geo import GeoDatabaseInfo
from ..errors import StoreError
from ..http.client import ProbeResult
from ..learn.flusher import Flusher
from ..learn.store import Store
from ..observability.metrics import CONTENT_TYPE, Metrics
from ..observability.workers import WorkerBoard, combined_metrics
from ..proxy.pages import respond
from ..rules.book import NO_RULE_FILES, RuleBook
from .responses import send_json
from .router import Route

OriginProbe = Callable[[], Awaitable[ProbeResult]]


class PageNotes(NamedTuple):
    """What each worker learns of the rules from the pages it serves (since the rules
    loaded), told for the whole server: its name (in health's `rules`, and in each
    worker's published state), this worker's tallies, and what every worker's say."""

    name: str
    own: Callable[[], Mapping[str, Any]]
    told: Callable[[list[Mapping[str, Any]]], list[str]]


def carries_token(scope: Scope, token: bytes) -> bool:
    """Whether the request's Authorization is `Bearer <token>` (the scheme in any case,
    as RFC 9110 has it; several Authorization headers never match)."""
    given = b", ".join(v for k, v in scope["headers"] if k == b"authorization")
    scheme, _, credentials = given.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.lstrip(b" "), token)


class AdminToken:
    """Checks `Authorization: Bearer <admin_token>`; without a token, admin is off."""

    def __init__(self, token: str | None) -> None:
        self.expected = token.encode() if token is not None else None

    async def allows(self, scope: Scope, send: Send) -> bool:
        """True when the request carries the token; else answers 403 or 401 itself."""
        if self.expected is None:
            await send_json(send, 403, {"error": "admin endpoints are disabled: set "
                                                 "admin_token (EP_ADMIN_TOKEN) to enable them"})
            return False
        if carries_token(scope, self.expected):
            return True
        await send_json(send, 401, {"error": "missing or wrong admin token"},
                        extra=[(b"www-authenticate", b'Bearer realm="edge-personalizer"')])
        return False

    def carried(self, scope: Scope) -> bool:
        """Whether the request carries the token (False while admin is off); answers nothing."""
        return self.expected is not None and carries_token(scope, self.expected)


# Seconds a health check waits for the store and for the origin: it answers within a load
# balancer's probe timeout (commonly 2-5 s) even when either hangs, instead of the origin
# read timeout later, when probes have piled up.
STORE_PROBE_LIMIT = 0.5
ORIGIN_PROBE_LIMIT = 2.0


async def probe_origin(probe: OriginProbe, limit: float = ORIGIN_PROBE_LIMIT) -> ProbeResult:
    """The origin's probe, or "no answer" once `limit` seconds have passed."""
    with anyio.move_on_after(limit) as waited:
        return await probe()
    assert waited.cancelled_caught
    return ProbeResult(False, limit, f"no answer within {limit:g} s")


async def probe_store(store: Store, limit: float = STORE_PROBE_LIMIT) -> ProbeResult:
    """Whether the counter store answers a ping within `limit` seconds, how fast, and
    what it said. Never raises: whatever goes wrong is the answer."""
    started = time.perf_counter()
    try:
        with anyio.move_on_after(limit) as waited:
            await store.ping()
    except StoreError as exc:
        return ProbeResult(False, time.perf_counter() - started, str(exc))
    except Exception as exc:   # a bug, or what a driver raises unwrapped: still an answer
        return ProbeResult(False, time.perf_counter() - started,
                           f"{store.location}: {type(exc).__name__}: {exc}")
    if waited.cancelled_caught:
        return ProbeResult(False, limit, f"{store.location}: no answer within {limit:g} s")
    return ProbeResult(True, time.perf_counter() - started, "answers")


class _Probed:
    """A probe's answer, asked again at most every `ttl` seconds, by one request at a time
    (many load balancers polling the health check ask the origin and the store once a
    second at most; those arriving while a probe runs take its answer)."""

    def __init__(self, probe: Callable[[], Awaitable[ProbeResult]], ttl: float) -> None:
        self.probe = probe
        self.ttl = ttl
        self._last: tuple[float, ProbeResult] | None = None
        self._lock = anyio.Lock()

    async def result(self) -> ProbeResult:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] > self.ttl:
                self._last = (now, await self.probe())
            return self._last[1]


def _reloaded_since(asked: float, began: float, ended: float) -> bool:
    """Whether a reload begun after `asked` has ended (one begun before may have read the
    files before the edit it is asked for)."""
    return began >= asked and ended >= began


class Admin:
    """Liveness (the process answers), readiness (origin reachable, rules loaded; the
    counter store's state is told, but a store that is down never makes the server
    unready: no page waits for it), Prometheus metrics and rule reloads."""

    def __init__(self, *, metrics: Metrics, token: AdminToken,
                 origin_probe: OriginProbe | None = None, rules: RuleBook | None = None,
                 geo: GeoDatabaseInfo | None = None, probe_ttl: float = 1.0,
                 board: WorkerBoard | None = None, reload_wait: float = 10.0,
                 store: Store | None = None, flusher: Flusher | None = None,
                 server_pid: int | None = None, notes: Sequence[PageNotes] = (),
                 learning: Callable[[], dict[str, Any]] | None = None,
                 background: Callable[[], dict[str, Any]] | None = None) -> None:
        self.metrics = metrics
        self.board = board            # the other workers of this server, when there are any
        self.server_pid = server_pid  # the `serve` process this worker runs under, if any
        self.reload_wait = reload_wait
        self.token = token
        self.origin = (_Probed(functools.partial(probe_origin, origin_probe), probe_ttl)
                       if origin_probe is not None else None)
        self.store = (_Probed(functools.partial(probe_store, store), probe_ttl)
                      if store is not None else None)
        self.store_location = store.location if store is not None else None
        self.flusher = flusher
        self.rules = rules
        self.geo = geo
        self.notes = notes
        self.learning = learning   # this worker's learning loop: what of it fails
        self.background = background   # this worker's background tasks: which restart
        self.started = time.time()

    def routes(self) -> dict[str, Route]:
        ready = Route(self.ready)
        return {"/__ep/health/live": Route(self.live), "/__ep/health": ready,
                "/__ep/health/ready": ready, "/__ep/metrics": Route(self.scrape),
                "/__ep/reload": Route(self.reload, frozenset({"POST"}))}

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"})

    async def ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token.carried(scope):
            await send_json(send, *await self.health())
            return
        # What anyone may read (the proxy answers every visitor of the site): whether it
        # is ready, and which check fails; worked out alone (the origin's probe, cached).
        # The details (the origin's address in its errors, rule files and their warnings,
        # the store's location, the workers) are the operator's.
        reachable = self.origin is None or (await self.origin.result()).reachable
        await send_json(send, 200 if reachable else 503, {
            "status": "ready" if reachable else "not ready",
            "failing": [] if reachable else ["origin"],
            "details": "sent with the admin token (Authorization: Bearer ...)"
            if self.token.expected is not None else
            "sent once admin_token (EP_ADMIN_TOKEN) is set, with it"})

    def state(self) -> dict[str, Any]:
        """What this worker tells the others (published every second and after a reload)."""
        state: dict[str, Any] = {"metrics": self.metrics.render().decode("utf-8")}
        if self.rules is not None:
            state.update(rules_version=self.rules.current.version,
                         rules_loaded_at=self.rules.current.loaded_at,
                         rules_checked_at=self.rules.checked_at,
                         rules_began_at=self.rules.began_at,
                         last_error=self.rules.last_error)
        state.update({f"pages:{note.name}": note.own() for note in self.notes})
        return state

    def page_notes(self) -> dict[str, list[str]]:
        """What the pages every worker of the server served with the rules of this one
        tell of them (PageNotes), by name."""
        others: list[dict[str, Any]] = []
        if self.board is not None and self.rules is not None:
            version = self.rules.current.version
            others = [state for state in self.board.states()
                      if state.get("pid") != self.board.pid
                      and state.get("rules_version") == version]
        return {note.name: note.told([note.own(), *(state.get(f"pages:{note.name}") or {}
                                                    for state in others)])
                for note in self.notes}

    def told_of_pages(self) -> list[str]:
        """page_notes, one list."""
        return [told for notes in self.page_notes().values() for told in notes]

    async def scrape(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.token.allows(scope, send):
            return
        body = self.metrics.render()
        if self.board is not None:   # one view of the whole server, whichever worker answers
            # the other workers', and the counts of the workers gone (killed or stopped)
            body = combined_metrics([body.decode("utf-8"), *self.board.others_metrics()])
        await respond(send, 200, body, CONTENT_TYPE.encode(), [(b"cache-control", b"no-store")])

    async def reload(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.token.allows(scope, send):
            return
        if self.rules is None:
            await send_json(send, 409, {"error": "no rules directory configured"})
            return
        if self.server_pid is None:   # not run by `serve`: this app's rules alone
            ok: bool | None = await anyio.to_thread.run_sync(self.rules.reload)
        else:
            ok = await self._server_reloads()
        if ok is None:
            await send_json(send, 504, {
                "reloaded": False, "pending": True, "version": self.rules.current.version,
                "error": f"the server's workers had not all reloaded within "
                         f"{self.reload_wait:g} s; the reload goes on (see /__ep/health)"})
            return
        answer: dict[str, Any] = {"reloaded": ok, "version": self.rules.current.version,
                                  "error": self.rules.last_error}
        if self.board is not None:
            answer["workers"] = workers_rules(self.board, self.rules)
            answer["reloaded"] = ok and all(w["rules_version"] == answer["version"]
                                            for w in answer["workers"])
            if self.board.error is not None:
                answer["board"] = board_report(self.board)
        await send_json(send, 200 if ok else 422, answer)

    async def _server_reloads(self) -> bool | None:
        """Asks the server to reload (SIGHUP): its own rule book, which a worker replaced
        after a crash starts from, then every worker's, this one included. Waits until
        each worker has ended a reload begun since (taken or refused): whether this
        worker's was taken; None when they have not within reload_wait."""
        assert self.rules is not None and self.server_pid is not None
        rules, asked = self.rules, time.time()
        try:
            os.kill(self.server_pid, signal.SIGHUP)
        except OSError:   # the server is gone (this worker stops soon): this worker alone
            return await anyio.to_thread.run_sync(rules.reload)
        deadline = time.monotonic() + self.reload_wait
        while not (_reloaded_since(asked, rules.began_at, rules.checked_at) and (
                self.board is None or all(
                    _reloaded_since(asked, s.get("rules_began_at") or 0,
                                    s.get("rules_checked_at") or 0)
                    for s in self.board.states()))):
            if time.monotonic() > deadline:
                return None
            await anyio.sleep(0.05)
        return rules.last_error is None

    async def health(self) -> tuple[int, dict[str, Any]]:
        report: dict[str, Any] = {"uptime_seconds": round(time.time() - self.started, 1)}
        ready = True
        if self.origin is not None:
            origin = await self.origin.result()
            ready &= origin.reachable
            report["origin"] = {"reachable": origin.reachable,
                                "latency_ms": round(origin.seconds * 1000, 2),
                                "detail": origin.detail}
        if self.rules is not None:
            current = self.rules.current
            report["rules"] = {"loaded": True, "directory": str(self.rules.directory),
                               "version": current.version,
                               "loaded_at": _iso(current.loaded_at),
                               "files": current.file_count, "rules": len(current.rules),
                               "experiments": len(current.experiments),
                               "last_error": self.rules.last_error,
                               "warnings": [NO_RULE_FILES] * (not current.file_count)
                               + [str(n) for n in self.rules.notices()],
                               **self.page_notes()}
        else:
            report["rules"] = {"loaded": False, "detail": "no rules directory configured"}
        if self.store is not None:
            report["store"] = await self._store_report()
        if self.learning is not None:
            report["learning"] = self.learning()
        if self.background is not None:
            report["background"] = self.background()
        if self.geo is not None:
            report["geo"] = {"type": self.geo.database_type, "built": _iso(self.geo.build_epoch)}
        if self.board is not None:
            report["workers"] = workers_rules(self.board, self.rules)
            if self.board.error is not None:
                report["board"] = board_report(self.board)
        report["status"] = "ready" if ready else "not ready"
        return (200 if ready else 503), report

    async def _store_report(self) -> dict[str, Any]:
        assert self.store is not None
        store = await self.store.result()
        report: dict[str, Any] = {"location": self.store_location,
                                  "reachable": store.reachable,
                                  "latency_ms": round(store.seconds * 1000, 2),
                                  "detail": store.detail}
        if self.flusher is not None:   # this worker's writes
            report["writes"] = "ok" if self.flusher.healthy else "failing"
            if self.flusher.last_error is not None:   # a key in the way names itself here
                report["write_error"] = self.flusher.last_error
            report["counts_waiting"] = self.flusher.counters.held_keys
            report["counts_dropped"] = self.flusher.counters.dropped
        if not store.reachable or report.get("writes") == "failing":
            report["consequence"] = (
                "pages are served and personalized as before; counts wait in memory and are "
                "written when the store takes them again, and bandit weights and "
                "predictions stay as last read")
        return report


def workers_rules(board: WorkerBoard, rules: RuleBook | None) -> list[dict[str, Any]]:
    """What each worker of the server serves, and why not what the directory holds
    (the answering one's own even when it cannot publish it)."""
    states = board.states()
    if board.error is not None and all(s["pid"] != board.pid for s in states):
        states.append({"pid": board.pid,
                       "rules_version": rules.current.version if rules else None,
                       "last_error": rules.last_error if rules else None})
    return [{"pid": s["pid"], "rules_version": s.get("rules_version"),
             "last_error": s.get("last_error")} for s in states]


def board_report(board: WorkerBoard) -> dict[str, Any]:
    """What a board this worker cannot write to means for the server's answers."""
    return {"directory": str(board.directory), "writable": False,
            "detail": f"this worker's state cannot be written there: {board.error}",
            "consequence": "metrics, health and reload answers leave out the workers that "
                           "cannot publish, but for the one answering: counters can read "
                           "lower from one scrape to the next, and a reload cannot tell "
                           "whether they took it"}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
