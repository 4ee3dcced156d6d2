"""What rules that load still get wrong: a schedule that has ended, a rule before that takes
the slots for every visitor."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from edge_personalizer.cli import main
from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.conditions import AllOf
from edge_personalizer.rules.notices import (
    Notice,
    Noticed,
    begun_nowhere,
    described,
    ended_for_everyone,
    notices,
    phase,
)
from edge_personalizer.rules.schedule import Schedule

from ..conftest import ADMIN_TOKEN, PROFILE_KEY
from ..servers import Server, start_proxy

ENDED = """\
slots: {hero: {}}
rules:
  - name: black-friday
    when: {referral.medium: email}
    schedule: {start: 2026-11-27, end: 2026-11-30}
    then: {hero: x}
  - name: by.country
    schedule: {end: 2026-11-30}
    then: {hero: {by: geo.country, variants: {GB: a, FR: b}}}
  - name: christmas
    schedule: {start: 2026-12-20, end: 2026-12-26}
    then: {hero: y}
  - name: always
    then: {hero: z}
  - name: by-source
    schedule: {end: 2026-11-30}
    then: {hero: {by: request.query.src, variants: {news.letter: a}}}
    priority: 1
"""


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("now", "ended"), [
    # Its last day is the visitor's own: at UTC-12 it lasts until 12:00 UTC the day after.
    ("2026-12-01T11:59", False), ("2026-12-01T12:00", True),
])
def test_a_schedule_ends_once_its_last_day_is_over_in_every_time_zone(
        now: str, ended: bool) -> None:
    assert ended_for_everyone(Schedule(end=date(2026, 11, 30)), _at(now)) is ended


def test_a_night_that_spans_midnight_ends_the_morning_after_its_last_day() -> None:
    night = Schedule(end=date(2026, 11, 30), hours=(22 * 60, 6 * 60))   # 22:00-06:00
    assert not ended_for_everyone(night, _at("2026-12-01T17:59"))
    assert ended_for_everyone(night, _at("2026-12-01T18:00"))
    assert not ended_for_everyone(Schedule(start=date(2026, 1, 1)), _at("2030-01-01T00:00"))


@pytest.mark.parametrize(("now", "expected"), [
    # Its first day is the visitor's own: at UTC+14 it begins at 10:00 UTC the day before.
    ("2026-11-30T09:59", "scheduled"), ("2026-11-30T10:00", "running"),
    ("2026-12-25T11:59", "running"), ("2026-12-25T12:00", "ended"),
])
def test_a_schedule_s_phase_is_where_it_stands_for_visitors_anywhere(
        now: str, expected: str) -> None:
    advent = Schedule(start=date(2026, 12, 1), end=date(2026, 12, 24))
    assert phase(advent, _at(now)) == expected
    assert phase(AllOf((advent,)), _at(now)) == expected
    assert begun_nowhere(advent, _at(now)) is (expected == "scheduled")


def test_a_schedule_s_days_bound_its_first_and_last_day() -> None:
    # Ending Sunday 2026-12-06 on Tuesdays only, its last day was Tuesday 12-01: on
    # Saturday it still said "running".
    tuesdays = Schedule(start=date(2026, 11, 26), end=date(2026, 12, 6),
                        days=frozenset({"tue"}))
    assert phase(tuesdays, _at("2026-12-05T10:00")) == "ended"
    assert phase(tuesdays, _at("2026-12-02T11:59")) == "running"
    # Its first Tuesday is 12-01 (10:00 UTC the day before, at UTC+14).
    assert phase(tuesdays, _at("2026-11-30T09:59")) == "scheduled"


def test_a_condition_with_no_schedule_is_always_running() -> None:
    assert phase(AllOf(()), _at("2026-12-01T00:00")) == "running"


def test_each_rule_whose_schedule_ended_is_told_once_where_it_is_written(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(ENDED)
    ruleset = load_rules(tmp_path)
    told = notices(ruleset, _at("2026-12-05T03:00"))
    source = tmp_path / "r.yaml"
    assert [str(n) for n in told] == [
        f"{source}:3: rule 'black-friday': its schedule ended on 2026-11-30 (the visitors' "
        "own dates), so it matches no one any more; remove it, or move its end",
        f"{source}:7: rule 'by.country': its schedule ended on 2026-11-30 (the visitors' "
        "own dates), so it matches no one any more; remove it, or move its end",
        f"{source}:15: rule 'by-source': its schedule ended on 2026-11-30 (the visitors' "
        "own dates), so it matches no one any more; remove it, or move its end"]
    assert notices(ruleset, _at("2026-11-29T00:00")) == []
    assert [n.where for n in notices(ruleset, _at("2027-01-01T00:00"))] == [
        f"{source}:3", f"{source}:7", f"{source}:10", f"{source}:15"]


def test_an_experiment_whose_schedule_ended_is_told_too(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: advent\n    slot: hero\n"
        "    audience: {device.type: mobile}\n    schedule: {end: 2026-12-24}\n"
        "    variants: {control: {}, b: {html: x}}\n")
    ruleset = load_rules(tmp_path)
    assert notices(ruleset, _at("2026-12-25T11:00")) == []
    assert [str(n) for n in notices(ruleset, _at("2026-12-25T12:00"))] == [
        f"{tmp_path / 'r.yaml'}:3: experiment 'advent': its schedule ended on 2026-12-24 (the "
        "visitors' own dates), so it shows no variant any more and counts no one new (its "
        "results stay); remove it to stop it, or move its end"]


def test_notices_are_worked_out_again_each_minute_and_for_each_version(
        tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(ENDED)
    ruleset = load_rules(tmp_path)
    noticed = Noticed()
    first = noticed.of(ruleset, _at("2026-12-05T03:00:10"))
    assert noticed.of(ruleset, _at("2026-12-05T03:00:50")) is first   # the same minute
    assert len(noticed.of(ruleset, _at("2027-01-01T00:00"))) == 4
    (tmp_path / "r.yaml").write_text(ENDED.replace("end: 2026-11-30}", "end: 2026-12-31}", 1))
    # a new version in the same minute as the call before: worked out anew
    assert len(noticed.of(load_rules(tmp_path), _at("2027-01-01T00:00"))) == 3


def test_the_server_logs_and_shows_a_rule_whose_schedule_has_ended(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(ENDED.replace("2026-12-20", "2025-12-20").replace(
        "2026-12-26", "2025-12-26"))
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        health = server.health().json()
        page = httpx.get(f"{server.url}/__ep/dashboard/segments",
                         headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
        served = httpx.get(f"{server.url}/page/x", headers={"accept": "text/html"})
        log = server.log()
    finally:
        server.stop()
    assert served.status_code == 200   # the rules serve all the same
    warnings = health["rules"]["warnings"]
    assert [w.split(": ")[0] for w in warnings] == [
        f"{rules / 'site.yaml'}:{line}" for line in (3, 7, 10, 15)]
    assert "rule 'christmas': its schedule ended on 2025-12-26" in warnings[2]
    assert "4 rules reach no one:\n  " + warnings[0] in log   # (continued, indented)
    assert log.count("reach no one") == 1   # the server's, not each worker's too
    banner = page.split('data-banner="notices"')[1].split("</div>")[0]
    assert "What the rules miss" in banner and "rule &#39;christmas&#39;" in banner


SHADOWED = """\
slots: {hero: {}, promo: {}, banner: {}}
segments:
  everyone: {when: {all: [{segment: anyone}]}}
  anyone: {when: {any: [{device.type: mobile}, {not: {device.type: mobile}}]}}
