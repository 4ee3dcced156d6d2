"""The visitor fields rules may name: their types and allowed values.

One definition serves the compiler (unknown fields and values are errors, with a
suggestion), the JSON Schema for editors, and the documentation.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Final, Literal

from ..classify.visitor import WEEKDAYS

FieldType = Literal["string", "number", "boolean", "list"]

FULL_DAY_NAMES: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                         "sunday")
DAY_GROUPS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {"weekdays": WEEKDAYS[:5], "weekend": WEEKDAYS[5:]})
DAYS_EXPECTED: Final = "mon..sun (or monday..sunday), weekdays or weekend"
SHORTEST_DAY_START: Final = 3   # tue, tues, tuesday; not "t" or "tu"


def any_case(text: str) -> str:
    """A regular expression matching `text` in any case (JSON Schema patterns have no flags)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else re.escape(c)
                   for c in text)


def _starts_of(word: str, shortest: int) -> str:
    """A regular expression matching `word` and its starts of `shortest` letters or more,
    in any case: tue(?:s(?:d...)?)? for tuesday."""
    rest = ""
    for letter in reversed(word[shortest:]):
        rest = f"(?:{any_case(letter)}{rest})?"
    return any_case(word[:shortest]) + rest


def no_date(written: str) -> str | None:
    """Why a YYYY-MM-DD value is no date (2026-11-31), or None when it is one."""
    try:
        date.fromisoformat(written)
    except ValueError as exc:
        return f"no date ({exc}); write a day as YYYY-MM-DD, e.g. 2026-12-24"
    return None


def days_named(written: str) -> tuple[str, ...]:
    """The days (mon..sun) a day written in a rule names, in any case: mon..sun, a full
    name or its start of at least three letters (tues, thurs), weekdays or weekend; ()
    when it names none. Schedules and time.weekday read days alike."""
    text = written.strip().casefold()
    if text in DAY_GROUPS:
        return DAY_GROUPS[text]
    if len(text) >= SHORTEST_DAY_START:
        return next(((full[:3],) for full in FULL_DAY_NAMES if full.startswith(text)), ())
    return ()


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType
    values: tuple[str, ...] = ()   # the only values a string field can take, when known
    description: str = ""
    # The form every value of a string field has (a regular expression), what it is in a
    # marketer's words, and values of that form that are common mistakes (-> the right one).
    form: str = ""
    form_help: str = ""
    mistakes: tuple[tuple[str, str], ...] = ()
    span: tuple[float, float] | None = None   # the values a number field can take
    whole: bool = False   # a number field's values are whole numbers (counts, hours)
    # What is wrong with a value of the right `form` ("no date (...)"), None when nothing
    check: Callable[[str], str | None] | None = field(default=None, compare=False)
    # Other spellings of `values`: the values one written value stands for (() for none
    # of them), with what is expected in the error for one that stands for none.
    named: Callable[[str], tuple[str, ...]] | None = field(default=None, compare=False)
    named_help: str = ""
    spellings: tuple[str, ...] = ()   # of them, what the JSON Schema offers editors too
    # A regular expression of every other spelling `named` takes, in any case (for the
    # JSON Schema: editors then underline only what the compiler refuses)
    spelling_form: str = ""
    # `values` case-folded: what a rule writes is checked against them in any case
    folded: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "folded", frozenset(v.casefold() for v in self.values))

    def span_words(self) -> str:
        """The values a number field takes, in words: "a whole number 0 or more"."""
        kind = "a whole number " if self.whole else ""
        if self.span is None:
            return (kind or "a number ").rstrip()
        low, high = self.span
        return kind + (f"{low:g} or more" if high == math.inf else f"between {low:g} and {high:g}")


def _enum(name: str, values: str, description: str) -> FieldSpec:
    return FieldSpec(name, "string", tuple(values.split()), description)


def _count(name: str) -> FieldSpec:
    return FieldSpec(name, "number", span=(0, math.inf), whole=True)


