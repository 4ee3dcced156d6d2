"""The beacon and the results endpoint, through the real server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from redis import Redis

from edge_personalizer.cli import main
from edge_personalizer.endpoints.learning import RateLimit

from ..conftest import ADMIN_TOKEN, PROFILE_KEY, ROOT
from ..servers import RedisServer, Server, start_proxy

SAME_SITE = {"sec-fetch-site": "same-origin", "content-type": "application/json"}
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")


def test_results_need_the_admin_token_and_list_the_experiments(proxy: Server) -> None:
    assert httpx.get(f"{proxy.url}/__ep/results").status_code == 401
    response = httpx.get(f"{proxy.url}/__ep/results",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    report = response.json()
    assert {e["name"] for e in report["experiments"]} >= {"hero-test"}


def test_beacons_come_only_from_the_site_s_own_pages(proxy: Server) -> None:
    url = f"{proxy.url}/__ep/collect"
    cross = httpx.post(url, json={"goal": "x"}, headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    forged = httpx.post(url, json={"goal": "x"}, headers={"origin": "https://evil.example"})
    assert forged.status_code == 403
    assert httpx.get(url).status_code == 405


def test_a_bad_beacon_is_refused_and_counts_nothing(proxy: Server) -> None:
    url = f"{proxy.url}/__ep/collect"
    big = httpx.post(url, content=b'{"goal": "' + b"x" * 2000 + b'"}', headers=SAME_SITE)
    assert big.status_code == 400
    assert httpx.post(url, content=b"not json", headers=SAME_SITE).status_code == 400
    unknown = httpx.post(url, json={"goal": "no-such-goal"}, headers=SAME_SITE)
    assert unknown.status_code == 400 and "set-cookie" not in unknown.headers
    # The site reports `purchase` (its requests reach it): a browser cannot claim it, nor
    # its value; only a goal that says `beacon: true` takes beacons.
    claimed = httpx.post(url, json={"goal": "purchase", "value": "1000000000"},
                         headers=SAME_SITE)
    assert claimed.status_code == 400 and "set-cookie" not in claimed.headers
    assert "takes no beacons" in claimed.json()["error"]
    metrics = httpx.get(f"{proxy.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    assert 'ep_goal_signals_invalid_total{kind="beacon"}' in metrics


def test_rate_limit_refills_with_time() -> None:
    now = [0.0]
    limit = RateLimit(rate=1.0, burst=2, clock=lambda: now[0])
    assert [limit.allows("a") for _ in range(3)] == [True, True, False]
    assert limit.allows("b")
    now[0] = 1.0
    assert limit.allows("a") and not limit.allows("a")


@pytest.fixture(scope="module")
def counting(origin: Server, server_logs: Path) -> Iterator[Server]:
    """A server of its own (its own store), writing counts every 0.2 s."""
    server = start_proxy(server_logs, "--origin", origin.url,
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_PROFILE_COOKIE_SECURE": "false",
                              "EP_STORE_FLUSH_INTERVAL": "0.2"})
    yield server
    server.stop()


def _results(server: Server) -> dict[str, Any]:
    time.sleep(0.6)   # one flush interval and then some
    response = httpx.get(f"{server.url}/__ep/results",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert response.status_code == 200
    report: dict[str, Any] = response.json()
    return report


def test_a_visitor_s_conversions_count_once_for_the_variant_they_saw(counting: Server) -> None:
    page = {"accept": "text/html"}
    with httpx.Client(base_url=counting.url, headers={"user-agent": BROWSER}) as visitor:
        shown = visitor.get("/slotted/a?exp=on", headers=page)
        assert shown.status_code == 200 and "ep_profile" in visitor.cookies
        variant = "bold" if "<h1>Bold</h1>" in shown.text else "control"
        thanks = visitor.get("/page/checkout/thanks?total=20.50", headers=page)
        assert "set-cookie" in thanks.headers
        visitor.get("/page/checkout/thanks?total=20.50", headers=page)      # counted already
        reported = visitor.get("/page/x?goal=cta-click", headers=page)      # by the origin
        assert "x-ep-goal" not in reported.headers
        beacon = visitor.post("/__ep/collect", json={"goal": "cta-click"},
                              headers={"sec-fetch-site": "same-origin"})
        assert beacon.status_code == 204                                    # counted already
    with httpx.Client(base_url=counting.url) as crawler:
        bot = {**page, "user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
        crawler.get("/slotted/a?exp=on", headers=bot)
        crawler.get("/page/checkout/thanks?total=99", headers=bot)
    (hero,) = [e for e in _results(counting)["experiments"] if e["name"] == "hero-test"]
    purchase = hero["goals"]["purchase"]["variants"][variant]
    assert (purchase["exposed"], purchase["converted"], purchase["value_sum"]) == (1, 1, 20.5)
    click = hero["goals"]["cta-click"]["variants"][variant]
    assert (click["exposed"], click["converted"]) == (1, 1)
    assert hero["exposed"] == 1   # the crawler was never counted


def _hero_exposed(server: Server) -> int:
    (hero,) = [e for e in _results(server)["experiments"] if e["name"] == "hero-test"]
    exposed: int = hero["exposed"]
    return exposed


def test_a_cookie_sent_again_from_before_its_exposure_counts_one_visitor_once(
        counting: Server) -> None:
    # The same cookie from before the experiment's page, sent again and again (replayed,
    # tabs opened at once, or a stale copy the browser holds beside the new one): each
    # answer remembers the variant, but the visitor is counted as exposed once.
    page = {"accept": "text/html", "user-agent": BROWSER}
    before = _hero_exposed(counting)
    first = httpx.get(f"{counting.url}/page/plain", headers=page).cookies["ep_profile"]
    for _ in range(20):
        shown = httpx.get(f"{counting.url}/slotted/a?exp=on",
                          headers={**page, "cookie": f"ep_profile={first}"})
        assert shown.status_code == 200 and "ep_profile" in shown.cookies
    newest = shown.cookies["ep_profile"]
    for cookie in (f"ep_profile={first}; ep_profile={newest}", f"ep_profile={newest}"):
        httpx.get(f"{counting.url}/slotted/a?exp=on", headers={**page, "cookie": cookie})
    assert _hero_exposed(counting) == before + 1


def _invalid_values(server: Server) -> int:
    metrics = httpx.get(f"{server.url}/__ep/metrics",
                        headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    found = re.search(r'^ep_goal_signals_invalid_total\{kind="value"\} (\S+)$', metrics, re.M)
    return int(float(found.group(1))) if found else 0


def test_a_goal_value_counts_only_as_a_plain_amount(counting: Server) -> None:
    def value_sums(report: dict[str, Any]) -> tuple[int, float]:
        (hero,) = [e for e in report["experiments"] if e["name"] == "hero-test"]
        variants = hero["goals"]["purchase"]["variants"].values()
        return (sum(v["converted"] for v in variants),
                round(sum(v["value_sum"] for v in variants), 2))

    odd = ["12,50", "12,5", "1.234,50", "1,234.50", "1e3", "1_000", "-5", "0x10",
           "49.90 EUR", ".5", "nan"]
    converted, value = value_sums(_results(counting))
    invalid = _invalid_values(counting)
    for total in [*odd, "12.50"]:
        with httpx.Client(base_url=counting.url, headers={"user-agent": BROWSER}) as visitor:
            visitor.get("/slotted/value?exp=on", headers={"accept": "text/html"})
            visitor.get("/page/checkout/thanks", params={"total": total},
                        headers={"accept": "text/html"})
    # every visitor converted; only the plain amount brought a value, the others are
    # ignored and counted as invalid
    assert value_sums(_results(counting)) == (converted + len(odd) + 1, value + 12.5)
    assert _invalid_values(counting) == invalid + len(odd)


def test_a_beacon_counts_a_conversion_only_the_browser_sees(counting: Server) -> None:
    with httpx.Client(base_url=counting.url, headers={"user-agent": BROWSER}) as visitor:
        shown = visitor.get("/slotted/b?exp=on", headers={"accept": "text/html"})
        variant = "bold" if "<h1>Bold</h1>" in shown.text else "control"
        before = _results(counting)
        beacon = visitor.post("/__ep/collect", json={"goal": "cta-click", "value": "2"},
                              headers={"origin": counting.url,
                                       "host": counting.url.split("://")[1]})
        assert beacon.status_code == 204 and "set-cookie" in beacon.headers
    after = _results(counting)

    def clicks(report: dict[str, Any]) -> int:
        (hero,) = [e for e in report["experiments"] if e["name"] == "hero-test"]
        return int(hero["goals"]["cta-click"]["variants"][variant]["converted"])

    assert clicks(after) == clicks(before) + 1


def _visit_and_convert(server: Server, visitors: int) -> dict[str, int]:
    """Each visitor sees the experiment and converts: the variants they got, counted."""
    seen: dict[str, int] = {}
    for _ in range(visitors):
        with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as visitor:
            shown = visitor.get("/slotted/a?exp=on", headers={"accept": "text/html"})
            variant = "bold" if "<h1>Bold</h1>" in shown.text else "control"
            seen[variant] = seen.get(variant, 0) + 1
            visitor.get("/page/checkout/thanks?total=1", headers={"accept": "text/html"})
    return seen


def _purchases(server: Server) -> dict[str, tuple[int, int]]:
    (hero,) = [e for e in _results(server)["experiments"] if e["name"] == "hero-test"]
    return {name: (v["exposed"], v["converted"])
            for name, v in hero["goals"]["purchase"]["variants"].items()}


def test_two_instances_sharing_one_redis_report_the_sum(
        origin: Server, server_logs: Path, redis_server: RedisServer) -> None:
    env = {"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
           "EP_PROFILE_COOKIE_SECURE": "false", "EP_STORE_FLUSH_INTERVAL": "0.2",
           "EP_STORE_URL": redis_server.url}
    flags = ("--origin", origin.url, "--rules", str(ROOT / "tests" / "data" / "rules"))
    first, second = start_proxy(server_logs, *flags, env=env), \
        start_proxy(server_logs, *flags, env=env)
    try:
        seen = _visit_and_convert(first, 6)
        for variant, count in _visit_and_convert(second, 5).items():
            seen[variant] = seen.get(variant, 0) + count
        expected = {v: (n, n) for v, n in seen.items()}
        assert {k: v for k, v in _purchases(first).items() if v != (0, 0)} == expected
        assert _purchases(second) == _purchases(first)
    finally:
        first.stop()
        second.stop()


def test_two_sites_on_one_redis_database_keep_apart_by_their_prefixes(
        origin: Server, server_logs: Path, redis_server: RedisServer) -> None:
    env = {"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
           "EP_PROFILE_COOKIE_SECURE": "false", "EP_STORE_FLUSH_INTERVAL": "0.2"}
    flags = ("--origin", origin.url, "--rules", str(ROOT / "tests" / "data" / "rules"))
    shop = start_proxy(server_logs, *flags,
                       env={**env, "EP_STORE_URL": redis_server.url + "?prefix=shop"})
    staging = start_proxy(server_logs, *flags,
                          env={**env, "EP_STORE_URL": redis_server.url + "?prefix=staging"})
    try:
        seen = _visit_and_convert(shop, 4)
        _visit_and_convert(staging, 3)
        assert {k: v for k, v in _purchases(shop).items() if v != (0, 0)} == \
            {v: (n, n) for v, n in seen.items()}
        assert sum(exposed for exposed, _ in _purchases(staging).values()) == 3
        keys = cast("list[bytes]", Redis.from_url(redis_server.url).keys("*"))
        assert keys and all(key.startswith((b"shop:", b"staging:")) for key in keys)
    finally:
        shop.stop()
        staging.stop()


def test_four_workers_count_into_one_sqlite_file(origin: Server, server_logs: Path,
                                                 tmp_path: Path) -> None:
    server = start_proxy(server_logs, "--origin", origin.url, "--workers", "4",
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_PROFILE_COOKIE_SECURE": "false",
                              "EP_STORE_FLUSH_INTERVAL": "0.2",
                              "EP_DATA_DIR": str(tmp_path)}, timeout=40)
    try:
        seen = _visit_and_convert(server, 16)
        totals = {k: v for k, v in _purchases(server).items() if v != (0, 0)}
        assert totals == {v: (n, n) for v, n in seen.items()}
    finally:
        server.stop()


# One experiment on the hero, judged on purchases: counted per segment, or for all visitors.
HERO_TEST = """
experiments:
  - name: hero-test
    slot: hero
    PER
    variants:
      control: {weight: 50}
      bold: {weight: 50, html: "<h1>Bold</h1>"}
    goals: [purchase]
