"""The checks a Settings passes when it is made: each names the setting and what it takes."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Final, Literal, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import SettingsError
from ..http.hosts import is_host
from .converters import CDN_TAG_HEADERS, EDGE_VENDORS, FORWARDED_ONLY, TAG_HEADERS

if TYPE_CHECKING:
    from .settings import Settings

LogFormat = Literal["text", "json"]


def check_origin(url: str | None) -> None:
    parts = urlsplit(url or "http://unset")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("origin_url must be an absolute http(s) URL such as "
                            f"http://127.0.0.1:8000, got {url!r}", setting="origin_url")
    if parts.query or parts.fragment:
        raise SettingsError(f"origin_url must not carry a query or fragment: {url}",
                            setting="origin_url")
    _check_authority(parts.netloc.rpartition("@")[2], "origin_url")


def _check_public_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError("public_url must be the site's address such as "
                            f"https://shop.example, got {url!r}", setting="public_url")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise SettingsError("public_url is a scheme and a host (and a port), with no "
                            f"path, query or credentials: {url}", setting="public_url")
    _check_authority(parts.netloc, "public_url")


def _check_authority(authority: str, setting: str) -> None:
    """A URL's host and port as a request's Host would have to be: the proxy refuses a
    client's `shop..example` or port 0, and must not send them itself."""
    if not is_host(authority):   # (the URL is not repeated: it may carry a password)
        raise SettingsError(f"{setting} names no host the proxy could use: {authority!r} "
                            "(a host is letters, digits, '-' and '_' in labels split by "
                            "dots, or an IPv6 address in brackets; a port is 1 to 65535, "
                            "with no leading zero)", setting=setting)


# Tokens copied from examples: refused, whatever their length.
_PLACEHOLDERS = frozenset({"change-me", "changeme", "change-me-please", "admin-token",
                           "secret-token", "your-admin-token", "replace-me-with-a-token"})
_BEARER_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")   # RFC 6750's b64token
_AT_LEAST_ONE = ("workers", "max_connections", "max_body_bytes", "device_cache_size",
                 "geo_cache_size")
# Below these, ordinary browsers' requests are refused (a head with its cookies is often
# past 1 KiB and 15 headers; a CDN adds its own).
_LEAST_HEAD: Final = (("max_header_bytes", 4096, "4096 bytes"), ("max_header_count", 20, "20"))
_POSITIVE = ("connect_timeout", "read_timeout", "pool_timeout", "keep_alive_timeout",
             "body_timeout", "send_timeout",
             "profile_max_age_days",
             "store_flush_interval", "store_poll_interval", "learn_interval", "head_hold_seconds",
             "interest_half_life_days", "visit_timeout_minutes")
_EDGE_TARGETS = ("device.type", *(f"geo.{name}" for name in (
    "country", "region", "city", "postal", "metro", "continent", "time_zone", "latitude",
    "longitude")))


# The stores open_store opens (learn/store), by the scheme of store_url.
STORE_KINDS: Final = ("sqlite", "redis", "rediss")
STORE_FORMS: Final = "expected sqlite:///path/to/ep.db or redis://host:port/db"


def _check_files(s: Settings) -> None:
    """What names a store or a file: its kind, and that the file is there (said against
    the setting, so the error says where it was given)."""
    if s.store_url is not None:
        scheme, colon, _ = s.store_url.partition(":")
        if not colon or scheme.lower() not in STORE_KINDS:
            # (the URL itself is not repeated: a mistyped scheme may still carry a password)
            raise SettingsError("store_url names no store this server can use ("
                                f"{scheme.lower() if colon else 'no kind'}); {STORE_FORMS}",
                                setting="store_url")
    if s.referrer_sources is not None and not s.referrer_sources.is_file():
        raise SettingsError(f"referrer_sources names no file: {str(s.referrer_sources)!r}",
                            setting="referrer_sources")


