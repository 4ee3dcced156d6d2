from __future__ import annotations

import base64

import pytest

from edge_personalizer.classify.profile import (
    UNKNOWN_PERIOD,
    Exposure,
    InterestMap,
    Profile,
    ProfileTracker,
    converted_key,
)
from edge_personalizer.classify.profile_codec import ProfileCodec, RejectReason
from edge_personalizer.classify.visitor import Referral

KEY = b"k" * 32
DAY = 86400
T0 = 1_790_000_000
SEARCH = Referral("search", "google")
INTERNAL = Referral("internal", "internal")


def tracker(rejects: list[RejectReason] | None = None, **kwargs: object) -> ProfileTracker:
    codec = kwargs.pop("codec", None) or ProfileCodec([KEY])
    return ProfileTracker(
        codec,  # type: ignore[arg-type]
        interests=InterestMap({"running": ["/running", "/running/*"], "trail": ["/trail*"]}),
        on_reject=rejects.append if rejects is not None else None, **kwargs)  # type: ignore[arg-type]


def visit(t: ProfileTracker, cookie: str | None, now: float, path: str = "/",
          referral: Referral = SEARCH, headers: dict[str, str] | None = None,
          page_view: bool = True) -> Profile:
    cookies = {"ep_profile": cookie} if cookie else {}
    return t.observe(cookies=cookies, headers=headers or {}, now=now, path=path,
                     page_view=page_view, referral=lambda: referral)


def cookie_of(t: ProfileTracker, profile: Profile) -> str:
    header = t.set_cookie_header(profile, secure=True, max_age_days=395).decode()
    return header.split(";")[0].split("=", 1)[1]


def test_first_visit_creates_a_profile() -> None:
    t = tracker()
    profile = visit(t, None, T0, "/running/shoe")
    assert profile.new and profile.stored and profile.changed
    assert (profile.visits, profile.pageviews) == (1, 1)
    assert profile.first_referral is not None and profile.first_referral.source == "google"
    assert profile.interests["running"] == 0.25
    assert profile.days_since_last is None


def test_history_accumulates_across_visits() -> None:
    t = tracker()
    cookie = cookie_of(t, visit(t, None, T0, "/running"))
    same_visit = visit(t, cookie, T0 + 600, "/running/x", INTERNAL)
    assert (same_visit.visits, same_visit.pageviews) == (1, 2)
    cookie = cookie_of(t, same_visit)
    later = visit(t, cookie, T0 + 3 * DAY + 600, "/trail", Referral("email", "newsletter"))
    assert (later.visits, later.pageviews, later.new) == (2, 3, False)
    assert later.days_since_last == 3 and later.days_since_first == 3
    assert later.first_referral is not None and later.first_referral.source == "google"
    assert later.last_referral is not None and later.last_referral.source == "newsletter"
    assert later.interests["running"] < 0.4375   # decayed over three days
    assert later.interests["trail"] == 0.25


def test_interest_decays_with_the_half_life() -> None:
    t = tracker(half_life_days=10)
    profile = visit(t, None, T0, "/running")
    cookie = cookie_of(t, profile)
    later = visit(t, cookie, T0 + 10 * DAY, "/about")
    assert later.interests["running"] == pytest.approx(0.125, abs=1e-3)


def test_interest_scores_stay_between_0_and_1() -> None:
    t = tracker()
    cookie = None
    for i in range(60):
        profile = visit(t, cookie, T0 + i * 60, "/running")
        cookie = cookie_of(t, profile)
    assert 0.99 < profile.interests["running"] <= 1.0


def test_non_page_requests_learn_nothing() -> None:
    t = tracker()
    profile = visit(t, None, T0, "/running", page_view=False)
    assert not profile.changed and profile.pageviews == 0


def _tamper(cookie: str) -> str:
    version, payload, signature = cookie.split(".")
    data = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data[-1] ^= 1
    return ".".join([version, base64.urlsafe_b64encode(bytes(data)).decode().rstrip("="),
                     signature])


