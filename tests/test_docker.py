"""docker/compose.yaml is a correct example and docker/Dockerfile ships no test data as a
default: checked from the files, then served with the compose file's own settings."""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path

import httpx
import pytest
import yaml

from edge_personalizer.config import load_settings
from edge_personalizer.errors import SettingsError

from .conftest import ROOT
from .servers import Server, start_proxy

COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
# The edge-personalizer services: those that serve an origin
EDGES = {name: service for name, service in COMPOSE["services"].items()
         if "EP_ORIGIN_URL" in service.get("environment", {})}
SERVICE = next(iter(EDGES.values()))
ENVIRONMENT: dict[str, str] = SERVICE["environment"]
_REQUIRED = re.compile(r"^\$\{(\w+):\?[^}]+\}$")


def image_env() -> dict[str, str]:
    """The ENV lines of the Dockerfile."""
    block = DOCKERFILE[DOCKERFILE.index("\nENV ") + 5:].split("\n\n")[0].split("\nVOLUME")[0]
    pairs = re.findall(r"(EP_\w+)=(\S+)", block)
    return dict(pairs)


def interpolated(values: dict[str, str]) -> dict[str, str]:
    """The service's environment as compose fills it in (required variables given)."""
    out = {}
    for name, value in ENVIRONMENT.items():
        required = _REQUIRED.match(str(value))
        out[name] = values[required.group(1)] if required else str(value)
    return out


def test_secrets_must_be_given_and_have_no_default() -> None:
    assert EDGES
    for service in EDGES.values():
        environment = service["environment"]
        for name in ("EP_ADMIN_TOKEN", "EP_PROFILE_KEYS"):
            required = _REQUIRED.match(environment[name])
            assert required is not None and required.group(1) == name, environment[name]
        assert "change-me" not in str(environment)
    assert "EP_ADMIN_TOKEN=" not in DOCKERFILE and "EP_PROFILE_KEYS=" not in DOCKERFILE


def test_what_reaches_the_proxy_comes_from_a_trusted_address() -> None:
    # Behind Docker's network every visitor arrives from an address of the compose
    # network (its gateway, or a balancer on it): trusted, so visitors' addresses resolve.
    network = ipaddress.ip_network(
        COMPOSE["networks"][SERVICE["networks"][0]]["ipam"]["config"][0]["subnet"])
    trusted = [ipaddress.ip_network(item.strip())
               for item in ENVIRONMENT["EP_TRUSTED_PROXIES"].split(",")]
    assert any(network.overlaps(item) for item in trusted)
    published = [port for service in COMPOSE["services"].values()
                 for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)


def test_no_test_database_by_default_and_a_writable_data_dir() -> None:
    env = image_env()
    assert "EP_GEO_DB" not in env and "COPY geo_db" not in DOCKERFILE
    mounts = {volume.split(":")[1] for volume in SERVICE["volumes"]}
    assert str(Path(ENVIRONMENT["EP_GEO_DB"]).parent) in mounts   # the demo mounts it
    # The data dir is a volume the image's user may write (the store's SQLite file).
    assert f"VOLUME {env['EP_DATA_DIR']}" in DOCKERFILE
    assert f"chown nobody {env['EP_DATA_DIR']}" in DOCKERFILE
    assert ENVIRONMENT["EP_PROFILE_COOKIE_SECURE"] == "false"   # plain http in the example


def test_the_settings_load_and_a_placeholder_token_is_refused() -> None:
    values = {"EP_ADMIN_TOKEN": secrets.token_urlsafe(24),
              "EP_PROFILE_KEYS": secrets.token_urlsafe(32)}
    settings = load_settings({**image_env(), **interpolated(values)})
    assert settings.workers == 2 and settings.profile_keys and not settings.profile_cookie_secure
    with pytest.raises(SettingsError, match="too easy to guess"):
        load_settings({**image_env(), **interpolated({**values, "EP_ADMIN_TOKEN": "change-me"})})


def test_served_with_the_compose_settings(origin: Server, server_logs: Path) -> None:
    # The compose file's settings, with this machine's paths, and a trusted 127.0.0.2
    # standing for Docker's gateway.
    env = {**image_env(), **interpolated({"EP_ADMIN_TOKEN": secrets.token_urlsafe(24),
                                          "EP_PROFILE_KEYS": secrets.token_urlsafe(32)})}
    env.pop("EP_STORE_URL", None)   # no Redis here: the embedded store in the data dir
    env |= {"EP_ORIGIN_URL": origin.url, "EP_TRUSTED_PROXIES": "127.0.0.2",
            "EP_RULES_DIR": str(ROOT / "tests" / "data" / "rules"),
            "EP_GEO_DB": str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"),
            "EP_DATA_DIR": str(server_logs / "docker-data"), "EP_HOST": "127.0.0.1"}
    env.pop("EP_PORT")
    proxy = start_proxy(server_logs, env=env)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as gateway:
            page = gateway.get(f"{proxy.url}/slotted/a", headers={
                "accept": "text/html", "cookie": "crm_segment=vip",
                "x-forwarded-for": "81.2.69.142",
                "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"})
    finally:
        proxy.stop()
    assert "Welcome back, VIP from London" in page.text   # the visitor's address believed
    cookie = next(h for h in page.headers.get_list("set-cookie") if h.startswith("ep_profile="))
    assert "Secure" not in cookie
