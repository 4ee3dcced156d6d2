"""The dashboard through the real server, on counts from a replayed population: signing
in and out, refusals, headers, the numbers against /__ep/results, and the pages in a
real headless Chromium (Debian's `chromium`; without it these tests fail)."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import pytest
import websockets

from edge_personalizer.config import load_settings
from edge_personalizer.endpoints.charts import percent
from edge_personalizer.endpoints.dashboard import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Links,
    Pages,
)
from edge_personalizer.endpoints.dashboard_session import SessionSigner
from edge_personalizer.endpoints.dashboard_views import (
    Snapshot,
    make_snapshot,
    summaries,
)
from edge_personalizer.endpoints.verdicts import leader_of
from edge_personalizer.learn.affinity import AFFINITY, affinity_counts, build_model, record
from edge_personalizer.learn.affinity import TABLE_NAME as MODEL_TABLE
from edge_personalizer.learn.bandit import TABLE_NAME as WEIGHTS_TABLE
from edge_personalizer.learn.bandit import BanditSpec, WeightsTable, experiment_weights
from edge_personalizer.learn.catalog import GoalCatalog
from edge_personalizer.learn.counters import INTERNAL_PREFIX, Accumulator, CountKey, Tally
from edge_personalizer.learn.store import Table, open_store, sqlite_url
from edge_personalizer.replay import LoggedRequest, Replay
from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.model import RuleSet
from edge_personalizer.rules.notices import notices

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..factories import counted
from ..learn.test_results import experiment as experiment_of
from ..servers import Server, free_port, start_proxy
from . import proxy_on_own_rules

ARTIFACTS = Path(os.environ.get("EP_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) \
    / "dashboard"
BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/17.4 Safari/605.1.15")
HOSTILE = "<script>alert(1)</script>"
RATES = {"control": 0.10, "bold": 0.17}
DAYS = 5
VISITORS = 2000
START = 1_794_960_000.0   # 2026-11-18 00:00 UTC: the visits fall on DAYS known days

RULES = f"""
slots:
  hero: {{}}
  banner: {{}}
  promo: {{}}
rules:
  - name: newsletter-promo
    when: {{referral.medium: email}}
    then:
      promo: {{html: "<p>Welcome, reader</p>"}}
experiments:
  - name: hero-test
    slot: hero
    variants:
      control: {{weight: 50}}
      bold: {{weight: 50, html: "<h1>Bold</h1>"}}
    goals: [purchase]
  - name: banner-test
    slot: banner
    variants:
      control: {{weight: 50}}
      "{HOSTILE}": {{weight: 50, html: "<p>New banner</p>"}}
    goals: [purchase]
goals:
  purchase:
    when: {{request.path: /checkout/thanks}}
    value: {{query: total}}
"""


@dataclass
class Population:
    rules: Path
    data: Path
    visitors: int


async def _replay(rules: Path, data: Path) -> None:
    """Visitors over DAYS days; bold converts at 16%, control at 10%; every tenth comes
    from the newsletter."""
    replayer = Replay(load_settings({}, rules_dir=rules, data_dir=data,
                                    profile_keys=PROFILE_KEY))
    rng = random.Random(17)
    for i in range(VISITORS):
        at = START + i * DAYS * 86_400 / VISITORS
        query = "?utm_source=newsletter&utm_medium=email" if i % 10 == 0 else ""
        shown = await replayer.request(LoggedRequest(
            url=f"https://shop.example/{query}", time=at, visitor=f"v{i}",
            headers={"user-agent": BROWSER}))
        variant = "bold" if b"<h1>Bold</h1>" in shown.body else "control"
        if rng.random() < RATES[variant]:
            await replayer.request(LoggedRequest(
                url=f"https://shop.example/checkout/thanks?total={10 + i % 7}",
                time=at + 60, visitor=f"v{i}", headers={"user-agent": BROWSER}))
    await replayer.finish()


REWEIGHED_AT = START + 3 * 86_400 + 100   # on the fourth day


async def _publish_learning(data: Path) -> None:
    """What the trainer publishes: bandit weights for hero-test from its counts, and a
    model from counted interests (40 page views after running + trail, 25 after hiking)."""
    store = open_store(sqlite_url(data / "ep.db"))
    try:
        counters = Accumulator()
        for _ in range(40):
            record(counters, ("running", "trail"), ["shoes"])
        for _ in range(25):
            record(counters, ("hiking",), ["boots"])
        counters.collect()
        await store.flush(counters.pending_batch(10_000))
        totals = await store.totals()
        model = build_model(affinity_counts(totals), min_support=20, built_at=time.time())
        await store.publish(MODEL_TABLE, model.encode())
        spec = BanditSpec("hero-test", (("control", 50.0), ("bold", 50.0)), "purchase",
                          burn_in=100)
        weights = WeightsTable().with_experiment(
            "hero-test", experiment_weights(spec, totals, version=3, now=REWEIGHED_AT))
        await store.publish(WEIGHTS_TABLE, weights.encode())
    finally:
        await store.close()


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Population:
    root = tmp_path_factory.mktemp("dashboard")
    rules, data = root / "rules", root / "data"
    rules.mkdir()
    (rules / "site.yaml").write_text(RULES)
    anyio.run(_replay, rules, data)
    anyio.run(_publish_learning, data)
    return Population(rules, data, VISITORS)


@pytest.fixture(scope="module")
def board(origin: Server, server_logs: Path, population: Population) -> Iterator[Server]:
    """The real server over the replayed population's store."""
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(population.rules),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_DATA_DIR": str(population.data),
                              "EP_STORE_FLUSH_INTERVAL": "0.2"})
    yield server
    server.stop()


