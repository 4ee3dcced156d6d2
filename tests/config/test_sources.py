from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from edge_personalizer.config.sources import (
    CLASSIFY_FLAGS,
    SERVER_FLAGS,
    add_setting_flags,
    flag_overrides,
    load_settings,
    setting_given,
    unknown_environment,
)
from edge_personalizer.errors import SettingsError
from edge_personalizer.learn.store import open_store


def test_unknown_environment_variables_are_reported_not_fatal() -> None:
    environ = {"EP_ORIGIN": "http://o.example", "EP_PROT": "80", "EP_VARIANTS": "x",
               "EP_CONFIG": "", "HOME": "/root"}
    settings = load_settings(environ)
    assert settings.origin_url == "http://o.example"      # EP_ORIGIN is accepted too
    warnings = unknown_environment(environ)
    assert warnings == [
        "environment variable EP_PROT is not a setting and is ignored; did you mean EP_PORT?",
        "environment variable EP_VARIANTS is not a setting and is ignored"]


def _parse(argv: list[str], names: tuple[str, ...] = SERVER_FLAGS) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, names)
    parser.add_argument("--config", type=Path)
    return parser.parse_args(argv)


def test_flags_are_made_from_the_declarations_and_win_over_the_environment() -> None:
    args = _parse(["--origin", "http://f.example", "--port", "9001", "--trusted-proxy",
                   "10.0.0.0/8", "--trusted-proxy", "192.0.2.1", "--no-access-log"])
    settings = load_settings({"EP_PORT": "9000", "EP_WORKERS": "3"}, **flag_overrides(args))
    assert settings.origin_url == "http://f.example"
    assert settings.port == 9001 and settings.workers == 3
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32"]
    assert settings.access_log is False


def test_unset_flags_fall_through_to_the_defaults() -> None:
    settings = load_settings({}, **flag_overrides(_parse([])))
    assert settings.port == 8080 and settings.access_log is True


def test_a_bad_flag_value_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="setting 'port'"):
        load_settings({}, **flag_overrides(_parse(["--port", "eighty"])))


def test_classifying_commands_take_only_their_flags() -> None:
    args = _parse(["--rules", "r", "--geo-db", "g.mmdb"], CLASSIFY_FLAGS)
    assert not hasattr(args, "port")
    settings = load_settings({}, **flag_overrides(args))
    assert settings.rules_dir == Path("r") and settings.geo_db == Path("g.mmdb")


def test_a_bad_value_is_named_with_where_it_was_given(tmp_path: Path) -> None:
    with pytest.raises(SettingsError,
                       match="^EP_PORT: setting 'port': expected a whole number, got 'abc'$"):
        load_settings({"EP_PORT": "abc", "EP_ORIGIN_URL": "http://o"})
    with pytest.raises(SettingsError,
                       match="^EP_READ_TIMEOUT: setting 'read_timeout': expected a number"):
        load_settings({"EP_READ_TIMEOUT": "soon", "EP_ORIGIN_URL": "http://o"})
    # A value of the right kind that a check refuses: named with where it was given too.
    with pytest.raises(SettingsError, match="^EP_WORKERS: workers must be >= 1, got 0$"):
        load_settings({"EP_WORKERS": "0", "EP_ORIGIN_URL": "http://o"})
    with pytest.raises(SettingsError, match="^EP_LOG_FORMAT: log_format must be text or json"):
        load_settings({"EP_LOG_FORMAT": "xml", "EP_ORIGIN_URL": "http://o"})
    with pytest.raises(SettingsError, match="^EP_EDGE_VENDOR: edge_vendor: unknown acme"):
        load_settings({"EP_EDGE_VENDOR": "acme", "EP_ORIGIN_URL": "http://o"})
    # ... whatever its message starts with.
    with pytest.raises(SettingsError, match="^EP_PROFILE_KEYS: each profile key must be"):
        load_settings({"EP_PROFILE_KEYS": "short", "EP_ORIGIN_URL": "http://o"})
    with pytest.raises(SettingsError, match="^EP_EDGE_TRUSTED_ONLY: edge_trusted_only "):
        load_settings({"EP_EDGE_TRUSTED_ONLY": "true", "EP_ORIGIN_URL": "http://o"})
    config = tmp_path / "ep.toml"
    config.write_text('origin_url = "http://o"\nworkers = "two"\n')
    with pytest.raises(SettingsError, match=f"^{re.escape(str(config))}: setting 'workers'"):
        load_settings({}, config_file=config)
    with pytest.raises(SettingsError, match="^the command line: setting 'port'"):
        load_settings({"EP_PORT": "8080"}, origin_url="http://o", port="eighty")


