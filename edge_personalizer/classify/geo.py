"""Geo database access: the one module that imports maxminddb."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb
from lru import LRU

from ..errors import GeoDatabaseError
from .visitor import UNKNOWN_GEO, Geo


@dataclass(frozen=True)
class GeoDatabaseInfo:
    path: Path
    database_type: str
    build_epoch: int
    ip_version: int


class GeoDatabase:
    """A memory-mapped MaxMind-format database; opening it checks that it is usable."""

    # Database types whose records carry location data we can use.
    supported_types: tuple[str, ...] = ("City", "Country", "Enterprise")
    expected = "a City or Country database (GeoLite2-City, GeoIP2-Country, ...)"

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise GeoDatabaseError(f"geo database {path} does not exist")
        try:
            self._reader: Any = maxminddb.open_database(str(path), maxminddb.MODE_MMAP)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(f"geo database {path} cannot be read: {exc}") from exc
        meta = self._reader.metadata()
        if not any(kind in meta.database_type for kind in self.supported_types):
            self._reader.close()
            raise GeoDatabaseError(
                f"geo database {path} is of type {meta.database_type!r}; expected "
                f"{self.expected}")
        self.info = GeoDatabaseInfo(path, meta.database_type, meta.build_epoch, meta.ip_version)

    def record(self, ip: str) -> dict[str, Any] | None:
        """The raw record for an address; None when the address is not in the database."""
        try:
            found = self._reader.get(ip)
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def close(self) -> None:
        self._reader.close()


class AnonymousIpDatabase(GeoDatabase):
    """A GeoIP2-Anonymous-IP database: VPNs, public proxies, Tor exits, hosting ranges."""

    supported_types = ("Anonymous-IP",)
    expected = "an Anonymous-IP database (GeoIP2-Anonymous-IP)"

    def is_anonymous(self, ip: str) -> bool | None:
        record = self.record(ip)
        if record is None:
            return False
        return bool(record.get("is_anonymous") or record.get("is_anonymous_vpn")
                    or record.get("is_public_proxy") or record.get("is_tor_exit_node")
                    or record.get("is_hosting_provider") or record.get("is_residential_proxy"))


def _name(record: Mapping[str, Any], key: str) -> str | None:
    names = record.get(key, {}).get("names")
    if isinstance(names, Mapping):
        value = names.get("en")
        return value if isinstance(value, str) else None
    return None


def geo_from_record(record: Mapping[str, Any]) -> Geo:
    """A MaxMind City or Country record as our Geo (ISO codes where ISO has one)."""
    country_rec = record.get("country") or {}   # where the visitor is, not the ISP
    country = country_rec.get("iso_code")
    subdivisions = record.get("subdivisions") or []
    region = None
    if country and subdivisions and subdivisions[0].get("iso_code"):
        region = f"{country}-{subdivisions[0]['iso_code']}"
    location = record.get("location") or {}
    metro = location.get("metro_code")
    return Geo(
        country=country,
        region=region,
        city=_name(record, "city"),
        postal=(record.get("postal") or {}).get("code"),
        metro=int(metro) if isinstance(metro, int) else None,
        continent=(record.get("continent") or {}).get("code"),
        time_zone=location.get("time_zone"),
        eu=bool(country_rec.get("is_in_european_union", False)) if country else None,
        latitude=location.get("latitude"),
        longitude=location.get("longitude"),
        source="database",
    )


class GeoLocator:
    """IP address -> Geo, through the database and a bounded cache."""

    def __init__(self, database: GeoDatabase, *, anonymous: AnonymousIpDatabase | None = None,
                 max_entries: int = 8192) -> None:
        self.database = database
        self.anonymous = anonymous
        self._seen: LRU[str, Geo] = LRU(max_entries)

    def locate(self, ip: str | None) -> Geo:
        if not ip:
            return UNKNOWN_GEO
        geo: Geo | None = self._seen.get(ip)
        if geo is None:
            record = self.database.record(ip)
            geo = geo_from_record(record) if record else UNKNOWN_GEO
            if self.anonymous is not None:
                geo = dataclasses.replace(geo, anonymous=self.anonymous.is_anonymous(ip))
            self._seen[ip] = geo
        return geo