@pytest.mark.parametrize(("mangle", "reason"), [
    (_tamper, "signature"),
    (lambda c: "garbage", "malformed"),
    (lambda c: "2." + c.split(".", 1)[1], "version"),
    (lambda c: c.rsplit(".", 1)[0] + ".!!!", "malformed"),
    (lambda c: c + "A" * 4000, "oversized"),
])
def test_bad_cookies_are_ignored_and_counted(mangle: object, reason: str) -> None:
    rejects: list[RejectReason] = []
    t = tracker(rejects)
    cookie = cookie_of(t, visit(t, None, T0))
    fresh = visit(t, mangle(cookie), T0 + 60)  # type: ignore[operator]
    assert fresh.new and fresh.visits == 1
    assert rejects == [reason]


def test_expired_cookie_starts_afresh() -> None:
    rejects: list[RejectReason] = []
    t = tracker(rejects, codec=ProfileCodec([KEY], max_age_days=30))
    cookie = cookie_of(t, visit(t, None, T0))
    assert visit(t, cookie, T0 + 31 * DAY).new
    assert rejects == ["expired"]


def test_foreign_key_is_rejected_and_rotation_keeps_visitors() -> None:
    old = ProfileTracker(ProfileCodec([b"o" * 32]))
    cookie = cookie_of(old, visit(old, None, T0))
    rejects: list[RejectReason] = []
    foreign = tracker(rejects)
    assert visit(foreign, cookie, T0 + 60).new and rejects == ["signature"]
    rotated = ProfileTracker(ProfileCodec([b"n" * 32, b"o" * 32]))
    kept = visit(rotated, cookie, T0 + 60)
    assert not kept.new
    renewed = cookie_of(rotated, kept)
    assert not visit(ProfileTracker(ProfileCodec([b"n" * 32])), renewed, T0 + 120).new


def test_without_consent_nothing_is_stored_or_learned() -> None:
    t = tracker()
    profile = visit(t, None, T0, "/running", headers={"sec-gpc": "1"})
    assert not profile.stored and not profile.changed and not profile.scores


def test_cookie_is_trimmed_to_the_size_cap() -> None:
    t = tracker(codec=ProfileCodec([KEY], max_bytes=400))
    profile = visit(t, None, T0)
    for i in range(40):
        profile = profile.with_variant(f"experiment-{i}", f"variant-{i}")
    value = t.cookie_value(profile)
    assert len(value) <= 400
    assert not visit(t, value, T0 + 60).new


def test_a_lowered_size_cap_trims_the_larger_cookies_written_before() -> None:
    # Refused as oversized, each such visitor became a new one: their history gone, their
    # exposures counted again. Read, then written back within the new cap.
    before = tracker(codec=ProfileCodec([KEY], max_bytes=3000))
    profile = visit(before, None, T0)
    for i in range(60):
        profile = profile.with_variant(f"experiment-{i}", f"variant-{i}")
    value = before.cookie_value(profile)
    assert 1500 < len(value) <= 3000
    rejects: list[RejectReason] = []
    after = tracker(rejects, codec=ProfileCodec([KEY], max_bytes=1500))
    again = visit(after, value, T0 + 60)
    assert again.visitor_id == profile.visitor_id and again.pageviews == 2 and not rejects
    assert len(after.cookie_value(again)) <= 1500
    assert visit(after, value + "x" * 4000, T0 + 60).visitor_id != profile.visitor_id
    assert rejects == ["oversized"]


def test_of_a_cookie_sent_twice_the_one_last_seen_is_read() -> None:
    # A stale copy (set for the parent domain, or by an older configuration) comes first
    t = tracker()
    stale = cookie_of(t, visit(t, None, T0))
    fresh = cookie_of(t, visit(t, stale, T0 + 60))
    for header in (f"ep_profile={stale}; ep_profile={fresh}",
                   f"ep_profile={fresh}; ep_profile={stale}",
                   f"ep_profile=forged; ep_profile={fresh}", f"ep_profile=; ep_profile={fresh}"):
        first = header.split(";")[0].split("=", 1)[1]
        profile = t.observe(cookies={"ep_profile": first}, headers={"cookie": header},
                            now=T0 + 120, path="/", page_view=True, referral=lambda: SEARCH)
        assert profile.pageviews == 3, header