def test_relative_paths_in_a_config_file_are_its_folder_s(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The file is written beside what it names; the server is started from anywhere (/
    # under systemd). Paths given elsewhere stay the working directory's, absolute ones
    # and other URLs as written.
    site = tmp_path / "site"
    site.mkdir()
    config = site / "ep.toml"
    config.write_text('origin_url = "http://o"\nrules_dir = "rules"\ngeo_db = "../geo/c.mmdb"\n'
                      'data-dir = "~/ep-data"\nstore_url = "sqlite:data/ep.db"\n')
    monkeypatch.chdir(tmp_path)
    settings = load_settings({}, config_file=Path("site/ep.toml"))
    assert settings.rules_dir == site / "rules"
    assert settings.geo_db == site / "../geo/c.mmdb"
    assert settings.data_dir == Path("~/ep-data").expanduser()
    assert settings.store_url == f"sqlite://{site}/data/ep.db"
    assert load_settings({"EP_RULES_DIR": "r"}, config_file=config).rules_dir == Path("r")
    # ~ is the home folder in the environment too, as the shell reads it on a command line
    assert load_settings({"EP_DATA_DIR": "~/ep"}).data_dir == Path.home() / "ep"
    with pytest.raises(SettingsError, match="^EP_DATA_DIR: setting 'data_dir': ~nosuchuser/x"):
        load_settings({"EP_DATA_DIR": "~nosuchuser/x"})
    # a folder with a URL's own characters in its name stays the store's file
    odd = tmp_path / "site #1?"
    odd.mkdir()
    (odd / "ep.toml").write_text('origin_url = "http://o"\nstore_url = "sqlite:ep.db"\n')
    url = load_settings({}, config_file=odd / "ep.toml").store_url
    assert url is not None and open_store(url).location.endswith("site #1?/ep.db")
    config.write_text('origin_url = "http://o"\nstore_url = "sqlite:///srv/ep.db"\n')
    assert load_settings({}, config_file=config).store_url == "sqlite:///srv/ep.db"
    config.write_text('origin_url = "http://o"\nstore_url = "redis://h:6379/0"\n')
    assert load_settings({}, config_file=config).store_url == "redis://h:6379/0"


def test_one_setting_is_read_without_the_others(tmp_path: Path) -> None:
    # validate takes the server's keyed_caching, on a machine (CI) without its origin,
    # databases or a valid value for every other setting.
    assert setting_given("keyed_caching", {}) is False
    elsewhere = {"EP_GEO_DB": str(tmp_path / "absent.mmdb"), "EP_WORKERS": "0"}
    assert setting_given("keyed_caching", {**elsewhere, "EP_KEYED_CACHING": "true"}) is True
    config = tmp_path / "ep.toml"
    config.write_text('keyed_caching = true\nworkers = "two"\n')
    assert setting_given("keyed_caching", {"EP_CONFIG": str(config)}) is True
    assert setting_given("keyed_caching", {"EP_CONFIG": str(config),
                                           "EP_KEYED_CACHING": "false"}) is False
    with pytest.raises(SettingsError, match="^EP_KEYED_CACHING: setting 'keyed_caching'"):
        setting_given("keyed_caching", {"EP_KEYED_CACHING": "maybe"})
