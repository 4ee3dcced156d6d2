"""Geo database access: the one module that imports maxminddb."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maxminddb

from ..errors import GeoDatabaseError

# Database types whose records carry location data we can use.
SUPPORTED_TYPES = ("City", "Country", "Enterprise")


@dataclass(frozen=True)
class GeoDatabaseInfo:
    path: Path
    database_type: str
    build_epoch: int
    ip_version: int


class GeoDatabase:
    """A memory-mapped MaxMind-format database; opening it checks that it is usable."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise GeoDatabaseError(f"geo database {path} does not exist")
        try:
            self._reader: Any = maxminddb.open_database(str(path), maxminddb.MODE_MMAP)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(f"geo database {path} cannot be read: {exc}") from exc
        meta = self._reader.metadata()
        if not any(kind in meta.database_type for kind in SUPPORTED_TYPES):
            self._reader.close()
            raise GeoDatabaseError(
                f"geo database {path} is of type {meta.database_type!r}; expected a City or "
                "Country database (GeoLite2-City, GeoIP2-Country, ...)")
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
