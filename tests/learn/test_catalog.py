"""The record of each experiment's goals: its table, and reading it from a real SQLite store."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType

import anyio
import httpx
import pytest

from edge_personalizer.learn.catalog import (
    TABLE_NAME,
    GoalCatalog,
    read_catalog,
    running_goals,
    running_variants,
)
from edge_personalizer.learn.counters import day_start, utc_day
from edge_personalizer.learn.store import open_store, sqlite_url
from edge_personalizer.rules.book import check_rules

from ..conftest import ADMIN_TOKEN, PROFILE_KEY
from ..factories import IPHONE, read_store
from ..servers import Server, start_proxy

PAGE = {"accept": "text/html", "user-agent": IPHONE}
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}

RULES = """\
slots: {hero: {}, banner: {}}
goals:
  signup: {when: {request.path: /signup}}
  purchase: {when: {request.path: /thanks}}
experiments:
  - name: hero-test
    slot: hero
    goals: [signup, purchase]
    variants: {control: {weight: 1}, a: {weight: 1, html: A}}
  - name: quiet-test
    slot: banner
    goals: []
    variants: {control: {weight: 1}, b: {weight: 1, html: B}}
"""


def test_the_rules_experiments_are_recorded_with_their_goals_in_order(
        tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(RULES)
    ruleset, errors = check_rules(tmp_path)
    assert not errors
    assert running_goals(ruleset) == {
        "hero-test": ("signup", "purchase"), "quiet-test": ()}


def test_running_experiments_replace_their_record_and_removed_ones_keep_theirs() -> None:
    held = GoalCatalog(MappingProxyType({"old-test": ("purchase",),
                                         "hero-test": ("signup",)}), version=4)
    recorded = held.with_running({"hero-test": ("signup", "purchase"), "new-test": ()})
    assert dict(recorded.experiments) == {"old-test": ("purchase",),
                                          "hero-test": ("signup", "purchase"),
                                          "new-test": ()}
    assert recorded.version == 4 and dict(held.experiments)["hero-test"] == ("signup",)
    assert recorded.goals_of("old-test") == frozenset({"purchase"})
    assert recorded.goals_of("new-test") == frozenset()   # judged on none: counts none
    assert recorded.goals_of("a-rule") is None            # never recorded: every goal


def test_the_experiments_variants_are_recorded_beside_their_goals(tmp_path: Path) -> None:
    (tmp_path / "site.yaml").write_text(RULES)
    ruleset, _ = check_rules(tmp_path)
    assert running_variants(ruleset)["quiet-test"] == ("control", "b")
    held = GoalCatalog(MappingProxyType({"old-test": ("purchase",)}), 2,
                       MappingProxyType({"old-test": ("control", "a")}))
    recorded = held.with_running(running_goals(ruleset), running_variants(ruleset))
    assert recorded.variants_of("old-test") == ("control", "a")   # kept once removed
    assert recorded.variants_of("quiet-test") == ("control", "b")
    assert recorded.variants_of("never") is None


def test_the_table_reads_back_and_refuses_what_is_no_catalog() -> None:
    catalog = GoalCatalog(MappingProxyType({"b-test": ("x", "y"), "a-test": ()}), 0,
                          MappingProxyType({"b-test": ("control", "bold")}))
    again = GoalCatalog.decode(catalog.encode(), 7)
    assert dict(again.experiments) == {"a-test": (), "b-test": ("x", "y")}
    assert dict(again.variants) == {"b-test": ("control", "bold")}
    assert again.version == 7
    # a table written before variants were recorded reads as one without them
    older = GoalCatalog.decode(b'{"experiments": {"a-test": ["x"]}}', 3)
    assert dict(older.experiments) == {"a-test": ("x",)} and older.variants_of("a-test") is None
    for junk in (b"[]", b'{"experiments": {"a": [1]}}', b'{"experiments": 3}', b"{}"):
        with pytest.raises(ValueError):
            GoalCatalog.decode(junk, 1)


def test_a_goal_joining_an_experiment_with_visitors_judges_it_from_the_next_day() -> None:
    now = day_start("2026-12-05") + 15 * 3600
    held = GoalCatalog(MappingProxyType({"hero-test": ("signup",), "quiet-test": ("signup",)}))
    running = {"hero-test": ("signup", "purchase"), "quiet-test": ("signup", "purchase"),
               "new-test": ("purchase",)}
    assert held.joining(running) == ["hero-test", "quiet-test"]
    # the trainer found visitors counted for hero-test alone
    recorded = held.with_running(running, begun={"hero-test"}, now=now)
    assert dict(recorded.since_of("hero-test")) == {"purchase": "2026-12-06"}
    assert recorded.since_of("quiet-test") == {} and recorded.since_of("new-test") == {}
    assert recorded.joining(running) == []
    assert recorded.counted_from("hero-test", "purchase", now) == day_start("2026-12-06")
    assert recorded.counted_from("hero-test", "signup", now) == 0
    assert recorded.counted_from("quiet-test", "purchase", now) == 0
    assert recorded.counted_from("never-recorded", "purchase", now) == 0
    # a goal the record lacks yet (the rules reloaded, the trainer about to record it)
    assert recorded.counted_from("hero-test", "newsletter", now) == day_start("2026-12-06")
    # a goal once recorded keeps its day, or the start, removed and put back: a server
    # still serving the older rules (purchase gone, signup renamed back) moves nothing
    later = now + 3 * 86_400
    assert recorded.with_running(running, begun={"hero-test"}, now=later).since == \
        recorded.since
    older = recorded.with_running({"hero-test": ("signup",)}, begun={"hero-test"},
                                  now=later)
    assert older.goals_of("hero-test") == frozenset({"signup"})
    assert dict(older.since_of("hero-test")) == {"purchase": "2026-12-06"}
    assert older.joining(running) == []
    back = older.with_running(running, begun={"hero-test"}, now=later)
    assert dict(back.since_of("hero-test")) == {"purchase": "2026-12-06"}
    renamed = back.with_running({"hero-test": ("sign-up",)}, begun={"hero-test"}, now=later)
    undone = renamed.with_running(running, begun={"hero-test"}, now=later + 86_400)
    assert dict(undone.since_of("hero-test")) == {"purchase": "2026-12-06",
                                                  "sign-up": "2026-12-09"}
    assert undone.counted_from("hero-test", "signup", later) == 0   # from the start still
    # kept once the experiment is removed from the rules
    assert dict(back.with_running({}).since_of("hero-test")) == {"purchase": "2026-12-06"}
    again = GoalCatalog.decode(undone.encode(), 5)
    assert (again.since, again.ever, again.version) == (undone.since, undone.ever, 5)
    # the readers of the release before read every day the table gives (they took "" for
    # none: the record was wiped, and written again without its days, at every look)
    written = json.loads(undone.encode())
    assert all(day_start(day) for days in written["since"].values() for day in days.values())
    assert written["ever"] == {"hero-test": ["purchase", "sign-up", "signup"],
                               "new-test": ["purchase"], "quiet-test": ["purchase", "signup"]}
    # a record with "" for the goals from the start (written for an hour on 2026-12-05)
    between = GoalCatalog.decode(b'{"experiments": {"a": ["x", "y"]}, "since": '
                                 b'{"a": {"x": "", "y": "2026-12-06", "z": ""}}}', 2)
    assert dict(between.since) == {"a": {"y": "2026-12-06"}}
    assert dict(between.ever) == {"a": ("x", "y", "z")}
    for junk in (b'{"experiments": {}, "since": {"a": {"x": "soon"}}}',
                 b'{"experiments": {}, "since": {"a": {"x": "20261205"}}}',
                 b'{"experiments": {}, "since": {"a": ["x"]}}'):
        with pytest.raises(ValueError):
            GoalCatalog.decode(junk, 1)


def test_a_goal_joining_the_rules_once_a_rule_reached_visitors_judges_them_from_the_next_day(
        ) -> None:
    now = day_start("2026-12-05") + 15 * 3600
    first = GoalCatalog().with_rules(("signup",), begun=True, now=now)
    assert first.rule_goals == ("signup",) and dict(first.rules_since) == {}   # the start
    assert not first.rules_joining(("signup",)) and first.rules_joining(("signup", "buy"))
    # before the trainer records it, a new goal already counts from the next day
    assert first.rule_counted_from("buy", now) == day_start("2026-12-06")
    assert first.rule_counted_from("signup", now) == 0
    assert GoalCatalog().rule_counted_from("buy", now) == 0   # never recorded
    # no rule had reached a visitor yet: a goal added judges the rules from the start
    assert dict(first.with_rules(("signup", "buy"), begun=False, now=now).rules_since) == {}
    joined = first.with_rules(("signup", "buy"), begun=True, now=now)
    assert dict(joined.rules_since) == {"buy": "2026-12-06"}
    assert joined.rule_counted_from("buy", now) == day_start("2026-12-06")
    # removed and put back days later: the goal keeps its day
    later = now + 3 * 86_400
    back = joined.with_rules(("signup",), begun=True, now=later).with_rules(
        ("signup", "buy"), begun=True, now=later)
    assert (back.rule_goals, dict(back.rules_since)) == (("buy", "signup"),
                                                         {"buy": "2026-12-06"})
    again = GoalCatalog.decode(back.encode(), 4)
    assert (again.rule_goals, dict(again.rules_since)) == (back.rule_goals,
                                                           dict(back.rules_since))
    assert json.loads(back.encode())["rules"] == {"goals": ["buy", "signup"],
                                                  "since": {"buy": "2026-12-06"}}
    assert GoalCatalog.decode(b'{"experiments": {}}', 1).rule_goals == ()
    for junk in (b'{"experiments": {}, "rules": {"goals": [1]}}',
                 b'{"experiments": {}, "rules": {"goals": [], "since": {"x": "today"}}}',
                 b'{"experiments": {}, "rules": []}'):
        with pytest.raises(ValueError):
            GoalCatalog.decode(junk, 1)


def test_read_catalog_takes_what_was_published_and_is_empty_otherwise(
        tmp_path: Path) -> None:
    async def main() -> None:
        store = open_store(sqlite_url(tmp_path / "ep.db"))
        try:
            assert dict((await read_catalog(store)).experiments) == {}
            recorded = GoalCatalog(MappingProxyType({"hero-test": ("signup",)}))
            version = await store.publish(TABLE_NAME, recorded.encode())
            read = await read_catalog(store)
            assert (dict(read.experiments), read.version) == ({"hero-test": ("signup",)},
                                                              version)
            junk = await store.publish(TABLE_NAME, b"not json")
            unreadable = await read_catalog(store)
            assert (dict(unreadable.experiments), unreadable.version) == ({}, junk)
        finally:
            await store.close()

    anyio.run(main)


STOPPING = """\
slots: {hero: {}}
goals:
  signup: {when: {request.path: /page/signup}}
  purchase: {when: {request.path: /page/thanks}}
