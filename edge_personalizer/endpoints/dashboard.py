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

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import anyio
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.types import Receive, Scope, Send

from ..errors import StoreError
from ..learn.affinity import TABLE_NAME as MODEL_TABLE
from ..learn.affinity import AffinityModel, affinity_counts, key_of
from ..learn.bandit import TABLE_NAME as WEIGHTS_TABLE
from ..learn.bandit import WeightsTable
from ..learn.counters import ALL_VISITORS, EXPOSURE, CountKey, Tally, variant_totals
from ..learn.results import control_of, results
from ..learn.stats import goal_result
from ..learn.store import Store, Table, open_store
from ..proxy.pages import respond, wants_html
from ..rules.book import RuleBook
from ..rules.model import RuleSet
from .charts import line_chart, percent, uplift_bar
from .learning import RateLimit
from .responses import send_json
from .router import Route

BASE_PATH = "/__ep/dashboard"
SESSION_COOKIE = "ep_dashboard"
LOGIN_COOKIE = "ep_dashboard_login"   # the login form's token, sent back with the form
SESSION_SECONDS = 3600.0
INTERNAL_PREFIX = "ep:"   # counts kept under such names are not experiments (AFFINITY)
MAX_FORM_BYTES = 4096
ASSETS = Path(__file__).with_name("dashboard")
_METHODS = frozenset({"GET", "HEAD", "POST"})
_STATIC = {"dashboard.css": b"text/css; charset=utf-8",
           "dashboard.js": b"text/javascript; charset=utf-8",
           "favicon.svg": b"image/svg+xml"}
_SECURITY_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
     b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


# --- sessions -------------------------------------------------------------------------

class SessionSigner:
    """Signed, expiring session values: `<expires>.<nonce>.<mac>`, nothing kept on the
    server. The key is derived from the admin token."""

    def __init__(self, admin_token: str, *, lifetime: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(admin_token.encode(), b"edge-personalizer dashboard session",
                             hashlib.sha256).digest()
        self.lifetime = lifetime
        self.clock = clock

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, expires: int, nonce: str) -> str:
        payload = f"{expires}.{nonce}"
        return f"{payload}.{self._mac(payload)}"

    def issue(self) -> str:
        """A new session value, valid for `lifetime` seconds."""
        return self.sign(int(self.clock() + self.lifetime), secrets.token_urlsafe(12))

    def nonce_of(self, value: str) -> str | None:
        """The session's nonce when `value` is ours and unexpired, else None."""
        expires, _, rest = value.partition(".")
        nonce, _, mac = rest.partition(".")
        if not expires.isdigit() or not nonce or not mac:
            return None
        if not hmac.compare_digest(mac, self._mac(f"{expires}.{nonce}")):
            return None
        return nonce if int(expires) > self.clock() else None

    def form_token(self, nonce: str) -> str:
        """The token a session's forms carry (a cross-site page cannot read it)."""
        return self._mac(f"form.{nonce}")


def _cookies(scope: Scope) -> dict[str, str]:
    jar: dict[str, str] = {}
    for key, value in scope["headers"]:
        if key.lower() == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, sep, content = part.strip().partition("=")
                if sep:
                    jar.setdefault(name, content)
    return jar


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k.lower() == name), None)


def same_origin(scope: Scope) -> bool:
    """A POST from our own page: the browser's Sec-Fetch-Site says so, or its Origin names
    the host the request was sent to. A request with neither (a script, not a browser)
    passes here; the form token still has to match."""
    fetch_site = _header(scope, b"sec-fetch-site")
    if fetch_site is not None and fetch_site not in (b"same-origin", b"none"):
        return False
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    host = _header(scope, b"host") or b""
    return origin != b"null" and urlsplit(origin.decode("latin-1")).netloc.encode() == host


def _cookie_header(scope: Scope, name: str, value: str, max_age: int, path: str) -> bytes:
    # Secure when the browser is on https, as it says in Origin (behind a proxy that ends
    # TLS, the scheme here is http).
    on_https = scope.get("scheme") == "https" or \
        (_header(scope, b"origin") or b"").startswith(b"https://")
    secure = "; Secure" if on_https else ""
    return (f"{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; "
            f"SameSite=Strict{secure}").encode()


