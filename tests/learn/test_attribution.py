from __future__ import annotations

from collections.abc import Mapping

from edge_personalizer.classify.profile import Exposure, Profile
from edge_personalizer.learn.attribution import Attribution
from edge_personalizer.learn.counters import UNKNOWN_PERIOD, Accumulator, CountKey, Tally
from edge_personalizer.learn.goals import Conversion

T0 = 1_795_000_000
DAY = "2026-11-18"


def profile(now: int = T0, stored: bool = True) -> Profile:
    return Profile(visitor_id="v1", first_seen=now, last_seen=now, previous_seen=now,
                   stored=stored, now=now)


def counted(counters: Accumulator) -> dict[CountKey, Tally]:
    """The counts, with each visitor's conversion as the store counts a first one."""
    counters.collect()
    rows = counters.pending_batch(100)
    for converted in counters.pending_converted(100):
        assert converted.visitor == "v1"
        value = converted.value
        rows[converted.key] = rows.get(converted.key, Tally()).plus(
            Tally(0, 1, value, value * value))
    return rows


def judged_on_purchase(by: str) -> Mapping[str, int] | None:
    return {"purchase": 0} if by == "hero-test" else None


def test_exposures_count_once_per_visitor() -> None:
    counters = Accumulator(clock=lambda: T0)
    attribution = Attribution(counters)
    shown = attribution.exposed(profile(), [("hero-test", "bold"), ("fb-rule", "facebook")])
    again = attribution.exposed(shown._replace(now=T0 + 60), [("hero-test", "bold")])
    assert again.exposures == shown.exposures
    rows = counted(counters)
    assert rows[CountKey("hero-test", "bold", "", "all", DAY)] == Tally(exposures=1)
    assert rows[CountKey("fb-rule", "facebook", "", "all", DAY)] == Tally(exposures=1)


def test_a_copy_of_the_cookie_from_before_an_exposure_counts_it_no_more() -> None:
    # A replayed cookie, or two tabs opened at once, bring a profile without the exposure:
    # the variant is remembered in the profile each time, counted once (until forgotten)
    counters = Accumulator(clock=lambda: T0)
    attribution = Attribution(counters, remembered=2)
    before = profile()
    for _ in range(5):
        assert "hero-test" in attribution.exposed(before, [("hero-test", "bold")]).exposures
    assert counted(counters)[CountKey("hero-test", "bold", "", "all", DAY)] == \
        Tally(exposures=1)
    for other in ("a", "b"):   # two other exposures counted since: the first is forgotten
        attribution.exposed(before._replace(visitor_id=other), [("hero-test", "bold")])
    attribution.exposed(before, [("hero-test", "bold")])
    assert counted(counters)[CountKey("hero-test", "bold", "", "all", DAY)] == \
        Tally(exposures=4)
    assert attribution.exposures == 4


def test_a_conversion_counts_once_within_the_window_for_what_is_judged_on_it() -> None:
    counters = Accumulator(clock=lambda: T0)
    attribution = Attribution(counters)
    shown = attribution.exposed(profile(), [("hero-test", "bold"), ("fb-rule", "facebook")])
    purchase = Conversion("purchase", 10.0, 3600.0)
    signup = Conversion("signup", 0.0, 3600.0)
    after = attribution.converted(shown._replace(now=T0 + 60), [purchase, signup],
                                  judged_on_purchase)
    twice = attribution.converted(after, [purchase], judged_on_purchase)
    late = attribution.converted(shown._replace(now=T0 + 7200), [purchase], judged_on_purchase)
    assert twice.conversions == 3 and late.conversions == 1   # the visitor's own count
    rows = counted(counters)
    assert rows[CountKey("hero-test", "bold", "purchase", "all", DAY)] == \
        Tally(conversions=1, value_sum=10.0, value_sq_sum=100.0)
    assert rows[CountKey("fb-rule", "facebook", "purchase", "all", DAY)].conversions == 1
    assert rows[CountKey("fb-rule", "facebook", "signup", "all", DAY)].conversions == 1
    assert CountKey("hero-test", "bold", "signup", "all", DAY) not in rows
    assert attribution.conversions == 3 and attribution.exposures == 2
    counters.collect()
    assert {c.window for c in counters.pending_converted(100)} == {3600.0}


