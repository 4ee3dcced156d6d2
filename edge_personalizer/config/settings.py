"""Settings: every option declared once, as a field with its converter, flag and help.

The field's metadata (`option(...)`) drives everything else: the converter for the
environment and TOML values, the command-line flag, and the settings table in the README
(`settings_table()`; a test keeps the README in step).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from .checks import LogFormat, check_origin, check_settings
from .converters import (
    FORWARDED_ONLY,
    TAG_HEADERS,
    IPNetwork,
    Secret,
    to_bool,
    to_float,
    to_int,
    to_mapping,
    to_networks,
    to_optional_int,
    to_optional_str,
    to_path,
    to_secret,
    to_secrets,
    to_tag_headers,
)


@dataclass(frozen=True)
class Option:
    """How one setting is given and described: the single place it is declared."""

    convert: Callable[[Any], Any]
    help: str
    section: str
    flag: str | None = None        # e.g. "--origin"; None: no command-line flag
    metavar: str | None = None
    repeat: bool = False           # the flag may be given several times (a list)
    secret: bool = False


def option(default: Any = None, *, convert: Callable[[Any], Any], help: str, section: str,
           flag: str | None = None, metavar: str | None = None, repeat: bool = False,
           secret: bool = False, factory: Callable[[], Any] | None = None) -> Any:
    meta = {"option": Option(convert, help, section, flag, metavar, repeat, secret)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


def to_names(value: Any) -> tuple[str, ...]:
    """`cloudflare,akamai` (a list in TOML) -> lower-case names."""
    items = str(value).split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(dict.fromkeys(item.strip().lower() for item in items if item.strip()))


_SERVER, _ORIGIN, _ADMIN, _CDN, _VISITOR, _PROFILE, _LEARN = (
    "server", "origin", "admin and logs", "CDN", "visitor", "profile cookie", "learning")


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, validated on construction."""

    origin_url: str | None = option(
        convert=str, section=_ORIGIN, flag="--origin", metavar="URL",
        help="the site to forward to, e.g. http://127.0.0.1:8000 (required to serve)")
    rules_dir: Path | None = option(convert=to_path, section=_SERVER, flag="--rules",
                                    metavar="DIR", help="rules directory")
    geo_db: Path | None = option(convert=to_path, section=_VISITOR, flag="--geo-db",
                                 metavar="FILE", help="MaxMind-format City or Country "
                                 "database (.mmdb)")
    anonymous_db: Path | None = option(convert=to_path, section=_VISITOR, flag="--anonymous-db",
                                       metavar="FILE", help="GeoIP2 Anonymous-IP database "
                                       "(.mmdb), for geo.anonymous")
    host: str = option("127.0.0.1", convert=str, section=_SERVER, flag="--host",
                       help="address to listen on")
    port: int = option(8080, convert=to_int, section=_SERVER, flag="--port",
                       help="port to listen on")
    workers: int = option(1, convert=to_int, section=_SERVER, flag="--workers",
                          help="worker processes (about one a CPU; at most 4 a CPU, counting "
                               "a container's CPU quota when it has one)")
    trusted_proxies: tuple[IPNetwork, ...] = option(
        (), convert=to_networks, section=_SERVER, flag="--trusted-proxy", metavar="CIDR",
        repeat=True, help="address or network whose forwarding and edge headers are "
                          "believed (comma-separated; the flag repeats)")
    connect_timeout: float = option(5.0, convert=to_float, section=_ORIGIN, metavar="SECONDS",
                                    flag="--connect-timeout", help="seconds to connect to the "
                                    "origin")
    read_timeout: float = option(30.0, convert=to_float, section=_ORIGIN, flag="--read-timeout",
                                 metavar="SECONDS", help="seconds the origin may stay silent")
    max_connections: int = option(512, convert=to_int, section=_ORIGIN,
                                  help="origin connections open at once, per worker")
    pool_timeout: float = option(5.0, convert=to_float, section=_ORIGIN, help="seconds a "
                                 "request waits for a free origin connection before a 503 "
                                 "with Retry-After")
    max_long_lived: int | None = option(
        convert=to_optional_int, section=_ORIGIN,
        help="long-lived responses (server-sent events, multipart streams) at once, per "
             "worker; past it a 503 at once (default: half of max_connections)")
    preserve_host: bool = option(
        False, convert=to_bool, section=_ORIGIN,
        help="pass the visitor's Host to the origin instead of the origin's own (for sites "
             "that check Origin against Host, as Django's CSRF check does)")
    public_url: str | None = option(
        convert=to_optional_str, section=_ORIGIN, flag="--public-url", metavar="URL",
        help="the site's address as visitors see it, e.g. https://shop.example: where the "
             "origin's redirects to itself point (else a trusted proxy's X-Forwarded-Host, else "
             "a path), and the host and scheme the origin is told, whoever asks")
    keep_alive_timeout: float = option(
        5.0, convert=to_float, section=_SERVER, flag="--keep-alive-timeout", metavar="SECONDS",
        help="seconds an idle client connection stays open (behind a load balancer, longer "
             "than its idle timeout)")
    body_timeout: float = option(
        60.0, convert=to_float, section=_SERVER, flag="--body-timeout", metavar="SECONDS",
        help="longest pause while a client sends a request body; past it, a body must also "
             "average 1 KiB a second (16 KiB for a long upload while others are turned "
             "away for want of an upload slot; else 408 and the connection closed)")
    send_timeout: float = option(30.0, convert=to_float, section=_SERVER, flag="--send-timeout",
                                 metavar="SECONDS", help="longest a client may leave an answer "
                                 "unread (then given up, its origin connection freed)")
    max_header_bytes: int = option(32 * 1024, convert=to_int, section=_SERVER,
                                   help="largest request head, in bytes (4096 or more)")
    max_header_count: int = option(100, convert=to_int, section=_SERVER,
                                   help="most request headers (20 or more)")
    max_body_bytes: int = option(100 * 1024 * 1024, convert=to_int, section=_SERVER,
                                 flag="--max-body-bytes", metavar="N",
                                 help="largest request body, in bytes")
    admin_token: Secret | None = option(
        convert=to_secret, section=_ADMIN, secret=True,
        help="enables the admin endpoints and the X-EP-Debug trace (a secret: no flag)")
    access_log: bool = option(True, convert=to_bool, section=_ADMIN, flag="--no-access-log",
                              help="one log line a request")
    log_format: LogFormat = option("text", convert=str, section=_ADMIN, flag="--log-format",
                                   help="text (a message's later lines indented) or json "
                                   "(an object a line: RFC 3339 `time` in ms and UTC offset, "
                                   "`level`, `logger`, `message` or an access line's fields)")
    log_level: str = option("info", convert=str, section=_ADMIN, flag="--log-level",
                            help="debug, info, warning or error")
    rules_watch_interval: float = option(
        2.0, convert=to_float, section=_SERVER,
        help="seconds between looks at the rules directory; 0 turns watching off")
    variant_header: bool = option(False, convert=to_bool, section=_CDN,
                                  help="X-EP-Variant (the slots' variants, naming rules) on "
                                       "personalized pages (an experiment's control "
                                       "included), for visitors to see")
    compress_pages: bool = option(
        True, convert=to_bool, section=_CDN,
        help="rewritten pages compressed (brotli, else gzip) for clients that accept it; off "
             "when a CDN in front compresses, or to save the CPU (~1-2 ms a 100 KB page)")
    edge_headers: Mapping[str, str] = option(
        convert=to_mapping, section=_CDN, factory=dict,
        help="CDN headers that set visitor fields: `x-geo-country=geo.country,...` (a table "
             "in TOML)")
    edge_vendor: tuple[str, ...] = option(
        (FORWARDED_ONLY,), convert=to_names, section=_CDN,
        help="whose client, geo and device headers a trusted proxy's request may carry: "
             "cloudflare, cloudfront, fastly, akamai, vercel (comma-separated), or forwarded "
             "(X-Forwarded-For and Forwarded alone)")
    head_hold_seconds: float = option(
        0.5, convert=to_float, section=_ORIGIN,
        help="seconds a page's response head may wait for the rewriter on a view that learns "
             "which slots the page has (a page's first view in a worker: a page is its path and "
             "query, campaign parameters aside): past it the page "
             "streams on, every slot taken as present (a page that flushes early and then "
             "renders slowly keeps its early bytes)")
    edge_trusted_only: bool = option(
        False, convert=to_bool, section=_CDN,
        help="/__ep/decide and /__ep/fragment answer trusted proxies only (a 403 to anyone "
             "else, who could otherwise count exposures with them)")
    keyed_caching: bool = option(False, convert=to_bool, section=_CDN,
                                 help="personalized pages public, keyed by X-EP-Segment")
    shared_max_age: int = option(
        300, convert=to_int, section=_CDN,
        help="the longest a shared cache keeps those pages when keyed caching is on "
             "(s-maxage: the origin's own lifetime, at most this)")
    cache_tag_headers: tuple[str, ...] = option(
        TAG_HEADERS, convert=to_tag_headers, section=_CDN,
        help="purge-tag headers: surrogate-key, cache-tag, edge-cache-tag or the CDN's name "
             "(fastly, cloudflare, akamai); none")
    default_time_zone: str = option("UTC", convert=str, section=_VISITOR,
                                    help="time zone of visitors of unknown location")
    referrer_sources: Path | None = option(convert=to_path, section=_VISITOR,
                                           help="your own referrer hosts (JSON)")
    device_cache_size: int = option(4096, convert=to_int, section=_VISITOR,
                                    help="User-Agents remembered per worker")
    geo_cache_size: int = option(8192, convert=to_int, section=_VISITOR,
                                 help="addresses remembered per worker")
    profile_keys: tuple[Secret, ...] = option(
        (), convert=to_secrets, section=_PROFILE, secret=True,
        help="signing keys, comma-separated, 16+ characters each; the first signs")
    profile_cookie: str = option("ep_profile", convert=str, section=_PROFILE,
                                 help="name of the profile cookie")
    profile_cookie_secure: bool = option(True, convert=to_bool, section=_PROFILE,
                                         help="the cookie only over https")
    profile_max_bytes: int = option(3000, convert=to_int, section=_PROFILE,
                                    help="size bound of the cookie (old entries go first)")
    profile_max_age_days: float = option(395.0, convert=to_float, section=_PROFILE,
                                         help="the cookie's lifetime")
    interest_half_life_days: float = option(30.0, convert=to_float, section=_PROFILE,
                                            help="days after which an interest counts half")
    visit_timeout_minutes: float = option(30.0, convert=to_float, section=_PROFILE,
                                          help="minutes of quiet that end a visit")
    honor_dnt: bool = option(True, convert=to_bool, section=_PROFILE,
                             help="no profile for visitors sending DNT or GPC")
    consent_cookie: str | None = option(convert=to_optional_str, section=_PROFILE,
                                        help="a cookie that must say yes before a profile "
                                             "is kept (unset: no consent mode)")
    consent_value: str | None = option(convert=to_optional_str, section=_PROFILE,
                                       help="a regular expression the consent cookie's "
                                            "value must match to say yes, searched in any "
                                            "case, e.g. marketing:true (unset: a plain "
                                            "yes: 1, true, yes, on, accepted, allow, "
                                            "granted, opt-in)")
    data_dir: Path = option(Path("ep-data"), convert=to_path, section=_LEARN,
                            flag="--data-dir", metavar="DIR",
                            help="where the embedded store keeps its file (ep.db), the "
                                 "rule files' parses and the workers' states (not inside "
                                 "rules_dir or a folder it links to, unless in a hidden "
                                 "folder)")
    store_url: str | None = option(
        convert=to_optional_str, section=_LEARN, flag="--store", metavar="URL",
        help="where counts are kept: sqlite:///path/ep.db (default: in data_dir), or "
             "redis://host:6379/0 for several instances (?prefix=name: a site's own keys)")
    store_flush_interval: float = option(
        1.0, convert=to_float, section=_LEARN,
        help="seconds between writes of a worker's counts to the store")
    store_poll_interval: float = option(
        1.0, convert=to_float, section=_LEARN,
        help="seconds between a worker's reads of what the learning loop publishes through "
             "the store (bandit weights, the \"visitors like you\" model) and its checks "
             "of which bandits are due")
    learn_interval: float = option(
        3600.0, convert=to_float, section=_LEARN,
        help="seconds between rebuilds of the \"visitors like you\" model that "
             "profile.predicted.* reads (a bandit's update_every sets its own cadence)")

    def __post_init__(self) -> None:
        check_origin(self.origin_url)
        check_settings(self)

    def to_json(self) -> str:
        """Serialised for worker processes, secrets included (same host, same user)."""
        return json.dumps({f.name: _jsonable(getattr(self, f.name))
                           for f in dataclasses.fields(self)})

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return build_settings(json.loads(text), source="serialised settings")

    def store_location(self) -> str:
        """The store's URL: store_url, or the embedded SQLite file in data_dir."""
        if self.store_url:
            return self.store_url
        return "sqlite:///" + str((self.data_dir / "ep.db").absolute()).lstrip("/")

    def require_origin(self) -> str:
        if self.origin_url is None:
            raise SettingsError("no origin configured: pass --origin URL, set EP_ORIGIN_URL "
                                "or origin_url in the config file")
        return self.origin_url


