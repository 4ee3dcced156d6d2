"""Referral: where a visitor came from, from the landing URL's parameters and the Referer.

Precedence, as analytics tools do it: campaign parameters (utm_*) first, then click ids,
then the Referer header, else direct.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, cast, get_args
from urllib.parse import unquote_plus, unquote_to_bytes, urlsplit

from .visitor import DIRECT, Medium, Referral

_MEDIA: Final = frozenset(get_args(Medium))
_HOST_MEDIA: Final = ("search", "ai", "social", "email", "paid", "referral")
# Second-level labels under which a country's sites register: example.co.uk, example.com.br.
_SECOND_LEVEL: Final = frozenset({"co", "com", "net", "org", "gov", "edu", "ac", "or", "ne", "go",
                                  "gob", "nic", "nom", "ltd", "plc", "sch", "mil", "biz", "info",
                                  "in", "gen"})
# Subdomain labels of mail front ends: mail., webmail2., email., e-mail., wmail., owa.,
# lightmailer-bs., mailbusiness., messagerie., posta., correo., poczta.
_MAIL_LABEL: Final = re.compile(
    r"^(?:(?:web|e-?|w|my|secure|new)?mail\d*|webmail.*|lightmailer.*|mailbusiness|mailbox|"
    r"owa|messagerie\w*|posta|correo|poczta|pochta|mbox\d*)$")
_MAIL_PATHS: Final = frozenset({"webmail", "mail", "owa", "roundcube", "squirrelmail", "horde",
                                "zimbra", "rainloop", "sogo", "mailbox", "messagerie", "webmail2",
                                "mailclient"})
# A search page of a site no list knows: its path or host says search, and one of these
# parameters holds the terms.
_SEARCH_PATHS: Final = frozenset({
    "search", "s", "find", "results", "result", "query", "serp", "web", "websearch", "suche",
    "recherche", "buscar", "busca", "cerca", "ricerca", "zoeken", "szukaj", "poisk", "sok",
    "haku", "hledat", "arama", "search.php", "search.html", "search.aspx", "search.asp",
    "results.php", "results.html", "cgi-bin"})
_SEARCH_LABELS: Final = frozenset({"search", "suche", "recherche", "ricerca", "buscador", "busca",
                                   "zoeken", "szukaj", "poisk", "haku", "hledat", "arama", "sok",
                                   "websearch", "isearch", "msearch"})
_SEARCH_PARAMS: Final = ("q", "query", "p", "text", "wd", "word", "kw", "keyword", "keywords",
                         "search", "search_query", "searchfor", "searchterm", "qs", "qt", "k", "su",
                         "terms", "term", "string", "qry", "encquery", "eingabe", "busca", "as_q")
_UTM: Final = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# Short names that campaigns commonly use for well-known sources.
_SOURCE_ALIASES: Final[Mapping[str, str]] = MappingProxyType({
    "fb": "facebook", "ig": "instagram", "insta": "instagram", "tw": "twitter", "x": "twitter",
    "li": "linkedin", "yt": "youtube", "goog": "google", "adwords": "google",
    "google_ads": "google", "googleads": "google", "bingads": "bing", "openai": "chatgpt",
})


@dataclass(frozen=True)
class _Source:
    medium: Medium
    name: str
    params: tuple[str, ...] = ()                       # query keys carrying the search terms
    paths: tuple[re.Pattern[str], ...] = ()            # or expressions over the path
    charsets: tuple[str, ...] = ()                     # the terms' charsets besides UTF-8


class ReferrerTable:
    """Referrer hosts, app ids, click ids and utm_medium values, from our data file
    merged with an operator's own file of the same shape (the operator's entries win)."""

    def __init__(self, extra: Path | None = None) -> None:
        data = json.loads(resources.files(__package__).joinpath("data/referrers.json")
                          .read_text())
        extra_data = _read_extra(extra) if extra is not None else {}
        self.hosts: dict[str, _Source] = {}
        self.wildcards: dict[str, _Source] = {}        # "google" for "google.*"
        self.prefixes: dict[str, list[tuple[str, _Source]]] = {}   # host -> (path, source)
        self.names: dict[str, _Source] = {}
        # The operator's hosts first: the first claim on a host wins.
        for table in (extra_data, data):
            for medium in _HOST_MEDIA:
                for name, entry in table.get(medium, {}).items():
                    self._add(medium, name, entry)
        _merge(data, {k: v for k, v in extra_data.items() if k not in _HOST_MEDIA})
        self.apps = {app: (cast(Medium, m), s) for app, (m, s) in data.get("apps", {}).items()}
        self.utm_media: dict[str, Medium] = dict(data.get("utm_medium", {}))
        self.click_ids = {k: (cast(Medium, m), s) for k, (m, s) in data["click_ids"].items()}

    def _add(self, medium: Medium, key: str, entry: Mapping[str, Any]) -> None:
        name = entry.get("name", key)         # "google/3": another configuration of "google"
        source = _Source(medium, name, tuple(entry.get("params", ())),
                         tuple(re.compile(p) for p in entry.get("paths", ())),
                         tuple(entry.get("charsets", ())))
        if medium != "referral":
            self.names.setdefault(name, source)
        for pattern in entry.get("hosts", ()):
            host, slash, path = pattern.lower().partition("/")
            host = host.removeprefix("*.").removeprefix("www.")
            if slash:
                self.prefixes.setdefault(host, []).append(("/" + path, source))
            elif host.endswith(".*"):
                self.wildcards.setdefault(host[:-2], source)
            else:
                self.hosts.setdefault(host, source)

    def is_referral_param(self, name: str) -> bool:
        """Whether a landing-URL parameter can change the referral (utm_*, click ids)."""
        lower = name.lower()
        return lower.startswith("utm_") or lower in self.click_ids

    def lookup_host(self, host: str, path: str = "/") -> _Source | None:
        """The source of a host (and path), most specific first, or None."""
        found = self.lookup(host, path)
        return found[0] if found else None

    def lookup(self, host: str, path: str = "/") -> tuple[_Source, bool] | None:
        """(source, whether it names the host itself rather than a parent domain)."""
        labels = host.lower().rstrip(".").removeprefix("www.").split(".")
        count = len(labels)
        for i in range(count):
            suffix = ".".join(labels[i:])
            for prefix, source in self.prefixes.get(suffix, ()):
                if path.startswith(prefix):
                    return source, i == 0
            found = self.hosts.get(suffix)
            if found is not None:
                return found, i == 0
            for end in (count - 1, count - 2):      # "name.de", "name.co.uk"
                if end > i and all(len(label) <= 3 for label in labels[end:]):
                    found = self.wildcards.get(".".join(labels[i:end]))
                    if found is not None:
                        return found, i == 0
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


def _raw_query(query: str) -> dict[str, str]:
    """Query keys (lower-case) -> still percent-encoded values; the first of a key wins."""
    out: dict[str, str] = {}
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key:
            out.setdefault(unquote_plus(key).lower(), value)
    return out


def _decode(raw: str, charsets: tuple[str, ...]) -> str:
    """A percent-encoded query value in the first of UTF-8 and the engine's charsets that
    reads it without error (old engines send windows-1251, GB2312, EUC-JP...)."""
    data = unquote_to_bytes(raw.replace("+", " "))
    for charset in ("utf-8", *charsets):
        try:
            return data.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("utf-8", "replace")


def _keywords(source: _Source, path: str, query: str) -> str | None:
    values = _raw_query(query) if query else {}
    for param in source.params:
        raw = values.get(param)
        if raw:
            words = _decode(raw, source.charsets).strip()
            # Google's /url?q= and the like carry the target address, not search terms.
            if words and not words.startswith(("http://", "https://")):
                return words
    for pattern in source.paths:
        found = pattern.search(path)
        if found and found.groups() and found.group(1):
            return _decode(found.group(1), source.charsets).strip() or None
    if source.medium == "search":
        # An engine's other pages and partner sites name the terms as search pages do.
        for param in _SEARCH_PARAMS:
            raw = values.get(param)
            if raw and param not in source.params:
                words = _decode(raw, source.charsets).strip()
                if words and not words.isdigit() and not words.startswith(("http://",
                                                                           "https://")):
                    return words
    return None


def _site(labels: list[str]) -> str:
    """The registrable name of a host, near enough: "webmail.bigpond.com" -> "bigpond.com",
    "mail.example.co.uk" -> "example.co.uk"."""
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _webmail(labels: list[str], path: str, query: str) -> bool:
    """A mail front end recognised by its structure: a mail subdomain (mail., webmail.,
    email., mail2., owa., deref-* link redirectors...) or a webmail path."""
    site = len(_site(labels).split("."))
    subdomains = labels[:-site]
    if any(_MAIL_LABEL.match(label) for label in subdomains) or \
            any(label.startswith("deref-") for label in labels):
        return True
    first = path.lstrip("/").partition("/")[0].lower()
    return first in _MAIL_PATHS or "_task=mail" in query


def _search_keywords(labels: list[str], path: str, query: str) -> str | None:
    """Search terms from a search page no list knows: a search host or path and a
    query parameter that search pages use for the terms."""
    first = path.lstrip("/").partition("/")[0].lower()
    searchy = first in _SEARCH_PATHS or any(label in _SEARCH_LABELS for label in labels[:-1])
    if not searchy:
        return None
    values = _raw_query(query) if query else {}
    for param in _SEARCH_PARAMS:
        raw = values.get(param)
        if raw:
            words = _decode(raw, ()).strip()
            if words:
                return words
    return "" if any(label in _SEARCH_LABELS for label in labels[:-1]) else None


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
            host = (parts.hostname or "").lower()
        except ValueError:
            return None
        if not host:
            return None
        if own_host and _same_site(host, own_host.split(":")[0]):
            return Referral("internal", "internal", host=host)
        path, query = parts.path or "/", parts.query
        labels = host.rstrip(".").removeprefix("www.").split(".")
        found = self.table.lookup(host, path)
        if found is not None and (found[1] or found[0].medium == "email"):
            return self._known(found[0], host, path, query)
        if _webmail(labels, path, query):
            return Referral("email", self._mail_provider(labels), host=host)
        if found is not None:
            return self._known(found[0], host, path, query)
        keywords = _search_keywords(labels, path, query)
        if keywords is not None:
            return Referral("search", _site(labels), keywords=keywords or None, host=host)
        return Referral("referral", host.removeprefix("www."), host=host)

    def _mail_provider(self, labels: list[str]) -> str:
        """The provider of a mail front end: "deref-gmx.net" -> "gmx" (the redirector
        GMX, Web.de and 1&1 put in front of links in mails), else the site's name."""
        site = _site([label.removeprefix("deref-") for label in labels])
        known = self.table.lookup_host(site)
        return known.name if known is not None and known.medium == "email" else site

    @staticmethod
    def _known(source: _Source, host: str, path: str, query: str) -> Referral:
        keywords = _keywords(source, path, query) \
            if source.params or source.paths or source.medium == "search" else None
        return Referral(source.medium, source.name, keywords=keywords, host=host)