def test_set_cookie_attributes() -> None:
    t = tracker()
    header = t.set_cookie_header(visit(t, None, T0), secure=True, max_age_days=10).decode()
    assert header.startswith("ep_profile=1.")
    for attribute in ("Path=/", "Max-Age=864000", "HttpOnly", "SameSite=Lax", "Secure"):
        assert attribute in header
    assert "Secure" not in t.set_cookie_header(visit(t, None, T0), secure=False,
                                               max_age_days=1).decode()


def test_conversions_and_variants_mark_the_profile_changed() -> None:
    t = tracker()
    profile = visit(t, None, T0, page_view=False)
    assert not profile.changed
    converted = profile.with_conversion().with_variant("hero-test", "bold")
    assert converted.changed and converted.conversions == 1
    assert converted.variants == {"hero-test": "bold"}
    assert converted.with_variant("hero-test", "bold") is converted


def test_codec_needs_a_key() -> None:
    with pytest.raises(ValueError):
        ProfileCodec([])


def test_signed_but_misshapen_state_is_ignored() -> None:
    rejects: list[RejectReason] = []
    codec = ProfileCodec([KEY])
    t = tracker(rejects, codec=codec)
    wrong_length = codec.encode(["id", T0, T0])
    assert visit(t, wrong_length, T0 + 60).new and rejects == ["malformed"]
    wrong_types = codec.encode(["id", T0, T0, "many", 1, {}, None, None, 0, {}])
    assert visit(t, wrong_types, T0 + 60).new and rejects == ["malformed", "malformed"]


def test_exposures_and_counted_conversions_survive_the_cookie() -> None:
    t = tracker()
    profile = visit(t, None, T0).with_exposure("hero-test", "bold", "all")
    assert profile.with_exposure("hero-test", "plain", "all") is profile   # the first counts
    profile = profile.with_counted("purchase", "hero-test")
    again = visit(t, cookie_of(t, profile), T0 + 60)
    assert again.exposures == {"hero-test": Exposure("bold", T0, "all")}
    assert again.converted == {converted_key("purchase", "hero-test"): T0}


def test_cookies_written_before_exposures_were_kept_still_read() -> None:
    codec = ProfileCodec([KEY])
    older = codec.encode(["id", T0, T0, 2, 5, {}, None, None, 1, {"hero-test": "bold"}])
    profile = visit(tracker(codec=codec), older, T0 + 60)
    assert not profile.new and profile.visitor_id == "id"
    assert profile.variants == {"hero-test": "bold"} and profile.exposures == {}


def test_an_exposure_keeps_the_period_it_was_assigned_in() -> None:
    t = tracker()
    profile = visit(t, None, T0).with_exposure("hero-test", "bold", "s1", 7)
    profile = profile.with_exposure("cta-test", "a", "all")   # fixed weights: period 0
    again = visit(t, cookie_of(t, profile), T0 + 60)
    assert again.exposures == {"hero-test": Exposure("bold", T0, "s1", 7),
                               "cta-test": Exposure("a", T0, "all", 0)}


def test_exposures_written_before_periods_were_kept_read_as_period_unknown() -> None:
    codec = ProfileCodec([KEY])
    older = codec.encode(["id", T0, T0, 2, 5, {}, None, None, 0, {"hero-test": "bold"},
                          {"hero-test": ["bold", T0, "s1"]}, {}])
    profile = visit(tracker(codec=codec), older, T0 + 60)
    assert not profile.new
    assert profile.exposures == {"hero-test": Exposure("bold", T0, "s1", UNKNOWN_PERIOD)}


@pytest.mark.parametrize("exposure", [["bold", T0, "s1", "seven"], ["bold", T0, "s1", None],
                                      {"variant": "bold"}, ["bold"], 7])
def test_a_misshapen_exposure_is_ignored_with_its_cookie(exposure: object) -> None:
    rejects: list[RejectReason] = []
    codec = ProfileCodec([KEY])
    value = codec.encode(["id", T0, T0, 2, 5, {}, None, None, 0, {}, {"hero-test": exposure},
                          {}])
    assert visit(tracker(rejects, codec=codec), value, T0 + 60).new
    assert rejects == ["malformed"]


