"""Visitors like you: counting what follows a pair of interests, the model, its predictions."""

from __future__ import annotations

import time
from pathlib import Path
from types import MappingProxyType

import httpx
import jsonschema
import pytest
import yaml

from edge_personalizer.classify.profile import InterestMap, Profile, ProfileTracker
from edge_personalizer.classify.profile_codec import ProfileCodec
from edge_personalizer.classify.visitor import DIRECT
from edge_personalizer.learn.affinity import (
    AFFINITY,
    CONVERSION,
    INTEREST,
    AffinityModel,
    Predictor,
    affinity_counts,
    build_model,
    record,
    strongest,
    strongest_before,
)
from edge_personalizer.learn.attribution import Learning
from edge_personalizer.learn.counters import Accumulator, CountKey, Tally
from edge_personalizer.rules.book import check_rules
from edge_personalizer.rules.evaluator import decide
from edge_personalizer.rules.schema import build_schema

from ..factories import make_classifier, make_visitor
from ..servers import start_origin, start_proxy

DAY = 86_400


def test_the_strongest_two_interests_as_decayed_strongest_first() -> None:
    now = 100 * DAY
    scores = {"running": (0.9, now - 60 * DAY),   # 0.9 two half-lives ago: 0.225 now
              "trail": (0.5, now), "yoga": (0.3, now - DAY), "swim": (0.0, now)}
    assert strongest(scores, 30.0) == ("trail", "yoga")
    assert strongest({"yoga": (0.2, now)}, 30.0) == ("yoga",)
    assert strongest({}, 30.0) == ()


def counted(*views: tuple[tuple[str, ...], tuple[str, ...]]) -> dict[CountKey, Tally]:
    counters = Accumulator()
    for top, categories in views:
        record(counters, top, categories)
    counters.collect()
    return counters.pending_batch(10_000)


def test_a_view_counts_once_with_its_categories_beyond_the_strongest_two() -> None:
    rows = counted((("trail", "running"), ("running", "socks", "shoes")),
                   (("running", "trail"), ("shoes",)), ((), ("shoes", "running")),
                   (("running", "trail"), ("trail",)))   # nothing beyond the pair: no count
    assert affinity_counts(rows) == {("running", "trail"): {"shoes\x1fsocks": 1.0,
                                                            "shoes": 1.0},
                                     (): {"running\x1fshoes": 1.0}}   # no interests yet
    assert {key.experiment for key in rows} == {AFFINITY}


def test_conversions_count_with_their_weight() -> None:
    counters = Accumulator()
    record(counters, ("running",), ("shoes",), goal=CONVERSION)
    record(counters, ("running",), ("socks",), goal=INTEREST)
    counters.collect()
    counts = affinity_counts(counters.pending_batch(10), conversion_weight=3.0)
    assert counts == {("running",): {"shoes": 3.0, "socks": 1.0}}


COUNTS = {
    ("running", "trail"): {"shoes": 60.0, "socks": 30.0, "yoga": 10.0},
    ("running", "yoga"): {"mats": 5.0},                   # below the minimum support
    ("yoga",): {"mats": 40.0, "socks": 10.0},
    ("swim",): {"goggles": 30.0, "shoes": 5.0},
}


def test_a_supported_pair_predicts_from_its_own_counts() -> None:
    model = build_model(COUNTS, min_support=20, pair_prior=0.0)
    assert model.predict(("trail", "running")) == (("shoes", 0.6), ("socks", 0.3),
                                                   ("yoga", 0.1))


def test_a_pair_below_the_support_backs_off_to_its_single_categories() -> None:
    model = build_model(COUNTS, min_support=20, single_prior=0.0)
    chances = dict(model.predict(("yoga", "running")))
    assert list(chances)[:2] == ["mats", "shoes"]
    assert "yoga" not in chances and "running" not in chances
    # running's 105 views and yoga's 55 count in equal parts: yoga's mats weigh as much
    assert chances["mats"] == pytest.approx((5 / 105 + 45 / 55) / 2, abs=1e-5)
    assert chances["shoes"] == pytest.approx(60 / 105 / 2, abs=1e-5)
    # ... where by their views the commoner running's shoes would come first
    by_views = build_model(COUNTS, min_support=20, single_prior=0.0, even_backoff=False)
    assert [name for name, _ in by_views.predict(("yoga", "running"))][:2] == ["shoes", "mats"]


