"""Local time: the visitor's hour, weekday, part of day and date in their own time zone."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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


@lru_cache(maxsize=512)   # bounded; IANA has ~600 zone names
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zone_exists(name: str) -> bool:
    return _zone(name) is not None


def local_time(epoch: float, time_zone: str | None, default_zone: str) -> LocalTime:
    """The clock at `epoch` in `time_zone`, or in `default_zone` when that is unknown."""
    name = time_zone if time_zone and _zone(time_zone) else default_zone
    zone = _zone(name) or ZoneInfo("UTC")
    moment = datetime.fromtimestamp(epoch, zone)
    return LocalTime(hour=moment.hour, weekday=WEEKDAYS[moment.weekday()],
                     daypart=daypart(moment.hour), date=moment.date().isoformat(),
                     time_zone=name, minute=moment.minute)
