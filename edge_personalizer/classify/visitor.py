"""The Visitor and its parts: frozen values, one per request, read by the rules.

Field names are the contract with marketers (docs/fields.md): rules name them with dotted
paths such as `geo.country` or `profile.interests.running`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

if TYPE_CHECKING:
    from .profile import Profile

Medium = Literal["search", "social", "email", "paid", "ai", "referral", "internal", "direct",
                 "app"]
DeviceType = Literal["mobile", "tablet", "desktop", "tv", "bot", "other"]
Daypart = Literal["night", "morning", "afternoon", "evening"]

NO_VALUES: Final[Mapping[str, str]] = MappingProxyType({})   # shared by every request without them


@dataclass(frozen=True, slots=True)
class Referral:
    """Where the visitor came from."""

    medium: Medium
    source: str
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    keywords: str | None = None
    click_id: str | None = None      # the parameter name: gclid, fbclid, msclkid...
    host: str | None = None          # the referring host, when there was one


DIRECT: Final = Referral("direct", "direct")


@dataclass(frozen=True, slots=True)
class Geo:
    """Where the visitor is, as far as the geo database or a trusted edge knows."""

    country: str | None = None       # ISO 3166-1 alpha-2: "US"
    region: str | None = None        # ISO 3166-2: "US-CA"
    city: str | None = None
    postal: str | None = None
    metro: int | None = None
    continent: str | None = None     # "EU", "NA"...
    time_zone: str | None = None     # IANA: "Europe/London"
    eu: bool | None = None
    latitude: float | None = None
    longitude: float | None = None
    anonymous: bool | None = None    # VPN, proxy, Tor or hosting, from an Anonymous-IP db
    source: Literal["database", "edge", "none"] = "none"


UNKNOWN_GEO: Final = Geo()


@dataclass(frozen=True, slots=True)
class Device:
    """What the visitor browses on."""

    type: DeviceType
    os: str = "Other"
    os_version: str | None = None
    browser: str = "Other"
    browser_version: str | None = None
    brand: str | None = None
    model: str | None = None
    touch: bool = False
    bot_category: Literal["search", "ai", "social", "monitor", "other"] | None = None
    bot_name: str | None = None

    @property
    def bot(self) -> bool:
        return self.type == "bot"


@dataclass(frozen=True, slots=True)
class Language:
    """The visitor's languages from Accept-Language, best first."""

    primary: str | None = None       # "de"
    tags: tuple[str, ...] = ()       # ("de-CH", "de", "en")


WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")   # as date.weekday() counts


@dataclass(frozen=True, slots=True, init=False)
class LocalTime:
    """The visitor's own clock."""

    hour: int
    weekday: str                     # "mon".."sun" (WEEKDAYS)
    daypart: Daypart
    date: str                        # ISO date: "2026-11-23"
    time_zone: str
    minute: int = 0                  # of the hour (a schedule's "18:30-23:00")

    # Written out: one is made for every request whose rules read the time, and the
    # __init__ dataclass generates is interpreted code even when compiled (~20x slower).
    def __init__(self, hour: int, weekday: str, daypart: Daypart, date: str, time_zone: str,
                 minute: int = 0) -> None:
        object.__setattr__(self, "hour", hour)
        object.__setattr__(self, "weekday", weekday)
        object.__setattr__(self, "daypart", daypart)
        object.__setattr__(self, "date", date)
        object.__setattr__(self, "time_zone", time_zone)
        object.__setattr__(self, "minute", minute)


class RequestInfo:
    """The raw request, for rules that need anything else. Immutable: its attributes are
    final (a plain class, not a frozen dataclass, because one is made for every request
    and a frozen dataclass is built through interpreted code even when compiled)."""

    def __init__(self, *, method: str, path: str, host: str,
                 query: Mapping[str, str] = NO_VALUES,
                 headers: Mapping[str, str] = NO_VALUES,   # lower-case names
                 cookies: Mapping[str, str] = NO_VALUES,
                 client_ip: str | None = None,
                 trusted_edge: bool = False) -> None:   # came through a trusted proxy
        self.method: Final = method
        self.path: Final = path
        self.host: Final = host
        self.query: Final = query
        self.headers: Final = headers
        self.cookies: Final = cookies
        self.client_ip: Final = client_ip
        self.trusted_edge: Final = trusted_edge   # its edge headers count

    # The names rules use: request.cookie.<name>, request.header.<name>
    @property
    def cookie(self) -> Mapping[str, str]:
        return self.cookies

    @property
    def header(self) -> Mapping[str, str]:
        return self.headers


# The request's own fields, as rules name them (request.<field>).
REQUEST_FIELDS: Final = ("method", "path", "host", "query", "headers", "cookies", "client_ip",
                         "trusted_edge")


# Predicted next interests, best first: (category, 0..1 score).
Predictions = tuple[tuple[str, float], ...]