def test_smoothing_draws_a_pair_towards_its_single_categories() -> None:
    plain = dict(build_model(COUNTS, pair_prior=0.0).predict(("running", "trail")))
    smooth = dict(build_model(COUNTS, pair_prior=100.0).predict(("running", "trail")))
    assert smooth["shoes"] < plain["shoes"]
    assert "mats" in smooth and "mats" not in plain


def test_unknown_interests_get_the_most_popular_categories_they_do_not_have() -> None:
    model = build_model(COUNTS, top=3)
    assert [n for n, _ in model.predict(())] == ["shoes", "mats", "socks"]
    assert [n for n, _ in model.predict(("shoes", "cycling"))] == ["mats", "socks", "goggles"]
    assert [n for n, _ in model.predict(("cycling",))] == ["shoes", "mats", "socks"]


def test_visitors_with_no_interests_get_what_new_visitors_look_at_first() -> None:
    # running and trail visitors go on to shoes and socks; new visitors start on running
    counts = {**COUNTS, (): {"running": 30.0, "shoes\x1frunning": 10.0, "yoga": 5.0}}
    model = build_model(counts, top=3, single_prior=0.0)
    assert [n for n, _ in model.predict(())] == ["running", "yoga", "shoes"]
    assert dict(model.predict(()))["running"] == pytest.approx(40 / 45, abs=1e-5)
    # ... which only the newcomers' counts change
    assert model.pairs == build_model(COUNTS, top=3, single_prior=0.0).pairs
    # too few of them: the most popular categories, as without
    few = build_model({**COUNTS, (): {"running": 5.0}}, top=3, min_support=20)
    assert few.predict(()) == build_model(COUNTS, top=3, min_support=20).predict(())


def test_the_first_three_are_the_three_that_cover_the_most_views_together() -> None:
    counts: dict[tuple[str, ...], dict[str, float]] = {("running", "trail"): {
        "shoes\x1fsocks": 20.0, "shoes\x1fyoga": 20.0, "mats\x1fshoes": 20.0,
        "socks": 14.0, "yoga": 13.0, "mats": 13.0}}
    one_by_one = build_model(counts, pair_prior=0.0, together=1).predict(("running", "trail"))
    together = build_model(counts, pair_prior=0.0).predict(("running", "trail"))
    # shoes is the likeliest (0.6), but socks, yoga and mats between them reach every view
    assert [n for n, _ in one_by_one] == ["shoes", "socks", "mats", "yoga"]
    assert [n for n, _ in together] == ["socks", "mats", "yoga", "shoes"]
    assert dict(together) == dict(one_by_one)   # the chances are the same


def test_predictions_are_chances_best_first_and_at_most_top() -> None:
    model = build_model(COUNTS, top=2)
    for top in [("running", "trail"), ("yoga",), ("swim", "yoga"), ("yoga", "running"), ()]:
        predicted = model.predict(top)
        assert 0 < len(predicted) <= 2
        assert [s for _, s in predicted] == sorted((s for _, s in predicted), reverse=True)
        assert all(0 < s <= 1 for _, s in predicted)
        assert not {n for n, _ in predicted} & set(top)
    assert model.score(("running", "trail"), "shoes") == model.predict(("running", "trail"))[0][1]
    assert model.score(("running", "trail"), "goggles") == 0.0


def test_the_predictions_together_cover_the_most_next_views() -> None:
    counts: dict[tuple[str, ...], dict[str, float]] = {
        ("running", "trail"): {"shoes\x1fsocks": 40.0, "yoga": 30.0, "shoes": 10.0}}
    model = build_model(counts, pair_prior=0.0, top=3)
    # socks (0.5) is likelier than yoga, but always comes with shoes: yoga reaches more
    assert model.predict(("trail", "running")) == (("shoes", 0.625), ("yoga", 0.375),
                                                   ("socks", 0.5))
    assert model.score(("running", "trail"), "socks") == 0.5


def test_a_pair_drawn_towards_its_single_categories_keeps_views_whole() -> None:
    counts: dict[tuple[str, ...], dict[str, float]] = {
        ("running", "trail"): {"shoes\x1fsocks": 40.0, "yoga": 30.0},
        ("running", "swim"): {"goggles": 200.0}}
    predicted = build_model(counts, pair_prior=100.0, single_prior=0.0).predict(
        ("running", "trail"))
    # 70 own views and 100 views' worth of running's (270 views) and trail's (70), half each
    chances = dict(predicted)
    assert chances["goggles"] == pytest.approx(100 / 170 * 200 / 270 / 2, abs=1e-5)
    assert chances["shoes"] == chances["socks"] == pytest.approx(
        (40 + 100 * (40 / 270 + 40 / 70) / 2) / 170, abs=1e-5)
    assert [name for name, _ in predicted] == ["shoes", "yoga", "goggles", "socks"]