def test_a_conversion_counts_in_the_period_of_its_exposure_on_the_day_it_happens() -> None:
    now = [float(T0)]
    counters = Accumulator(clock=lambda: now[0])
    attribution = Attribution(counters)
    shown = attribution.exposed(profile(), [("hero-test", "bold")], "s1", period=4)
    assert shown.exposures["hero-test"].period == 4
    now[0] += 86_400   # the next day, the weights are at a later version: no matter
    attribution.converted(shown._replace(now=T0 + 86_400),
                          [Conversion("purchase", 0.0, 3 * 86_400.0)], judged_on_purchase)
    assert counted(counters) == {
        CountKey("hero-test", "bold", "", "s1", DAY, 4): Tally(exposures=1),
        CountKey("hero-test", "bold", "purchase", "s1", "2026-11-19", 4): Tally(conversions=1)}


def test_a_conversion_of_an_exposure_from_before_periods_counts_in_the_unknown_one() -> None:
    counters = Accumulator(clock=lambda: T0)
    older = profile()._replace(exposures={"hero-test": Exposure("bold", T0 - 60, "all",
                                                                UNKNOWN_PERIOD)})
    Attribution(counters).converted(older, [Conversion("purchase", 0.0, 3600.0)],
                                    judged_on_purchase)
    assert counted(counters) == {
        CountKey("hero-test", "bold", "purchase", "all", DAY, UNKNOWN_PERIOD): Tally(0, 1)}


def test_visitors_without_a_profile_are_never_counted() -> None:
    counters = Accumulator(clock=lambda: T0)
    attribution = Attribution(counters)
    private = attribution.exposed(profile(stored=False), [("hero-test", "bold")])
    attribution.converted(private, [Conversion("purchase", 1.0, 3600.0)], judged_on_purchase)
    assert counted(counters) == {}


def test_a_visitor_shared_out_anew_stays_counted_in_the_variant_first_shown() -> None:
    # bold removed (or renamed) while its visitors came back: moved into another variant,
    # a returning visitor would be compared with its new ones (a rename alone showed an
    # uplift); counted nowhere, bold would lose their later conversions.
    counters = Accumulator(clock=lambda: T0)
    attribution = Attribution(counters)
    shown = attribution.exposed(profile().with_variant("hero-test", "bold"),
                                [("hero-test", "bold")])
    moved = shown.with_variant("hero-test", "bolder")
    assert moved.variants == {"hero-test": "bolder"} and moved.exposures == shown.exposures
    again = attribution.exposed(moved, [("hero-test", "bolder")])
    attribution.converted(again._replace(now=T0 + 60), [Conversion("purchase", 10.0, 3600.0)],
                          judged_on_purchase)
    rows = counted(counters)
    assert rows[CountKey("hero-test", "bold", "", "all", DAY)] == Tally(1)
    assert rows[CountKey("hero-test", "bold", "purchase", "all", DAY)].conversions == 1
    assert not any(key.variant == "bolder" for key in rows)


def test_a_goal_that_joined_under_way_counts_only_visitors_exposed_since() -> None:
    counters = Accumulator(clock=lambda: T0)
    attribution = Attribution(counters)
    shown = attribution.exposed(profile(), [("hero-test", "bold")])

    def joined_after(by: str) -> Mapping[str, int] | None:   # signup joined after the exposure
        return {"purchase": 0, "signup": T0 + 1} if by == "hero-test" else None

    after = attribution.converted(
        shown._replace(now=T0 + 60),
        [Conversion("purchase", 0.0, 3600.0), Conversion("signup", 0.0, 3600.0)],
        joined_after)
    assert attribution.conversions == 1 and after.conversions == 2
    assert {key.goal for key in counted(counters) if key.goal} == {"purchase"}
