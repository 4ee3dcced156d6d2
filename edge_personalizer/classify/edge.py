"""What a trusted CDN or edge already knows about the visitor, read from its headers.

Only called for requests from a trusted proxy address, and only the headers of the edges
the operator names: from anyone else (or an edge that passes them on from the visitor)
these headers are just text a client made up. Edge data wins over the local geo database.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote

from .visitor import Device, DeviceType, Geo

# The edges whose headers a trusted proxy's request may carry (setting edge_vendor).
# Only the named edges' headers are believed: behind nginx or a load balancer that
# passes headers on as the visitor sent them, a CF-IPCountry would be the visitor's own
# words. "forwarded" names none: only X-Forwarded-For (and the operator's edge_headers).
EDGE_VENDORS: Final = ("cloudflare", "cloudfront", "fastly", "akamai", "vercel")
FORWARDED_ONLY: Final = "forwarded"
# Client address headers, by edge; the first an edge names wins.
_CLIENT_IP_HEADERS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "cloudflare": ("cf-connecting-ip",), "akamai": ("true-client-ip",),
    "fastly": ("fastly-client-ip",),
})

# header -> Geo field, for the CDNs that send one header per value.
_GEO_HEADERS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType({
    # Cloudflare (IP geolocation + "add visitor location headers" managed transform)
    "cloudflare": {
        "cf-ipcountry": "country", "cf-ipcity": "city", "cf-ipcontinent": "continent",
        "cf-region-code": "region", "cf-postal-code": "postal", "cf-metro-code": "metro",
        "cf-timezone": "time_zone", "cf-iplatitude": "latitude",
        "cf-iplongitude": "longitude"},
    "cloudfront": {
        "cloudfront-viewer-country": "country", "cloudfront-viewer-country-region": "region",
        "cloudfront-viewer-city": "city", "cloudfront-viewer-postal-code": "postal",
        "cloudfront-viewer-time-zone": "time_zone", "cloudfront-viewer-metro-code": "metro",
        "cloudfront-viewer-latitude": "latitude",
        "cloudfront-viewer-longitude": "longitude"},
    "vercel": {
        "x-vercel-ip-country": "country", "x-vercel-ip-country-region": "region",
        "x-vercel-ip-city": "city", "x-vercel-ip-postal-code": "postal",
        "x-vercel-ip-timezone": "time_zone", "x-vercel-ip-latitude": "latitude",
        "x-vercel-ip-longitude": "longitude"},
})
# Akamai X-Akamai-Edgescape: "georegion=246,country_code=US,region_code=CA,city=SANJOSE,..."
_EDGESCAPE: Final[Mapping[str, str]] = MappingProxyType({   # (city and timezone read by _akamai)
    "country_code": "country", "region_code": "region", "city": "city", "zip": "postal",
    "dma": "metro", "timezone": "time_zone", "lat": "latitude", "long": "longitude",
    "continent": "continent",
})
# Akamai writes cities in capitals without spaces ("NEWYORK") and time zones as US
# abbreviations or GMT offsets ("EST", "GMT+1"): mapped to what the other CDNs and the geo
# database give (names as written, IANA zones), so one rule serves every source. A city
# not in this table is written with a capital first letter; the geo database's spelling
# wins when it names the same city (merge_geo).
_AKAMAI_CITIES: Final[Mapping[str, str]] = MappingProxyType({squashed: name for name in (
    "New York", "Los Angeles", "San Francisco", "San Jose", "San Diego", "San Antonio",
    "Las Vegas", "Salt Lake City", "Kansas City", "St. Louis", "New Orleans", "Oklahoma City",
    "Fort Worth", "El Paso", "Fort Lauderdale", "Santa Clara", "Palo Alto", "Mountain View",
    "Long Beach", "Virginia Beach", "Colorado Springs", "Jersey City", "Washington",
    "Mexico City", "Rio de Janeiro", "Sao Paulo", "Buenos Aires", "Hong Kong", "Tel Aviv",
    "Kuala Lumpur", "New Delhi", "Cape Town", "Ho Chi Minh City", "Abu Dhabi", "Den Haag",
    "Frankfurt am Main", "Saint Petersburg", "Santo Domingo", "San Juan", "Panama City",
    "Quebec City", "Thunder Bay", "Niagara Falls", "Gold Coast",
) for squashed in (name.upper().replace(" ", "").replace(".", ""),)})
_US_ZONES: Final[Mapping[str, str]] = MappingProxyType({
    "EST": "America/New_York", "EDT": "America/New_York", "CST": "America/Chicago",
    "CDT": "America/Chicago", "MST": "America/Denver", "MDT": "America/Denver",
    "PST": "America/Los_Angeles", "PDT": "America/Los_Angeles", "AKST": "America/Anchorage",
    "AKDT": "America/Anchorage", "HST": "Pacific/Honolulu", "GMT": "Etc/GMT",
    "UTC": "Etc/UTC", "AST": "America/Puerto_Rico",
})
_GMT_OFFSET: Final = re.compile(r"GMT([+-])(\d{1,2})")
_DEVICE_HEADERS: Final[tuple[tuple[str, DeviceType], ...]] = (
    ("cloudfront-is-smarttv-viewer", "tv"), ("cloudfront-is-tablet-viewer", "tablet"),
    ("cloudfront-is-mobile-viewer", "mobile"), ("cloudfront-is-desktop-viewer", "desktop"),
)
_EU: Final = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI "
                       "ES SE".split())
_CONTINENTS: Final = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
_GEO_FIELDS: Final = frozenset(f.name for f in fields(Geo))


def client_ip_headers(vendors: tuple[str, ...]) -> tuple[str, ...]:
    """The headers naming the visitor's address that the named edges send, in order."""
    return tuple(h for vendor in vendors for h in _CLIENT_IP_HEADERS.get(vendor, ()))


