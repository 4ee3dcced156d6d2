"""A trouble of the learning loop is told once per cause, counted while it lasts, and its
end told."""

from __future__ import annotations

import logging

import pytest

from edge_personalizer.learn.troubles import Troubles, cause_of

LOGGER = logging.getLogger("tests.troubles")


def raised(message: str, kind: type[Exception] = ValueError) -> Exception:
    try:
        raise kind(message)
    except Exception as exc:
        return exc


def test_a_cause_is_told_once_however_its_numbers_change(
        caplog: pytest.LogCaptureFixture) -> None:
    troubles = Troubles(LOGGER, clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="tests.troubles"):
        for n in range(5):   # the same line raising, a new number in its text each time
            exc = raised(f"table bandit-weights: {1980406 + n} bytes")
            troubles.failed("updating bandit weights", cause_of(exc), str(exc), exc=exc)
        troubles.cleared("updating bandit weights")
        troubles.cleared("updating bandit weights")   # nothing to end
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]
    assert "works again (it failed 5 times)" in caplog.records[1].getMessage()
    assert not troubles and len(troubles) == 0


def test_another_cause_is_told_and_health_shows_each_trouble() -> None:
    troubles = Troubles(LOGGER, clock=lambda: 86400.0)
    troubles.failed("bandit a", "too big", "its new weights take 2,000 bytes")
    troubles.failed("bandit a", "too big", "its new weights take 2,100 bytes")
    troubles.failed("bandit a", cause_of(raised("x", KeyError)), "KeyError: x")
    assert "bandit a" in troubles and len(troubles) == 1
    assert troubles.report() == [{"what": "bandit a", "since": "1970-01-02T00:00:00Z",
                                   "times": 3, "detail": "KeyError: x"}]
    assert cause_of(raised("x")) != cause_of(raised("x", KeyError))
