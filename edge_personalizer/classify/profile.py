"""Profile: the visitor's own history, learned from their page views and kept in a signed
cookie (the cookie's format and signing: profile_codec.py). A cookie that is malformed,
tampered with, signed by a foreign key, too large or expired is ignored (the visitor
starts afresh) and counted, never an error."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from fnmatch import translate
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from .cookies import cookie_values
from .privacy import PrivacyPolicy
from .profile_codec import (
    LAST_SEEN,
    STATE_CONVERTED,
    STATE_EXPOSURES,
    STATE_SCORES,
    STATE_VARIANTS,
    ProfileCodec,
    RejectReason,
)
from .visitor import Referral

_DAY: Final = 86400.0
_EMPTY_SCORES: Final[Mapping[str, tuple[float, int]]] = MappingProxyType({})
_EMPTY_VARIANTS: Final[Mapping[str, str]] = MappingProxyType({})
_EMPTY_EXPOSURES: Final[Mapping[str, Exposure]] = MappingProxyType({})
_EMPTY_CONVERTED: Final[Mapping[str, int]] = MappingProxyType({})


UNKNOWN_PERIOD: Final = -1   # the period of an exposure remembered before exposures kept theirs
_MAX_COUNT: Final = 1 << 32   # past any visitor's visits, views or conversions


class Exposure(NamedTuple):
    """A rule or experiment variant the visitor was shown: when, and in which cell and
    period they were counted (so a later conversion is counted in the same ones). The
    period is the version of the bandit weights the variant was assigned under (0: the
    fixed or starting weights)."""

    variant: str
    at: int
    cell: str
    period: int = 0


def converted_key(goal: str, by: str) -> str:
    """The key of a conversion already counted for `goal` and the rule or experiment `by`."""
    return f"{goal}\x1f{by}"


class ReferralSummary(NamedTuple):
    """The part of a referral worth remembering."""

    medium: str
    source: str
    campaign: str | None = None

    @classmethod
    def of(cls, referral: Referral) -> ReferralSummary:
        return cls(referral.medium, referral.source, referral.campaign)


# Profile fields that are bookkeeping, not something to show or write rules against.
_INTERNAL: Final = frozenset({"previous_seen", "scores", "changed", "half_life_days", "now",
                              "exposures", "converted"})


class Profile(NamedTuple):
    """A visitor's history as of this request (after counting it).

    `interests` are 0..1 scores decayed to `now`; `days_since_last` counts from the visit
    before this one; `new` is true when the visitor brought no valid profile. A NamedTuple
    rather than a frozen dataclass: it is built on every page view, and this is ~4x faster.
    """

    visitor_id: str
    first_seen: int
    last_seen: int
    previous_seen: int
    visits: int = 1
    pageviews: int = 0
    scores: Mapping[str, tuple[float, int]] = _EMPTY_SCORES
    first_referral: ReferralSummary | None = None
    last_referral: ReferralSummary | None = None
    conversions: int = 0
    variants: Mapping[str, str] = _EMPTY_VARIANTS
    new: bool = True
    stored: bool = True        # False when privacy signals forbid keeping a profile
    changed: bool = False      # the cookie needs writing
    half_life_days: float = 30.0
    now: int = 0
    exposures: Mapping[str, Exposure] = _EMPTY_EXPOSURES   # by rule or experiment name
    converted: Mapping[str, int] = _EMPTY_CONVERTED        # converted_key -> when counted

    @property
    def interests(self) -> Mapping[str, float]:
        return MappingProxyType({name: round(_decay(score, at, self.now, self.half_life_days), 4)
                                 for name, (score, at) in self.scores.items()})

    @property
    def days_since_first(self) -> int:
        return int((self.now - self.first_seen) // _DAY)

    @property
    def days_since_last(self) -> int | None:
        return None if self.new else int((self.now - self.previous_seen) // _DAY)

    def public(self) -> dict[str, Any]:
        """The fields to show (`explain`, `classify`), computed ones included."""
        data: dict[str, Any] = {name: value for name, value in
                                zip(self._fields, self, strict=True) if name not in _INTERNAL}
        data.update(interests=dict(self.interests), days_since_first=self.days_since_first,
                    days_since_last=self.days_since_last)
        return data

    # The with_* methods run on the request path (a new visitor's first exposure, a
    # conversion): each builds the new tuple directly, ~2x cheaper than _replace.
    def with_variant(self, key: str, variant: str) -> Profile:
        """Remembers the variant of experiment `key` the visitor is shown. One shown
        another than the one they were first exposed to (theirs was removed from the
        experiment) keeps that exposure: they stay counted, with their later conversions,
        in the variant they were first shown, never in the new one. (Counted there, the
        returning visitors moved into it are compared with the others' new visitors, and
        a rename alone shows an uplift; counted nowhere, the removed variant loses their
        later conversions while the others keep theirs.)"""
        if self.variants.get(key) == variant:
            return self
        return _replaced(self, _VARIANTS, MappingProxyType({**self.variants, key: variant}))

    def with_conversion(self) -> Profile:
        return _replaced(self, _CONVERSIONS, self.conversions + 1)

    def with_exposure(self, by: str, variant: str, cell: str, period: int = 0) -> Profile:
        """Remembers the first exposure to `by` (a rule or experiment), its variant, and
        the period (weights version) it was assigned in."""
        if by in self.exposures:
            return self
        exposure = _new_tuple(Exposure, (variant, self.now, cell, period))
        return _replaced(self, _EXPOSURES, MappingProxyType({**self.exposures, by: exposure}))

    def with_counted(self, goal: str, by: str) -> Profile:
        """Remembers that the conversion on `goal` was counted for `by`."""
        converted = {**self.converted, converted_key(goal, by): self.now}
        return _replaced(self, _CONVERTED, MappingProxyType(converted))


_new_tuple = tuple.__new__
_VARIANTS, _CONVERSIONS, _EXPOSURES, _CONVERTED, _CHANGED = (
    Profile._fields.index(name)
    for name in ("variants", "conversions", "exposures", "converted", "changed"))


def _replaced(profile: Profile, index: int, value: Any) -> Profile:
    """`profile` with field `index` set to `value`, marked changed (when it is stored)."""
    values = list(profile)
    values[index] = value
    values[_CHANGED] = profile.stored
    replaced: Profile = _new_tuple(Profile, values)
    return replaced


def _decay(score: float, at: int, now: int, half_life_days: float) -> float:
    age_days = max(0.0, (now - at) / _DAY)
    return float(score * 0.5 ** (age_days / half_life_days))


class InterestMap:
    """Category -> path patterns (`/running`, `/running/*`); compiled once."""

    def __init__(self, categories: Mapping[str, Iterable[str]]) -> None:
        self._patterns = tuple(
            (name, re.compile("|".join(translate(p) for p in patterns)))
            for name, patterns in categories.items() if patterns)

    def categories(self, path: str) -> list[str]:
        return [name for name, pattern in self._patterns if pattern.match(path)]

    def __bool__(self) -> bool:
        return bool(self._patterns)


class ProfileTracker:
    """Reads the profile cookie of a request, counts the page view, and writes it back."""

    def __init__(
        self,
        codec: ProfileCodec,
        *,
        cookie_name: str = "ep_profile",
        interests: InterestMap | None = None,
        privacy: PrivacyPolicy | None = None,
        half_life_days: float = 30.0,
        visit_gap_seconds: float = 1800.0,
        learning_rate: float = 0.25,
        on_reject: Callable[[RejectReason], None] | None = None,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.codec = codec
        # A new visitor's id: random; replay makes it from the log's visitor instead
        self.new_id: Callable[[], str] = new_id or _new_id
        self.cookie_name = cookie_name
        self._prefix = cookie_name + "="
        self.interests = interests or InterestMap({})
        self.privacy = privacy or PrivacyPolicy()
        self.half_life_days = half_life_days
        self.visit_gap = visit_gap_seconds
        self.learning_rate = learning_rate
        self._on_reject = on_reject

    def observe(self, *, cookies: Mapping[str, str], headers: Mapping[str, str], now: float,
                path: str, page_view: bool, referral: Callable[[], Referral]) -> Profile:
        """The profile after this request. Learns only from page views, and only when the
        privacy policy allows keeping a profile at all."""
        if not self.privacy.allows(headers, cookies):
            return self.not_kept(now, page_view=page_view)
        t = int(now)
        state = self._read(cookies.get(self.cookie_name), headers.get("cookie", ""), now)
        profile = None
        if state is not None:
            try:
                profile = _profile_from(state, t, self.half_life_days)
            except (TypeError, ValueError, AttributeError, LookupError):
                self._reject("malformed")
        if profile is None:
            profile = Profile(visitor_id=self.new_id(), first_seen=t, last_seen=t,
                              previous_seen=t, visits=0, now=t,
                              half_life_days=self.half_life_days)
        if not page_view:
            return profile
        return self._count_page_view(profile, t, path, referral)

    def not_kept(self, now: float, *, page_view: bool) -> Profile:
        """This request's profile when none is kept for the visitor (privacy signals, a
        bot): a first visit, never stored."""
        t = int(now)
        return Profile(visitor_id=self.new_id(), first_seen=t, last_seen=t, previous_seen=t,
                       visits=1, pageviews=1 if page_view else 0, stored=False, now=t,
                       half_life_days=self.half_life_days)

    def _read(self, value: str | None, header: str, now: float) -> list[Any] | None:
        """The cookie's state. A browser may hold the cookie twice (one a stale copy: set
        for the parent domain or another path, by an older configuration) and sends both,
        the older first: the one last seen is read, so page views are not counted against
        the stale one again and again."""
        state, reason = self.codec.decode(value, now) if value else (None, None)
        if header.count(self._prefix) > 1:
            for other in cookie_values(header, self.cookie_name)[1:]:
                found, _ = self.codec.decode(other, now)
                if found is not None and (state is None or found[LAST_SEEN] > state[LAST_SEEN]):
                    state, reason = found, None
        if reason is not None:
            self._reject(reason)
        return state

    def _reject(self, reason: RejectReason) -> None:
        if self._on_reject is not None:
            self._on_reject(reason)

    def _count_page_view(self, profile: Profile, t: int, path: str,
                         referral: Callable[[], Referral]) -> Profile:
        new_visit = profile.visits == 0 or t - profile.last_seen > self.visit_gap
        first_referral, last_referral = profile.first_referral, profile.last_referral
        if new_visit:
            came_from = referral()
            if came_from.medium != "internal":
                last_referral = ReferralSummary.of(came_from)
                first_referral = first_referral or last_referral
        scores = dict(profile.scores)
        for category in self.interests.categories(path):
            old = scores.get(category)
            current = _decay(old[0], old[1], t, self.half_life_days) if old else 0.0
            scores[category] = (round(current + (1 - current) * self.learning_rate, 4), t)
        return Profile(
            visitor_id=profile.visitor_id, first_seen=profile.first_seen, last_seen=t,
            previous_seen=profile.previous_seen,
            visits=profile.visits + (1 if new_visit else 0), pageviews=profile.pageviews + 1,
            scores=MappingProxyType(scores), first_referral=first_referral,
            last_referral=last_referral, conversions=profile.conversions,
            variants=profile.variants, new=profile.new, stored=True, changed=True,
            half_life_days=profile.half_life_days, now=t, exposures=profile.exposures,
            converted=profile.converted)

    def cookie_value(self, profile: Profile, live: AbstractSet[str] | None = None,
                     rules: AbstractSet[str] = frozenset()) -> str:
        """The signed cookie value, trimmed to fit the size cap. What goes first: all
        that is kept for rules and experiments not in `live` (those served: an experiment
        long removed still held its visitors' variants); then counted conversions, then
        exposures, those to `rules` first (an exposure let go of is counted again at the
        visitor's next view of it: an experiment's comparison weighs more than a rule's
        reach), oldest first; then variants; then the weakest interests."""
        state = _state_of(profile)
        value = self.codec.encode(state)
        scores, variants = state[STATE_SCORES], state[STATE_VARIANTS]
        exposures, converted = state[STATE_EXPOSURES], state[STATE_CONVERTED]
        if len(value) > self.codec.max_bytes and live is not None:
            for entries in (variants, exposures):
                for by in [by for by in entries if by not in live]:
                    del entries[by]
            for key in [key for key in converted if key.partition("\x1f")[2] not in live]:
                del converted[key]
            value = self.codec.encode(state)
        while len(value) > self.codec.max_bytes and (converted or exposures or variants
                                                     or scores):
            if converted:
                converted.pop(min(converted, key=lambda k: converted[k]))
            elif exposures:
                exposures.pop(min(exposures, key=lambda k: (k not in rules, exposures[k][1])))
            elif variants:
                variants.pop(next(iter(variants)))
            else:
                scores.pop(min(scores, key=lambda k: scores[k][0]))
            value = self.codec.encode(state)
        return value

    def set_cookie_header(self, profile: Profile, *, secure: bool, max_age_days: float,
                          live: AbstractSet[str] | None = None,
                          rules: AbstractSet[str] = frozenset()) -> bytes:
        value = self.cookie_value(profile, live, rules)
        parts = [f"{self.cookie_name}={value}", "Path=/", f"Max-Age={int(max_age_days * _DAY)}",
                 "HttpOnly", "SameSite=Lax"]
        if secure:
            parts.append("Secure")
        return "; ".join(parts).encode("latin-1")


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def _summary(data: Any) -> ReferralSummary | None:
    if isinstance(data, list) and len(data) == 3:
        return ReferralSummary(str(data[0]), str(data[1]), data[2] if data[2] else None)
    return None


def _profile_from(state: list[Any], now: int, half_life_days: float) -> Profile:
    """A profile from a verified cookie's state; raises ValueError/TypeError on bad shapes."""
    (visitor_id, first, last, visits, pageviews, scores, first_ref, last_ref, conversions,
     variants, exposures, converted) = state if len(state) == 12 else [*state, {}, {}]
    return Profile(
        visitor_id=str(visitor_id), first_seen=int(first), last_seen=last, previous_seen=last,
        visits=_count(visits), pageviews=_count(pageviews),
        scores=MappingProxyType({str(k): (float(v[0]), int(v[1])) for k, v in scores.items()}),
        first_referral=_summary(first_ref), last_referral=_summary(last_ref),
        conversions=_count(conversions),
        variants=MappingProxyType({str(k): str(v) for k, v in variants.items()}),
        new=False, now=now, half_life_days=half_life_days,
        # an exposure: [variant, at, cell, period]; cookies written before exposures kept
        # their period have three items (inlined: a call per exposure cost ~0.2 µs)
        exposures=MappingProxyType({
            str(k): Exposure(str(v[0]), int(v[1]), str(v[2]),
                             int(v[3]) if len(v) > 3 else UNKNOWN_PERIOD)
            for k, v in exposures.items()}),
        converted=MappingProxyType({str(k): int(v) for k, v in converted.items()}))


def _count(value: Any) -> int:
    """A counter no visitor reaches is a bad shape: one more would not fit the cookie."""
    if not isinstance(value, int) or not 0 <= value < _MAX_COUNT:
        raise ValueError(f"a counter of {value!r}")
    return value


def _pack_summary(summary: ReferralSummary | None) -> list[Any] | None:
    return list(summary) if summary else None


def _state_of(profile: Profile) -> list[Any]:
    # Tuples pack as msgpack arrays, as lists do: the maps are copied, not rebuilt (the
    # copies are trimmed in place when the cookie is too large).
    return [profile.visitor_id, profile.first_seen, profile.last_seen, profile.visits,
            profile.pageviews, dict(profile.scores),
            _pack_summary(profile.first_referral), _pack_summary(profile.last_referral),
            profile.conversions, dict(profile.variants), dict(profile.exposures),
            dict(profile.converted)]