experiments:
  - name: hero-test
    slot: hero
    goals: [signup]
    holdout: 0
    variants: {control: {weight: 1}, a: {weight: 1, html: A}}
"""
STOPPED = STOPPING.partition("experiments:")[0]


@contextlib.contextmanager
def shown_a_page(origin: Server, tmp_path: Path, rules_text: str = STOPPING
                 ) -> Iterator[tuple[Server, httpx.Client, str, str, Path]]:
    """A proxy serving `rules_text` (STOPPING: a visitor is shown hero-test) into its own
    SQLite store, and a phone visitor shown a page: the server, the visitor's client and
    profile cookie, the store's URL, the rule file."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(rules_text)
    url = sqlite_url(tmp_path / "ep.db")
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules), env={
        "EP_PROFILE_KEYS": PROFILE_KEY, "EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_STORE_URL": url,
        "EP_STORE_FLUSH_INTERVAL": "0.2", "EP_STORE_POLL_INTERVAL": "0.2"})
    try:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            assert client.get("/slotted/home", headers=PAGE).status_code == 200
            yield server, client, client.cookies["ep_profile"], url, rules / "site.yaml"
    finally:
        server.stop()


def test_a_stopped_experiment_counts_late_conversions_only_on_its_own_goals(
        origin: Server, tmp_path: Path) -> None:
    # A visitor exposed while hero-test ran buys, and signs up, after it was removed from
    # the rules: the signup counts for it (within the goal's window), the purchase (a goal
    # it was never judged on) does not; its results show the signup alone.
    with shown_a_page(origin, tmp_path) as (server, client, cookie, url, rules):
        deadline = time.monotonic() + 10
        while "hero-test" not in read_store(url, read_catalog).experiments:
            assert time.monotonic() < deadline, "the experiment's goals were not recorded"
            time.sleep(0.1)
        time.sleep(0.5)   # every worker's copy of the record refreshed (every 0.2 s)
        server.serve_rules(rules, STOPPED)
        for path in ("/page/thanks", "/page/signup"):
            client.get(path, headers={**PAGE, "cookie": f"ep_profile={cookie}"})
        deadline = time.monotonic() + 10
        while True:
            (stopped,) = client.get("/__ep/results", headers=ADMIN).json()["experiments"]
            if stopped["goals"].get("signup", {}).get("variants"):
                if sum(v["converted"] for v in stopped["goals"]["signup"][
                        "variants"].values()) == 1:
                    break
            assert time.monotonic() < deadline, f"the signup was not counted: {stopped}"
            time.sleep(0.2)
    assert stopped["status"] == "stopped" and list(stopped["goals"]) == ["signup"]
    totals = read_store(url, lambda store: store.totals("hero-test"))
    assert {key.goal: tally.conversions for key, tally in totals.items() if key.goal} == {
        "signup": 1}