class Visitor:
    """Everything known about the visitor of one request.

    Costly parts (device, geo) are worked out on first use, so a rule set that never reads
    `geo` never looks up the address. Values are immutable once computed.
    """

    def __init__(self, request: RequestInfo, *, resolve: Resolvers, now: float,
                 page_view: bool = False) -> None:
        self.request = request
        self.now = now
        self.page_view = page_view   # a document navigation: what the profile learns from
        self._resolve = resolve
        # Each part once worked out (None: not yet asked for).
        self._referral: Referral | None = None
        self._geo: Geo | None = None
        self._device: Device | None = None
        self._language: Language | None = None
        self._time: LocalTime | None = None
        self._profile: Profile | None = None
        self._predicted: Predictions | None = None

    @property
    def referral(self) -> Referral:
        if self._referral is None:
            self._referral = self._resolve.referral(self.request)
        return self._referral

    @property
    def geo(self) -> Geo:
        if self._geo is None:
            self._geo = self._resolve.geo(self.request)
        return self._geo

    @property
    def device(self) -> Device:
        if self._device is None:
            self._device = self._resolve.device(self.request)
        return self._device

    @property
    def language(self) -> Language:
        if self._language is None:
            self._language = self._resolve.language(self.request)
        return self._language

    @property
    def time(self) -> LocalTime:
        if self._time is None:
            self._time = self._resolve.time(self.geo, self.now)
        return self._time

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            self._profile = self._resolve.profile(self)
        return self._profile

    @property
    def predicted(self) -> Predictions:
        """Interests visitors like this one show next, best first (`profile.predicted.*`):
        worked out only when a rule reads them."""
        if self._predicted is None:
            self._predicted = self._resolve.predicted(self)
        return self._predicted

    def field(self, path: str) -> Any:
        """The value at a dotted field path (`geo.country`, `request.query.q`), or None.
        For occasional reads (explain); rules build their getters once, at load."""
        return field_getter(path)(self)

    def walk(self, head: str | None, parts: tuple[str, ...]) -> Any:
        """The value at a parsed path, read step by step (any path `field_getter` has no
        shortcut for)."""
        if head is None:
            return None
        value: Any = getattr(self, head)
        for part in parts:
            if value is None:
                return None
            if isinstance(value, tuple):   # the profile (a NamedTuple), never a mapping
                value = getattr(value, part, None)
            elif type(value) in _MAPPINGS or isinstance(value, Mapping):
                value = value.get(part)
            else:
                value = getattr(value, part, None)
        return value

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-ready data (what `classify` and `explain` print)."""
        out: dict[str, Any] = {root: _plain(getattr(self, root)) for root in FIELD_ROOTS
                               if root != "request"}
        request = self.request
        # Headers and cookies stay out: they carry credentials and the profile itself.
        out["request"] = {"method": request.method, "host": request.host,
                          "path": request.path, "query": dict(request.query),
                          "client_ip": request.client_ip}
        return out


FIELD_ROOTS: Final = ("referral", "geo", "device", "language", "time", "profile", "request")
_MAPPINGS: Final = (dict, MappingProxyType)
# Their fields are attributes: slotted dataclasses, and the profile (a NamedTuple)
_DATA_ROOTS: Final = ("referral", "geo", "device", "language", "time", "profile")


def field_getter(path: str) -> Callable[[Visitor], Any]:
    """A function reading the field at `path` from a visitor (None where there is none):
    the request's mappings and the attributes of the classified parts are read directly,
    anything else step by step. Made when rules load, not per request."""
    head, _, rest = path.partition(".")
    parts = tuple(rest.split(".")) if rest else ()
    root = head if head in FIELD_ROOTS else None
    getter = _direct_getter(root, parts)
    if getter is None:
        def getter(visitor: Visitor) -> Any:
            return visitor.walk(root, parts)
    return getter


def _predicted_score(category: str) -> Callable[[Visitor], Any]:
    def read(visitor: Visitor) -> float:
        return next((score for name, score in visitor.predicted if name == category), 0.0)
    return read


def _predicted_top(visitor: Visitor) -> str | None:
    predicted = visitor.predicted
    return predicted[0][0] if predicted else None


def _direct_getter(root: str | None, parts: tuple[str, ...]) -> Callable[[Visitor], Any] | None:
    if root == "profile" and parts == ("predicted_top",):
        return _predicted_top
    if root == "profile" and len(parts) == 2 and parts[0] == "predicted":
        return _predicted_score(parts[1])
    if len(parts) == 2 and root == "request":
        kind, key = parts
        if kind == "header":
            return lambda visitor: visitor.request.headers.get(key)
        if kind == "query":
            return lambda visitor: visitor.request.query.get(key)
        if kind == "cookie":
            return lambda visitor: visitor.request.cookies.get(key)
    if len(parts) != 1:
        return None
    name = parts[0]
    if root == "request" and name in REQUEST_FIELDS:
        return lambda visitor: getattr(visitor.request, name)
    if root in _DATA_ROOTS:
        def read(visitor: Visitor) -> Any:
            value = getattr(visitor, root)
            return None if value is None else getattr(value, name, None)
        return read
    return None


def _plain(value: Any) -> Any:
    public = getattr(value, "public", None)
    if callable(public):
        return _plain(public())
    if hasattr(value, "_asdict"):
        return _plain(value._asdict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


class Resolvers(Protocol):
    """How a Visitor's parts are computed: the Classifier implements this."""

    def referral(self, request: RequestInfo) -> Referral:
        ...

    def geo(self, request: RequestInfo) -> Geo:
        ...

    def device(self, request: RequestInfo) -> Device:
        ...

    def language(self, request: RequestInfo) -> Language:
        ...

    def time(self, geo: Geo, now: float) -> LocalTime:
        ...

    def profile(self, visitor: Visitor) -> Profile:
        ...

    def predicted(self, visitor: Visitor) -> Predictions:
        ...
