"""Replay: populations with known conversion rates, run through the whole pipeline."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import anyio
import pytest

from edge_personalizer.config import load_settings
from edge_personalizer.errors import SettingsError
from edge_personalizer.learn.catalog import TABLE_NAME, GoalCatalog, read_catalog
from edge_personalizer.learn.counters import day_start, utc_day
from edge_personalizer.learn.results import results
from edge_personalizer.learn.store import open_store
from edge_personalizer.replay import LoggedRequest, Replay
from edge_personalizer.rules.book import load_rules

from .factories import read_store
from .servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "tests" / "data" / "rules"
BROWSER = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
           "(KHTML, like Gecko) Version/17.4 Safari/605.1.15")
RATES = {"control": 0.10, "bold": 0.20}


async def _population(tmp_path: Path, visitors: int, seed: int) -> dict[str, object]:
    settings = load_settings({}, rules_dir=RULES, data_dir=tmp_path, profile_keys="k" * 32)
    replayer = Replay(settings)
    rng = random.Random(seed)
    start = 1_795_000_000.0
    for i in range(visitors):
        shown = await replayer.request(LoggedRequest(
            url="https://shop.example/page/home?exp=on", time=start + i, visitor=f"v{i}",
            headers={"user-agent": BROWSER}))
        variant = "bold" if b"<h1>Bold</h1>" in shown.body else "control"
        if rng.random() < RATES[variant]:
            await replayer.request(LoggedRequest(
                url="https://shop.example/page/checkout/thanks?total=10", time=start + i + 60,
                visitor=f"v{i}", headers={"user-agent": BROWSER}))
    summary = await replayer.finish()
    assert summary.visitors == visitors
    store = open_store(settings.store_location())
    totals = await store.totals()
    await store.close()
    return results(load_rules(RULES), totals)


def test_a_replayed_population_shows_its_known_rates(tmp_path: Path) -> None:
    report = anyio.run(_population, tmp_path, 4000, 7)
    (hero,) = [e for e in report["experiments"] if e["name"] == "hero-test"]   # type: ignore[attr-defined]
    purchase = hero["goals"]["purchase"]
    assert hero["exposed"] == 4000
    for name, rate in RATES.items():
        variant = purchase["variants"][name]
        # Which visitor sees which variant is a draw (by their id, made from the log's
        # visitor): the rate must be near the truth (4 standard errors), and the 95%
        # interval reported must be as wide as the counts make it.
        spread = (rate * (1 - rate) / variant["exposed"]) ** 0.5
        assert abs(variant["rate"] - rate) < 4 * spread, (name, variant)
        assert variant["rate_high"] - variant["rate_low"] == pytest.approx(2 * 1.96 * spread,
                                                                           rel=0.15)
        assert variant["value_sum"] == pytest.approx(10 * variant["converted"])
    assert purchase["srm_p"] > 0.001                        # a 50/50 split, as configured
    assert purchase["variants"]["bold"]["chance_to_beat_control"] > 0.99


def test_a_log_replays_to_the_same_variants_every_time(tmp_path: Path) -> None:
    # A new visitor's id is made from their key in the log (random on the live site), so
    # a replay is reproducible: the same visitors in the same variants, the same results.
    first, again = (anyio.run(_population, tmp_path / name, 300, 3) for name in ("a", "b"))
    assert first["experiments"] == again["experiments"]
    (hero,) = [e for e in first["experiments"] if e["name"] == "hero-test"]   # type: ignore[attr-defined]
    assert {name: v["exposed"] for name, v in hero["goals"]["purchase"]["variants"].items()} \
        != {"control": 300, "bold": 0}   # (and still shared out between the variants)


def test_the_replay_command_counts_a_log_into_the_store(tmp_path: Path) -> None:
    lines: list[dict[str, object]] = [
        {"url": "/page/home?exp=on", "visitor": "a", "headers": {"user-agent": BROWSER}},
        {"url": "/page/x", "visitor": "a", "headers": {"user-agent": BROWSER},
         "response_headers": {"X-EP-Goal": "cta-click"}},
        {"url": "/page/home?exp=on", "visitor": "b", "headers": {"user-agent": BROWSER}}]
    done = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "replay", "--rules", str(RULES),
         "--data-dir", str(tmp_path)], input="\n".join(json.dumps(x) for x in lines),
        capture_output=True, text=True, env={"EP_PROFILE_KEYS": "k" * 32, "PATH": ""},
        timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 requests from 2 visitors: 2 exposures and 1 conversion ")
    assert (tmp_path / "ep.db").exists()
    # The experiments' goals are recorded as a serving worker records them, so results
    # judge them on their own goals once they are removed from the rules.
    store_url = load_settings({}, data_dir=tmp_path).store_location()
    assert read_store(store_url, read_catalog).goals_of("hero-test") == frozenset(
        load_rules(RULES).experiment("hero-test").goals)   # type: ignore[union-attr]
    # The same log again: refused, its counts are in the store already; --again counts it.
    again = _replay_command(tmp_path, lines)
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.startswith("edge-personalizer: this log was replayed into sqlite:")
    assert again.stderr.endswith("its counts are there already (pass --again to count it "
                                 "once more)\n")
    assert anyio.run(_exposed, tmp_path) == 2
    assert _replay_command(tmp_path, lines, "--again").returncode == 0
    assert anyio.run(_exposed, tmp_path) == 4


def test_a_bad_line_stops_the_replay_before_anything_is_counted(tmp_path: Path) -> None:
    lines: list[dict[str, object]] = [
        {"url": "/page/home?exp=on", "visitor": f"v{i}", "headers": {"user-agent": BROWSER}}
        for i in range(5)]
    lines.append({"url": "/page/x", "status": "abc"})
    done = _replay_command(tmp_path, lines)
    assert done.returncode == 2
    assert done.stderr == ("edge-personalizer: line 6: status 'abc' is not an HTTP status "
                           "code (100 to 599)\n")
    assert anyio.run(_exposed, tmp_path) == 0


def _replay_command(data: Path, lines: list[dict[str, object]],
                    *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "replay", "--rules", str(RULES),
         "--data-dir", str(data), *flags], input="\n".join(json.dumps(x) for x in lines),
        capture_output=True, text=True, env={"EP_PROFILE_KEYS": "k" * 32, "PATH": ""},
        timeout=60, cwd=ROOT)


async def _exposed(data: Path) -> int:
    """Visitors counted as exposed to hero-test in the store of `data`."""
    if not (data / "ep.db").exists():
        return 0
    store = open_store(load_settings({}, data_dir=data).store_location())
    try:
        totals = await store.totals("hero-test")
    finally:
        await store.close()
    return sum(tally.exposures for tally in totals.values())


def test_a_bad_line_names_its_number() -> None:
    with pytest.raises(SettingsError, match="line 3"):
        LoggedRequest.parse('{"no": "url"}', 3)


@pytest.mark.parametrize(("line", "said"), [
    ('{"url": "http://[::1/"}', "url 'http://[::1/': Invalid IPv6 URL"),
    ('{"url": "http://日本.example/"}', "url 'http://日本.example/': '日本' cannot be sent in a "
                                        "Host header: write the host in punycode (xn--...)"),
    ('{"url": "shop.example/sale"}', "url 'shop.example/sale' is no http(s) URL; write "
                                     "https://shop.example/sale (or a path starting with /)"),
    ('{"url": "ftp://shop.example/"}', "url 'ftp://shop.example/' is no http(s) URL"),
    ('{"url": "/", "visitor": {"id": 1}}', "visitor must be a string, not {'id': 1}"),
    ('{"url": "/", "visitor": 42}', "visitor must be a string, not 42"),
    ('{"url": "/", "ip": 42}', "ip must be a string, not 42"),
    ('{"url": "/", "method": ["GET"]}', "method ['GET'] is no HTTP method (GET, POST, ...)"),
    ('{"url": "/", "method": "GET /"}', "method 'GET /' is no HTTP method (GET, POST, ...)"),
    ('{"url": "/", "headers": ["User-Agent: x"]}',
     "headers must be an object of names and values"),
    ('{"url": "/", "headers": {"User-Agent": 7}}',
     "headers: 'User-Agent' must be a string (or null: not sent), not 7"),
    ('{"url": "/", "headers": {"Referer": "https://日本.example/"}}',
     "headers: 'Referer': '日本' cannot be sent in an HTTP header"),
    ('{"url": "/", "response_headers": {"X-EP-Goal": {"a": 1}}}',
     "response_headers: 'X-EP-Goal' must be a string (or null: not sent), not {'a': 1}"),
    ('{"url": "/", "response_headers": {"X-Ω": "x"}}',
     "response_headers: 'X-Ω': 'Ω' cannot be sent in an HTTP header"),
    ('{"url": "/", "visitor": "\\ud800"}',
     "'\\ud800' is no character (half of a UTF-16 pair alone)"),
    ('{"url": "/", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "JSON nested too deeply to read"),
])
def test_a_line_the_replay_cannot_send_is_refused_naming_it(line: str, said: str) -> None:
    # Most were replayed into a traceback (ValueError, TypeError, UnicodeEncodeError,
    # RecursionError), or into a request every stage failed open on, counting nothing.
    with pytest.raises(SettingsError) as refused:
        LoggedRequest.parse(line, 4)
    assert str(refused.value) == f"line 4: {said}"


def test_a_header_given_as_null_is_one_the_request_did_not_have(tmp_path: Path) -> None:
    # A null User-Agent was sent as "None", a browser's: a visitor exposed where one with
    # no User-Agent (taken for a bot) is not.
    assert LoggedRequest.parse('{"url": "/", "headers": {"User-Agent": null}}', 1).headers \
        == {}
    done = _replay_command(tmp_path, [
        {"url": "/page/home?exp=on", "visitor": "a", "headers": {"User-Agent": None}},
        {"url": "/page/home?exp=on", "visitor": "b"},
        {"url": "/page/home?exp=on", "visitor": "c", "headers": {"user-agent": BROWSER}}])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 requests from 3 visitors: 1 exposure and 0 conversions ")


@pytest.mark.parametrize("line", [
    '{"url": "http://[::1"}', '{"url": "/", "visitor": {"a": 1}}', '{"url": "/", "ip": 5}',
    '{"url": "/", "headers": {"X": "日本"}}'])
def test_the_replay_command_names_a_line_it_cannot_send(tmp_path: Path, line: str) -> None:
    good = {"url": "/page/home?exp=on", "visitor": "a", "headers": {"user-agent": BROWSER}}
    done = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "replay", "--rules", str(RULES),
         "--data-dir", str(tmp_path)], input=f"{json.dumps(good)}\n{line}\n",
        capture_output=True, text=True, env={"EP_PROFILE_KEYS": "k" * 32, "PATH": ""},
        timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("edge-personalizer: line 2: ") and "Traceback" not in \
        done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert anyio.run(_exposed, tmp_path) == 0


def test_a_line_s_time_is_epoch_seconds_or_iso_8601_as_classify_reads_it() -> None:
    iso = LoggedRequest.parse('{"url": "/", "time": "2026-12-01T19:00:00Z"}', 1)
    epoch = LoggedRequest.parse('{"url": "/", "time": 1796151600}', 2)
    assert iso.time == epoch.time == 1796151600.0
    with pytest.raises(SettingsError, match="line 3: time 'yesterday' is neither epoch"):
        LoggedRequest.parse('{"url": "/", "time": "yesterday"}', 3)


@pytest.mark.parametrize("time", ["1e300", "NaN", "-Infinity", '"0001-01-01T00:00:00+14:00"'])
def test_a_time_no_clock_shows_stops_the_replay_at_its_line(tmp_path: Path, time: str) -> None:
    # It was replayed: every stage failed open on it ("decide failed … serving it
    # unchanged", with tracebacks) and the run ended well, counting nothing.
    good = json.dumps({"url": "/page/home?exp=on", "visitor": "a",
                       "headers": {"user-agent": BROWSER}})
    done = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "replay", "--rules", str(RULES),
         "--data-dir", str(tmp_path)], input=good + f'\n{{"url": "/", "time": {time}}}\n',
        capture_output=True, text=True, env={"EP_PROFILE_KEYS": "k" * 32, "PATH": ""},
        timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stdout == ""
    assert re.fullmatch(r"edge-personalizer: line 2: time \S+ is out of range: epoch seconds "
                        r"from 0 to 253402214400, or ISO 8601 from 1970-01-01T00:00:00Z to "
                        r"9999-12-31T00:00:00Z\n", done.stderr), done.stderr
    assert anyio.run(_exposed, tmp_path) == 0


SELECTOR_RULES = """\
slots: {promo: {selector: "#promo"}}
goals: {purchase: {when: {request.path: /thanks}}}
experiments:
  - name: promo-test
    slot: promo
    goals: [purchase]
    variants: {control: {weight: 1}, loud: {weight: 1, html: "<b>Loud</b>"}}
