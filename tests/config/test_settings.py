from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from edge_personalizer.config import Secret, Settings, load_settings
from edge_personalizer.config.converters import TAG_HEADERS
from edge_personalizer.config.settings import options, settings_table
from edge_personalizer.errors import SettingsError
from edge_personalizer.personalize.segments import ALL_TAG_HEADERS


def test_defaults_are_safe() -> None:
    settings = load_settings({}, origin_url="http://127.0.0.1:8000")
    assert settings.host == "127.0.0.1"
    assert settings.trusted_proxies == ()
    assert settings.admin_token is None
    assert settings.workers == 1


def test_environment_variables_set_fields() -> None:
    settings = load_settings({
        "EP_ORIGIN_URL": "https://shop.example", "EP_PORT": "9000", "EP_WORKERS": "2",
        "EP_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1", "EP_ACCESS_LOG": "off",
        "EP_ADMIN_TOKEN": "s3cret-s3cret-s3cret", "EP_READ_TIMEOUT": "2.5", "EP_RULES_DIR": "rules",
    })
    assert settings.origin_url == "https://shop.example"
    assert settings.port == 9000 and settings.workers == 2
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"),
                                        ipaddress.ip_network("192.0.2.1/32"))
    assert settings.access_log is False
    assert settings.read_timeout == 2.5
    assert settings.rules_dir == Path("rules")
    assert settings.admin_token == Secret("s3cret-s3cret-s3cret")


def test_config_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "ep.toml"
    config.write_text('[edge_personalizer]\norigin_url = "http://a.example"\nport = 1111\n'
                      'workers = 3\nlog-format = "json"\n')
    settings = load_settings({"EP_PORT": "2222"}, config_file=config, workers=4, host=None)
    assert settings.origin_url == "http://a.example"
    assert settings.port == 2222
    assert settings.workers == 4
    assert settings.log_format == "json"


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    config = tmp_path / "ep.toml"
    config.write_text('origin_url = "http://b.example"\ntrusted_proxies = ["10.1.0.0/16"]\n')
    settings = load_settings({"EP_CONFIG": str(config)})
    assert settings.origin_url == "http://b.example"
    assert settings.trusted_proxies == (ipaddress.ip_network("10.1.0.0/16"),)


def test_secret_never_shows_in_repr() -> None:
    settings = load_settings({"EP_ADMIN_TOKEN": "hunter2-hunter2-hunter2"}, origin_url="http://x.example")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.admin_token)


def test_serving_needs_an_origin() -> None:
    with pytest.raises(SettingsError, match="no origin configured"):
        load_settings({}).require_origin()
    assert load_settings({"EP_ORIGIN_URL": "http://o"}).require_origin() == "http://o"


def test_bad_config_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings({}, config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("origin_url = \n")
    with pytest.raises(SettingsError, match="broken.toml"):
        load_settings({}, config_file=broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('origin_url = "http://x"\norign = "y"\n')
    with pytest.raises(SettingsError, match="unknown setting 'orign'; did you mean "
                                            "'origin_url'\\?$"):
        load_settings({}, config_file=unknown)
    unknown.write_text('origin_url = "http://x"\nflavour = "y"\n')
    with pytest.raises(SettingsError, match="unknown setting 'flavour'; known settings are "
                                            "access_log, admin_token, "):
        load_settings({}, config_file=unknown)


def test_settings_survive_the_trip_to_worker_processes() -> None:
    settings = load_settings({"EP_ADMIN_TOKEN": "t" * 20, "EP_TRUSTED_PROXIES": "10.0.0.0/8"},
                             origin_url="http://x.example", geo_db=Path("g.mmdb"))
    assert Settings.from_json(settings.to_json()) == settings


def test_settings_are_frozen() -> None:
    settings = load_settings({}, origin_url="http://x.example")
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(("value", "expected"), [
    ("cloudflare", ("cache-tag",)),
    ("Surrogate-Key, akamai", ("surrogate-key", "edge-cache-tag")),
    ("fastly,varnish", ("surrogate-key",)),
    ("none", ()),
    ("", ()),
])
def test_cache_tag_headers_by_header_or_cdn_name(value: str, expected: tuple[str, ...]) -> None:
    settings = load_settings({"EP_ORIGIN_URL": "http://127.0.0.1:8000",
                              "EP_CACHE_TAG_HEADERS": value})
    assert settings.cache_tag_headers == expected
    assert Settings.from_json(settings.to_json()).cache_tag_headers == expected


def test_cache_tag_headers_default_to_every_dialect_and_reject_others(tmp_path: Path) -> None:
    assert Settings().cache_tag_headers == ("surrogate-key", "cache-tag", "edge-cache-tag")
    config = tmp_path / "ep.toml"
    config.write_text('cache_tag_headers = ["cloudflare", "x-purge"]\n')
    with pytest.raises(SettingsError, match="unknown x-purge; choose from surrogate-key"):
        load_settings({}, config_file=config)


def test_edge_vendor_names_the_cdns_whose_headers_count(tmp_path: Path) -> None:
    assert Settings().edge_vendor == ("forwarded",)   # X-Forwarded-For alone by default
    settings = load_settings({"EP_ORIGIN_URL": "http://127.0.0.1:8000",
                              "EP_EDGE_VENDOR": "Cloudflare, cloudfront"})
    assert settings.edge_vendor == ("cloudflare", "cloudfront")
    assert Settings.from_json(settings.to_json()).edge_vendor == ("cloudflare", "cloudfront")
    config = tmp_path / "ep.toml"
    config.write_text('edge_vendor = ["akamai", "cloudflair"]\n')
    with pytest.raises(SettingsError, match="edge_vendor: unknown cloudflair; choose from "
                                            "cloudflare, cloudfront"):
        load_settings({}, config_file=config)
    config.write_text('edge_vendor = []\n')
    with pytest.raises(SettingsError, match="edge_vendor: empty; choose from"):
        load_settings({}, config_file=config)


def test_the_tag_headers_settings_know_are_the_ones_segments_write() -> None:
    assert TAG_HEADERS == ALL_TAG_HEADERS


def test_every_setting_is_declared_once_with_help() -> None:
    declared = options()
    assert all(declaration.help for declaration in declared.values())
    flags = [d.flag for d in declared.values() if d.flag]
    assert len(flags) == len(set(flags))


def test_readme_carries_the_settings_table_made_from_the_declarations() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert settings_table() in readme, "run: python tools/settings_table.py"