# --- what the pages show ----------------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    """Everything one rendering shows, read at one moment."""

    ruleset: RuleSet
    totals: Mapping[CountKey, Tally]
    results: dict[str, Any]      # exactly what GET /__ep/results answers
    taken_at: float
    store: str                   # the store's location (no password)
    last_error: str | None = None
    predictions: Table | None = None   # the published affinity model
    bandits: Table | None = None       # the published bandit weights

    def weights(self) -> WeightsTable | None:
        """The bandit weights as published (None: none, or unreadable)."""
        if self.bandits is None:
            return None
        try:
            return WeightsTable.decode(self.bandits.payload, self.bandits.version)
        except ValueError:
            return None


def make_snapshot(ruleset: RuleSet, totals: Mapping[CountKey, Tally], *, store: str,
                  taken_at: float, last_error: str | None = None,
                  predictions: Table | None = None, bandits: Table | None = None) -> Snapshot:
    """Judge the totals (scipy: call it off the event loop)."""
    return Snapshot(ruleset, totals, results(ruleset, totals), taken_at, store, last_error,
                    predictions, bandits)


async def read_snapshot(store: Store, ruleset: RuleSet, *, last_error: str | None = None,
                        clock: Callable[[], float] = time.time) -> Snapshot:
    """The store's totals and published tables, judged; raises StoreError."""
    totals = await store.totals()
    predictions = await store.table(MODEL_TABLE)
    bandits = await store.table(WEIGHTS_TABLE)
    return await anyio.to_thread.run_sync(
        lambda: make_snapshot(ruleset, totals, store=store.location, taken_at=clock(),
                              last_error=last_error, predictions=predictions,
                              bandits=bandits))


async def snapshot_of(store_url: str, ruleset: RuleSet) -> Snapshot:
    """A snapshot of the store at `store_url` (for `edge-personalizer report`); raises
    StoreError when it does not answer, or names an SQLite file that does not exist."""
    parts = urlsplit(store_url)
    if parts.scheme == "sqlite" and not Path(unquote(parts.path)).exists():
        raise StoreError(f"no store at {unquote(parts.path)}: nothing has been counted there "
                         "(pass --store URL or --data-dir DIR as the server has them)")
    store = open_store(store_url)
    try:
        return await read_snapshot(store, ruleset)
    finally:
        await store.close()


@dataclass(frozen=True)
class ExperimentSummary:
    """One line of the experiments list."""

    name: str
    status: str                 # running or bandit (in the rules), stopped (counted, since
                                # removed from the rules)
    exposed: int
    goal: str | None            # the goal it is judged on first
    leader: str | None          # None: too few conversions to tell
    chance: float | None        # the leader's chance to beat control (control: to beat the
    leader_is_control: bool     # best challenger)
    srm_p: float | None
    srm: bool
    slots: tuple[str, ...] = ()


