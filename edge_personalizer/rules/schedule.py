"""A rule's schedule: dates, weekdays and hours in the visitor's own local time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ..classify.visitor import WEEKDAYS, Visitor


@dataclass(frozen=True)
class Schedule:
    """Dates, weekdays and hours in the visitor's own local time."""

    start: date | None = None
    end: date | None = None
    days: frozenset[str] = frozenset()
    hours: tuple[int, int] | None = None   # minutes since midnight: [from, to)

    def __call__(self, visitor: Visitor) -> bool:
        # Every request of a scheduled rule asks; only explain builds the reason's text.
        return self._outside(visitor)[0] is None

    def describe(self) -> str:
        parts = []
        if self.start:
            parts.append(f"from {self.start.isoformat()}")
        if self.end:
            parts.append(f"until {self.end.isoformat()}")
        if self.days:
            parts.append("on " + ", ".join(d for d in WEEKDAYS if d in self.days))
        if self.hours:
            parts.append("between {:02d}:{:02d} and {:02d}:{:02d}".format(
                *divmod(self.hours[0], 60), *divmod(self.hours[1], 60)))
        return "scheduled " + " ".join(parts)

    def failure(self, visitor: Visitor) -> str | None:
        """Why the schedule leaves the visitor out, or None when it does not."""
        outside, night_of = self._outside(visitor)
        if outside is None:
            return None
        now = visitor.time
        if outside == "hours":
            return f"{self.describe()} (it is {now.hour:02d}:{now.minute:02d})"
        shown = now.date if outside == "dates" else now.weekday
        night = f", the night of {night_of.isoformat()}" if night_of is not None else ""
        return f"{self.describe()} (it is {shown}{night})"

    def _outside(self, visitor: Visitor) -> tuple[str | None, date | None]:
        """What leaves the visitor out ("hours", "dates", "days" or None), and the day
        whose night their local time belongs to when that is the day before (None when it
        is today). Hours that span midnight belong to the day they start on: days: [fri]
        with hours "22:00-06:00" is Friday night, Saturday 05:00 included (and its start
        and end dates count so too)."""
        now = visitor.time
        day = date.fromisoformat(now.date)
        night_of = None
        if self.hours:
            minute = now.hour * 60 + now.minute
            low, high = self.hours
            inside = low <= minute < high if low < high else (minute >= low or minute < high)
            if not inside:
                return "hours", None
            if low >= high and minute < high:   # the night's tail: it began yesterday
                day = night_of = day - timedelta(days=1)
        if self.start and day < self.start or self.end and day > self.end:
            return "dates", night_of
        if self.days and WEEKDAYS[day.weekday()] not in self.days:
            return "days", night_of
        return None, night_of