def check_settings(s: Settings) -> None:
    if not 0 < s.port < 65536:
        raise SettingsError(f"port must be between 1 and 65535, got {s.port}", setting="port")
    _check_files(s)
    if s.public_url is not None:
        _check_public_url(s.public_url)
    if s.max_long_lived is not None and s.max_long_lived < 1:
        raise SettingsError(f"max_long_lived must be >= 1, got {s.max_long_lived}",
                            setting="max_long_lived")
    for name in _AT_LEAST_ONE:
        if getattr(s, name) < 1:
            raise SettingsError(f"{name} must be >= 1, got {getattr(s, name)}", setting=name)
    for name, least, said in _LEAST_HEAD:
        if getattr(s, name) < least:
            raise SettingsError(f"{name} must be at least {said}, got {getattr(s, name)}: "
                                "below that, ordinary browsers' requests are refused",
                                setting=name)
    for name in _POSITIVE:
        value = getattr(s, name)
        if not (math.isfinite(value) and value > 0):   # (nan compares false to everything)
            raise SettingsError(f"{name} must be a number > 0, got {value}", setting=name)
    if not 200 <= s.profile_max_bytes <= 4000:
        raise SettingsError("profile_max_bytes must be between 200 and 4000 (browsers "
                            f"drop larger cookies), got {s.profile_max_bytes}",
                            setting="profile_max_bytes")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", s.profile_cookie):
        raise SettingsError(f"profile_cookie must be a plain cookie name, got "
                            f"{s.profile_cookie!r}", setting="profile_cookie")
    if s.consent_value is not None and s.consent_cookie is None:
        raise SettingsError("consent_value says which values of consent_cookie are a yes: "
                            "set consent_cookie too (without it no consent is asked)",
                            setting="consent_value")
    if s.consent_value is not None:
        try:
            re.compile(s.consent_value)
        except re.error as exc:
            raise SettingsError(f"consent_value is not a regular expression ({exc}): "
                                f"{s.consent_value!r}", setting="consent_value") from None
    if s.admin_token is not None:
        token = s.admin_token.reveal()
        if len(token) < 16 or token.lower().strip("-_ ") in _PLACEHOLDERS:
            raise SettingsError("admin_token is too easy to guess: use 16 or more random "
                                "characters, e.g. python3 -c 'import secrets; "
                                "print(secrets.token_urlsafe(24))'", setting="admin_token")
        if not _BEARER_TOKEN.fullmatch(token):
            # (also what a placeholder such as "<16+ random characters>" looks like)
            raise SettingsError("admin_token must be sent as a Bearer token: letters, digits "
                                "and - . _ ~ + / only, e.g. python3 -c 'import secrets; "
                                "print(secrets.token_urlsafe(24))'", setting="admin_token")
    if any(len(key.reveal()) < 16 for key in s.profile_keys):
        raise SettingsError("each profile key must be at least 16 characters long",
                            setting="profile_keys")
    for header, target in s.edge_headers.items():
        if target not in _EDGE_TARGETS:
            raise SettingsError(f"edge_headers: {header} -> {target!r}: a header can set "
                                + ", ".join(_EDGE_TARGETS), setting="edge_headers")
    unknown_edges = [v for v in s.edge_vendor if v not in (*EDGE_VENDORS, FORWARDED_ONLY)]
    if unknown_edges or not s.edge_vendor:
        said = f"unknown {', '.join(unknown_edges)}" if unknown_edges else "empty"
        raise SettingsError(f"edge_vendor: {said}; choose from {', '.join(EDGE_VENDORS)} "
                            f"or {FORWARDED_ONLY}", setting="edge_vendor")
    unknown_tags = [h for h in s.cache_tag_headers if h not in TAG_HEADERS]
    if unknown_tags:
        raise SettingsError(f"cache_tag_headers: unknown {', '.join(unknown_tags)}; "
                            f"choose from {', '.join(TAG_HEADERS)} (or the CDNs: "
                            f"{', '.join(CDN_TAG_HEADERS)}), or none", setting="cache_tag_headers")
    if s.edge_trusted_only and not s.trusted_proxies:
        raise SettingsError("edge_trusted_only answers /__ep/decide for trusted proxies only: "
                            "name the edge's addresses in trusted_proxies (--trusted-proxy "
                            "CIDR), or no one could ask", setting="edge_trusted_only")
    if s.shared_max_age < 0:
        raise SettingsError(f"shared_max_age must be >= 0, got {s.shared_max_age}",
                            setting="shared_max_age")
    if s.rules_watch_interval < 0:
        raise SettingsError("rules_watch_interval must be >= 0 seconds (0 turns watching "
                            f"off), got {s.rules_watch_interval}", setting="rules_watch_interval")
    if not _zone_exists(s.default_time_zone):
        raise SettingsError(f"default_time_zone {s.default_time_zone!r} is not an IANA "
                            "time zone such as Europe/Berlin", setting="default_time_zone")
    if s.log_format not in get_args(LogFormat):
        raise SettingsError(f"log_format must be text or json, got {s.log_format!r}",
                            setting="log_format")
    if s.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
        raise SettingsError(f"log_level must be debug, info, warning or error, got "
                            f"{s.log_level!r}", setting="log_level")


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