FIELDS: Final[Mapping[str, FieldSpec]] = MappingProxyType({spec.name: spec for spec in (
    _enum("referral.medium", "search social email paid ai referral internal direct app",
          "how the visitor came"),
    FieldSpec("referral.source", "string", description="google, facebook, newsletter..."),
    FieldSpec("referral.campaign", "string", description="utm_campaign"),
    FieldSpec("referral.term", "string", description="utm_term"),
    FieldSpec("referral.content", "string", description="utm_content"),
    FieldSpec("referral.keywords", "string", description="search terms"),
    FieldSpec("referral.click_id", "string", description="gclid, fbclid, msclkid..."),
    FieldSpec("referral.host", "string", description="the referring host"),
    FieldSpec("geo.country", "string", description="ISO 3166-1 alpha-2, e.g. US",
              form="[A-Za-z]{2}", form_help="a country is its two-letter ISO 3166-1 code, "
              "e.g. GB (the United Kingdom), US, DE", mistakes=(("uk", "GB"),)),
    FieldSpec("geo.region", "string", description="ISO 3166-2, e.g. US-CA"),
    FieldSpec("geo.city", "string"),
    FieldSpec("geo.postal", "string"),
    FieldSpec("geo.metro", "number", description="US metro code", whole=True),
    _enum("geo.continent", "AF AN AS EU NA OC SA", "continent code"),
    FieldSpec("geo.time_zone", "string", description="IANA time zone"),
    FieldSpec("geo.eu", "boolean", description="in the European Union"),
    FieldSpec("geo.latitude", "number"),
    FieldSpec("geo.longitude", "number"),
    FieldSpec("geo.anonymous", "boolean", description="VPN, proxy, Tor or hosting"),
    _enum("device.type", "mobile tablet desktop tv bot other", "kind of device"),
    FieldSpec("device.os", "string", description="iOS, Android, Windows..."),
    FieldSpec("device.os_version", "string"),
    FieldSpec("device.browser", "string", description="Chrome, Mobile Safari..."),
    FieldSpec("device.browser_version", "string"),
    FieldSpec("device.brand", "string"),
    FieldSpec("device.model", "string"),
    FieldSpec("device.touch", "boolean"),
    _enum("device.bot_category", "search ai social monitor other", "for bots"),
    FieldSpec("device.bot_name", "string"),
    FieldSpec("language.primary", "string", description="e.g. de", form="[A-Za-z]{2,3}",
              form_help="a language is its ISO 639 code, e.g. de, en, fr"),
    FieldSpec("language.tags", "list", description='e.g. ["de-CH", "de", "en"]'),
    FieldSpec("time.hour", "number", description="0-23, visitor's local time", span=(0, 23),
              whole=True),
    FieldSpec("time.weekday", "string", WEEKDAYS, "visitor's local weekday",
              named=days_named, named_help=DAYS_EXPECTED,
              spellings=(*FULL_DAY_NAMES, *DAY_GROUPS),
              spelling_form="|".join([*(_starts_of(day, SHORTEST_DAY_START)
                                        for day in FULL_DAY_NAMES),
                                      *map(any_case, DAY_GROUPS)])),
    _enum("time.daypart", "night morning afternoon evening", "visitor's local part of day"),
    FieldSpec("time.date", "string", description="YYYY-MM-DD, visitor's local date",
              form="[0-9]{4}-[0-9]{2}-[0-9]{2}", form_help="a date is written 2026-12-24",
              check=no_date),
    FieldSpec("time.time_zone", "string",
              description="the IANA time zone of the local time (the site default when unknown)"),
    _count("profile.visits"),
    _count("profile.pageviews"),
    _count("profile.days_since_first"),
    _count("profile.days_since_last"),
    FieldSpec("profile.new", "boolean"),
    FieldSpec("profile.stored", "boolean"),
    _count("profile.conversions"),
    FieldSpec("profile.visitor_id", "string"),
    FieldSpec("profile.predicted_top", "string",
              description="the interest visitors like this one show next (beyond their "
                          "strongest two)"),
    _enum("profile.first_referral.medium",
          "search social email paid ai referral internal direct app", ""),
    FieldSpec("profile.first_referral.source", "string"),
    FieldSpec("profile.first_referral.campaign", "string"),
    _enum("profile.last_referral.medium",
          "search social email paid ai referral internal direct app", ""),
    FieldSpec("profile.last_referral.source", "string"),
    FieldSpec("profile.last_referral.campaign", "string"),
    FieldSpec("request.path", "string", form="/.*",
              form_help="a path starts with /, e.g. /sale"),
    FieldSpec("request.host", "string"),
    FieldSpec("request.method", "string"),
)})