goals:
  purchase:
    when: {request.path: /page/checkout/thanks}
    value: {query: total}
"""
SEGMENT_RULES = """
slots:
  hero: {}
segments:
  from_facebook:
    when: {referral.source: facebook}
  phones:
    when: {device.type: mobile}""" + HERO_TEST.replace("PER", "per: segment")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")


def test_results_break_an_experiment_down_by_the_segments_the_rules_name(
        origin: Server, server_logs: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(SEGMENT_RULES)
    data = tmp_path / "data"
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_PROFILE_COOKIE_SECURE": "false",
                              "EP_STORE_FLUSH_INTERVAL": "0.2", "EP_DATA_DIR": str(data)})
    # Facebook visitors on a phone are counted in from_facebook: the first segment named.
    groups = {"from_facebook": ({"referer": "https://www.facebook.com/", "user-agent": IPHONE},
                                4, 3),
              "phones": ({"user-agent": IPHONE}, 3, 1),
              "other": ({"user-agent": BROWSER}, 5, 2)}
    seen: dict[tuple[str, str], list[int]] = {}   # (segment, variant) -> [exposed, converted]
    try:
        for segment, (headers, visitors, converting) in groups.items():
            for n in range(visitors):
                with httpx.Client(base_url=server.url, headers=headers) as visitor:
                    shown = visitor.get("/slotted/seg", headers={"accept": "text/html"})
                    variant = "bold" if "<h1>Bold</h1>" in shown.text else "control"
                    counts = seen.setdefault((segment, variant), [0, 0])
                    counts[0] += 1
                    if n < converting:
                        visitor.get("/page/checkout/thanks?total=10",
                                    headers={"accept": "text/html"})
                        counts[1] += 1
        report = _results(server)
        page = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    finally:
        server.stop()
    (hero,) = report["experiments"]
    assert hero["per"] == "segment" and hero["exposed"] == 12
    # the dashboard's experiment page: a table per segment, in the rules' order
    cells = re.findall(r'data-cell="([^"]+)" data-variant="control"', page)
    assert cells == ["from_facebook", "phones", "other"]
    purchase = hero["goals"]["purchase"]
    by_segment = purchase["segments"]
    assert list(by_segment) == ["from_facebook", "phones", "other"]   # as the rules name them
    for segment, result in by_segment.items():
        assert result["exposed"] == groups[segment][1]
        for variant, numbers in result["variants"].items():
            expected = seen.get((segment, variant), [0, 0])
            assert [numbers["exposed"], numbers["converted"]] == expected
            assert numbers["value_sum"] == 10 * expected[1]
    for variant, whole in purchase["variants"].items():   # the segments add up to the whole
        assert whole["converted"] == sum(r["variants"][variant]["converted"]
                                         for r in by_segment.values())
    # the report reads the same store: a table per segment under the experiment's own
    assert main(["report", "--rules", str(rules), "--data-dir", str(data),
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["experiments"] == report["experiments"]
    assert main(["report", "--rules", str(rules), "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "    by segment" in text
    lines = text.splitlines()
    facebook = next(line for line in lines if line.strip().startswith("from_facebook "))
    exposed, converted = seen.get(("from_facebook", "control"), [0, 0])   # control first
    assert facebook.split()[1:4] == ["control", str(exposed), str(converted)]


STICKY_RULES = """
slots:
  hero: {}""" + HERO_TEST.replace("    PER\n", "")


def _sticky_server(origin: Server, server_logs: Path, tmp_path: Path,
                   **env: str) -> tuple[Path, Server]:
    """STICKY_RULES in a directory of their own, served and watched, counting at once."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(STICKY_RULES)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_PROFILE_COOKIE_SECURE": "false",
                              "EP_STORE_FLUSH_INTERVAL": "0.2",
                              "EP_RULES_WATCH_INTERVAL": "0.1", **env})
    return rules, server