def build_settings(raw: Mapping[str, Any], *, source: str,
                   given: Mapping[str, str] | None = None) -> Settings:
    """Settings from raw values (text, TOML or JSON), each converted by its declaration;
    `given`: where each was given (EP_PORT, a config file), named in errors."""
    declared = options()
    values: dict[str, Any] = {}
    for name, value in raw.items():
        declaration = declared.get(name)
        if declaration is None:
            near = difflib.get_close_matches(name, declared, n=1)
            raise SettingsError(f"{source}: unknown setting {name!r}; "
                                + (f"did you mean {near[0]!r}?" if near else
                                   "known settings are " + ", ".join(sorted(declared))))
        try:
            values[name] = declaration.convert(value)
        except (TypeError, ValueError) as exc:
            where = (given or {}).get(name, source)
            raise SettingsError(f"{where}: setting {name!r}: {exc}") from exc
    try:
        return Settings(**values)
    except SettingsError as exc:
        # The checks name the setting at fault: say where it was given.
        named = (given or {}).get(exc.setting) if exc.setting else None
        if named is None:
            raise
        raise SettingsError(f"{named}: {exc}", setting=exc.setting) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)   # ip networks


def options() -> dict[str, Option]:
    """Every setting's declaration, by name, in the order of the class."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(Settings)}


def settings_table() -> str:
    """The README's table of settings, made from the declarations."""
    lines = ["| setting | flag | environment | default | what it does |",
             "|---|---|---|---|---|"]
    defaults = Settings()
    for name, opt in options().items():
        flag = f"`{opt.flag}{' ' + opt.metavar if opt.metavar else ''}`" if opt.flag else "—"
        value = getattr(defaults, name)
        default = "—" if opt.secret or value in (None, (), {}) else f"`{_plain(value)}`"
        lines.append(f"| `{name}` | {flag} | `EP_{name.upper()}` | {default} | {opt.help} |")
    return "\n".join(lines) + "\n"


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


if __name__ == "__main__":
    print(settings_table(), end="")   # the README's settings table