# Fields with a free name after the prefix: profile.interests.running, request.query.q...
PREFIXES: Final[Mapping[str, FieldSpec]] = MappingProxyType({
    "profile.interests.": FieldSpec("profile.interests.<category>", "number",
                                    description="0..1 interest score", span=(0, 1)),
    "profile.predicted.": FieldSpec("profile.predicted.<category>", "number",
                                    description="0..1 chance visitors like this one show "
                                                "that interest next", span=(0, 1)),
    "profile.variants.": FieldSpec("profile.variants.<experiment>", "string",
                                   description="variant seen"),
    "request.query.": FieldSpec("request.query.<name>", "string"),
    "request.cookie.": FieldSpec("request.cookie.<name>", "string"),
    "request.header.": FieldSpec("request.header.<name>", "string",
                                 description="lower-case header name"),
})


def rules_can_read(name: str) -> bool:
    """Whether rules can read the visitor field `name` (`explain` shows more: where geo
    came from, exact times, the client's address), or the fields under it."""
    group = name + "."
    return (name in FIELDS or group in PREFIXES or name.startswith(tuple(PREFIXES))
            or any(field.startswith(group) for field in FIELDS))


def suggest(word: str, choices: Iterable[str]) -> str:
    """`; did you mean 'x'?` when something close exists, else ``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def as_written(value: object) -> str:
    """A value a message quotes, as repr() writes it, cut after 20 characters: YAML reads
    an int of any number of digits (one of 400 was quoted whole)."""
    written = repr(value)
    return written if len(written) <= 24 else written[:20] + "…"


def normalize(name: str) -> str:
    """Header names are case-insensitive: `request.header.X-Country` reads `x-country`."""
    if name.startswith("request.header."):
        return "request.header." + name[len("request.header."):].lower()
    return name


# Visitor fields `explain` shows that rules cannot read: where the geo came from, the
# exact times, the client's address (a test keeps this in step with Visitor.to_dict).
SHOWN_ONLY: Final = frozenset({"geo.source", "time.minute", "profile.first_seen",
                               "profile.last_seen", "request.client_ip"})


def lookup(name: str) -> tuple[FieldSpec | None, str]:
    """The spec of a field path, or None and why it is not one."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec, ""
    for prefix, prefixed in PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return prefixed, ""
    if name in SHOWN_ONLY:
        return None, (f"{name!r} is shown by explain, but rules cannot read it (the fields "
                      "rules read: docs/fields.md)")
    return None, f"unknown field {name!r}" + suggest(name, [*FIELDS, *PREFIXES])


# Visitor fields whose values come from a closed set (or the geo database, or an edge the
# operator trusts): a variant may print them and its page still be cached per value.
# Anything else printed makes the page private under keyed caching, and that includes
# names a visitor writes: referral.source (any utm_source or referring host),
# device.os and device.browser (a User-Agent's own words) and language.primary (any 1-8
# letters of Accept-Language), each of which would give every made-up value a public key.
# (personalize/segments.py keys pages by them; notices.py tells of variants printing others.)
BOUNDED_FIELDS: Final = frozenset({
    "referral.medium",
    "geo.country", "geo.region", "geo.city", "geo.postal", "geo.metro", "geo.continent",
    "geo.time_zone", "geo.eu", "geo.anonymous",
    "device.type", "device.touch", "device.bot_category",
    "time.hour", "time.weekday", "time.daypart", "time.date",
    "profile.new", "profile.stored",
    "profile.first_referral.medium", "profile.last_referral.medium",
})


# Request headers each part of the visitor comes from (what a cache must Vary on).
_SOURCES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "referral": ("Referer",),
    "device": ("User-Agent", "Sec-CH-UA-Mobile", "Sec-CH-UA-Platform", "Sec-CH-UA-Model"),
    "language": ("Accept-Language",),
    "profile": ("Cookie",),
    "request.cookie": ("Cookie",),
})


def vary_headers(fields: Iterable[str]) -> list[str]:
    """The request headers a response depends on when rules read `fields`. The visitor's
    address (geo) and the URL are not headers: caches key on the URL anyway, and an
    address cannot be varied on; that is why personalized pages stay private by default."""
    out: list[str] = []
    for name in sorted(fields):
        if name.startswith("request.header."):
            headers: tuple[str, ...] = (name[len("request.header."):],)
        elif name.startswith("request.cookie."):
            headers = _SOURCES["request.cookie"]
        else:
            headers = _SOURCES.get(name.split(".", 1)[0], ())
        for header in headers:
            if header.lower() not in (h.lower() for h in out):
                out.append(header)
    return out