def leader_of(goal: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """The variant ahead on a goal's results and its chance: the challenger most likely
    to beat control when that is above one half, else the control."""
    control = goal["control"]
    chances = [(v["chance_to_beat_control"], name) for name, v in goal["variants"].items()
               if name != control and v["chance_to_beat_control"] is not None]
    if not chances:
        return None, None
    chance, name = max(chances)
    return (name, chance) if chance >= 0.5 else (control, 1 - chance)


def summaries(snapshot: Snapshot) -> list[ExperimentSummary]:
    weights = snapshot.weights()
    bandits = set(weights.experiments) if weights is not None else set()
    out = []
    for experiment, result in zip(snapshot.ruleset.experiments,
                                  snapshot.results["experiments"], strict=True):
        goals = result["goals"]
        first = next(iter(goals), None)
        leader, chance = leader_of(goals[first]) if first else (None, None)
        srm_p = goals[first]["srm_p"] if first else None
        out.append(ExperimentSummary(
            experiment.name, "bandit" if experiment.name in bandits else "running",
            result["exposed"], first, leader, chance,
            leader == result["control"], srm_p, bool(first and goals[first]["srm"]),
            experiment.slots))
    known = ({e.name for e in snapshot.ruleset.experiments}
             | {r.name for r in snapshot.ruleset.rules})
    gone: dict[str, int] = {}
    for key, tally in snapshot.totals.items():
        if key.experiment not in known and key.goal == EXPOSURE \
                and not key.experiment.startswith(INTERNAL_PREFIX):
            gone[key.experiment] = gone.get(key.experiment, 0) + tally.exposures
    out += [ExperimentSummary(name, "stopped", exposed, None, None, None, False, None, False)
            for name, exposed in sorted(gone.items())]
    return out


def cumulative_rates(totals: Mapping[CountKey, Tally], experiment: str, goal: str,
                     variants: Iterable[str]) -> tuple[list[str], dict[str, list[int]],
                                                        dict[str, list[int]]]:
    """The days an experiment was counted on, and per variant its exposures and
    conversions on `goal` up to and including each day."""
    names = list(variants)
    days = sorted({k.day for k in totals if k.experiment == experiment})
    daily = {name: {day: [0, 0] for day in days} for name in names}
    for key, tally in totals.items():
        if key.experiment != experiment or key.variant not in daily:
            continue
        if key.goal == EXPOSURE:
            daily[key.variant][key.day][0] += tally.exposures
        elif key.goal == goal:
            daily[key.variant][key.day][1] += tally.conversions
    exposed: dict[str, list[int]] = {}
    converted: dict[str, list[int]] = {}
    for name in names:
        seen = won = 0
        exposed[name], converted[name] = [], []
        for day in days:
            seen += daily[name][day][0]
            won += daily[name][day][1]
            exposed[name].append(seen)
            converted[name].append(won)
    return days, exposed, converted


def _scale(rows: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
    lows = [r["uplift_low"] for r in rows if r["uplift_low"] is not None]
    highs = [r["uplift_high"] for r in rows if r["uplift_high"] is not None]
    return (min(lows, default=0.0), max(highs, default=0.0))


def _variant_rows(goal: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = [{"name": name, "control": name == goal["control"], **values}
            for name, values in goal["variants"].items()]
    scale = _scale(rows)
    for row in rows:
        row["bar"] = (Markup(uplift_bar(row["uplift"], row["uplift_low"], row["uplift_high"],
                                        scale=scale, label=row["name"]))
                      if row["uplift_low"] is not None else None)
        row["significant"] = row["uplift_low"] is not None and (
            row["uplift_low"] > 0 or row["uplift_high"] < 0)
    return rows


def experiment_view(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    """One experiment's page: per goal, the variants' table and the cumulative chart; per
    segment cell, the variants again. None when the rules have no such experiment."""
    found = [(e, r) for e, r in zip(snapshot.ruleset.experiments,
                                    snapshot.results["experiments"], strict=True)
             if e.name == name]
    if not found:
        return None
    experiment, result = found[0]
    weights = dict(experiment.weights)
    cells = sorted({k.cell for k in snapshot.totals if k.experiment == name} - {ALL_VISITORS})
    goals = []
    for goal_name, goal in result["goals"].items():
        days, exposed, converted = cumulative_rates(snapshot.totals, name, goal_name, weights)
        series = {v: [c / e if e else None for c, e in zip(converted[v], exposed[v],
                                                            strict=True)]
                  for v in weights}
        chart = Markup(line_chart(
            days, series, title=f"Cumulative conversion rate on {goal_name} per variant, "
                                "by day (UTC)")) \
            if any(goal["variants"][v]["converted"] for v in goal["variants"]) else None
        segments = []
        for cell in cells:
            judged = goal_result(variant_totals(snapshot.totals, name, goal_name, cell=cell),
                                 weights, control=control_of(experiment)).as_json()
            segments.append({"cell": cell, "rows": _variant_rows(judged)})
        goals.append({
            "name": goal_name, "control": goal["control"], "srm": goal["srm"],
            "srm_p": goal["srm_p"], "rows": _variant_rows(goal),
            "has_value": any(v["value_sum"] for v in goal["variants"].values()),
            "chart": chart, "days": days, "series": series, "exposed": exposed,
            "converted": converted, "segments": segments})
    leader, chance = leader_of(result["goals"][experiment.goals[0]]) \
        if experiment.goals else (None, None)
    return {"name": name, "result": result, "experiment": experiment, "goals": goals,
            "weights": weights, "cells": cells, "leader": leader, "chance": chance,
            "srm": any(g["srm"] for g in goals),
            "bandit": allocation_view(snapshot, name, list(weights))}


def allocation_view(snapshot: Snapshot, name: str,
                    variants: list[str]) -> dict[str, Any] | None:
    """A bandit experiment's allocation: each variant's share of the day's exposures, day
    by day, with the last reweight marked, and the weights now published per cell. None
    when no weights are published for it."""
    table = snapshot.weights()
    held = table.experiments.get(name) if table is not None else None
    if held is None:
        return None
    days, exposed, _ = cumulative_rates(snapshot.totals, name, EXPOSURE, variants)
    shares: dict[str, list[float | None]] = {v: [] for v in variants}
    for i in range(len(days)):
        daily = {v: exposed[v][i] - (exposed[v][i - 1] if i else 0) for v in variants}
        total = sum(daily.values())
        for v in variants:
            shares[v].append(daily[v] / total if total else None)
    reweighted = time.strftime("%Y-%m-%d", time.gmtime(held.updated_at))
    marks = [(days.index(reweighted), f"reweighted (v{held.version})")] \
        if reweighted in days else []
    chart = Markup(line_chart(days, shares, title=f"Share of each day's visitors per variant "
                                                 f"of {name} (UTC days)", y_max=1.0,
                              marks=marks)) if days else None
    cells = [{"cell": cell, "reason": c.reason, "exposures": c.exposures,
              "weights": dict(c.weights)} for cell, c in sorted(held.cells.items())]
    return {"chart": chart, "days": days, "shares": shares, "version": held.version,
            "updated_at": held.updated_at, "holdout": held.holdout,
            "starting": dict(held.starting), "cells": cells, "variants": variants}


def predictions_view(snapshot: Snapshot, *, top: int = 25) -> dict[str, Any]:
    """The published "visitors like you" model: its pairs with the most support (page
    views counted for visitors with that pair), what it predicts for each, and the most
    popular categories."""
    table = snapshot.predictions
    if table is None:
        return {"state": "none"}
    try:
        model = AffinityModel.decode(table.payload, table.version)
    except ValueError as exc:
        return {"state": "unreadable", "table": table, "error": str(exc)}
    counts = affinity_counts(snapshot.totals)
    pairs = sorted(((k, sum(v.values())) for k, v in counts.items() if len(k) == 2),
                   key=lambda item: (-item[1], item[0]))
    rows = [{"pair": pair, "support": support, "next": model.pairs.get(key_of(pair), ())}
            for pair, support in pairs[:top]]
    return {"state": "model", "table": table, "model": model, "rows": rows,
            "pairs": len(model.pairs), "counted_pairs": len(pairs)}


def segments_view(snapshot: Snapshot) -> dict[str, Any]:
    """What each rule reached (from the results) and each segment cell (from the totals)."""
    counted = {r["name"]: r for r in snapshot.results["rules"]}
    goals = sorted({g for r in counted.values() for v in r["variants"].values()
                    for g in v["goals"]})
    rules = [{"name": rule.name, "source": rule.source,
              "variants": counted[rule.name]["variants"] if rule.name in counted else {}}
             for rule in snapshot.ruleset.rules]
    cells: dict[str, dict[str, int]] = {}
    for key, tally in snapshot.totals.items():
        if key.experiment.startswith(INTERNAL_PREFIX):
            continue
        row = cells.setdefault(key.cell, {})
        name = "exposed" if key.goal == EXPOSURE else key.goal
        row[name] = row.get(name, 0) + (tally.exposures if key.goal == EXPOSURE
                                        else tally.conversions)
    cell_goals = sorted({g for row in cells.values() for g in row} - {"exposed"})
    return {"rules": rules, "goals": goals, "cells": sorted(cells.items()),
            "cell_goals": cell_goals}


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


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else percent(value, digits)


def _signed(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else percent(value, digits, signed=True)


def _count(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


class Pages:
    """The dashboard's pages as HTML, from a Snapshot (templates and styles of the
    package's dashboard/ folder)."""

    def __init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(ASSETS / "templates"), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True,
                               lstrip_blocks=True)
        self.env.filters.update(pct=_pct, signed=_signed, count=_count, iso=_iso, utc=_utc,
                                p=_p)
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
        anchors = {e.name: f"experiment-{n}"
                   for n, e in enumerate(snapshot.ruleset.experiments, start=1)}
        views = [(anchors[e.name], experiment_view(snapshot, e.name))
                 for e in snapshot.ruleset.experiments]
        return self._render("report.html", links=Links(one_file=True, anchors=anchors),
                            inline=True, snapshot=snapshot, title="Results", current="",
                            form_token=None, summaries=summaries(snapshot), views=views,
                            segments=segments_view(snapshot),
                            predictions=predictions_view(snapshot))


def render_text(report: Mapping[str, Any]) -> str:
    """`edge-personalizer report`'s table: each experiment and goal, each variant's
    numbers against the control, warnings in words; then what each rule reached."""
    lines = [f"Rules version {report['rules_version']}"]
    for experiment in report["experiments"]:
        lines += ["", f"{experiment['name']}: {experiment['exposed']:,} visitors exposed"]
        if not experiment["goals"]:
            lines.append("  no goals: add goals: [...] to the experiment to judge it")
        for goal_name, goal in experiment["goals"].items():
            valued = any(v["value_sum"] for v in goal["variants"].values())
            lines.append(f"  goal {goal_name}")
            lines.append(f"    {'variant':<16} {'exposed':>9} {'converted':>9} {'rate':>7} "
                         f"{'95% interval':>17} {'uplift':>8} {'uplift interval':>19} "
                         f"{'chance':>7} {'risk':>6}" + ("  value/visitor" if valued else ""))
            for name, v in goal["variants"].items():
                interval = (f"{_pct(v['rate_low'])}..{_pct(v['rate_high'])}"
                            if v["rate_low"] is not None else "–")
                uplift = (f"{_signed(v['uplift_low'])}..{_signed(v['uplift_high'])}"
                          if v["uplift_low"] is not None else "–")
                shown = name if len(name) <= 16 else name[:15] + "…"
                lines.append(
                    f"    {shown:<16} {v['exposed']:>9,} {v['converted']:>9,} "
                    f"{_pct(v['rate']):>7} {interval:>17} "
                    f"{'control' if name == goal['control'] else _signed(v['uplift']):>8} "
                    f"{uplift:>19} {_pct(v['chance_to_beat_control']):>7} "
                    f"{_pct(v['risk'], 2):>6}"
                    + (f"  {_count(v['mean_value']):>13}" if valued else ""))
            leader, chance = leader_of(goal)
            if leader is not None and chance is not None:
                lines.append(f"    ahead: {leader} ({_pct(chance)} chance to "
                             + ("beat control)" if leader != goal["control"]
                                else "beat the best challenger)"))
            if goal["srm"]:
                lines.append(f"    WARNING sample ratio mismatch (p = {_p(goal['srm_p'])}): "
                             "exposures do not follow the weights; do not trust these "
                             "numbers until the cause is found")
    if report["rules"]:
        lines += ["", "Rules (visitors reached; conversions per goal)"]
        for rule in report["rules"]:
            for name, v in rule["variants"].items():
                reached = ", ".join(f"{g} {c['converted']:,} ({_pct(c['rate'])})"
                                    for g, c in v["goals"].items())
                lines.append(f"  {rule['name']} [{name}]: {v['exposed']:,} exposed"
                             + (f"; {reached}" if reached else ""))
    return "\n".join(lines)


# --- the endpoint -------------------------------------------------------------------------

class Dashboard:
    """`/__ep/dashboard` and below: the pages (GET), sign in (GET/POST .../login), sign
    out (POST .../logout), and the stylesheet and script (.../static/)."""

    def __init__(self, *, store: Store, rules: RuleBook | None, token: str | None,
                 pages: Pages | None = None, session_seconds: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time,
                 login_limit: RateLimit | None = None) -> None:
        self.store = store
        self.rules = rules
        self.token = token
        self.pages = pages or Pages()
        self.sessions = SessionSigner(token, lifetime=session_seconds, clock=clock) \
            if token is not None else None
        self.clock = clock
        self.login_limit = login_limit or RateLimit(rate=0.5, burst=10)

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
        value = _cookies(scope).get(SESSION_COOKIE)
        nonce = sessions.nonce_of(value) if value is not None else None
        if page == "logout" and method == "POST":
            await self._logout(scope, receive, send, sessions, nonce)
            return
        if nonce is None and not _bearer(scope, token):
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
        cookie = _cookie_header(scope, LOGIN_COOKIE, login_token, 600, BASE_PATH)
        await self._html(scope, send, status, body, [(b"set-cookie", cookie)])

    async def _login(self, scope: Scope, receive: Receive, send: Send,
                     sessions: SessionSigner, token: str) -> None:
        if not same_origin(scope):
            await self._html(scope, send, 403, self.pages.message(
                "Refused", "A sign-in from another site's page is refused."))
            return
        form = await _read_form(receive)
        expected = _cookies(scope).get(LOGIN_COOKIE)
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
            (b"set-cookie", _cookie_header(scope, SESSION_COOKIE, session,
                                           int(sessions.lifetime), BASE_PATH)),
            (b"set-cookie", _cookie_header(scope, LOGIN_COOKIE, "", 0, BASE_PATH)),
            *_SECURITY_HEADERS])

    async def _logout(self, scope: Scope, receive: Receive, send: Send,
                      sessions: SessionSigner, nonce: str | None) -> None:
        form = await _read_form(receive)
        if nonce is None:   # no session (expired already): nothing to end, no harm done
            await respond(send, 303, b"", b"text/plain; charset=utf-8", [
                (b"location", f"{BASE_PATH}/login".encode()),
                (b"set-cookie", _cookie_header(scope, SESSION_COOKIE, "", 0, BASE_PATH)),
                *_SECURITY_HEADERS])
            return
        if form is None or not same_origin(scope) or not hmac.compare_digest(
                form.get("form_token", ""), sessions.form_token(nonce)):
            await self._html(scope, send, 403, self.pages.message(
                "Refused", "Signing out needs the button on a dashboard page."))
            return
        await respond(send, 303, b"", b"text/plain; charset=utf-8", [
            (b"location", f"{BASE_PATH}/login?signed-out".encode()),
            (b"set-cookie", _cookie_header(scope, SESSION_COOKIE, "", 0, BASE_PATH)),
            *_SECURITY_HEADERS])

    async def _show(self, scope: Scope, send: Send, page: str, form_token: str | None) -> None:
        if self.rules is None:
            await self._html(scope, send, 409, self.pages.message(
                "No rules", "No rules directory is configured, so there are no experiments "
                "to show.", form_token=form_token))
            return
        try:
            snapshot = await read_snapshot(self.store, self.rules.current,
                                           last_error=self.rules.last_error, clock=self.clock)
        except StoreError as exc:
            await self._html(scope, send, 503, self.pages.message(
                "Store unavailable", f"The store does not answer: {exc}. Counting goes on "
                "in memory; try again in a few seconds.", form_token=form_token),
                [(b"retry-after", b"5")])
            return
        body = await anyio.to_thread.run_sync(self._page, snapshot, page, form_token)
        if body is None:
            await self._html(scope, send, 404, self.pages.message(
                "Not found", "No such page or experiment in the current rules.",
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


def _bearer(scope: Scope, token: str) -> bool:
    """The request carries `Authorization: Bearer <admin token>` (a script)."""
    given = b", ".join(v for k, v in scope["headers"] if k.lower() == b"authorization")
    return bool(given) and hmac.compare_digest(given, f"Bearer {token}".encode())


def _safe_next(path: str) -> str:
    """Only a dashboard page to go back to after signing in (never another site)."""
    if path == BASE_PATH or (path.startswith(BASE_PATH + "/") and "//" not in path
                             and "\\" not in path and not path.startswith(
                                 BASE_PATH + "/login")):
        return path
    return ""


async def _read_form(receive: Receive) -> dict[str, str] | None:
    """A small urlencoded form body (None past MAX_FORM_BYTES or unreadable)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += bytes(message.get("body", b""))
        if len(body) > MAX_FORM_BYTES:
            return None
        if not message.get("more_body", False):
            break
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return {name: values[0] for name, values in fields.items()}