def edge_header_names() -> frozenset[str]:
    """Every header an edge's say about the visitor is read from here (client address,
    geo, device), whichever edge_vendor names: the proxy passes them to the origin from
    trusted proxies only."""
    geo = {h for headers in _GEO_HEADERS.values() for h in headers}
    return frozenset({*client_ip_headers(EDGE_VENDORS), *geo, "x-akamai-edgescape",
                      *(h for h, _ in _DEVICE_HEADERS)})


def _convert(field: str, value: str) -> Any:
    # A comma outside a city's name is the header sent twice, joined ("GB, US": the
    # visitor's own passed on beside the edge's): which one the edge meant is unknown.
    if "," in value and field != "city":
        return None
    value = unquote(value.strip())
    if not value or value.upper() in ("XX", "T1", "UNKNOWN", "-"):
        return None
    if field in ("latitude", "longitude"):
        try:
            return float(value)
        except ValueError:
            return None
    if field == "metro":
        return int(value) if value.isdigit() else None
    if field in ("country", "continent"):   # ISO 3166 codes, as rules compare them
        return value.upper() if len(value) == 2 and value.isascii() and value.isalpha() \
            else None
    return value


@dataclass(frozen=True)
class EdgeMapping:
    """An operator's own header -> visitor field mapping (Fastly VCL, in-house edges):
    e.g. {"x-geo-country": "geo.country", "x-device": "device.type"}."""

    fields: Mapping[str, str]

    def geo_values(self, headers: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for header, target in self.fields.items():
            root, _, name = target.partition(".")
            if root == "geo" and name in _GEO_FIELDS and header in headers:
                out[name] = _convert(name, headers[header])
        return out

    def device_type(self, headers: Mapping[str, str]) -> DeviceType | None:
        for header, target in self.fields.items():
            if target == "device.type" and header in headers:
                value = headers[header].strip().lower()
                if value in ("mobile", "tablet", "desktop", "tv", "bot", "other"):
                    return value  # type: ignore[return-value]
        return None


@dataclass(frozen=True)
class TrustedEdge:
    """What a trusted proxy's headers may tell: the named edges' own headers (setting
    edge_vendor) and the operator's mapping (edge_headers); nothing else."""

    vendors: tuple[str, ...] = ()
    mapping: EdgeMapping | None = None

    def geo(self, headers: Mapping[str, str]) -> Geo | None:
        return edge_geo(headers, self.mapping, vendors=self.vendors)

    def device_type(self, headers: Mapping[str, str]) -> DeviceType | None:
        return edge_device_type(headers, self.mapping, vendors=self.vendors)


def edge_geo(headers: Mapping[str, str], mapping: EdgeMapping | None = None, *,
             vendors: tuple[str, ...]) -> Geo | None:
    """The visitor's location as the named edges tell it; None when they tell nothing."""
    values: dict[str, Any] = {}
    for vendor in vendors:
        for header, field in _GEO_HEADERS.get(vendor, {}).items():
            if header in headers and values.get(field) is None:
                values[field] = _convert(field, headers[header])
    edgescape = headers.get("x-akamai-edgescape") if "akamai" in vendors else None
    if edgescape:
        for item in edgescape.split(","):
            key, _, value = item.partition("=")
            target = _EDGESCAPE.get(key.strip().lower())
            if target and values.get(target) is None:
                values[target] = _convert(target, _akamai(target, value))
    if mapping is not None:
        values.update({k: v for k, v in mapping.geo_values(headers).items() if v is not None})
    values = {k: v for k, v in values.items() if v is not None}
    country = values.get("country")
    region = values.get("region")
    if region and "-" not in region:   # a region code means nothing without its country
        if country:
            values["region"] = f"{country}-{region.upper()}"
        else:
            del values["region"]
    if values.get("continent") not in _CONTINENTS:
        values.pop("continent", None)
    if not values:
        return None
    return Geo(eu=country in _EU if country else None, source="edge", **values)


def _akamai(field: str, value: str) -> str:
    """An EdgeScape city or time zone as the other sources write it."""
    value = value.strip().replace("+", " ") if field == "city" else value.strip()
    if field == "city" and value.isupper():
        return _AKAMAI_CITIES.get(value.replace(" ", "").replace(".", ""), value.title())
    if field == "time_zone":
        offset = _GMT_OFFSET.fullmatch(value.upper())
        if offset is not None:   # IANA's Etc zones count the other way round
            return f"Etc/GMT{'-' if offset[1] == '+' else '+'}{int(offset[2])}"
        return _US_ZONES.get(value.upper(), value if "/" in value else "")
    return value


def _squashed(name: str | None) -> str:
    return "".join(c for c in (name or "").casefold() if c.isalnum())


# What the database may add to the edge's answer, by the finest place both name alike:
# a database that puts the visitor in another country, region or city adds nothing of
# that place (a Cloudflare city never gets the database's coordinates of another one).
_FINER: Final[Mapping[str, frozenset[str]]] = MappingProxyType({
    "country": frozenset({"region", "city", "postal", "metro", "time_zone", "latitude",
                          "longitude", "continent", "eu"}),
    "region": frozenset({"city", "postal", "metro", "latitude", "longitude"}),
    "city": frozenset({"postal", "metro", "latitude", "longitude"}),
})


def merge_geo(edge: Geo | None, database: Geo) -> Geo:
    """Edge values win; the database fills what the edge did not say, and only where it
    places the visitor in the same country, region and city as the edge."""
    if edge is None:
        return database
    withheld: set[str] = set()
    for level in ("country", "region", "city"):
        said, known = getattr(edge, level), getattr(database, level)
        if said is not None and _squashed(said) != _squashed(known):
            withheld |= _FINER[level]
    filled = {f.name: getattr(database, f.name) for f in fields(Geo)
              if f.name not in withheld and getattr(edge, f.name) is None
              and getattr(database, f.name) is not None}
    if edge.city is not None and database.city is not None and \
            _squashed(edge.city) == _squashed(database.city):
        filled["city"] = database.city   # the database's spelling: "New York", "Malmö"
    return replace(edge, **filled) if filled else edge


def edge_device_type(headers: Mapping[str, str], mapping: EdgeMapping | None = None, *,
                     vendors: tuple[str, ...]) -> DeviceType | None:
    """CloudFront-Is-*-Viewer (or an operator's header) saying what the device is."""
    if mapping is not None:
        mapped = mapping.device_type(headers)
        if mapped is not None:
            return mapped
    if "cloudfront" not in vendors:
        return None
    for header, kind in _DEVICE_HEADERS:
        if headers.get(header, "").strip().lower() == "true":
            return kind
    return None


def with_edge_type(device: Device, kind: DeviceType | None) -> Device:
    """The edge's device type wins, except that a bot stays a bot."""
    if kind is None or device.type == "bot" or device.type == kind:
        return device
    return replace(device, type=kind, touch=device.touch or kind in ("mobile", "tablet"))
