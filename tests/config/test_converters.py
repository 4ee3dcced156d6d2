from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.config.converters import (
    Secret,
    to_bool,
    to_mapping,
    to_networks,
    to_optional_int,
    to_path,
    to_secrets,
    to_tag_headers,
)


@pytest.mark.parametrize(("text", "value"), [("yes", True), ("ON", True), ("0", False),
                                             (False, False)])
def test_booleans_read_as_people_write_them(text: object, value: bool) -> None:
    assert to_bool(text) is value


def test_a_word_that_is_no_boolean_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected true or false"):
        to_bool("maybe")


def test_lists_come_comma_separated_or_as_toml_lists() -> None:
    assert [str(n) for n in to_networks("10.0.0.0/8, 192.0.2.1")] == ["10.0.0.0/8",
                                                                      "192.0.2.1/32"]
    assert to_mapping("X-Geo=geo.country, x-dev=device.type") == {
        "x-geo": "geo.country", "x-dev": "device.type"}
    assert to_tag_headers(["Cloudflare", "fastly", "varnish"]) == ("cache-tag",
                                                                   "surrogate-key")


def test_empty_means_unset() -> None:
    assert to_path("") is None and to_optional_int("") is None
    assert to_path("rules") == Path("rules") and to_optional_int("3") == 3


def test_secrets_never_show_themselves() -> None:
    keys = to_secrets("first-key-0123456789, second-key-0123456789")
    assert [k.reveal() for k in keys] == ["first-key-0123456789", "second-key-0123456789"]
    assert "first" not in repr(keys) and Secret("a") == Secret("a")
