from __future__ import annotations

from datetime import UTC, datetime

import pytest

from edge_personalizer.classify.localtime import Zones, daypart, local_time, zone

# Monday 23 November 2026, 17:30 UTC
MOMENT = datetime(2026, 11, 23, 17, 30, tzinfo=UTC).timestamp()


def test_time_in_the_visitors_zone() -> None:
    tokyo = local_time(MOMENT, "Asia/Tokyo", "UTC", Zones())
    assert (tokyo.hour, tokyo.weekday, tokyo.daypart, tokyo.date) == (2, "tue", "night",
                                                                      "2026-11-24")
    new_york = local_time(MOMENT, "America/New_York", "UTC", Zones())
    assert (new_york.hour, new_york.weekday, new_york.daypart) == (12, "mon", "afternoon")


def test_unknown_zone_falls_back_to_the_site_default() -> None:
    fallback = local_time(MOMENT, None, "Europe/Berlin", Zones())
    assert (fallback.hour, fallback.time_zone) == (18, "Europe/Berlin")
    assert local_time(MOMENT, "Mars/Olympus", "UTC", Zones()).time_zone == "UTC"


@pytest.mark.parametrize(("hour", "part"), [(0, "night"), (5, "night"), (6, "morning"),
                                            (12, "afternoon"), (17, "afternoon"),
                                            (18, "evening"), (23, "evening")])
def test_dayparts(hour: int, part: str) -> None:
    assert daypart(hour) == part


def test_a_zone_is_found_by_its_iana_name() -> None:
    assert zone("Europe/London") is not None and zone("Nowhere/Town") is None


def test_zones_remember_what_they_found_and_what_is_no_zone_within_their_bound() -> None:
    zones = Zones(size=2)
    london = zones.get("Europe/London")
    assert london is not None and zones.get("Europe/London") is london
    assert zones.get("Nowhere/Town") is None and zones.get("Nowhere/Town") is None
    assert len(zones) == 2
    assert zones.get("Asia/Tokyo") is not None and len(zones) == 2   # the oldest went
    moment = local_time(MOMENT, "Nowhere/Town", "Asia/Tokyo", zones)
    assert moment.time_zone == "Asia/Tokyo"
    assert moment == local_time(MOMENT, "Nowhere/Town", "Asia/Tokyo", Zones())   # (a fresh one)


def test_a_zones_clock_is_shared_within_its_minute_and_turns_with_the_next() -> None:
    zones = Zones()
    first = local_time(MOMENT + 5, "Asia/Tokyo", "UTC", zones)
    assert local_time(MOMENT + 59.9, "Asia/Tokyo", "UTC", zones) is first
    assert (first.hour, first.minute) == (2, 30)
    later = local_time(MOMENT + 60, "Asia/Tokyo", "UTC", zones)
    assert (later.hour, later.minute) == (2, 31)
    # London goes from GMT to BST at 01:00 UTC on 29 March 2026: 00:59 is followed by 02:00.
    change = datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()
    before = local_time(change - 0.5, "Europe/London", "UTC", zones)
    after = local_time(change, "Europe/London", "UTC", zones)
    assert ((before.hour, before.minute), (after.hour, after.minute)) == ((0, 59), (2, 0))
    assert local_time(change - 0.5, "Europe/London", "UTC", zones) == before   # (made anew)