def test_no_counts_make_an_empty_model_that_predicts_nothing() -> None:
    model = build_model({})
    assert model.predict(("running", "trail")) == () and model.predict(()) == ()


def test_the_model_survives_its_encoding() -> None:
    model = build_model(COUNTS, version=3, built_at=99.5)
    again = AffinityModel.decode(model.encode(), 3)
    assert again == model
    with pytest.raises(ValueError, match="not an affinity model"):
        AffinityModel.decode(b'{"pairs": 1}', 4)


def test_the_strongest_interests_before_a_view_are_worked_out_from_after_it() -> None:
    tracker = ProfileTracker(ProfileCodec([b"affinity-test-key-0123456789abcdef"]),
                             interests=InterestMap({"running": ["/running*"],
                                                    "trail": ["/trail*"],
                                                    "yoga": ["/yoga*"]}))
    cookies: dict[str, str] = {}
    checked = 0
    for at, path in enumerate(["/running", "/running", "/running", "/trail", "/trail",
                               "/yoga", "/running"]):
        before = tracker.observe(cookies=cookies, headers={}, now=1_000_000 + at * 60,
                                 path="/", page_view=False, referral=lambda: DIRECT)
        after = tracker.observe(cookies=cookies, headers={}, now=1_000_000 + at * 60,
                                path=path, page_view=True, referral=lambda: DIRECT)
        categories = tracker.interests.categories(path)
        undone = strongest_before(after.scores, categories, learning_rate=0.25,
                                  half_life_days=30.0)
        scores = sorted((round(s, 2) for s, _ in before.scores.values()), reverse=True)
        if len(set(scores[:3])) == len(scores[:3]):   # no tie the cookie's rounding could flip
            assert undone == strongest(before.scores, 30.0)
            checked += 1
        cookies = {tracker.cookie_name: tracker.cookie_value(after)}
    assert checked == 7


def test_page_views_count_what_follows_the_strongest_interests() -> None:
    learning = Learning(Accumulator())
    now = 1_000_000
    profile = Profile("v-1", now, now, now, scores=MappingProxyType({
        "running": (0.6, now), "trail": (0.4, now), "shoes": (0.25, now)}), now=now)
    learning.viewed(profile, ["shoes", "trail"], learning_rate=0.25)   # shoes is new
    learning.viewed(profile, ["socks", "shoes", "trail"], learning_rate=0.25)
    learning.viewed(profile._replace(stored=False), ["shoes"], learning_rate=0.25)
    learning.counters.collect()
    assert affinity_counts(learning.counters.pending_batch(10)) == {
        ("running", "trail"): {"shoes": 1.0, "shoes\x1fsocks": 1.0}}


RULES = """\
slots: {hero: {selector: "#hero"}}
interests:
  running: ["/running*"]
  trail: ["/trail*"]
  shoes: ["/shoes*"]
rules:
  - name: next-trail
    when: {profile.predicted_top: trail, profile.predicted.trail: {gte: 0.3}}
    then: {hero: {html: "Trail?"}}
"""


def test_rules_read_the_predictions_of_visitors_like_this_one(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES)
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    classifier = make_classifier(interests={"running": ["/running*"], "trail": ["/trail*"],
                                            "shoes": ["/shoes*"]})
    model = build_model({("running",): {"trail": 30.0, "shoes": 10.0}}, single_prior=0.0)
    visitor = make_visitor("/running/10k", classifier=classifier)
    assert decide(ruleset, visitor).slots == {}      # no model: nothing predicted
    classifier.predictor = Predictor(lambda: model)
    visitor = make_visitor("/running/10k", classifier=classifier)
    assert visitor.predicted == (("trail", 0.75), ("shoes", 0.25))
    assert decide(ruleset, visitor).slots["hero"].by == "next-trail"