rules:
  - name: everyone-hero
    then: {hero: a}
  - name: uk-hero
    when: {geo.country: GB}
    then: {hero: b}
  - name: uk-hero-and-promo
    when: {geo.country: GB}
    then: {hero: b, promo: c}
  - name: half-promo
    traffic: 50%
    then: {promo: d}
  - name: late-promo
    then: {promo: e}
  - name: first
    priority: 5
    then: {banner: f}
experiments:
  - name: hero-test
    slot: hero
    variants: {control: {}, bold: {html: x}}
  - name: promo-test
    slots: [promo, banner]
    variants: {control: {}, bold: {promo: {html: x}, banner: {html: y}}}
"""


def test_rules_and_experiments_behind_a_rule_for_every_visitor_are_told(
        tmp_path: Path) -> None:
    # A catch-all written first: the rules after it for its slot never won, the
    # experiment on it never showed, and validate said "valid" and nothing else.
    (tmp_path / "r.yaml").write_text(SHADOWED)
    source = tmp_path / "r.yaml"
    told = [str(n) for n in notices(load_rules(tmp_path), _at("2026-12-05T12:00"))]
    assert told == [
        f"{source}:8: rule 'uk-hero' can never win: rule 'everyone-hero' ({source}:6) leaves "
        "hero to no visitor after it; give it a higher priority, or the rule before it a "
        "condition",
        f"{source}:23: experiment 'hero-test' is never shown: rule 'everyone-hero' "
        f"({source}:6) leaves hero to no visitor (rules come before experiments); give "
        "that rule a condition, or the experiment another slot",
        f"{source}:26: experiment 'promo-test' is never shown: rule 'late-promo' ({source}:17) "
        f"and rule 'first' ({source}:19) leave promo, banner to no visitor (rules come "
        "before experiments); give that rule a condition, or the experiment another slot"]
    # uk-hero-and-promo still wins promo, half-promo half its visitors: neither is told;
    # `first` ranks first by its priority; a segment that holds for everyone is no `when`
    # the compiler can see through (any of two opposites), so late-promo is not behind it


def test_validate_warns_of_a_rule_that_can_never_win(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    (tmp_path / "r.yaml").write_text(SHADOWED)
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {tmp_path / 'r.yaml'}:8: rule 'uk-hero' can never win" in out
    assert out.rstrip().endswith("valid (version " + load_rules(tmp_path).version
                                 + "); 3 warnings")
    # in CI, a pull request whose catch-all hides a running experiment can be stopped
    assert main(["validate", "--strict", str(tmp_path)]) == 1


def test_what_is_noticed_is_counted_by_kind() -> None:
    rule = Notice("r.yaml:3", "rule", "rule 'a': its schedule ended ...")
    experiment = Notice("r.yaml:9", "experiment", "experiment 'e': its schedule ended ...")
    assert described([rule]) == "1 rule"
    assert described([rule, rule, experiment]) == "2 rules and 1 experiment"
    assert described([experiment, experiment]) == "2 experiments"


def test_a_rule_for_all_the_traffic_hides_an_experiment_but_not_a_later_rule(
        tmp_path: Path) -> None:
    # traffic: 100 takes every visitor with an id, the only ones an experiment places;
    # a later rule still reaches the others (no profile: a crawler, Do Not Track).
    (tmp_path / "r.yaml").write_text(
        "slots: {banner: {}}\nrules:\n  - name: all-traffic\n    traffic: 100\n"
        "    then: {banner: a}\n  - name: fallback\n    then: {banner: b}\n"
        "experiments:\n  - name: banner-test\n    slot: banner\n"
        "    variants: {control: {}, bold: {html: x}}\n")
    told = [n.message for n in notices(load_rules(tmp_path), _at("2026-12-05T12:00"))]
    assert len(told) == 1 and told[0].startswith(
        "experiment 'banner-test' is never shown: rule 'all-traffic' (")


FREE_CELLS = """\
slots: {hero: {}, promo: {}, cta: {}, lang: {}, side: {}, app: {}}
goals: {purchase: {}}
experiments:
  - name: hero-bandit
    slot: hero
    goals: [purchase]
    allocation: bandit
    per: [device.type, referral.source]
    bandit: {burn_in: 10}
    variants: {control: {weight: 1}, a: {html: A}}
  - name: promo-bandit
    slot: promo
    goals: [purchase]
    allocation: bandit
    per: [referral.medium, device.type, profile.first_referral.medium]
    variants: {control: {weight: 1}, a: {html: A}}
  - name: cta-test
    slot: cta
    per: [request.query.q]
    variants: {control: {weight: 1}, a: {html: A}}
  - name: lang-bandit
    slot: lang
    goals: [purchase]
    allocation: bandit
    per: [language.primary]
    variants: {control: {weight: 1}, a: {html: A}}
  - name: side-bandit
    slot: side
    goals: [purchase]
    allocation: bandit
    per: [referral.source]
    bandit: {max_cells: 20}
    variants: {control: {weight: 1}, a: {html: A}}
  - name: app-bandit
    slot: app
    goals: [purchase]
    allocation: bandit
    per: [device.browser]
    variants: {control: {weight: 1}, a: {html: A}}
