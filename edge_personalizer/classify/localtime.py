"""Local time: the visitor's hour, weekday, part of day and date in their own time zone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lru import LRU

from .visitor import WEEKDAYS, Daypart, LocalTime


def daypart(hour: int) -> Daypart:
    """night 0-5, morning 6-11, afternoon 12-17, evening 18-23."""
    if hour < 6:
        return "night"
    if hour < 12:
        return "morning"
    if hour < 18:
        return "afternoon"
    return "evening"


def zone(name: str) -> ZoneInfo | None:
    """The IANA time zone of that name; None when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


class Zones:
    """The time zones visitors are in, by name, as first asked for; bounded (IANA has
    ~600 names). A name that is no zone is remembered too: not looked for on disk again.
    Each zone's clock is kept for the minute it shows: the visitors of one zone share it
    until the next (working it out is ~5% of a request whose rules read the time)."""

    def __init__(self, size: int = 1024) -> None:
        self._known: LRU[str, ZoneInfo | None] = LRU(size)
        self._clocks: LRU[str, tuple[int, LocalTime]] = LRU(size)   # name -> (minute, clock)

    def __len__(self) -> int:
        return len(self._known)

    def get(self, name: str) -> ZoneInfo | None:
        known = self._known.get(name)
        if known is None and name not in self._known:
            known = self._known[name] = zone(name)
        return known

    def clock(self, name: str, found: ZoneInfo, epoch: float) -> LocalTime:
        """The clock in zone `name` (`found`) at `epoch`. Zones change their offset only
        on a whole minute, so everything a clock shows holds for its minute."""
        minute = int(epoch // 60)
        last = self._clocks.get(name)
        if last is not None and last[0] == minute:
            return last[1]
        moment = datetime.fromtimestamp(minute * 60, found)
        clock = LocalTime(hour=moment.hour, weekday=WEEKDAYS[moment.weekday()],
                          daypart=daypart(moment.hour), date=moment.date().isoformat(),
                          time_zone=name, minute=moment.minute)
        self._clocks[name] = (minute, clock)
        return clock


def local_time(epoch: float, time_zone: str | None, default_zone: str,
               zones: Zones) -> LocalTime:
    """The clock at `epoch` in `time_zone`, or in `default_zone` when that is unknown
    (`zones`: the zones looked up before)."""
    found = zones.get(time_zone) if time_zone else None
    name = time_zone if time_zone and found is not None else default_zone
    if found is None:
        found = zones.get(name) or ZoneInfo("UTC")
    return zones.clock(name, found, epoch)