@pytest.mark.parametrize(("old", "new", "line", "message"), [
    ("profile.predicted.trail:", "profile.predicted.trial:", 8,
     "unknown interest 'trial'; the interests section defines running, shoes, trail; "
     "did you mean 'trail'?"),
    ("predicted_top: trail", "predicted_top: [trail, yoga]", 8, "unknown interest 'yoga'"),
    ('interests:\n  running: ["/running*"]\n  trail: ["/trail*"]\n  shoes: ["/shoes*"]\n', "",
     4, "profile.predicted_top predicts interests: define them in an interests: section"),
])
def test_predictions_of_undeclared_interests_are_errors_at_their_line(
        tmp_path: Path, old: str, new: str, line: int, message: str) -> None:
    (tmp_path / "r.yaml").write_text(RULES.replace(old, new))
    _, errors = check_rules(tmp_path)
    assert errors and message in str(errors[0]) and errors[0].line == line


SERVER_RULES = """\
slots: {hero: {}}
interests:
  running: ["/slotted/running*"]
  trail: ["/slotted/trail*"]
  shoes: ["/slotted/shoes*"]
rules:
  - name: trail-next
    when: {profile.predicted_top: trail}
    then: {hero: {html: "Trail?"}}
"""
BROWSER = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/124.0 Safari/537.36")


def test_visitors_like_you_through_the_running_server(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "predicted.yaml").write_text(SERVER_RULES)
    origin = start_origin(tmp_path)
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules), env={
        "EP_VARIANT_HEADER": "true", "EP_STORE_FLUSH_INTERVAL": "0.2",
        "EP_LEARN_INTERVAL": "1", "EP_PROFILE_COOKIE_SECURE": "false"})
    headers = {"accept": "text/html", "user-agent": BROWSER}
    try:
        with httpx.Client(base_url=proxy.url, timeout=10.0) as client:
            before = client.get("/slotted/running", headers=headers)
            for _ in range(30):   # runners go on to trail pages
                client.cookies.clear()
                first = client.get("/slotted/running", headers=headers)
                cookie = first.headers["set-cookie"].split(";", 1)[0]
                client.get("/slotted/trail", headers={**headers, "cookie": cookie})
            time.sleep(3.5)   # a flush, a rebuild, a worker's read
            client.cookies.clear()
            after = client.get("/slotted/running", headers=headers)
            client.cookies.clear()
            decided = client.get("/__ep/decide", params={"url": "/slotted/running"},
                                 headers=headers).json()
    finally:
        proxy.stop()
        origin.stop()
    assert "x-ep-variant" not in before.headers   # nothing learned yet
    assert after.headers["x-ep-variant"] == "hero=trail-next" and "Trail?" in after.text
    assert decided["predicted"][0]["category"] == "trail"
    assert decided["predicted"][0]["score"] > 0.5


BY_RULES = """\
slots: {hero: {selector: "#hero"}}
interests:
  running: ["/running*"]
  trail: ["/trail*"]
  shoes: ["/shoes*"]
rules:
  - name: next-interest
    when: {profile.visits: {gte: 1}}
    then:
      hero:
        by: profile.predicted_top
        variants: {trail: {html: "Trail?"}, shoes: {html: "Shoes?"}}
"""


def test_a_slot_shows_the_fragment_of_the_predicted_interest(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(BY_RULES)
    ruleset, errors = check_rules(tmp_path)
    assert errors == []
    assert [rule.name for rule in ruleset.rules] == ["next-interest.trail",
                                                     "next-interest.shoes"]
    jsonschema.validate(yaml.safe_load(BY_RULES), build_schema())
    classifier = make_classifier(interests={"running": ["/running*"], "trail": ["/trail*"],
                                            "shoes": ["/shoes*"]})
    model = build_model({("running",): {"shoes": 30.0, "trail": 10.0},
                         ("trail",): {"running": 30.0}}, single_prior=0.0)
    classifier.predictor = Predictor(lambda: model)
    runner = decide(ruleset, make_visitor("/running", classifier=classifier)).slots["hero"]
    assert runner.by == "next-interest.shoes" and runner.content is not None
    assert decide(ruleset, make_visitor("/trail", classifier=classifier)).slots == {}


@pytest.mark.parametrize(("old", "new", "message"), [
    ("variants: {trail:", "variants: {trial:", "unknown interest 'trial'"),
    ("by: profile.predicted_top", "by: profile.predicted_tip", "unknown field"),
    ("        variants: {trail", "        choices: {trail", "a slot filled by a field is"),
])
def test_a_slot_by_a_field_is_checked_at_load(tmp_path: Path, old: str, new: str,
                                              message: str) -> None:
    (tmp_path / "r.yaml").write_text(BY_RULES.replace(old, new))
    _, errors = check_rules(tmp_path)
    assert len(errors) == 1 and message in str(errors[0]), errors
    assert errors[0].line in (11, 12, 13)