def _results(server: Server) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/__ep/results",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    report: dict[str, Any] = response.json()
    return report


def _login(client: httpx.Client) -> httpx.Response:
    form = client.get("/__ep/dashboard/login")
    assert form.status_code == 200
    return client.post("/__ep/dashboard/login", data={
        "token": ADMIN_TOKEN, "login_token": form.cookies[LOGIN_COOKIE],
        "next": "/__ep/dashboard/segments"}, headers={"origin": str(client.base_url)})


# --- signing in, refusals, headers ------------------------------------------------------

def test_a_browser_without_a_session_is_sent_to_sign_in(board: Server) -> None:
    page = httpx.get(f"{board.url}/__ep/dashboard/experiments/hero-test",
                     headers={"accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == \
        "/__ep/dashboard/login?next=/__ep/dashboard/experiments/hero-test"
    script = httpx.get(f"{board.url}/__ep/dashboard")
    assert script.status_code == 401 and script.json()["error"]


def test_signing_in_sets_a_strict_short_lived_session_cookie(board: Server) -> None:
    with httpx.Client(base_url=board.url) as client:
        form = client.get("/__ep/dashboard/login")
        assert 'name="token"' in form.text and '<label for="token">' in form.text
        signed_in = _login(client)
        assert signed_in.status_code == 303
        assert signed_in.headers["location"] == "/__ep/dashboard/segments"
        cookie = next(v for v in signed_in.headers.get_list("set-cookie")
                      if v.startswith(SESSION_COOKIE + "="))
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=/__ep/dashboard" in cookie and "Max-Age=3600" in cookie
        page = client.get("/__ep/dashboard")
        assert page.status_code == 200 and "hero-test" in page.text
        assert 'name="form_token"' in page.text   # the sign-out button's token


def test_pages_are_never_cached_and_load_nothing_from_elsewhere(board: Server) -> None:
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("", "/experiments/hero-test", "/segments", "/predictions", "/login"):
        page = httpx.get(f"{board.url}/__ep/dashboard{path}", headers=bearer)
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        for target in re.findall(r'(?:src|href|action)="([^"]*)"', page.text):
            assert target.startswith(("/__ep/dashboard", "#")), target
    style = httpx.get(f"{board.url}/__ep/dashboard/static/dashboard.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    for name in ("%2e%2e%2f__init__.py", "nope.js"):
        assert httpx.get(f"{board.url}/__ep/dashboard/static/{name}").status_code == 404


def test_behind_a_proxy_that_ends_tls_the_session_cookie_is_secure(board: Server) -> None:
    with httpx.Client(base_url=board.url) as client:
        form = client.get("/__ep/dashboard/login")
        signed_in = client.post("/__ep/dashboard/login", data={
            "token": ADMIN_TOKEN, "login_token": form.cookies[LOGIN_COOKIE]},
            headers={"origin": "https://" + board.url.split("://")[1]})
        assert signed_in.status_code == 303
        cookie = next(v for v in signed_in.headers.get_list("set-cookie")
                      if v.startswith(SESSION_COOKIE + "="))
        assert cookie.endswith("; Secure")


def test_signing_out_without_a_session_just_goes_to_sign_in(board: Server) -> None:
    out = httpx.post(f"{board.url}/__ep/dashboard/logout", data={})
    assert out.status_code == 303 and out.headers["location"] == "/__ep/dashboard/login"


def test_a_wrong_token_is_refused(board: Server) -> None:
    assert httpx.get(f"{board.url}/__ep/dashboard",
                     headers={"authorization": "Bearer wrong"}).status_code == 401
    with httpx.Client(base_url=board.url) as client:
        form = client.get("/__ep/dashboard/login")
        refused = client.post("/__ep/dashboard/login", data={
            "token": "wrong", "login_token": form.cookies[LOGIN_COOKIE]})
        assert refused.status_code == 401
        assert "That is not the admin token." in refused.text
        assert SESSION_COOKIE not in refused.cookies
        assert client.get("/__ep/dashboard").status_code == 401


def test_an_expired_or_forged_session_is_refused(board: Server) -> None:
    signer = SessionSigner(ADMIN_TOKEN)
    expired = signer.sign(int(time.time()) - 5, "abc")
    other = SessionSigner("another-token").sign(int(time.time()) + 600, "abc")
    fresh = signer.sign(int(time.time()) + 600, "abc")
    for value in (expired, other, fresh[:-2] + "xx", "garbage"):
        page = httpx.get(f"{board.url}/__ep/dashboard", cookies={SESSION_COOKIE: value})
        assert page.status_code == 401, value
    page = httpx.get(f"{board.url}/__ep/dashboard", cookies={SESSION_COOKIE: fresh})
    assert page.status_code == 200


def test_cross_site_posts_are_refused(board: Server) -> None:
    with httpx.Client(base_url=board.url) as client:
        form = client.get("/__ep/dashboard/login")
        login_token = form.cookies[LOGIN_COOKIE]
        evil = client.post("/__ep/dashboard/login", data={
            "token": ADMIN_TOKEN, "login_token": login_token},
            headers={"origin": "https://evil.example"})
        assert evil.status_code == 403 and SESSION_COOKIE not in evil.cookies
        fetched = client.post("/__ep/dashboard/login", data={
            "token": ADMIN_TOKEN, "login_token": login_token},
            headers={"sec-fetch-site": "cross-site"})
        assert fetched.status_code == 403
        no_form_token = client.post("/__ep/dashboard/login", data={"token": ADMIN_TOKEN})
        assert no_form_token.status_code == 403 and SESSION_COOKIE not in no_form_token.cookies
        assert _login(client).status_code == 303
        # Signing out needs the page's form token: a forged form cannot end the session.
        forged = client.post("/__ep/dashboard/logout", data={"form_token": "guess"})
        assert forged.status_code == 403
        assert client.get("/__ep/dashboard").status_code == 200
        page = client.get("/__ep/dashboard").text
        token = page.split('name="form_token" value="')[1].split('"')[0]
        cross = client.post("/__ep/dashboard/logout", data={"form_token": token},
                            headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        out = client.post("/__ep/dashboard/logout", data={"form_token": token},
                          headers={"origin": board.url})
        assert out.status_code == 303 and out.headers["location"].endswith("signed-out")
        assert SESSION_COOKIE not in client.cookies
        assert client.get("/__ep/dashboard").status_code == 401


def test_after_sign_in_only_dashboard_pages_are_returned_to() -> None:
    from edge_personalizer.endpoints.dashboard import _safe_next

    assert _safe_next("/__ep/dashboard/experiments/a") == "/__ep/dashboard/experiments/a"
    for bad in ("https://evil.example/", "//evil.example", "/__ep/dashboard//evil.example",
                "/__ep/dashboardx", "/", "/__ep/dashboard/login"):
        assert _safe_next(bad) == "", bad


# --- the numbers --------------------------------------------------------------------------

def test_the_list_shows_what_the_results_say(board: Server) -> None:
    report = _results(board)
    page = httpx.get(f"{board.url}/__ep/dashboard",
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    for experiment in report["experiments"]:
        row = page.split(f'data-experiment="{experiment["name"]}"')[1].split("</tr>")[0]
        assert f'data-field="exposed">{experiment["exposed"]:,}<' in row
    (hero,) = [e for e in report["experiments"] if e["name"] == "hero-test"]
    assert hero["exposed"] == VISITORS
    purchase = hero["goals"]["purchase"]["variants"]
    # enough conversions on both sides for the comparison to be a verdict
    assert purchase["bold"]["too_few_conversions"] == []
    assert purchase["control"]["too_few_conversions"] is None
    leader, chance = leader_of(hero["goals"]["purchase"])
    assert leader == "bold" and chance is not None and chance > 0.9
    row = page.split('data-experiment="hero-test"')[1].split("</tr>")[0]
    assert f'data-field="chance">{percent(chance)}<' in row


def test_variant_names_from_rule_files_are_escaped(board: Server) -> None:
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    page = httpx.get(f"{board.url}/__ep/dashboard/experiments/banner-test", headers=bearer)
    assert page.status_code == 200
    assert HOSTILE not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert page.text.count("<script") == 1   # the dashboard's own, from its file


def test_experiments_counted_but_gone_from_the_rules_are_listed_as_stopped() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {CountKey("old-test", "a", "", "all", "2026-11-01"): Tally(70),
              CountKey("old-test", "b", "", "all", "2026-11-02"): Tally(30),
              CountKey("facebook-hero", "facebook-hero", "", "all", "2026-11-01"): Tally(5),
              CountKey(AFFINITY, "a", "interest", "b", "2026-11-01"): Tally(0, 9)}
    listed = {s.name: s for s in summaries(make_snapshot(ruleset, totals, store="x",
                                                         taken_at=START))}
    assert set(listed) == {"hero-test", "old-test"}
    assert (listed["old-test"].status, listed["old-test"].exposed) == ("stopped", 100)
    assert listed["hero-test"].status == "running" and listed["hero-test"].leader is None


def test_a_rule_counted_but_gone_from_the_rules_stays_on_the_segments_page() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {CountKey("old-promo", "old-promo", "", "all", "2026-11-01"): Tally(40),
              CountKey("old-promo", "old-promo", "purchase", "all", "2026-11-01"):
                  Tally(0, 4, 20.0, 100.0)}
    snapshot = make_snapshot(ruleset, totals, store="x", taken_at=START)
    (gone,) = [r for r in snapshot.results["rules"] if r["name"] == "old-promo"]
    assert gone["removed"] and gone["variants"]["old-promo"]["exposed"] == 40
    assert all(not r["removed"] for r in snapshot.results["rules"] if r is not gone)
    assert not any(e["name"] == "old-promo" for e in snapshot.results["experiments"])
    html = Pages().segments(snapshot)
    row = html.split('data-rule="old-promo" data-variant="old-promo">')[1].split("</tr>")[0]
    assert 'data-field="exposed">40<' in row and "removed from the rules" in row


def test_a_goal_that_joined_the_rules_late_says_from_when_the_segments_page_counts() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {CountKey("old-promo", "old-promo", "", "all", "2026-11-01"): Tally(40),
              CountKey("old-promo", "old-promo", "", "all", "2026-11-03"): Tally(8),
              CountKey("old-promo", "old-promo", "purchase", "all", "2026-11-03"): Tally(0, 2)}
    recorded = GoalCatalog(rule_goals=("purchase",),
                           rules_since=MappingProxyType({"purchase": "2026-11-03"}))
    html = Pages().segments(make_snapshot(ruleset, totals, store="x", taken_at=START,
                                          recorded=recorded))
    assert '<small data-since="2026-11-03">visitors reached from 2026-11-03</small>' in html
    row = html.split('data-rule="old-promo" data-variant="old-promo">')[1].split("</tr>")[0]
    assert 'data-field="exposed">48<' in row and "2 (25.00%) of 8" in row


def test_an_unknown_experiment_is_404(board: Server) -> None:
    page = httpx.get(f"{board.url}/__ep/dashboard/experiments/nope",
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert page.status_code == 404 and "No such page" in page.text


def test_segment_cells_get_their_own_table() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {}
    for cell, (n_a, c_a, n_b, c_b) in {"mobile": (400, 40, 400, 80),
                                       "desktop": (300, 30, 300, 31)}.items():
        totals[CountKey("hero-test", "control", "", cell, "2026-11-01")] = Tally(n_a)
        totals[CountKey("hero-test", "control", "purchase", cell, "2026-11-01")] = \
            Tally(0, c_a, c_a * 5.0, c_a * 25.0)
        totals[CountKey("hero-test", "bold", "", cell, "2026-11-01")] = Tally(n_b)
        totals[CountKey("hero-test", "bold", "purchase", cell, "2026-11-01")] = \
            Tally(0, c_b, c_b * 5.0, c_b * 25.0)
    totals[CountKey("hero-test", "holdout", "", "mobile", "2026-11-01")] = Tally(100)
    totals[CountKey("hero-test", "holdout", "purchase", "mobile", "2026-11-01")] = \
        Tally(0, 5, 25.0, 125.0)
    snapshot = make_snapshot(ruleset, totals, store="sqlite:///t.db", taken_at=START)
    html = Pages().experiment(snapshot, "hero-test")
    assert html is not None
    assert 'data-cell="mobile" data-variant="bold"' in html
    assert 'data-cell="desktop" data-variant="control"' in html
    # the cell that held visitors out has them, and every variant together against them
    held = html.split('data-cell="mobile" data-variant="held out"')[1].split("</tr>")[0]
    assert ">100<" in held and "baseline" in held
    together = html.split('data-cell="mobile" data-variant="all variants"')[1].split("</tr>")[0]
    assert ">800<" in together and "+200.0%" in together   # 15% against 5%
    assert 'data-cell="desktop" data-variant="held out"' not in html
    assert "Per segment" in html and "keeps no per-segment cells" not in html


def opposed_segments(tmp_path: Path, *, facebook: tuple[int, int] = (20, 120)) -> Snapshot:
    """hero-test judged per segment: bold far ahead from Facebook and behind for the
    other visitors, and ahead over all."""
    shutil.copytree(ROOT / "tests" / "data" / "rules", tmp_path / "rules")
    site = tmp_path / "rules" / "site.yaml"
    site.write_text(site.read_text().replace("    holdout: 0\n", "    holdout: 0\n"
                                             "    per: segment\n"))
    ruleset = load_rules(tmp_path / "rules")
    totals = {}
    for cell, (c_control, c_bold) in {"from_facebook": facebook, "other": (60, 30)}.items():
        for variant, converted in (("control", c_control), ("bold", c_bold)):
            totals[CountKey("hero-test", variant, "", cell, "2026-11-01")] = Tally(500)
            totals[CountKey("hero-test", variant, "purchase", cell, "2026-11-01")] = \
                Tally(0, converted)
    return make_snapshot(ruleset, totals, store="x", taken_at=START)


def test_segments_with_different_winners_name_no_one_variant_ahead(tmp_path: Path) -> None:
    # "bold is ahead" over all: rolled out to all, it would lose half the others'
    # conversions. Each segment's own is named instead, on the page, the list and the report.
    snapshot = opposed_segments(tmp_path)
    html = Pages().experiment(snapshot, "hero-test")
    assert html is not None and "</strong> is ahead on purchase" not in html
    verdict = html.split('data-field="segment_leaders">')[1].split("</p>")[0]
    assert "No one variant is ahead on purchase" in verdict
    assert "from_facebook: <strong>bold</strong>, other: <strong>control</strong>" in verdict
    summary = next(s for s in summaries(snapshot) if s.name == "hero-test")
    assert summary.leader is None
    assert summary.no_leader == "each segment its own: from_facebook bold, other control"


def test_a_segment_s_uplift_says_when_too_few_conversions_judge_it(tmp_path: Path) -> None:
    # The overall table said "too few conversions to judge yet"; the segments' table
    # showed the same kind of uplift and chance bare (+428.0% 78.7%).
    snapshot = opposed_segments(tmp_path, facebook=(2, 12))   # 500 each: 7 expected
    html = Pages().experiment(snapshot, "hero-test")
    assert html is not None
    row = html.split('data-cell="from_facebook" data-variant="bold"')[1].split("</tr>")[0]
    assert "too few\nconversions to judge yet (under 10 expected: control, bold)" in row
    assert 'class="interval"' in row and '<span class="muted">' in row
    other = html.split('data-cell="other" data-variant="bold"')[1].split("</tr>")[0]
    assert "too few" not in other and "not significant" not in other


def test_the_chart_says_its_rates_are_not_weighted_where_the_table_s_are() -> None:
    # A bandit's (or edited weights') day-by-day chart pooled every visitor and ranked the
    # variants otherwise than the weighted table above it, with nothing said.
    before, today = experiment_of().fixed_period, experiment_of("hero-test", ("control", 90.0),
                                                                ("bold", 10.0))
    ruleset = dataclasses.replace(RuleSet.empty("v1"), experiments=(today,))
    totals = {}
    for period, control, bold in ((before, 1000, 1000), (today.fixed_period, 900, 100)):
        for variant, exposed in (("control", control), ("bold", bold)):
            totals[CountKey("hero-test", variant, "", "all", "2026-12-02", period)] = \
                Tally(exposed)
            totals[CountKey("hero-test", variant, "purchase", "all", "2026-12-02", period)] = \
                Tally(0, exposed // 10)
    html = Pages().experiment(make_snapshot(ruleset, totals, store="x", taken_at=START),
                              "hero-test")
    assert html is not None and 'data-field="chart_unweighted"' in html
    once = {k: t for k, t in totals.items() if k.period == today.fixed_period}
    html = Pages().experiment(make_snapshot(ruleset, once, store="x", taken_at=START),
                              "hero-test")
    assert html is not None and 'data-field="chart_unweighted"' not in html


def test_the_experiment_page_compares_it_with_its_holdout() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = counted("hero-test", {"control": (500, 25), "bold": (500, 40), "holdout": (60, 2)})
    snapshot = make_snapshot(ruleset, totals, store="x", taken_at=START)
    html = Pages().experiment(snapshot, "hero-test")
    assert html is not None
    assert 'data-field="exposed">1,000<' in html and 'data-field="held_out">60<' in html
    segments = Pages().segments(snapshot)   # those held out were shown nothing
    assert "1,000" in segments and "1,060" not in segments
    variants = html.split('data-table="control"')[1].split("</table>")[0]
    assert 'data-variant="holdout"' not in variants
    holdout = html.split('data-table="holdout"')[1].split("</table>")[0]
    held = holdout.split('data-variant="held out"')[1].split("</tr>")[0]
    together = holdout.split('data-variant="all variants"')[1].split("</tr>")[0]
    assert "3.33%" in held and "baseline" in held and ">control<" not in held
    assert "6.50%" in together and "+95.0%" in together
    # 2 conversions held out: no interval on them reads as a verdict, either way
    assert "too few conversions to judge yet (under 10 expected: held out)" in together
    assert '"Too few conversions to judge yet": an arm that would convert under 10' in html
    assert "· not significant" not in together and 'data-field="few"' not in variants
    assert "60 visitors\nheld out saw the page as it is" in html


def test_an_experiment_never_shown_says_so_on_its_page_and_in_the_list(
        tmp_path: Path) -> None:
    # Behind a catch-all rule it showed "running" with no note: only the segments page
    # and health told.
    (tmp_path / "site.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - name: everyone\n    then: {hero: x}\n"
        "experiments:\n  - name: hero-test\n    slot: hero\n"
        "    variants: {control: {}, bold: {html: y}}\n")
    ruleset = load_rules(tmp_path)
    snapshot = make_snapshot(ruleset, {}, store="x", taken_at=START,
                             notices=tuple(notices(ruleset, datetime.now(UTC))))
    html = Pages().experiment(snapshot, "hero-test")
    assert html is not None
    banner = html.split('data-banner="warnings"')[1].split("</div>")[0]
    assert "experiment &#39;hero-test&#39; is never shown: rule &#39;everyone&#39;" in banner
    (summary,) = summaries(snapshot)
    assert summary.warnings == 1


def test_the_segments_page_adds_every_cell_up_and_names_the_unsplit_one() -> None:
    # A rule counts in the cell of everyone not split by segment; an experiment counted
    # per segment, in its segments' cells: none of them is all visitors.
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    totals = {CountKey("facebook-hero", "facebook-hero", "", "all", "2026-11-01"): Tally(50),
              CountKey("facebook-hero", "facebook-hero", "purchase", "all", "2026-11-01"):
                  Tally(0, 5, 25.0, 125.0),
              CountKey("hero-test", "control", "", "mobile", "2026-11-01"): Tally(400),
              CountKey("hero-test", "bold", "", "desktop", "2026-11-01"): Tally(300),
              CountKey("hero-test", "bold", "purchase", "desktop", "2026-11-01"):
                  Tally(0, 30, 150.0, 750.0)}
    html = Pages().segments(make_snapshot(ruleset, totals, store="x", taken_at=START))
    table = html.split('<table class="cells">')[1].split("</table>")[0]
    rows = re.findall(r'<tr data-cell="([^"]+)"><th scope="row">([^<]+)</th>\s*'
                      r'<td class="num">([\d,]+)</td>\s*<td class="num">([\d,]+)</td>', table)
    assert rows == [("all", "not split by segment", "50", "5"),
                    ("desktop", "desktop", "300", "30"), ("mobile", "mobile", "400", "0"),
                    ("every cell", "every cell", "750", "35")]


def test_the_predictions_page_shows_the_model_s_pairs_and_support(board: Server) -> None:
    page = httpx.get(f"{board.url}/__ep/dashboard/predictions",
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    row = page.split('data-pair="running+trail"')[1].split("</tr>")[0]
    assert 'data-field="support">40<' in row and "shoes (" in row
    assert "Model version <strong>1</strong>" in page


def test_the_predictions_page_says_when_no_model_exists() -> None:
    ruleset = load_rules(ROOT / "tests" / "data" / "rules")
    none = make_snapshot(ruleset, {}, store="x", taken_at=START)
    assert "No prediction model exists yet." in Pages().predictions(none)
    broken = make_snapshot(ruleset, {}, store="x", taken_at=START,
                           predictions=Table(MODEL_TABLE, 3, b"{}", START))
    assert "cannot be" in Pages().predictions(broken)


def test_a_bandit_shows_its_allocation_and_the_last_reweight(board: Server) -> None:
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    listing = httpx.get(f"{board.url}/__ep/dashboard", headers=bearer).text
    row = listing.split('data-experiment="hero-test"')[1].split("</tr>")[0]
    assert '<span class="status running">running</span> <span class="tag" data-field="bandit">' \
        'bandit</span>' in row
    assert '<a href="/__ep/dashboard/experiments/hero-test">hero-test</a>' in row
    banner = listing.split('data-experiment="banner-test"')[1].split("</tr>")[0]
    assert '<span class="status running">running</span>' in banner
    page = httpx.get(f"{board.url}/__ep/dashboard/experiments/hero-test", headers=bearer).text
    assert "starting split (then the bandit's, below): control" in page
    section = page.split('data-bandit="hero-test"')[1].split("</section>")[0]
    assert "Weights version\n<strong>3</strong>" in section
    assert "reweighted (v3)" in section and 'data-cell="all"' in section
    assert "learned" in section


def test_internal_counts_are_not_taken_for_experiments(board: Server) -> None:
    assert AFFINITY.startswith(INTERNAL_PREFIX)
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    for path in ("", "/segments"):
        page = httpx.get(f"{board.url}/__ep/dashboard{path}", headers=bearer).text
        assert AFFINITY not in page and 'data-cell="shoes"' not in page


def test_the_segments_page_shows_rules_reached_and_the_last_reload(board: Server,
                                                                   population: Population
                                                                   ) -> None:
    report = _results(board)
    page = httpx.get(f"{board.url}/__ep/dashboard/segments",
                     headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    (promo,) = [r for r in report["rules"] if r["name"] == "newsletter-promo"]
    exposed = promo["variants"]["newsletter-promo"]["exposed"]
    assert exposed == VISITORS // 10
    assert 'data-rule="newsletter-promo" data-variant="newsletter-promo">' in page
    row = page.split('data-rule="newsletter-promo"')[1].split("</tr>")[0]
    assert f'data-field="exposed">{exposed:,}<' in row
    assert f'data-field="version">{report["rules_version"]}<' in page
    assert "no errors" in page


def test_a_failed_reload_shows_on_every_page_a_marketer_reads(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    server, rules = proxy_on_own_rules(origin, server_logs, tmp_path)
    try:
        bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        (rules / "broken.yaml").write_text('rules:\n  - name: broken\n'
                                           '    when: {segment: "<b>x</b>"}\n'
                                           '    then: {hero: {html: "x"}}\n')
        assert httpx.post(f"{server.url}/__ep/reload", headers=bearer).status_code == 422
        page = httpx.get(f"{server.url}/__ep/dashboard/segments", headers=bearer).text
        assert "The last reload failed" in page and "broken.yaml" in page
        assert "<b>x</b>" not in page and "unknown segment &#39;&lt;b&gt;x&lt;/b&gt;&#39;" in page
        # the experiments list, where a marketer looks first, says so too
        overview = httpx.get(f"{server.url}/__ep/dashboard/", headers=bearer).text
        assert 'data-field="reload-failed"' in overview
        assert "The last reload of the rules failed" in overview
        # ... and so do an experiment's page and the results its tools read
        experiment = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test",
                               headers=bearer)
        assert experiment.status_code == 200
        assert 'data-field="reload-failed"' in experiment.text
        results = httpx.get(f"{server.url}/__ep/results", headers=bearer).json()
        assert "broken.yaml" in results["reload_error"]
        (rules / "broken.yaml").unlink()
        assert httpx.post(f"{server.url}/__ep/reload", headers=bearer).status_code == 200
        assert httpx.get(f"{server.url}/__ep/results", headers=bearer).json()[
            "reload_error"] is None
    finally:
        server.stop()


def test_without_an_admin_token_the_dashboard_is_off(origin: Server, server_logs: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url,
                         "--rules", str(ROOT / "tests" / "data" / "rules"), admin=False)
    try:
        page = httpx.get(f"{server.url}/__ep/dashboard/login")
        assert page.status_code == 403 and "EP_ADMIN_TOKEN" in page.text
    finally:
        server.stop()


# --- in a real browser ----------------------------------------------------------------

class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.session = ""
        self.counter = 0
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, session: bool = True, **params: Any) -> dict[str, Any]:
        self.counter += 1
        ident = self.counter
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session and self.session:
            message["sessionId"] = self.session
        await self.socket.send(json.dumps(message))
        while True:
            reply = json.loads(await asyncio.wait_for(self.socket.recv(), 30))
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    async def until(self, event: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        while True:
            for message in self.events[seen:]:
                if message.get("method") == event:
                    self.events.remove(message)
                    return message
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(event)
            self.events.append(json.loads(await asyncio.wait_for(self.socket.recv(), left)))

    async def open(self, url: str) -> None:
        self.events = [e for e in self.events if e.get("method") != "Page.loadEventFired"]
        await self.call("Page.navigate", url=url)
        await self.until("Page.loadEventFired")

    async def value(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression,
                                 returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def screenshot(self, name: str) -> Path:
        shot = await self.call("Page.captureScreenshot", format="png",
                               captureBeyondViewport=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[str]:
    """A headless Chromium that can reach nothing but 127.0.0.1; yields its DevTools URL."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("chromium is not installed (apt-get install chromium, or make system-deps)")
    profile = tmp_path / "chromium-profile"
    port = free_port()
    process = subprocess.Popen(
        [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", "--disable-default-apps", "--mute-audio",
         f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
         "--remote-allow-origins=*",
         # nowhere to go but the loopback address: every other name resolves to nothing
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
         "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>;127.0.0.1",
         "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                version = httpx.get(f"http://127.0.0.1:{port}/json/version", timeout=1).json()
                break
            except (httpx.TransportError, ValueError):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("chromium did not start") from None
                time.sleep(0.1)
        yield str(version["webSocketDebuggerUrl"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _browse(devtools_url: str, board: Server, report: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    async with websockets.connect(devtools_url, max_size=64 * 1024 * 1024) as socket:
        tools = DevTools(socket)
        target = await tools.call("Target.createTarget", url="about:blank")
        attached = await tools.call("Target.attachToTarget", targetId=target["targetId"],
                                    flatten=True)
        tools.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await tools.call(f"{domain}.enable")
        await tools.call("Emulation.setTimezoneOverride", timezoneId="Asia/Tokyo")
        await tools.call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                         deviceScaleFactor=1, mobile=False)

        await tools.open(f"{board.url}/__ep/dashboard/experiments/hero-test")
        seen["login_url"] = await tools.value("location.pathname + location.search")
        seen["label"] = await tools.value(
            "document.querySelector('label[for=token]').textContent")
        await tools.screenshot("login.png")
        await tools.value(f"document.getElementById('token').value = {json.dumps(ADMIN_TOKEN)}")
        await tools.value("document.querySelector('form.login button').click()")
        await tools.until("Page.loadEventFired")
        seen["after_login"] = await tools.value("location.pathname")
        seen["cookie_visible_to_scripts"] = await tools.value("document.cookie")
        seen["rows"] = await tools.value("""
            Array.from(document.querySelectorAll(
                    'section[data-goal=purchase] table.variants tbody tr'))
                .map(tr => ({variant: tr.dataset.variant,
                             exposed: tr.querySelector('[data-field=exposed]').textContent,
                             converted: tr.querySelector('[data-field=converted]').textContent,
                             rate: tr.querySelector('[data-field=rate]').textContent,
                             chance: tr.querySelector('[data-field=chance]').textContent}))""")
        seen["chart"] = await tools.value("""(() => {
            const svg = document.querySelector('figure[data-chart=cumulative] svg');
            const box = svg.getBoundingClientRect();
            return {width: box.width, height: box.height,
                    lines: svg.querySelectorAll('polyline').length,
                    points: svg.querySelectorAll('circle').length}; })()""")
        seen["bars"] = await tools.value("document.querySelectorAll('td.bar-cell svg').length")
        seen["allocation"] = await tools.value("""(() => {
            const svg = document.querySelector('figure[data-chart=allocation] svg');
            return {lines: svg.querySelectorAll('polyline').length,
                    mark: Array.from(svg.querySelectorAll('text')).some(
                        t => t.textContent === 'reweighted (v3)')}; })()""")
        seen["footer_time"] = await tools.value("document.querySelector('footer time').textContent")
        await tools.screenshot("experiment.png")

        await tools.open(f"{board.url}/__ep/dashboard")
        seen["list_exposed"] = await tools.value(
            "document.querySelector('[data-experiment=\"hero-test\"] [data-field=exposed]')"
            ".textContent")
        await tools.screenshot("experiments.png")

        await tools.open(f"{board.url}/__ep/dashboard/experiments/banner-test")
        seen["hostile_shown"] = await tools.value(
            "Array.from(document.querySelectorAll('tr[data-variant]'))"
            ".map(tr => tr.dataset.variant)")
        seen["scripts"] = await tools.value("document.scripts.length")

        await tools.open(f"{board.url}/__ep/dashboard/segments")
        await tools.screenshot("segments.png")
        await tools.open(f"{board.url}/__ep/dashboard/predictions")
        seen["predictions"] = await tools.value("document.querySelector('main').innerText")
        await tools.screenshot("predictions.png")

        await tools.call("Emulation.setDeviceMetricsOverride", width=390, height=844,
                         deviceScaleFactor=2, mobile=True)
        overflow = []
        for path in ("/segments", "/predictions", "", "/experiments/hero-test"):
            await tools.open(f"{board.url}/__ep/dashboard{path}")
            overflow.append(await tools.value(
                "document.documentElement.scrollWidth - window.innerWidth"))
        seen["phone_overflow"] = max(overflow)
        await tools.screenshot("experiment-phone.png")

        await tools.open(f"{board.url}/__ep/dashboard")
        token = await tools.value("document.querySelector('input[name=form_token]').value")
        seen["has_logout"] = bool(token)
        await tools.value("document.querySelector('form.logout button').click()")
        await tools.until("Page.loadEventFired")
        seen["after_logout"] = await tools.value("location.pathname + location.search")

        seen["requests"] = [e["params"]["request"]["url"] for e in tools.events
                            if e.get("method") == "Network.requestWillBeSent"]
        seen["errors"] = [e for e in tools.events
                          if e.get("method") == "Runtime.exceptionThrown"
                          or (e.get("method") == "Runtime.consoleAPICalled"
                              and e["params"]["type"] in ("error", "assert"))
                          or (e.get("method") == "Log.entryAdded"
                              and e["params"]["entry"]["level"] == "error")
                          or e.get("method") == "Page.javascriptDialogOpening"]
    return seen


def test_the_pages_in_a_real_browser(board: Server, chromium: str) -> None:
    report = _results(board)
    seen = anyio.run(_browse, chromium, board, report)
    assert seen["login_url"] == \
        "/__ep/dashboard/login?next=/__ep/dashboard/experiments/hero-test"
    assert seen["label"] == "Admin token"
    assert seen["after_login"] == "/__ep/dashboard/experiments/hero-test"
    assert seen["cookie_visible_to_scripts"] == ""            # HttpOnly
    (hero,) = [e for e in report["experiments"] if e["name"] == "hero-test"]
    purchase = hero["goals"]["purchase"]["variants"]
    assert [row["variant"] for row in seen["rows"]] == ["control", "bold"]
    for row in seen["rows"]:
        expected = purchase[row["variant"]]
        assert row["exposed"] == f"{expected['exposed']:,}"
        assert row["converted"] == f"{expected['converted']:,}"
        assert row["rate"] == percent(expected["rate"], 2)
    assert seen["rows"][1]["chance"] == percent(purchase["bold"]["chance_to_beat_control"])
    chart = seen["chart"]
    assert chart["lines"] == 2 and chart["points"] == 2 * DAYS
    assert chart["width"] > 500 and chart["height"] > 150
    assert seen["bars"] == 1
    assert seen["allocation"] == {"lines": 2, "mark": True}
    assert "GMT+9" in seen["footer_time"] or "JST" in seen["footer_time"]
    assert seen["list_exposed"] == f"{hero['exposed']:,}"
    assert seen["hostile_shown"] == ["control", HOSTILE]     # text, never run
    assert seen["scripts"] == 1
    assert "running + trail" in seen["predictions"]
    assert seen["phone_overflow"] <= 0                        # no sideways scrolling
    assert seen["has_logout"] and seen["after_logout"] == "/__ep/dashboard/login?signed-out"
    assert seen["errors"] == [], json.dumps(seen["errors"], indent=1)
    assert seen["requests"] and all(url.startswith(board.url) for url in seen["requests"])
    assert (ARTIFACTS / "experiment.png").stat().st_size > 10_000


def test_links_point_at_routes_or_at_anchors_of_one_file() -> None:
    assert Links().experiment("a b/c") == "/__ep/dashboard/experiments/a%20b%2Fc"
    assert Links(one_file=True, anchors={"x": "experiment-1"}).experiment("x") == \
        "#experiment-1"
    assert quote("/__ep/dashboard", safe="/") == Links().home()


def test_a_store_that_does_not_answer_is_a_503_saying_so(origin: Server,
                                                         server_logs: Path) -> None:
    # A Redis store nobody listens on: pages still go out, the dashboard says why it
    # cannot show the counts (once: the error's own full stop is not doubled).
    server = start_proxy(server_logs, "--origin", origin.url, "--rules",
                         str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_STORE_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        page = httpx.get(f"{server.url}/__ep/dashboard",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)
        assert httpx.get(f"{server.url}/page/a").status_code == 200
    finally:
        server.stop()
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert "The store does not answer: " in page.text and ".." not in page.text


def test_a_store_file_deleted_while_serving_is_a_503_that_says_to_restart(
        origin: Server, tmp_path: Path) -> None:
    # `rm data/ep.db` while serving: health and the log said to restart the server, the
    # dashboard to try again in a few seconds (which never helps).
    data = tmp_path / "data"
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules",
                         str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY, "EP_DATA_DIR": str(data)})
    try:
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.get(f"{server.url}/__ep/dashboard", headers=admin).status_code == 200
        for path in data.glob("ep.db*"):
            path.unlink()
        page = httpx.get(f"{server.url}/__ep/dashboard", headers=admin, timeout=30)
        results = httpx.get(f"{server.url}/__ep/results", headers=admin, timeout=30)
    finally:
        server.stop()
    assert results.status_code == 503 and "retry-after" not in results.headers
    assert "restart the server" in results.json()["error"]
    assert page.status_code == 503 and "retry-after" not in page.headers
    assert "restart the server to count into a new one" in page.text
    assert "try again" not in page.text