def _shown(visitor: httpx.Client) -> str:
    text = visitor.get("/slotted/sticky", headers={"accept": "text/html"}).text
    return "bolder" if "<h1>Bolder</h1>" in text else "bold" if "<h1>Bold</h1>" in text \
        else "control"


def test_a_fixed_experiment_s_visitors_keep_their_variant_and_credit_what_they_saw(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules, server = _sticky_server(origin, server_logs, tmp_path)
    visitors = [httpx.Client(base_url=server.url, headers={"user-agent": BROWSER})
                for _ in range(40)]
    try:
        first = [_shown(visitor) for visitor in visitors]
        bold = [v for v, shown in zip(visitors, first, strict=True) if shown == "bold"]
        assert 8 < len(bold) < 32
        # new weights share out new visitors only: everyone keeps what they were shown
        server.serve_rules(rules / "site.yaml", STICKY_RULES.replace(
            "control: {weight: 50}", "control: {weight: 95}").replace("weight: 50,",
                                                                      "weight: 5,"))
        assert [_shown(visitor) for visitor in visitors] == first
        early, late = bold[::2], bold[1::2]   # bold's visitors who buy before the rename
        for visitor in early:
            visitor.get("/page/checkout/thanks?total=10", headers={"accept": "text/html"})
        purchase = _results(server)["experiments"][0]["goals"]["purchase"]["variants"]
        assert (purchase["bold"]["exposed"], purchase["bold"]["converted"]) == \
            (len(bold), len(early))
        assert (purchase["control"]["exposed"], purchase["control"]["converted"]) == \
            (40 - len(bold), 0)
        # bold removed: its visitors are shared out anew and stay counted in bold, their
        # later purchases too (returning visitors moved into bolder would make a rename
        # look like an uplift); new visitors are shared out and counted as ever
        server.serve_rules(rules / "site.yaml", STICKY_RULES.replace(
            '{weight: 50, html: "<h1>Bold</h1>"}', '{weight: 50, html: "<h1>Bolder</h1>"}'
        ).replace("bold:", "bolder:"))
        now = [_shown(visitor) for visitor in bold]
        for visitor in late:
            visitor.get("/page/checkout/thanks?total=10", headers={"accept": "text/html"})
        newcomers = [httpx.Client(base_url=server.url, headers={"user-agent": BROWSER})
                     for _ in range(10)]
        visitors += newcomers
        fresh = [_shown(visitor) for visitor in newcomers]
        for visitor, shown in zip(newcomers, fresh, strict=True):
            if shown == "bolder":
                visitor.get("/page/checkout/thanks?total=10", headers={"accept": "text/html"})
        (hero,) = _results(server)["experiments"]
        judged = hero["goals"]["purchase"]
        purchase = judged["variants"]
        page = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
        # the experiment removed from the rules: its final results stay, read-only
        server.serve_rules(rules / "site.yaml", "slots:\n  hero: {}\ngoals:"
                    + STICKY_RULES.split("\ngoals:")[1])
        (stopped,) = _results(server)["experiments"]
        bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        listing = httpx.get(f"{server.url}/__ep/dashboard", headers=bearer).text
        final = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test", headers=bearer)
    finally:
        for visitor in visitors:
            visitor.close()
        server.stop()
    b, nb = len(bold), fresh.count("bolder")
    assert set(now) <= {"control", "bolder"} and set(fresh) <= {"control", "bolder"}
    assert (purchase["bolder"]["exposed"], purchase["bolder"]["converted"]) == (nb, nb)
    # bold, removed, keeps its visitors: their purchases after the rename count for it too
    assert (purchase["bold"]["exposed"], purchase["bold"]["converted"]) == (b, b)
    assert purchase["bold"]["removed"] and not purchase["control"]["removed"]
    assert (purchase["control"]["exposed"], purchase["control"]["converted"]) == \
        (40 - b + 10 - nb, 0)
    assert sum(v["exposed"] for v in purchase.values()) == hero["exposed"] == 50
    # two splits (the first, and the one after the rename): compared within each
    assert judged["weighted_by"] == "period"
    row = page.split('data-variant="control"')[1].split("</tr>")[0]
    assert 'data-field="converted" data-label="Converted">0<' in row
    assert "Rate (weighted)" in page and 'data-field="weighted_by"' in page
    bold_row = page.split('data-variant="bold"')[1].split("</tr>")[0]
    assert 'data-field="removed">removed<' in bold_row
    # stopped: listed with a page of its own, its variants all there
    assert (stopped["name"], stopped["status"], stopped["exposed"]) == \
        ("hero-test", "stopped", 50)
    assert {n: (v["exposed"], v["converted"])
            for n, v in stopped["goals"]["purchase"]["variants"].items()} == \
        {n: (v["exposed"], v["converted"]) for n, v in purchase.items()}
    assert '<a href="/__ep/dashboard/experiments/hero-test">hero-test</a>' in listing
    assert final.status_code == 200 and 'data-banner="stopped"' in final.text


def test_the_visitors_held_out_are_counted_and_the_experiment_is_judged_against_them(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules, server = _sticky_server(origin, server_logs, tmp_path, EP_VARIANT_HEADER="true")
    server.serve_rules(rules / "site.yaml", STICKY_RULES.replace(
        "    slot: hero\n", "    slot: hero\n    holdout: 50\n"))
    page = {"accept": "text/html"}
    visitors = [httpx.Client(base_url=server.url, headers={"user-agent": BROWSER})
                for _ in range(40)]
    try:
        shown = [visitor.get("/slotted/sticky", headers=page).headers["x-ep-variant"]
                 for visitor in visitors]
        held = [v for v, variant in zip(visitors, shown, strict=True)
                if variant == "hero=holdout"]
        bold = [v for v, variant in zip(visitors, shown, strict=True) if variant == "hero=bold"]
        assert 5 < len(held) < 35
        for visitor in held[::2] + bold:   # every other held-out visitor buys, and bold's
            visitor.get("/page/checkout/thanks?total=10", headers=page)
        (hero,) = _results(server)["experiments"]
        listing = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test",
                            headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
        # the holdout lowered to none: those it held stay held out, and the others of them
        # who buy now count for it; new visitors are held out no more
        server.serve_rules(rules / "site.yaml", STICKY_RULES)
        kept = [visitor.get("/slotted/sticky", headers=page).headers["x-ep-variant"]
                for visitor in held]
        for visitor in held:
            visitor.get("/page/checkout/thanks?total=10", headers=page)
        newly = []
        for _ in range(10):
            with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as new:
                newly.append(new.get("/slotted/sticky", headers=page).headers["x-ep-variant"])
        (after,) = _results(server)["experiments"]
    finally:
        for visitor in visitors:
            visitor.close()
        server.stop()
    h, hb, b = len(held), len(held[::2]), len(bold)
    assert (hero["exposed"], hero["held_out"]) == (40 - h, h)
    purchase = hero["goals"]["purchase"]
    assert set(purchase["variants"]) == {"control", "bold"}
    assert sum(v["exposed"] for v in purchase["variants"].values()) == 40 - h
    against = purchase["holdout"]
    assert (against["held_out"]["exposed"], against["held_out"]["converted"]) == (h, hb)
    assert (against["experiment"]["exposed"], against["experiment"]["converted"]) == (40 - h, b)
    assert against["experiment"]["uplift"] == pytest.approx(b / (40 - h) / (hb / h) - 1)
    # nobody bought under control, every one of bold's did: no percentage of nothing, but
    # an uplift interval from its low end on, with no upper end (null), on the page too
    bold_judged = purchase["variants"]["bold"]
    assert bold_judged["uplift"] is None and bold_judged["difference"] == 1.0
    assert bold_judged["uplift_low"] is not None and bold_judged["uplift_high"] is None
    assert "or more" in listing.split('data-table="control"')[1].split("</table>")[0]
    assert 'data-table="holdout"' in listing and 'data-variant="all variants"' in listing
    assert kept == ["hero=holdout"] * h and "hero=holdout" not in newly
    assert (after["exposed"], after["held_out"]) == (40 - h + 10, h)
    judged = after["goals"]["purchase"]
    assert (judged["holdout"]["held_out"]["exposed"],
            judged["holdout"]["held_out"]["converted"]) == (h, h)
    assert judged["variants"]["bold"]["converted"] == b


def test_a_paused_experiment_shows_nothing_counts_no_one_new_and_resumes_as_it_was(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules, server = _sticky_server(origin, server_logs, tmp_path, EP_VARIANT_HEADER="true")
    page = {"accept": "text/html"}
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    visitors = [httpx.Client(base_url=server.url, headers={"user-agent": BROWSER})
                for _ in range(20)]
    try:
        first = [_shown(visitor) for visitor in visitors]
        server.serve_rules(rules / "site.yaml", STICKY_RULES.replace(
            "    slot: hero\n", "    slot: hero\n    paused: true\n"))
        paused = [visitor.get("/slotted/sticky", headers=page) for visitor in visitors]
        with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as new:
            newcomer = new.get("/slotted/sticky", headers=page)
        bold = [v for v, shown in zip(visitors, first, strict=True) if shown == "bold"]
        for visitor in bold:   # shown bold before the pause: their purchases still count
            visitor.get("/page/checkout/thanks?total=10", headers=page)
        (hero,) = _results(server)["experiments"]
        listing = httpx.get(f"{server.url}/__ep/dashboard", headers=bearer).text
        detail = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test",
                           headers=bearer).text
        server.serve_rules(rules / "site.yaml", STICKY_RULES)
        resumed = [_shown(visitor) for visitor in visitors]
    finally:
        for visitor in visitors:
            visitor.close()
        server.stop()
    assert all("x-ep-variant" not in r.headers and "<h1>Bold</h1>" not in r.text
               for r in [*paused, newcomer])
    assert (hero["status"], hero["exposed"]) == ("paused", 20)   # no one new counted
    purchase = hero["goals"]["purchase"]["variants"]
    assert (purchase["bold"]["exposed"], purchase["bold"]["converted"]) == (len(bold),) * 2
    row = listing.split('data-experiment="hero-test"')[1].split("</tr>")[0]
    assert '<span class="status paused">paused</span>' in row
    assert 'data-banner="paused"' in detail
    assert resumed == first   # each visitor gets the variant they had


def test_an_experiment_whose_schedule_ended_or_has_not_begun_says_so(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    # An ended schedule showed "running" in the results and the dashboard while the
    # experiment showed no variant and counted no one.
    rules, server = _sticky_server(origin, server_logs, tmp_path)
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    seen = {}
    try:
        for _ in range(4):
            with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as new:
                _shown(new)
        for phase, schedule in (("ended", "{end: 2026-01-01}"),
                                ("scheduled", "{start: 2099-01-01}")):
            server.serve_rules(rules / "site.yaml", STICKY_RULES.replace(
                "    slot: hero\n", f"    slot: hero\n    schedule: {schedule}\n"))
            (hero,) = _results(server)["experiments"]
            listing = httpx.get(f"{server.url}/__ep/dashboard", headers=bearer).text
            detail = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test",
                               headers=bearer).text
            seen[phase] = (hero["status"], hero["exposed"],
                           listing.split('data-experiment="hero-test"')[1].split("</tr>")[0],
                           detail)
    finally:
        server.stop()
    for phase, (status, exposed, row, detail) in seen.items():
        assert (status, exposed) == (phase, 4)
        assert f'<span class="status {phase}">{phase}</span>' in row
        assert f'data-banner="{phase}"' in detail


def test_fixed_weights_edited_while_running_raise_no_false_split_alarm(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    # Visitors shared out 50/50 and then 90/10: pooled against today's 90/10 their split
    # looked broken (a sample-ratio alarm) though every visitor got what the weights said.
    rules, server = _sticky_server(origin, server_logs, tmp_path)
    try:
        for _ in range(40):
            with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as new:
                _shown(new)
        server.serve_rules(rules / "site.yaml", STICKY_RULES.replace(
            "control: {weight: 50}", "control: {weight: 90}").replace("weight: 50,",
                                                                      "weight: 10,"))
        for _ in range(80):
            with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as new:
                _shown(new)
        judged = _results(server)["experiments"][0]["goals"]["purchase"]
    finally:
        server.stop()
    exposed = {name: variant["exposed"] for name, variant in judged["variants"].items()}
    assert sum(exposed.values()) == 120
    assert judged["weighted_by"] == "period" and judged["srm"] is False


def test_conversions_with_no_exposure_counted_break_no_results(
        origin: Server, server_logs: Path, redis_server: RedisServer, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Redis restarted empty: a returning visitor's purchase is counted for the variant their
    # profile remembers, with no exposure counted for it any more. Results, the dashboard
    # and the report used to fail whole (500, exit 1) on "1 converted of 0 exposed".
    rules, server = _sticky_server(origin, server_logs, tmp_path,
                                   EP_STORE_URL=redis_server.url)
    bearer = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        with httpx.Client(base_url=server.url, headers={"user-agent": BROWSER}) as visitor:
            variant = _shown(visitor)
            assert _results(server)["experiments"][0]["exposed"] == 1
            redis_server.stop()
            redis_server.start()   # empty
            visitor.get("/page/checkout/thanks?total=10", headers={"accept": "text/html"})
        deadline = time.monotonic() + 10
        while (hero := _results(server)["experiments"][0])["goals"]["purchase"]["variants"][
                variant]["converted"] == 0:
            assert time.monotonic() < deadline, "the purchase was never counted"
        listing = httpx.get(f"{server.url}/__ep/dashboard", headers=bearer)
        page = httpx.get(f"{server.url}/__ep/dashboard/experiments/hero-test", headers=bearer)
    finally:
        server.stop()
    counted = hero["goals"]["purchase"]["variants"][variant]
    assert (counted["exposed"], counted["converted"], counted["unexposed_conversions"]) == \
        (0, 1, 1)
    assert counted["rate"] is None   # nobody exposed: no rate, rather than 1 of 0
    (warning,) = hero["warnings"]
    assert warning.startswith(f"{variant}: 1 conversion on purchase had no exposure counted")
    assert listing.status_code == 200 and 'data-field="warnings"' in listing.text
    assert page.status_code == 200 and 'data-banner="warnings"' in page.text
    assert f"{variant}: 1 conversion on purchase" in page.text
    assert main(["report", "--rules", str(rules), "--store", redis_server.url]) == 0
    assert f"WARNING {variant}: 1 conversion on purchase" in capsys.readouterr().out


def test_a_field_that_is_no_count_leaves_results_and_the_dashboard_answering(
        origin: Server, server_logs: Path, redis_server: RedisServer) -> None:
    # One `HSET ep:counts:hero-test notjson 1` made results and the dashboard answer 500,
    # for every experiment.
    import redis

    server = start_proxy(server_logs, "--origin", origin.url,
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_STORE_FLUSH_INTERVAL": "0.2",
                              "EP_STORE_URL": redis_server.url})
    client = redis.Redis.from_url(redis_server.url)
    try:
        _visit_and_convert(server, 1)
        client.hset("ep:counts:hero-test", "notjson", 1)
        (hero,) = [e for e in _results(server)["experiments"] if e["name"] == "hero-test"]
        assert hero["exposed"] == 1
        assert any("ep:counts:hero-test field 'notjson'" in w for w in hero["warnings"])
        page = httpx.get(f"{server.url}/__ep/dashboard",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert page.status_code == 200
    finally:
        server.stop()
        client.close()


BANDIT_RULES = """\
slots: {hero: {}}
goals:
  purchase: {when: {request.path: /page/checkout/thanks}}
experiments:
  - name: hero-bandit
    slot: hero
    goals: [purchase]
    allocation: bandit
    per: [device.type]
    variants: {control: {weight: 1}, bold: {weight: 1, html: '<h1>Bold</h1>'}}
"""


def test_published_tables_that_do_not_decode_leave_results_and_the_dashboard_answering(
        origin: Server, server_logs: Path, redis_server: RedisServer, tmp_path: Path) -> None:
    # Weights with a number past a float's range made /__ep/results answer 500, a model
    # hash without its payload made every dashboard page answer 503 ("the store does not
    # answer"), and `explain` ended in a traceback.
    import redis

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(BANDIT_RULES)
    client = redis.Redis.from_url(redis_server.url)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_STORE_URL": redis_server.url})
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        for name, fields in (("bandit-weights", {
                "version": 1000, "published_at": 1, "payload":
                b'{"experiments":{"hero-bandit":{"version":1e400,"updated_at":0,'
                b'"holdout":0,"starting":[["control",1]],"cells":{}}}}'}),
                             ("affinity-model", {"version": 1000, "published_at": 1})):
            client.hset(f"ep:table:{name}", mapping=fields)   # type: ignore[arg-type]
        report = httpx.get(f"{server.url}/__ep/results", headers=admin)
        assert report.status_code == 200, report.text
        (bandit,) = report.json()["experiments"]
        assert bandit["name"] == "hero-bandit"
        for page in ("", "/predictions", "/experiments/hero-bandit"):
            shown = httpx.get(f"{server.url}/__ep/dashboard{page}", headers=admin)
            assert shown.status_code == 200, (page, shown.text[:500])
    finally:
        server.stop()
        client.close()
    assert main(["explain", "--rules", str(rules), "--store", redis_server.url,
                 "--url", "http://shop.example/"]) == 0
