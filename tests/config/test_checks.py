from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.config import load_settings
from edge_personalizer.errors import SettingsError


@pytest.mark.parametrize(("environ", "message"), [
    ({"EP_ORIGIN_URL": "ftp://x"}, "must be an absolute http(s) URL"),
    ({"EP_ORIGIN_URL": "http://x?y=1"}, "must not carry a query"),
    ({"EP_ORIGIN_URL": "http://x", "EP_PORT": "seventy"}, "setting 'port'"),
    ({"EP_ORIGIN_URL": "http://x", "EP_PORT": "70000"}, "port must be between"),
    ({"EP_ORIGIN_URL": "http://x", "EP_WORKERS": "0"}, "workers must be >= 1"),
    ({"EP_ORIGIN_URL": "http://x", "EP_READ_TIMEOUT": "0"}, "read_timeout must be a number > 0"),
    # The store and the referrer file are checked with the settings: the error says
    # where they were given.
    ({"EP_ORIGIN_URL": "http://x", "EP_STORE_URL": "mysql://u:secret@db/ep"},
     "EP_STORE_URL: store_url names no store this server can use (mysql); expected "
     "sqlite:///path/to/ep.db or redis://host:port/db"),
    ({"EP_ORIGIN_URL": "http://x", "EP_STORE_URL": "ep.db"},
     "EP_STORE_URL: store_url names no store this server can use (no kind)"),
    ({"EP_ORIGIN_URL": "http://x", "EP_REFERRER_SOURCES": "/nope.json"},
     "EP_REFERRER_SOURCES: referrer_sources names no file: '/nope.json'"),
    ({"EP_ORIGIN_URL": "http://x", "EP_MAX_HEADER_BYTES": "10"},
     "max_header_bytes must be at least 4096 bytes, got 10: below that, ordinary browsers' "
     "requests are refused"),
    ({"EP_ORIGIN_URL": "http://x", "EP_MAX_HEADER_COUNT": "5"},
     "max_header_count must be at least 20, got 5"),
    ({"EP_ORIGIN_URL": "http://x", "EP_HEAD_HOLD_SECONDS": "nan"},
     "head_hold_seconds must be a number > 0, got nan"),
    ({"EP_ORIGIN_URL": "http://x", "EP_KEEP_ALIVE_TIMEOUT": "inf"},
     "keep_alive_timeout must be a number > 0, got inf"),
    ({"EP_ORIGIN_URL": "http://x", "EP_TRUSTED_PROXIES": "10.0.0.300"}, "trusted_proxies"),
    ({"EP_ORIGIN_URL": "http://x", "EP_LOG_FORMAT": "xml"}, "log_format must be text or json"),
    ({"EP_ORIGIN_URL": "http://x", "EP_EDGE_TRUSTED_ONLY": "true"},
     "name the edge's addresses in trusted_proxies"),
    ({"EP_ORIGIN_URL": "http://x", "EP_ACCESS_LOG": "maybe"}, "expected true or false"),
    ({"EP_ORIGIN_URL": "http://x", "EP_PUBLIC_URL": "shop.example"}, "public_url must be"),
    ({"EP_ORIGIN_URL": "http://x", "EP_PUBLIC_URL": "https://shop.example/en"}, "no path"),
    ({"EP_ORIGIN_URL": "http://x", "EP_PUBLIC_URL": "https://u:p@shop.example"}, "credentials"),
    # Hosts and ports the proxy refuses in a client's Host it must not use itself.
    ({"EP_ORIGIN_URL": "http://x", "EP_PUBLIC_URL": "https://shop..example"},
     "public_url names no host the proxy could use: 'shop..example'"),
    ({"EP_ORIGIN_URL": "http://x", "EP_PUBLIC_URL": "https://shop.example:0"},
     "public_url names no host the proxy could use: 'shop.example:0'"),
    ({"EP_ORIGIN_URL": "http://127.0.0.1:99999"},
     "origin_url names no host the proxy could use: '127.0.0.1:99999'"),
    ({"EP_ORIGIN_URL": "http://sh op.example"},
     "origin_url names no host the proxy could use: 'sh op.example'"),
    ({"EP_ORIGIN_URL": "http://admin:s3cret@origin:99999"},   # (the password not repeated)
     "origin_url names no host the proxy could use: 'origin:99999' (a host"),
])
def test_bad_settings_say_what_is_wrong(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(environ)


@pytest.mark.parametrize("token", ["change-me", "short", "CHANGE-ME", "replace-me-with-a-token"])
def test_an_admin_token_anyone_could_guess_is_refused(token: str) -> None:
    with pytest.raises(SettingsError, match="admin_token is too easy to guess"):
        load_settings({"EP_ADMIN_TOKEN": token}, origin_url="http://x.example")


@pytest.mark.parametrize("token", ["<16+ random characters>", "sixteen chars with spaces",
                                   "tab\tseparated-token-value"])
def test_an_admin_token_that_is_no_bearer_token_is_refused(token: str) -> None:
    # README's example config file writes a placeholder: taken as it was, it let anyone
    # who read README into the admin endpoints.
    with pytest.raises(SettingsError, match="must be sent as a Bearer token"):
        load_settings({"EP_ADMIN_TOKEN": token}, origin_url="http://x.example")
    load_settings({"EP_ADMIN_TOKEN": "Zm9vYmFyYmF6cXV4LXRva2Vu=="}, origin_url="http://x.example")


def test_consent_value_without_consent_cookie_is_refused() -> None:
    with pytest.raises(SettingsError, match="set consent_cookie too"):
        load_settings({"EP_CONSENT_VALUE": "marketing:true"}, origin_url="http://x.example")
    with pytest.raises(SettingsError, match="consent_value is not a regular expression"):
        load_settings({"EP_CONSENT_VALUE": "(", "EP_CONSENT_COOKIE": "cc"},
                      origin_url="http://x.example")


def test_settings_with_data_dir_among_the_rules_are_made(tmp_path: Path) -> None:
    # Only what writes there refuses it (the server, replay, the demo: tests/test_cli.py):
    # explain and preview-link, which write nothing, run from inside the rules folder,
    # where the default data_dir (ep-data) lies among the rules.
    rules = tmp_path / "rules"
    rules.mkdir()
    base = {"EP_ORIGIN_URL": "http://o", "EP_RULES_DIR": str(rules)}
    for inside in (rules, rules / "ep-data", rules / "fragments" / "data"):
        assert load_settings({**base, "EP_DATA_DIR": str(inside)}).data_dir == inside


def test_the_edges_settings_know_are_the_ones_classify_reads() -> None:
    from edge_personalizer.classify import edge
    from edge_personalizer.config import converters

    assert converters.EDGE_VENDORS == edge.EDGE_VENDORS
    assert converters.FORWARDED_ONLY == edge.FORWARDED_ONLY


def test_a_bad_origin_host_is_said_without_the_url_s_password() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"EP_ORIGIN_URL": "http://admin:s3cret@origin:99999"})
    assert "s3cret" not in str(caught.value) and "'origin:99999'" in str(caught.value)