"""


def test_validate_warns_of_a_bandit_per_a_field_clients_fill_as_they_like(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 2,400 made-up ?utm_source= values were 2,400 cells of a bandit per: referral.source;
    # nothing said a client can make them up. A warning, not an error: the cells beyond
    # max_cells share one row. Fields of a few known values (referral.medium) are not
    # told, nor a fixed experiment (its per: only divides the results), nor a bandit whose
    # max_cells is written (chosen knowingly: validate --strict passes again).
    (tmp_path / "r.yaml").write_text(FREE_CELLS)
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (f"warning: {tmp_path / 'r.yaml'}:4: experiment 'hero-bandit' learns per: "
            "referral.source, which any client fills as it likes") in out
    assert "experiment 'lang-bandit' learns per: language.primary" in out
    # (the browser a User-Agent names: `Whatever123/1.0 CFNetwork/1.0` is `Whatever123`)
    assert "experiment 'app-bandit' learns per: device.browser" in out
    assert "Its 100 cells with the most visitors have weights of their own" in out
    assert "side-bandit" not in out
    assert out.count("warning:") == 3 and out.rstrip().endswith("; 3 warnings")
    noticed = notices(load_rules(tmp_path), datetime(2026, 12, 1, tzinfo=UTC))
    assert [(n.kind, n.name, n.unreached) for n in noticed] == [
        ("experiment", "hero-bandit", False), ("experiment", "lang-bandit", False),
        ("experiment", "app-bandit", False)]


PRINTING = """\
slots: {hero: {}, promo: {}, banner: {}, side: {}}
rules:
  - name: welcome
    when: {referral.medium: social}
    then: {hero: {html: "<p>Welcome, {{ referral.source }} readers</p>"}}
  - name: per-source
    when: {referral.medium: email}
    then:
      promo:
        by: referral.source
        variants:
          news: {html: "<p>Read on in {{ language.primary }}</p>"}
          digest: {html: "<p>Your digest, in {{ language.primary }}</p>"}
  - name: local
    when: {referral.medium: search}
    then: {hero: {html: "<p>{{ geo.country }} on {{ device.type }}, {{ time.daypart }}</p>"}}
  - name: facebook
    when: {referral.source: facebook, device.browser: Firefox, language.primary: de}
    then: {promo: {html: "<p>Willkommen, Facebook-Leser</p>"}}
