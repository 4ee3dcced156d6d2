"""Classifier: a request's data -> Visitor, wiring the per-dimension classifiers."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, unquote

from lru import LRU

from .cookies import parse_cookies
from .device import ClientHints, DeviceClassifier
from .edge import TrustedEdge, merge_geo, with_edge_type
from .geo import GeoLocator
from .language import parse_accept_language
from .localtime import Zones, local_time
from .profile import Profile, ProfileTracker
from .referral import ReferralClassifier
from .visitor import (
    NO_VALUES,
    UNKNOWN_GEO,
    Device,
    Geo,
    Language,
    LocalTime,
    Predictions,
    Referral,
    RequestInfo,
    Visitor,
)

_MAX_QUERY_PARAMS: Final = 64


def parse_query(query_string: str) -> Mapping[str, str]:
    """`a=1&b=2` -> {"a": "1", "b": "2"}, decoded as parse_qsl decodes them (blank values
    kept); the first of a repeated name wins."""
    if not query_string:
        return NO_VALUES
    out: dict[str, str] = {}
    if "%" in query_string or "+" in query_string:
        pairs = parse_qsl(query_string, keep_blank_values=True)[:_MAX_QUERY_PARAMS]
    else:   # nothing to decode (most queries): split as parse_qsl would
        pairs = [(key, value) for key, _, value in
                 (part.partition("=") for part in query_string.split("&") if part)]
        del pairs[_MAX_QUERY_PARAMS:]
    for key, value in pairs:
        out.setdefault(key, value)
    return MappingProxyType(out)


def request_info(*, method: str, path: str, query_string: str, host: str,
                 headers: Iterable[tuple[str, str]], client_ip: str | None,
                 trusted_edge: bool = False) -> RequestInfo:
    """A RequestInfo from primitive request data (header names any case)."""
    merged: dict[str, str] = {}
    for name, value in headers:
        _merge(merged, name.lower(), value)
    _fold_accept(merged)
    return request_from_headers(method=method, path=path, query_string=query_string,
                                host=host, headers=merged, client_ip=client_ip,
                                trusted_edge=trusted_edge)


def merge_headers(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Raw (ASGI) headers by lower-case name; repeats joined as HTTP joins them. Accept is
    read case-folded (media types are case-insensitive): every test of what a client asks
    for (a page view, HTML, a revalidation) reads `text/html` as `TEXT/HTML`."""
    merged: dict[str, str] = {}
    for name, value in headers:
        _merge(merged, name.decode("latin-1"), value.decode("latin-1"))
    _fold_accept(merged)
    return merged


def _fold_accept(merged: dict[str, str]) -> None:
    accept = merged.get("accept")
    if accept is not None:
        merged["accept"] = accept.lower()


def _merge(merged: dict[str, str], key: str, value: str) -> None:
    if key in merged:
        value = merged[key] + ("; " if key == "cookie" else ", ") + value
    merged[key] = value


def request_from_headers(*, method: str, path: str, query_string: str, host: str,
                         headers: dict[str, str], client_ip: str | None,
                         trusted_edge: bool = False) -> RequestInfo:
    """A RequestInfo from headers merged by lower-case name (merge_headers); the dict
    becomes the request's own. `client_ip` is the visitor's, as client_address resolved
    it through trusted proxies (and the headers of the edges named in edge_vendor)."""
    merged = headers
    cookies = parse_cookies(merged.get("cookie", ""))
    return RequestInfo(method=method.upper(), path=(unquote(path) if "%" in path else path) or "/",
                       host=host,
                       query=parse_query(query_string), headers=MappingProxyType(merged),
                       cookies=cookies, client_ip=client_ip, trusted_edge=trusted_edge)


class Classifier:
    """Builds Visitors; each part is computed the first time a rule (or the profile) reads it.

    Everything it holds is immutable or a bounded cache, so one Classifier serves every
    request of a worker.
    """

    def __init__(self, *, devices: DeviceClassifier | None = None,
                 referrals: ReferralClassifier | None = None, geo: GeoLocator | None = None,
                 profiles: ProfileTracker | None = None,
                 default_time_zone: str = "UTC", cache_size: int = 4096,
                 edge: TrustedEdge | None = None) -> None:
        self.devices = devices or DeviceClassifier()
        self.referrals = referrals or ReferralClassifier()
        self.geo_locator = geo
        self.profiles = profiles
        self.default_time_zone = default_time_zone
        self.zones = Zones()   # the visitors' time zones, as first met
        # What a trusted proxy's headers may tell (edge_vendor); by default its
        # X-Forwarded-For alone.
        self.edge = edge or TrustedEdge()
        # Profile -> predicted interests (learn/affinity.py's, set by the app); none: no
        # predictions, every profile.predicted.* reads 0.
        self.predictor: Callable[[Profile], Predictions] | None = None
        # Accept-Language values and referral inputs repeat across visitors: parse each once.
        self._languages: LRU[str, Language] = LRU(cache_size)
        self._referrals: LRU[tuple[str, str, tuple[tuple[str, str], ...]], Referral] = \
            LRU(cache_size)

    def visitor(self, request: RequestInfo, *, now: float, page_view: bool = False) -> Visitor:
        return Visitor(request, resolve=self, now=now, page_view=page_view)

    # Resolvers

    def referral(self, request: RequestInfo) -> Referral:
        referer = request.headers.get("referer", "")
        relevant = self.referrals.table.is_referral_param
        params = tuple((k, v) for k, v in request.query.items() if relevant(k))
        key = (referer, request.host, params)
        referral = self._referrals.get(key)
        if referral is None:
            referral = self.referrals.classify(dict(params), referer, request.host)
            self._referrals[key] = referral
        return referral

    def geo(self, request: RequestInfo) -> Geo:
        located = (self.geo_locator.locate(request.client_ip) if self.geo_locator is not None
                   else UNKNOWN_GEO)
        if not request.trusted_edge:
            return located
        return merge_geo(self.edge.geo(request.headers), located)

    def device(self, request: RequestInfo) -> Device:
        hints = ClientHints.from_headers(request.headers)
        device = self.devices.classify(request.headers.get("user-agent", ""), hints)
        if request.trusted_edge:
            device = with_edge_type(device, self.edge.device_type(request.headers))
        return device

    def language(self, request: RequestInfo) -> Language:
        header = request.headers.get("accept-language", "")[:256]
        language = self._languages.get(header)
        if language is None:
            language = self._languages[header] = parse_accept_language(header)
        return language

    def time(self, geo: Geo, now: float) -> LocalTime:
        return local_time(now, geo.time_zone, self.default_time_zone, self.zones)

    def profile(self, visitor: Visitor) -> Profile:
        request = visitor.request
        if self.profiles is None:
            t = int(visitor.now)
            return Profile(visitor_id="", first_seen=t, last_seen=t, previous_seen=t,
                           stored=False, now=t)
        if visitor.device.type == "bot":   # never given a profile cookie
            return self.profiles.not_kept(visitor.now, page_view=visitor.page_view)
        return self.profiles.observe(cookies=request.cookies, headers=request.headers,
                                     now=visitor.now, path=request.path,
                                     page_view=visitor.page_view,
                                     referral=lambda: visitor.referral)

    def predicted(self, visitor: Visitor) -> Predictions:
        return () if self.predictor is None else self.predictor(visitor.profile)