def test_a_goal_added_while_an_experiment_runs_counts_no_visitor_exposed_before(
        origin: Server, tmp_path: Path) -> None:
    # A visitor is shown hero-test, judged on signup; purchase is then added to its goals.
    # The visitor buys and signs up: the signup counts, the purchase (a goal that was not
    # there when they were shown the page) does not, and the results say from which day
    # purchase judges the experiment.
    with shown_a_page(origin, tmp_path) as (server, client, cookie, url, rules):
        deadline = time.monotonic() + 10
        while not read_store(url, lambda store: store.totals("hero-test")):
            assert time.monotonic() < deadline, "the exposure was not counted"
            time.sleep(0.1)
        server.serve_rules(rules, STOPPING.replace("goals: [signup]", "goals: [signup, purchase]"))
        days = {utc_day(time.time() + 86_400)}   # (the next UTC day, either side of
        deadline = time.monotonic() + 10          # a midnight met meanwhile)
        while (tomorrow := read_store(url, read_catalog).since_of("hero-test").get(
                "purchase")) not in days | {utc_day(time.time() + 86_400)}:
            assert time.monotonic() < deadline, "purchase's day was not recorded"
            time.sleep(0.1)
        for path in ("/page/thanks", "/page/signup"):
            client.get(path, headers={**PAGE, "cookie": f"ep_profile={cookie}"})
        deadline = time.monotonic() + 10
        while True:
            (hero,) = client.get("/__ep/results", headers=ADMIN).json()["experiments"]
            if sum(v["converted"] for v in hero["goals"]["signup"]["variants"].values()):
                break
            assert time.monotonic() < deadline, f"the signup was not counted: {hero}"
            time.sleep(0.2)
    purchase = hero["goals"]["purchase"]
    assert purchase["since"] == tomorrow
    assert sum(v["converted"] for v in purchase["variants"].values()) == 0
    assert any(w.startswith("purchase joined the experiment while it ran")
               for w in hero["warnings"])
    totals = read_store(url, lambda store: store.totals("hero-test"))
    assert {key.goal: tally.conversions for key, tally in totals.items() if key.goal} == {
        "signup": 1}


