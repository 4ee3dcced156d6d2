"""The dashboard: /__ep/dashboard, the results as pages a marketer reads, behind the admin
token (issue 17); and the same pages as one file (`edge-personalizer report --html`).

Every number comes from `learn.results.results` over the store's totals, the same JSON as
`GET /__ep/results`; the pages add cumulative rates per day and per-segment tables from the
same totals. Pages are rendered on the server (Jinja2, autoescaped) with charts drawn as
SVG, so they show everything without JavaScript; the one small script only shows times in
the viewer's time zone. Nothing is loaded from another host.

Access: `Authorization: Bearer <admin token>` (scripts), or a login form that sets a signed
session cookie (browsers): HMAC-SHA256 with a key made from the admin token, so every
worker and instance with the same token accepts it, and changing the token logs everyone
out. POSTs are checked for their origin and carry a form token; pages are never cached.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
from markupsafe import Markup
from starlette.types import Receive, Scope, Send

from ..errors import StoreError
from ..learn.store import Store
from ..proxy.pages import respond, wants_html
from ..rules.book import RuleBook
from .admin import carries_token
from .charts import span
from .dashboard_session import (
    SESSION_SECONDS,
    SessionSigner,
    cookie_header,
    request_cookies,
    same_origin,
)
from .dashboard_views import (
    Snapshot,
    experiment_view,
    predictions_view,
    read_snapshot,
    segments_view,
    summaries,
)
from .learning import RateLimit
from .report import amount, count, p_value, pct, points, signed
from .responses import read_small_body, send_json
from .router import Route

BASE_PATH = "/__ep/dashboard"
SESSION_COOKIE = "ep_dashboard"
LOGIN_COOKIE = "ep_dashboard_login"   # the login form's token, sent back with the form
MAX_FORM_BYTES = 4096
ASSETS = Path(__file__).with_name("dashboard")
_METHODS = frozenset({"GET", "HEAD", "POST"})
_STATIC = MappingProxyType({"dashboard.css": b"text/css; charset=utf-8",
                           "dashboard.js": b"text/javascript; charset=utf-8",
                           "favicon.svg": b"image/svg+xml"})
_SECURITY_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)

# --- rendering --------------------------------------------------------------------------

@dataclass(frozen=True)
class Links:
    """Where the pages point: the served routes, or anchors within one saved file."""

    one_file: bool = False
    anchors: Mapping[str, str] = field(default_factory=dict)

    def home(self) -> str:
        return "#experiments" if self.one_file else BASE_PATH

    def segments(self) -> str:
        return "#segments" if self.one_file else f"{BASE_PATH}/segments"

    def predictions(self) -> str:
        return "#predictions" if self.one_file else f"{BASE_PATH}/predictions"

    def experiment(self, name: str) -> str:
        if self.one_file:
            return "#" + self.anchors.get(name, "experiments")
        return f"{BASE_PATH}/experiments/{quote(name, safe='')}"

    def static(self, name: str) -> str:
        return f"{BASE_PATH}/static/{name}"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


class Pages:
    """The dashboard's pages as HTML, from a Snapshot (templates and styles of the
    package's dashboard/ folder)."""

    def __init__(self) -> None:
        from jinja2 import Environment, FileSystemLoader, StrictUndefined

        self.env = Environment(loader=FileSystemLoader(ASSETS / "templates"), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(pct=pct, signed=signed, span=span, points=points, count=count,
                                amount=amount, iso=_iso, utc=_utc, p=p_value)
        self.static = {name: (ASSETS / "static" / name).read_bytes() for name in _STATIC}

    def _render(self, template: str, *, links: Links, inline: bool = False,
                **context: Any) -> str:
        assets = {"css": Markup(self.static["dashboard.css"].decode()),
                  "js": Markup(self.static["dashboard.js"].decode())} if inline else {}
        return self.env.get_template(template).render(links=links, inline=inline, **assets,
                                                      **context)

    def _page(self, snapshot: Snapshot, partial: str, title: str, current: str, *,
              form_token: str | None, **context: Any) -> str:
        return self._render("page.html", links=Links(), snapshot=snapshot, partial=partial,
                            title=title, current=current, form_token=form_token,
                            **context)

    def login(self, *, login_token: str, error: str | None = None, next_path: str = "",
              status: str | None = None) -> str:
        return self._render("login.html", links=Links(), title="Sign in", current="login",
                            login_token=login_token, error=error, next_path=next_path,
                            status=status, form_token=None)

    def message(self, title: str, text: str, *, form_token: str | None = None) -> str:
        return self._render("message.html", links=Links(), title=title, text=text,
                            current="", form_token=form_token)

    def experiments(self, snapshot: Snapshot, *, form_token: str | None = None) -> str:
        return self._page(snapshot, "_experiments.html", "Experiments", "experiments",
                          form_token=form_token, summaries=summaries(snapshot))

    def experiment(self, snapshot: Snapshot, name: str, *,
                   form_token: str | None = None) -> str | None:
        view = experiment_view(snapshot, name)
        if view is None:
            return None
        return self._page(snapshot, "_experiment.html", f"Experiment {name}", "experiments",
                          form_token=form_token, view=view)

    def segments(self, snapshot: Snapshot, *, form_token: str | None = None) -> str:
        return self._page(snapshot, "_segments.html", "Segments and rules", "segments",
                          form_token=form_token, segments=segments_view(snapshot))

    def predictions(self, snapshot: Snapshot, *, form_token: str | None = None) -> str:
        return self._page(snapshot, "_predictions.html", "Predictions", "predictions",
                          form_token=form_token, predictions=predictions_view(snapshot))

    def one_file(self, snapshot: Snapshot) -> str:
        """Every page in one self-contained document (styles and script inline)."""
        names = [e["name"] for e in snapshot.results["experiments"]]   # stopped ones too
        anchors = {name: f"experiment-{n}" for n, name in enumerate(names, start=1)}
        views = [(anchors[name], experiment_view(snapshot, name)) for name in names]
        return self._render("report.html", links=Links(one_file=True, anchors=anchors),
                            inline=True, snapshot=snapshot, title="Results", current="",
                            form_token=None, summaries=summaries(snapshot), views=views,
                            segments=segments_view(snapshot),
                            predictions=predictions_view(snapshot))


# --- the endpoint -------------------------------------------------------------------------

class Dashboard:
    """`/__ep/dashboard` and below: the pages (GET), sign in (GET/POST .../login), sign
    out (POST .../logout), and the stylesheet and script (.../static/)."""

    def __init__(self, *, store: Store, rules: RuleBook | None, token: str | None,
                 pages: Pages | None = None, session_seconds: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time,
                 login_limit: RateLimit | None = None,
                 page_notes: Callable[[], list[str]] | None = None) -> None:
        self.store = store
        self.rules = rules
        self.page_notes = page_notes   # what the pages served tell of the rules
        self.token = token
        self._pages = pages
        self.sessions = SessionSigner(token, lifetime=session_seconds, clock=clock) \
            if token is not None else None
        self.clock = clock
        self.login_limit = login_limit or RateLimit(rate=0.5, burst=10)

    @property
    def pages(self) -> Pages:
        """The templates, loaded (with jinja2) when the dashboard is first asked for: a
        worker whose dashboard nobody opens keeps neither in memory."""
        if self._pages is None:
            self._pages = Pages()
        return self._pages

    def routes(self) -> dict[str, Route]:
        return {BASE_PATH: Route(self.serve, _METHODS)}

    def prefixes(self) -> dict[str, Route]:
        return {BASE_PATH + "/": Route(self.serve, _METHODS)}

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        page = scope["path"][len(BASE_PATH):].strip("/")
        method = scope["method"]
        if page.startswith("static/"):
            await self._static(scope, send, page.removeprefix("static/"))
            return
        sessions, token = self.sessions, self.token
        if sessions is None or token is None:
            await self._html(scope, send, 403, self.pages.message(
                "Dashboard disabled", "The dashboard is behind the admin token: set "
                "admin_token (EP_ADMIN_TOKEN) to enable it."))
            return
        if page == "login":
            await (self._login(scope, receive, send, sessions, token) if method == "POST"
                   else self._login_form(scope, send))
            return
        value = request_cookies(scope).get(SESSION_COOKIE)
        nonce = sessions.nonce_of(value) if value is not None else None
        if page == "logout" and method == "POST":
            await self._logout(scope, receive, send, sessions, nonce)
            return
        if nonce is None and not carries_token(scope, token.encode()):
            await self._refuse(scope, send)
            return
        if method == "POST":
            await send_json(send, 405, {"error": "use GET"}, extra=[(b"allow", b"GET, HEAD")])
            return
        await self._show(scope, send, page,
                         sessions.form_token(nonce) if nonce is not None else None)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        """Browsers go to the sign-in form; scripts get 401."""
        if scope["method"] in ("GET", "HEAD") and wants_html(scope["headers"]):
            target = f"{BASE_PATH}/login?next={quote(scope['path'], safe='/')}"
            await respond(send, 303, b"", b"text/plain; charset=utf-8",
                          [(b"location", target.encode()), *_SECURITY_HEADERS])
            return
        await send_json(send, 401, {"error": "missing or wrong admin token"},
                        extra=[(b"www-authenticate", b'Bearer realm="edge-personalizer"')])

    async def _html(self, scope: Scope, send: Send, status: int, body: str,
                    extra: list[tuple[bytes, bytes]] | None = None) -> None:
        await respond(send, status, body.encode(), b"text/html; charset=utf-8",
                      [*_SECURITY_HEADERS, *(extra or [])], head=scope["method"] == "HEAD")

    async def _static(self, scope: Scope, send: Send, name: str) -> None:
        if name not in _STATIC:
            await respond(send, 404, b"Not found\n", b"text/plain; charset=utf-8",
                          _SECURITY_HEADERS)
            return
        await respond(send, 200, self.pages.static[name], _STATIC[name], _SECURITY_HEADERS,
                      head=scope["method"] == "HEAD")

    async def _login_form(self, scope: Scope, send: Send, *, error: str | None = None,
                          status: int = 200, next_path: str | None = None) -> None:
        login_token = secrets.token_urlsafe(16)
        if next_path is None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            next_path = _safe_next(query.get("next", [""])[0])
        signed_out = "signed-out" in scope.get("query_string", b"").decode("latin-1")
        body = self.pages.login(login_token=login_token, error=error, next_path=next_path,
                                status="You are signed out." if signed_out else None)
        cookie = cookie_header(scope, LOGIN_COOKIE, login_token, 600, BASE_PATH)
        await self._html(scope, send, status, body, [(b"set-cookie", cookie)])

    async def _login(self, scope: Scope, receive: Receive, send: Send,
                     sessions: SessionSigner, token: str) -> None:
        if not same_origin(scope):
            await self._html(scope, send, 403, self.pages.message(
                "Refused", "A sign-in from another site's page is refused."))
            return
        form = await _read_form(receive)
        expected = request_cookies(scope).get(LOGIN_COOKIE)
        if form is None or expected is None or not hmac.compare_digest(
                form.get("login_token", ""), expected):
            await self._login_form(scope, send, status=403, next_path="",
                                   error="The form had expired: please sign in again.")
            return
        client = scope.get("client")
        if not self.login_limit.allows(client[0] if client else "-"):
            await self._login_form(scope, send, status=429, next_path="",
                                   error="Too many attempts: wait a minute and try again.")
            return
        next_path = _safe_next(form.get("next", ""))
        if not hmac.compare_digest(form.get("token", "").encode(), token.encode()):
            await self._login_form(scope, send, status=401, next_path=next_path,
                                   error="That is not the admin token.")
            return
        session = sessions.issue()
        await respond(send, 303, b"", b"text/plain; charset=utf-8", [
            (b"location", quote(next_path or BASE_PATH, safe="/").encode()),
            (b"set-cookie", cookie_header(scope, SESSION_COOKIE, session,
                                           int(sessions.lifetime), BASE_PATH)),
            (b"set-cookie", cookie_header(scope, LOGIN_COOKIE, "", 0, BASE_PATH)),
            *_SECURITY_HEADERS])

    async def _logout(self, scope: Scope, receive: Receive, send: Send,
                      sessions: SessionSigner, nonce: str | None) -> None:
        form = await _read_form(receive)
        if nonce is None:   # no session (expired already): nothing to end, no harm done
            await respond(send, 303, b"", b"text/plain; charset=utf-8", [
                (b"location", f"{BASE_PATH}/login".encode()),
                (b"set-cookie", cookie_header(scope, SESSION_COOKIE, "", 0, BASE_PATH)),
                *_SECURITY_HEADERS])
            return
        if form is None or not same_origin(scope) or not hmac.compare_digest(
                form.get("form_token", ""), sessions.form_token(nonce)):
            await self._html(scope, send, 403, self.pages.message(
                "Refused", "Signing out needs the button on a dashboard page."))
            return
        await respond(send, 303, b"", b"text/plain; charset=utf-8", [
            (b"location", f"{BASE_PATH}/login?signed-out".encode()),
            (b"set-cookie", cookie_header(scope, SESSION_COOKIE, "", 0, BASE_PATH)),
            *_SECURITY_HEADERS])

    async def _show(self, scope: Scope, send: Send, page: str, form_token: str | None) -> None:
        if self.rules is None:
            await self._html(scope, send, 409, self.pages.message(
                "No rules", "No rules directory is configured, so there are no experiments "
                "to show.", form_token=form_token))
            return
        try:
            snapshot = await read_snapshot(
                self.store, self.rules.current, last_error=self.rules.last_error,
                notices=(*self.rules.notices(),
                         *(self.page_notes() if self.page_notes else ())),
                clock=self.clock)
        except StoreError as exc:
            later = " Counting goes on in memory; try again in a few seconds." \
                if exc.passes else ""
            await self._html(scope, send, 503, self.pages.message(
                "Store unavailable", f"The store does not answer: {str(exc).rstrip('.')}."
                + later, form_token=form_token), [(b"retry-after", b"5")] if exc.passes else [])
            return
        body = await anyio.to_thread.run_sync(self._page, snapshot, page, form_token)
        if body is None:
            await self._html(scope, send, 404, self.pages.message(
                "Not found", "No such page, or no experiment of that name in the rules "
                "or the store.",
                form_token=form_token))
            return
        await self._html(scope, send, 200, body)

    def _page(self, snapshot: Snapshot, page: str, form_token: str | None) -> str | None:
        if page == "":
            return self.pages.experiments(snapshot, form_token=form_token)
        if page == "segments":
            return self.pages.segments(snapshot, form_token=form_token)
        if page == "predictions":
            return self.pages.predictions(snapshot, form_token=form_token)
        if page.startswith("experiments/"):
            return self.pages.experiment(snapshot, page.removeprefix("experiments/"),
                                         form_token=form_token)
        return None


def _safe_next(path: str) -> str:
    """Only a dashboard page to go back to after signing in (never another site)."""
    if path == BASE_PATH or (path.startswith(BASE_PATH + "/") and "//" not in path
                             and "\\" not in path and not path.startswith(
                                 BASE_PATH + "/login")):
        return path
    return ""


async def _read_form(receive: Receive) -> dict[str, str] | None:
    """A small urlencoded form body (None past MAX_FORM_BYTES or unreadable)."""
    body = await read_small_body(receive, MAX_FORM_BYTES)
    if body is None:
        return None
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return {name: values[0] for name, values in fields.items()}
