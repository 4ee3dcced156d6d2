"""Referral: where a visitor came from, from the landing URL's parameters and the Referer.

Precedence, as analytics tools do it: campaign parameters (utm_*) first, then click ids,
then the Referer header, else direct.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, cast, get_args
from urllib.parse import parse_qsl, urlsplit

from .visitor import DIRECT, Medium, Referral

_MEDIA = frozenset(get_args(Medium))
_HOST_MEDIA = ("search", "ai", "social", "email", "paid")
_UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# Short names that campaigns commonly use for well-known sources.
_SOURCE_ALIASES: Mapping[str, str] = {
    "fb": "facebook", "ig": "instagram", "insta": "instagram", "tw": "twitter", "x": "twitter",
    "li": "linkedin", "yt": "youtube", "goog": "google", "adwords": "google",
    "google_ads": "google", "googleads": "google", "bingads": "bing", "openai": "chatgpt",
}


@dataclass(frozen=True)
class _Source:
    medium: Medium
    name: str
    params: tuple[str, ...] = ()


class ReferrerTable:
    """Referrer hosts, app ids, click ids and utm_medium values, from our data file
    merged with an operator's own file of the same shape."""

    def __init__(self, extra: Path | None = None) -> None:
        data = json.loads(resources.files(__package__).joinpath("data/referrers.json")
                          .read_text())
        if extra is not None:
            _merge(data, _read_extra(extra))
        self.hosts: dict[str, _Source] = {}
        self.wildcards: dict[str, _Source] = {}
        self.names: dict[str, _Source] = {}
        for medium in _HOST_MEDIA:
            for name, entry in data.get(medium, {}).items():
                source = _Source(cast(Medium, medium), name, tuple(entry.get("params", ())))
                self.names.setdefault(name, source)
                for host in entry.get("hosts", ()):
                    if host.endswith(".*"):
                        self.wildcards[host[:-2].removeprefix("www.")] = source
                    else:
                        self.hosts[host.removeprefix("www.")] = source
        self.apps = {app: (cast(Medium, m), s) for app, (m, s) in data.get("apps", {}).items()}
        self.utm_media: dict[str, Medium] = dict(data.get("utm_medium", {}))
        self.click_ids = {k: (cast(Medium, m), s) for k, (m, s) in data["click_ids"].items()}

    def is_referral_param(self, name: str) -> bool:
        """Whether a landing-URL parameter can change the referral (utm_*, click ids)."""
        lower = name.lower()
        return lower.startswith("utm_") or lower in self.click_ids

    def lookup_host(self, host: str) -> _Source | None:
        labels = host.lower().rstrip(".").removeprefix("www.").split(".")
        for i in range(len(labels)):
            found = self.hosts.get(".".join(labels[i:]))
            if found is not None:
                return found
            rest = labels[i + 1:]
            if 1 <= len(rest) <= 2 and all(len(label) <= 3 for label in rest):
                found = self.wildcards.get(labels[i])
                if found is not None:
                    return found
        return None


def _read_extra(path: Path) -> dict[str, Any]:
    from ..errors import SettingsError

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"referrer sources file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"referrer sources file {path}: expected a JSON object")
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key].update(value)
        else:
            base[key] = value


def _query(url: str) -> dict[str, str]:
    query = url.partition("?")[2].partition("#")[0]
    out: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(key.lower(), value)
    return out


def _same_site(a: str, b: str) -> bool:
    a, b = a.lower().removeprefix("www."), b.lower().removeprefix("www.")
    return a == b or a.endswith("." + b) or b.endswith("." + a)


class ReferralClassifier:
    """(landing query, Referer, own host) -> Referral."""

    def __init__(self, table: ReferrerTable | None = None) -> None:
        self.table = table or ReferrerTable()

    def classify(self, query: Mapping[str, str], referer: str, own_host: str) -> Referral:
        params = {k.lower(): v for k, v in query.items()}
        utm = {name: params[name].strip() for name in _UTM if params.get(name, "").strip()}
        click_id = next((name for name in self.table.click_ids if name in params), None)
        from_referer = self._from_referer(referer.strip(), own_host)
        if utm.get("utm_source") or utm.get("utm_medium"):
            medium, source = self._from_utm(utm, from_referer, click_id)
        elif click_id is not None:
            medium, source = self.table.click_ids[click_id]
        elif from_referer is not None:
            medium, source = from_referer.medium, from_referer.source
        else:
            return DIRECT if not utm else Referral("direct", "direct",
                                                     campaign=utm.get("utm_campaign"))
        keywords = from_referer.keywords if from_referer else None
        if keywords is None and medium in ("search", "paid"):
            keywords = utm.get("utm_term")
        return Referral(medium=medium, source=source, campaign=utm.get("utm_campaign"),
                        term=utm.get("utm_term"), content=utm.get("utm_content"),
                        keywords=keywords, click_id=click_id,
                        host=from_referer.host if from_referer else None)

    def _from_utm(self, utm: Mapping[str, str], from_referer: Referral | None,
                  click_id: str | None) -> tuple[Medium, str]:
        raw_source = utm.get("utm_source", "").lower()
        source = _SOURCE_ALIASES.get(raw_source, raw_source)
        known = self.table.names.get(source) or (self.table.lookup_host(source)
                                                  if "." in source else None)
        if known is not None:
            source = known.name
        raw_medium = utm.get("utm_medium", "").lower()
        medium = self.table.utm_media.get(raw_medium)
        if medium is None and raw_medium in _MEDIA:
            medium = cast(Medium, raw_medium)
        if medium is None:
            if click_id is not None:
                medium = self.table.click_ids[click_id][0]
            elif known is not None:
                medium = known.medium
            elif from_referer is not None and from_referer.medium != "internal":
                medium = from_referer.medium
            else:
                medium = "referral"
        if not source:
            source = from_referer.source if from_referer else "direct"
        return medium, source

    def _from_referer(self, referer: str, own_host: str) -> Referral | None:
        if not referer:
            return None
        if referer.startswith("android-app://"):
            app = referer[len("android-app://"):].split("/", 1)[0].lower()
            medium, source = self.table.apps.get(app, ("app", app))
            return Referral(medium, source, host=app)
        try:
            parts = urlsplit(referer)
        except ValueError:
            return None
        host = (parts.hostname or "").lower()
        if not host:
            return None
        if own_host and _same_site(host, own_host.split(":")[0]):
            return Referral("internal", "internal", host=host)
        known = self.table.lookup_host(host)
        if known is None:
            return Referral("referral", host.removeprefix("www."), host=host)
        keywords = None
        if known.params:
            query = _query(referer)
            keywords = next((query[p].strip() for p in known.params if query.get(p, "").strip()),
                            None)
        return Referral(known.medium, known.name, keywords=keywords, host=host)