experiments:
  - name: greet
    slot: banner
    variants:
      control: {}
      browser: {html: "<p>{{ device.browser }} fans save 10%</p>"}
      os: {html: "<p>Made for {{ device.os }}</p>"}
      plain: {html: "<p>Save 10%</p>"}
  - name: shared
    slot: side
    audience: {device.os: iOS}
    variants: {control: {}, b: {html: "<p>{{ geo.city }}</p>"}}
"""


def test_with_keyed_caching_each_variant_printing_a_name_a_client_makes_up_is_told(
        tmp_path: Path) -> None:
    # A page printing referral.source, device.os, device.browser or language.primary went
    # private under keyed caching, and nothing said which: the hit rate only dropped.
    # Conditions on them (rule `facebook`, experiment `shared`'s audience) and fields of a
    # closed set printed (`local`, `shared`) keep pages shared: never told.
    (tmp_path / "r.yaml").write_text(PRINTING)
    ruleset = load_rules(tmp_path)
    source = tmp_path / "r.yaml"
    assert notices(ruleset, _at("2026-12-05T12:00")) == []   # keyed caching off: all private
    told = notices(ruleset, _at("2026-12-05T12:00"), keyed_caching=True)
    assert [(n.where, n.kind, n.name, n.unreached) for n in told] == [
        (f"{source}:3", "rule", "welcome", False),
        (f"{source}:6", "rule", "per-source", False),   # once, for both of its variants
        (f"{source}:21", "experiment", "greet", False)]
    assert told[0].message == (
        "rule 'welcome' prints referral.source in hero, so with keyed caching its pages are "
        "made per visitor and sent private, never shared by the CDN (values from no closed "
        "set: each one a client made up would be a cached page of its own). To keep them "
        "shared, write the name in the variant and choose the variant by a condition "
        "(when: {referral.source: facebook}) or by: (then: {hero: {by: referral.source, "
        "variants: {facebook: ...}}})")
    assert told[1].message.startswith("rule 'per-source' prints language.primary in promo,")
    assert told[2].message.startswith(
        "experiment 'greet' prints device.browser, device.os in banner (variants 'browser', "
        "'os'), so with keyed caching its pages are made per visitor and sent private")
    assert "choose the variant by an audience (audience: {device.browser: Firefox})" \
        in told[2].message
    noticed = Noticed(keyed_caching=True)
    assert noticed.of(ruleset, _at("2026-12-05T12:00")) == told
    assert Noticed().of(ruleset, _at("2026-12-05T12:00")) == []


def test_a_printing_rule_that_reaches_no_one_is_told_that_alone(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - name: summer\n    schedule: {end: 2025-08-31}\n"
        "    then: {hero: {html: 'From {{ referral.source }}'}}\n")
    told = notices(load_rules(tmp_path), _at("2026-12-05T12:00"), keyed_caching=True)
    assert [n.message.split(":")[0] for n in told] == ["rule 'summer'"]
    assert told[0].unreached


def test_the_keyed_caching_server_logs_and_shows_which_rules_pages_go_private(
        origin: Server, server_logs: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(PRINTING)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(rules),
                         "--workers", "2",
                         env={"EP_KEYED_CACHING": "true", "EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        health = server.health().json()
        log = server.log()
    finally:
        server.stop()
    where = [w.split(": ")[0] for w in health["rules"]["warnings"]]
    assert where == [f"{rules / 'site.yaml'}:{line}" for line in (3, 6, 21)]
    version = health["rules"]["version"]
    assert (f"rules version {version}: {rules / 'site.yaml'}:3: rule 'welcome' prints "
            "referral.source in hero, so with keyed caching") in log
    assert log.count("rule 'welcome' prints") == 1   # the server's, not each worker's too