def test_old_conversions_and_exposures_go_first_when_the_cookie_is_too_large() -> None:
    t = tracker(codec=ProfileCodec([KEY], max_bytes=600))
    profile = visit(t, None, T0).with_variant("kept-test", "a")
    for i in range(30):
        profile = profile._replace(now=T0 + i).with_exposure(f"experiment-{i}", "v", "all")
        profile = profile.with_counted("purchase", f"experiment-{i}")
    kept = visit(t, t.cookie_value(profile), T0 + 60)
    assert kept.variants == {"kept-test": "a"}
    assert "experiment-29" in kept.exposures and "experiment-0" not in kept.exposures
    assert len(kept.converted) < 30


def test_a_full_cookie_lets_go_of_rules_exposures_before_an_experiment_s() -> None:
    # The experiment's exposure, let go of, was counted again at the next view of its page
    # (and its conversions' window started anew): one visitor of many pages, counted 6 times
    t = tracker(codec=ProfileCodec([KEY], max_bytes=600))
    profile = visit(t, None, T0).with_exposure("hero-test", "bold", "all")
    rules = frozenset(f"campaign-banner-{i:03}" for i in range(30))
    for i, rule in enumerate(sorted(rules)):
        profile = profile._replace(now=T0 + 1 + i).with_exposure(rule, rule, "all")
    kept = visit(t, t.cookie_value(profile, rules=rules), T0 + 60)
    assert kept.exposures["hero-test"].at == T0
    assert "campaign-banner-029" in kept.exposures and "campaign-banner-000" not in kept.exposures


def test_a_full_cookie_lets_go_of_what_the_rules_no_longer_serve_first() -> None:
    # A returning visitor's cookie fills with the variants of experiments long removed;
    # trimming the served ones' exposures instead counted each later view again and
    # lost their conversions.
    t = tracker(codec=ProfileCodec([KEY], max_bytes=600))
    profile = visit(t, None, T0)
    for i in range(30):
        profile = profile.with_variant(f"removed-experiment-{i}", "bold")
        profile = profile.with_exposure(f"removed-experiment-{i}", "bold", "all")
        profile = profile.with_counted("purchase", f"removed-experiment-{i}")
    profile = profile.with_variant("hero-test", "bold").with_exposure("hero-test", "bold", "all")
    profile = profile.with_exposure("spring-banner", "spring-banner", "all")
    profile = profile.with_counted("purchase", "hero-test")
    served = frozenset({"hero-test", "spring-banner"})
    kept = visit(t, t.cookie_value(profile, served), T0 + 60)
    assert kept.variants == {"hero-test": "bold"}
    assert set(kept.exposures) == {"hero-test", "spring-banner"}
    assert list(kept.converted) == [converted_key("purchase", "hero-test")]
    # Not told what is served, the oldest go first, as before.
    assert "hero-test" not in visit(t, t.cookie_value(profile), T0 + 60).exposures


@pytest.mark.parametrize(("field", "value"), [   # visits, page views, conversions
    (3, 2**64 - 1), (4, 2**64 - 1), (8, 2**64 - 1), (8, float("inf")), (3, 2.5), (4, -1)])
def test_a_counter_past_any_visitor_s_is_ignored_with_its_cookie(field: int,
                                                                  value: object) -> None:
    # Signed with the site's key, at 2**64 - 1: one more would not fit the cookie's format,
    # so the profile could never be written again, and each request logged the failure.
    rejects: list[RejectReason] = []
    codec = ProfileCodec([KEY])
    state: list[object] = ["id", T0, T0, 2, 5, {}, None, None, 0, {}, {}, {}]
    state[field] = value
    t = tracker(rejects, codec=codec)
    profile = visit(t, codec.encode(state), T0 + 3600)
    assert profile.new and rejects == ["malformed"]
    assert visit(t, t.cookie_value(profile.with_conversion()), T0 + 7200).visits == 2