RULED = """\
slots: {hero: {}}
goals:
  signup: {when: {request.path: /page/signup}}
rules:
  - name: phone-hero
    when: {device.type: mobile}
    then: {hero: {html: Phone}}
"""
RULED_LATER = RULED.replace(
    "goals:\n", "goals:\n  purchase: {when: {request.path: /page/thanks}}\n")


def test_a_goal_added_to_the_rule_files_counts_no_visitor_a_rule_reached_before(
        origin: Server, tmp_path: Path) -> None:
    # A phone visitor is shown phone-hero while the rules have one goal, signup; purchase
    # is then added. The visitor buys and signs up: the signup counts for the rule, the
    # purchase does not (the goal was not there when the rule reached them), and the
    # results judge the rule on purchase from the next UTC day, over the visitors since.
    with shown_a_page(origin, tmp_path, RULED) as (server, client, cookie, url, rules):
        deadline = time.monotonic() + 10
        while not read_store(url, lambda store: store.totals("phone-hero")):
            assert time.monotonic() < deadline, "the rule's exposure was not counted"
            time.sleep(0.1)
        server.serve_rules(rules, RULED_LATER)
        days = {utc_day(time.time() + 86_400)}
        deadline = time.monotonic() + 10
        while (tomorrow := read_store(url, read_catalog).rules_since.get(
                "purchase")) not in days | {utc_day(time.time() + 86_400)}:
            assert time.monotonic() < deadline, "purchase's day was not recorded"
            time.sleep(0.1)
        time.sleep(0.5)   # every worker's copy of the record refreshed
        for path in ("/page/thanks", "/page/signup"):
            client.get(path, headers={**PAGE, "cookie": f"ep_profile={cookie}"})
        deadline = time.monotonic() + 10
        while True:
            (rule,) = client.get("/__ep/results", headers=ADMIN).json()["rules"]
            if rule["variants"]["phone-hero"]["goals"].get("signup", {}).get("converted"):
                break
            assert time.monotonic() < deadline, f"the signup was not counted: {rule}"
            time.sleep(0.2)
    totals = read_store(url, lambda store: store.totals("phone-hero"))
    assert {key.goal: tally.conversions for key, tally in totals.items() if key.goal} == {
        "signup": 1}
    assert read_store(url, read_catalog).rule_goals == ("purchase", "signup")
    assert rule["variants"]["phone-hero"]["exposed"] == 1
    # purchase judges the rule from the next day: no visitor reached since, none counted
    assert rule["variants"]["phone-hero"]["goals"]["purchase"] == {
        "converted": 0, "rate": None, "rate_low": None, "rate_high": None,
        "since": tomorrow, "exposed": 0}
