"""Builders with valid defaults, so each test states only what it is about."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, cast

import anyio

from edge_personalizer.classify.classifier import Classifier, request_info
from edge_personalizer.classify.geo import GeoDatabase, GeoLocator
from edge_personalizer.classify.profile import InterestMap, Profile, ProfileTracker
from edge_personalizer.classify.profile_codec import ProfileCodec
from edge_personalizer.classify.visitor import RequestInfo, Resolvers, Visitor
from edge_personalizer.learn.counters import FIXED_PERIOD, CountKey, Tally
from edge_personalizer.learn.store import Store, open_store

ROOT = Path(__file__).resolve().parent.parent
GEO_DB = ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"
KEY = b"test-profile-key-0123456789abcdef"
NOW = 1_795_000_000.0
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
_T = TypeVar("_T")


def read_store(url: str, read: Callable[[Store], Awaitable[_T]]) -> _T:
    """What `read` gets from the store at `url`, opened for it and closed after (for a
    test that looks at what a server counted)."""
    async def run() -> _T:
        store = open_store(url)
        try:
            return await read(store)
        finally:
            await store.close()
    return anyio.run(run)


def make_classifier(*, geo: bool = True, interests: dict[str, list[str]] | None = None,
                    time_zone: str = "UTC") -> Classifier:
    tracker = ProfileTracker(ProfileCodec([KEY]),
                             interests=InterestMap(interests or {"running": ["/running*"]}))
    return Classifier(geo=GeoLocator(GeoDatabase(GEO_DB)) if geo else None, profiles=tracker,
                      default_time_zone=time_zone)


def make_request(url_path: str = "/", *, query: str = "", host: str = "shop.example",
                 headers: dict[str, str] | None = None, ip: str | None = None) -> RequestInfo:
    return request_info(method="GET", path=url_path, query_string=query, host=host,
                        headers=list((headers or {"user-agent": IPHONE}).items()), client_ip=ip)


@cache
def default_classifier() -> Classifier:
    """One shared classifier: building one parses ua-parser's rules (~0.2 s)."""
    return make_classifier()


def make_visitor(url_path: str = "/", *, classifier: Classifier | None = None,
                 page_view: bool = True, now: float = NOW, **kwargs: object) -> Visitor:
    return (classifier or default_classifier()).visitor(
        make_request(url_path, **kwargs), now=now, page_view=page_view)  # type: ignore[arg-type]


class _KnownProfile:
    """The shared classifier, with the visitor's profile given instead of read."""

    def __init__(self, profile: Profile) -> None:
        self.known = profile

    def __getattr__(self, part: str) -> Any:
        return getattr(default_classifier(), part)

    def profile(self, visitor: Visitor) -> Profile:
        return self.known


def with_profile(visitor: Visitor, profile: Profile) -> Visitor:
    """The same visitor as if its profile cookie held `profile`."""
    return Visitor(visitor.request, resolve=cast(Resolvers, _KnownProfile(profile)),
                   now=visitor.now, page_view=visitor.page_view)


def unset_fields_take_their_declared_defaults(made: Any) -> list[str]:
    """For a frozen dataclass whose __init__ is written out (LocalTime, SlotChoice,
    Decision: the generated one is interpreted code), the fields the call left out whose
    value is not the default the dataclass declares; `made` is built with the required
    arguments only."""
    wrong = []
    for field in dataclasses.fields(made):
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING \
            else field.default
        if default is not dataclasses.MISSING and field.init and \
                getattr(made, field.name) != default:
            wrong.append(field.name)
    return wrong


def counted(experiment: str, variants: Mapping[str, tuple[int, int]], *,
            goal: str = "purchase", value: float = 0.0, cell: str = "all",
            day: str = "2026-11-01", period: int = FIXED_PERIOD) -> dict[CountKey, Tally]:
    """The store's rows of an experiment: per variant, (visitors exposed, of whom
    converted on `goal`), each conversion bringing `value`."""
    rows = {}
    for variant, (exposed, converted) in variants.items():
        rows[CountKey(experiment, variant, "", cell, day, period)] = Tally(exposed)
        rows[CountKey(experiment, variant, goal, cell, day, period)] = Tally(
            0, converted, value * converted, value * value * converted)
    return rows
