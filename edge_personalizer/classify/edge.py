"""What a trusted CDN or edge already knows about the visitor, read from its headers.

Only called for requests from a trusted proxy address: from anyone else these headers are
just text a client made up. Edge data wins over the local geo database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import unquote

from .visitor import Device, DeviceType, Geo

# Client address headers, most specific first.
CLIENT_IP_HEADERS = ("cf-connecting-ip", "true-client-ip", "fastly-client-ip")

# header -> Geo field, for the CDNs that send one header per value.
_GEO_HEADERS: Mapping[str, str] = {
    # Cloudflare (IP geolocation + "add visitor location headers" managed transform)
    "cf-ipcountry": "country", "cf-ipcity": "city", "cf-ipcontinent": "continent",
    "cf-region-code": "region", "cf-postal-code": "postal", "cf-metro-code": "metro",
    "cf-timezone": "time_zone", "cf-iplatitude": "latitude", "cf-iplongitude": "longitude",
    # Amazon CloudFront
    "cloudfront-viewer-country": "country", "cloudfront-viewer-country-region": "region",
    "cloudfront-viewer-city": "city", "cloudfront-viewer-postal-code": "postal",
    "cloudfront-viewer-time-zone": "time_zone", "cloudfront-viewer-metro-code": "metro",
    "cloudfront-viewer-latitude": "latitude", "cloudfront-viewer-longitude": "longitude",
    # Vercel
    "x-vercel-ip-country": "country", "x-vercel-ip-country-region": "region",
    "x-vercel-ip-city": "city", "x-vercel-ip-postal-code": "postal",
    "x-vercel-ip-timezone": "time_zone", "x-vercel-ip-latitude": "latitude",
    "x-vercel-ip-longitude": "longitude",
}
# Akamai X-Akamai-Edgescape: "georegion=246,country_code=US,region_code=CA,city=SANJOSE,..."
_EDGESCAPE: Mapping[str, str] = {
    "country_code": "country", "region_code": "region", "city": "city", "zip": "postal",
    "dma": "metro", "timezone": "time_zone", "lat": "latitude", "long": "longitude",
    "continent": "continent",
}
_DEVICE_HEADERS: tuple[tuple[str, DeviceType], ...] = (
    ("cloudfront-is-smarttv-viewer", "tv"), ("cloudfront-is-tablet-viewer", "tablet"),
    ("cloudfront-is-mobile-viewer", "mobile"), ("cloudfront-is-desktop-viewer", "desktop"),
)
_EU = frozenset("AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI "
                "ES SE".split())
_CONTINENTS = frozenset({"AF", "AN", "AS", "EU", "NA", "OC", "SA"})
_GEO_FIELDS = {f.name for f in fields(Geo)}


def edge_client_ip(headers: Mapping[str, str]) -> str | None:
    for name in CLIENT_IP_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value.split(",")[0].strip()
    return None


def _convert(field: str, value: str) -> Any:
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
    if field in ("country", "continent"):
        return value.upper()
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


def edge_geo(headers: Mapping[str, str], mapping: EdgeMapping | None = None) -> Geo | None:
    """The visitor's location as the edge tells it; None when it tells nothing."""
    values: dict[str, Any] = {}
    for header, field in _GEO_HEADERS.items():
        if header in headers and values.get(field) is None:
            values[field] = _convert(field, headers[header])
    edgescape = headers.get("x-akamai-edgescape")
    if edgescape:
        for item in edgescape.split(","):
            key, _, value = item.partition("=")
            target = _EDGESCAPE.get(key.strip().lower())
            if target and values.get(target) is None:
                values[target] = _convert(target, value)
    if mapping is not None:
        values.update({k: v for k, v in mapping.geo_values(headers).items() if v is not None})
    values = {k: v for k, v in values.items() if v is not None}
    if not values:
        return None
    country = values.get("country")
    region = values.get("region")
    if region and country and "-" not in region:
        values["region"] = f"{country}-{region.upper()}"
    if values.get("continent") not in _CONTINENTS:
        values.pop("continent", None)
    return Geo(eu=country in _EU if country else None, source="edge", **values)


def merge_geo(edge: Geo | None, database: Geo) -> Geo:
    """Edge values win; the database fills what the edge did not say."""
    if edge is None:
        return database
    filled = {f.name: getattr(database, f.name) for f in fields(Geo)
              if getattr(edge, f.name) is None and getattr(database, f.name) is not None}
    return replace(edge, **filled) if filled else edge


def edge_device_type(headers: Mapping[str, str],
                     mapping: EdgeMapping | None = None) -> DeviceType | None:
    """CloudFront-Is-*-Viewer (or an operator's header) saying what the device is."""
    if mapping is not None:
        mapped = mapping.device_type(headers)
        if mapped is not None:
            return mapped
    for header, kind in _DEVICE_HEADERS:
        if headers.get(header, "").strip().lower() == "true":
            return kind
    return None


def with_edge_type(device: Device, kind: DeviceType | None) -> Device:
    """The edge's device type wins, except that a bot stays a bot."""
    if kind is None or device.type == "bot" or device.type == kind:
        return device
    return replace(device, type=kind, touch=device.touch or kind in ("mobile", "tablet"))