"""


async def _replay_selector_slot(tmp_path: Path, visitors: int) -> int:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(SELECTOR_RULES)
    settings = load_settings({}, rules_dir=rules, data_dir=tmp_path, profile_keys="k" * 32)
    replayer = Replay(settings)
    for i in range(visitors):
        await replayer.request(LoggedRequest(url="https://shop.example/", time=1_795_000_000.0 + i,
                                             visitor=f"v{i}", headers={"user-agent": BROWSER}))
    await replayer.finish()
    store = open_store(settings.store_location())
    totals = await store.totals()
    await store.close()
    return sum(t.exposures for key, t in totals.items() if key.experiment == "promo-test")


def test_a_slot_the_stand_in_page_cannot_hold_is_counted_on_every_view(tmp_path: Path) -> None:
    # The stand-in pages hold only marker slots; the site's pages have `#promo`. Every
    # visitor of the same path is an exposure, as on the live site (none is learned away).
    assert anyio.run(_replay_selector_slot, tmp_path, 30) == 30


def test_a_log_s_counts_go_to_the_store_in_one_write(redis_server: RedisServer) -> None:
    # 40 days of one visitor's views: over 200 distinct counts (a flush of the live server
    # writes 200 a time), written as one, all or none.
    day = 86_400
    lines: list[dict[str, object]] = [
        {"url": "/page/home?exp=on", "visitor": f"v{i}", "time": 1_795_000_000 + i * day,
         "headers": {"user-agent": BROWSER},
         "response_headers": {"X-EP-Goal": "cta-click"}} for i in range(240)]
    done = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "replay", "--rules", str(RULES),
         "--store", redis_server.url], input="\n".join(json.dumps(x) for x in lines),
        capture_output=True, text=True, env={"EP_PROFILE_KEYS": "k" * 32, "PATH": ""},
        timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    stats = subprocess.run(["redis-cli", "-p", str(redis_server.port), "info",
                            "commandstats"], capture_output=True, text=True).stdout
    flushes = re.search(r"cmdstat_evalsha:calls=(\d+),.*failed_calls=(\d+)", stats)
    assert flushes is not None, stats
    # One script call for the counts and one for the record of the experiments' goals
    # (a first call of each script loads it)
    assert int(flushes.group(1)) - int(flushes.group(2)) == 2
    assert "cmdstat_hincrby:calls=" in stats   # the counts are there


def test_a_replay_judges_a_goal_from_the_day_the_store_says_it_joined(tmp_path: Path) -> None:
    # The store's record says purchase joined hero-test on a day: a visitor of the log
    # exposed before it counts no purchase (the replay read no record, and counted it).
    settings = load_settings({}, rules_dir=RULES, data_dir=tmp_path, profile_keys="k" * 32)
    start = 1_795_000_000.0
    joined = utc_day(start + 86_400)
    goals = load_rules(RULES).experiment("hero-test").goals   # type: ignore[union-attr]

    async def replay() -> list[str]:
        store = open_store(settings.store_location())
        await store.publish(TABLE_NAME, GoalCatalog(
            MappingProxyType({"hero-test": goals}),
            since=MappingProxyType({"hero-test": {"purchase": joined}})).encode())
        replayer = Replay(settings)
        for visitor, seen in (("early", start), ("late", day_start(joined) + 60.0)):
            for path, at in (("/page/home?exp=on", seen),
                             ("/page/checkout/thanks?total=10", seen + 2 * 86_400)):
                await replayer.request(LoggedRequest(
                    url=f"https://shop.example{path}", time=at, visitor=visitor,
                    headers={"user-agent": BROWSER}))
        await replayer.finish()
        totals = await store.totals("hero-test")
        await store.close()
        return [key.day for key, tally in totals.items() if key.goal for _ in
                range(tally.conversions)]

    assert anyio.run(replay) == [utc_day(day_start(joined) + 60.0 + 2 * 86_400)]   # late's
