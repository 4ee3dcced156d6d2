"""Settings: one frozen object built from defaults, a TOML file, `EP_*` variables and flags.

Later sources win: defaults < config file < environment < command-line flags.
`load_settings` is the only code that reads the environment, and it takes it as an
argument so tests pass a plain dict.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from .classify.localtime import zone_exists
from .errors import SettingsError
from .rules.segment import ALL_TAG_HEADERS

LogFormat = Literal["text", "json"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Secret:
    """A string that never shows itself in repr() or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


# The purge-tag header of each CDN's dialect, by the CDN's name.
_CDN_TAG_HEADERS = {"fastly": "surrogate-key", "varnish": "surrogate-key",
                    "cloudflare": "cache-tag", "akamai": "edge-cache-tag"}


@dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, validated on construction."""

    origin_url: str | None = None   # required to serve; not to explain or classify
    rules_dir: Path | None = None
    geo_db: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    trusted_proxies: tuple[IPNetwork, ...] = ()
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    keep_alive_timeout: float = 5.0      # seconds an idle client connection stays open
    max_header_bytes: int = 32 * 1024
    max_header_count: int = 100
    max_body_bytes: int = 100 * 1024 * 1024
    admin_token: Secret | None = field(default=None, repr=False)
    access_log: bool = True
    log_format: LogFormat = "text"
    log_level: str = "info"
    rules_watch_interval: float = 2.0   # seconds between looks at the rules directory; 0: off
    variant_header: bool = True          # X-EP-Variant on personalized pages
    # CDN integration
    edge_headers: Mapping[str, str] = field(default_factory=dict)   # header -> visitor field
    keyed_caching: bool = False          # personalized pages public, keyed by X-EP-Segment
    shared_max_age: int = 300            # s-maxage of those pages when keyed caching is on
    # Which purge-tag headers personalizable pages carry (one per CDN dialect)
    cache_tag_headers: tuple[str, ...] = ALL_TAG_HEADERS
    # EP_* variables that are no setting: warned about at startup, not fatal (the
    # environment of a container or CI job is not ours alone)
    unknown_environment: tuple[str, ...] = ()
    # Visitor classification
    anonymous_db: Path | None = None
    default_time_zone: str = "UTC"
    referrer_sources: Path | None = None
    device_cache_size: int = 4096
    geo_cache_size: int = 8192
    # Profile cookie
    profile_keys: tuple[Secret, ...] = field(default=(), repr=False)
    profile_cookie: str = "ep_profile"
    profile_cookie_secure: bool = True
    profile_max_bytes: int = 3000
    profile_max_age_days: float = 395.0
    interest_half_life_days: float = 30.0
    visit_timeout_minutes: float = 30.0
    honor_dnt: bool = True
    consent_cookie: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.origin_url or "http://unset")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(
                f"origin_url must be an absolute http(s) URL such as http://127.0.0.1:8000, "
                f"got {self.origin_url!r}"
            )
        if parts.query or parts.fragment:
            raise SettingsError(f"origin_url must not carry a query or fragment: {self.origin_url}")
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, got {self.port}")
        for name in ("workers", "max_header_bytes", "max_header_count", "max_body_bytes",
                     "device_cache_size", "geo_cache_size"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 200 <= self.profile_max_bytes <= 4000:
            raise SettingsError("profile_max_bytes must be between 200 and 4000 (browsers "
                                f"drop larger cookies), got {self.profile_max_bytes}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.profile_cookie):
            raise SettingsError(f"profile_cookie must be a plain cookie name, got "
                                f"{self.profile_cookie!r}")
        if any(len(key.reveal()) < 16 for key in self.profile_keys):
            raise SettingsError("each profile key must be at least 16 characters long")
        for header, target in self.edge_headers.items():
            if target != "device.type" and not (target.startswith("geo.") and target[4:] in (
                    "country", "region", "city", "postal", "metro", "continent",
                    "time_zone", "latitude", "longitude")):
                raise SettingsError(f"edge_headers: {header} -> {target!r}: a header can set "
                                    "geo.country, geo.region, geo.city, geo.postal, geo.metro, "
                                    "geo.continent, geo.time_zone, geo.latitude, "
                                    "geo.longitude or device.type")
        unknown_tags = [h for h in self.cache_tag_headers if h not in ALL_TAG_HEADERS]
        if unknown_tags:
            raise SettingsError(f"cache_tag_headers: unknown {', '.join(unknown_tags)}; "
                                f"choose from {', '.join(ALL_TAG_HEADERS)} (or the CDNs: "
                                f"{', '.join(_CDN_TAG_HEADERS)}), or none")
        if self.shared_max_age < 0:
            raise SettingsError(f"shared_max_age must be >= 0, got {self.shared_max_age}")
        if self.rules_watch_interval < 0:
            raise SettingsError("rules_watch_interval must be >= 0 seconds (0 turns watching "
                                f"off), got {self.rules_watch_interval}")
        if not zone_exists(self.default_time_zone):
            raise SettingsError(f"default_time_zone {self.default_time_zone!r} is not an IANA "
                                "time zone such as Europe/Berlin")
        for name in ("connect_timeout", "read_timeout", "keep_alive_timeout",
                     "profile_max_age_days",
                     "interest_half_life_days", "visit_timeout_minutes"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0 seconds, got {getattr(self, name)}")
        if self.log_format not in get_args(LogFormat):
            raise SettingsError(f"log_format must be text or json, got {self.log_format!r}")
        if self.log_level.lower() not in ("critical", "error", "warning", "info", "debug"):
            raise SettingsError(f"log_level must be debug, info, warning or error, got "
                                f"{self.log_level!r}")

    def environment_warnings(self) -> list[str]:
        """One line per EP_* variable that is no setting, with the likely intended one."""
        import difflib

        known = [ENV_PREFIX + name.upper() for name in _CONVERTERS
                 if name != "unknown_environment"]
        lines = []
        for name in self.unknown_environment:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            lines.append(f"environment variable {name} is not a setting and is ignored{hint}")
        return lines

    def require_origin(self) -> str:
        if self.origin_url is None:
            raise SettingsError("no origin configured: pass --origin URL, set EP_ORIGIN_URL "
                                "or origin_url in the config file")
        return self.origin_url

    def to_json(self) -> str:
        """Serialise for worker processes (the admin token included: same host, same user)."""
        data: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = value.reveal()
            elif f.name == "profile_keys":
                value = [key.reveal() for key in value]
            elif isinstance(value, Path):
                value = str(value)
            elif f.name == "trusted_proxies":
                value = [str(net) for net in value]
            elif f.name == "edge_headers":
                value = dict(value)
            elif f.name == "unknown_environment":
                value = list(value)
            data[f.name] = value
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        return _build(json.loads(text), source="serialised settings")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _to_networks(value: Any) -> tuple[IPNetwork, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(ipaddress.ip_network(str(item).strip(), strict=False)
                 for item in items if str(item).strip())


def _to_path(value: Any) -> Path | None:
    return Path(value) if value not in (None, "") else None


def _to_secret(value: Any) -> Secret | None:
    if value in (None, ""):
        return None
    return value if isinstance(value, Secret) else Secret(str(value))


def _to_secrets(value: Any) -> tuple[Secret, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(item if isinstance(item, Secret) else Secret(str(item).strip())
                 for item in items if str(item).strip() or isinstance(item, Secret))


def _to_optional_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _to_tag_headers(value: Any) -> tuple[str, ...]:
    """`cache-tag,surrogate-key`, CDN names (`cloudflare`) or `none`; a list in TOML."""
    items = str(value).split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [item.strip().lower() for item in items if item.strip()]
    if names == ["none"]:
        return ()
    return tuple(dict.fromkeys(_CDN_TAG_HEADERS.get(name, name) for name in names))


def _to_mapping(value: Any) -> dict[str, str]:
    """A table from TOML, or `header=field,header=field` from the environment."""
    if isinstance(value, Mapping):
        return {str(k).lower(): str(v) for k, v in value.items()}
    out = {}
    for item in str(value).split(","):
        if item.strip():
            header, sep, target = item.partition("=")
            if not sep:
                raise ValueError(f"expected header=field pairs, got {item!r}")
            out[header.strip().lower()] = target.strip()
    return out


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


_CONVERTERS: Mapping[str, Callable[[Any], Any]] = {
    "origin_url": str,
    "rules_dir": _to_path,
    "geo_db": _to_path,
    "host": str,
    "port": _to_int,
    "workers": _to_int,
    "trusted_proxies": _to_networks,
    "connect_timeout": float,
    "read_timeout": float,
    "keep_alive_timeout": float,
    "max_header_bytes": _to_int,
    "max_header_count": _to_int,
    "max_body_bytes": _to_int,
    "admin_token": _to_secret,
    "access_log": _to_bool,
    "log_format": str,
    "log_level": str,
    "rules_watch_interval": float,
    "variant_header": _to_bool,
    "edge_headers": _to_mapping,
    "keyed_caching": _to_bool,
    "shared_max_age": _to_int,
    "cache_tag_headers": _to_tag_headers,
    "unknown_environment": tuple,
    "anonymous_db": _to_path,
    "default_time_zone": str,
    "referrer_sources": _to_path,
    "device_cache_size": _to_int,
    "geo_cache_size": _to_int,
    "profile_keys": _to_secrets,
    "profile_cookie": str,
    "profile_cookie_secure": _to_bool,
    "profile_max_bytes": _to_int,
    "profile_max_age_days": float,
    "interest_half_life_days": float,
    "visit_timeout_minutes": float,
    "honor_dnt": _to_bool,
    "consent_cookie": _to_optional_str,
}

ENV_PREFIX = "EP_"
# Other names the environment may use for a setting (EP_ORIGIN is what most tools write).
_ENV_ALIASES = {"origin": "origin_url"}


def _build(raw: Mapping[str, Any], *, source: str) -> Settings:
    values: dict[str, Any] = {}
    for name, value in raw.items():
        convert = _CONVERTERS.get(name)
        if convert is None:
            raise SettingsError(f"{source}: unknown setting {name!r}; known settings are "
                                + ", ".join(sorted(_CONVERTERS)))
        try:
            values[name] = convert(value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"{source}: setting {name!r}: {exc}") from exc
    return Settings(**values)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML config file: keys are setting names, at the top or under [edge_personalizer]."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise SettingsError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from exc
    section = data.get("edge_personalizer", data)
    if not isinstance(section, dict):
        raise SettingsError(f"config file {path}: [edge_personalizer] must be a table")
    return {key.replace("-", "_"): value for key, value in section.items()}


def load_settings(
    environ: Mapping[str, str], *, config_file: Path | None = None, **overrides: Any
) -> Settings:
    """Build Settings from a config file, `EP_*` variables and explicit overrides.

    `EP_CONFIG` names a config file when `config_file` is not given. Overrides whose value
    is None are ignored, so unset command-line flags fall through to the other sources.
    """
    raw: dict[str, Any] = {}
    unknown: list[str] = []
    config_path = config_file or _to_path(environ.get(ENV_PREFIX + "CONFIG"))
    if config_path is not None:
        raw.update(read_config_file(config_path))
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX):].lower()
            name = _ENV_ALIASES.get(name, name)
            if name in _CONVERTERS and name != "unknown_environment":
                raw[name] = value
            else:
                unknown.append(key)
    raw.update({k: v for k, v in overrides.items() if v is not None})
    if unknown:
        raw["unknown_environment"] = tuple(sorted(unknown))
    return _build(raw, source=str(config_path) if config_path else "settings")
