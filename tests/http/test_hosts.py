from __future__ import annotations

import pytest

from edge_personalizer.http.hosts import is_host


@pytest.mark.parametrize("text", [
    "shop.example", "shop.example.", "localhost", "127.0.0.1", "shop.example:8443",
    "[::1]", "[::1]:8080", "[2001:db8::1]:443", "a_b.example", "x:1", "x:65535",
    "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61,
])
def test_hosts_as_a_request_or_a_setting_names_them(text: str) -> None:
    assert is_host(text)


@pytest.mark.parametrize("text", [
    "", "shop..example", ".shop.example", "sh op.example", "shop.example/path",
    "u@shop.example", "shop.example:0", "shop.example:08000", "shop.example:65536",
    "shop.example:99999", "shop.example:", "[::1", "[fe80::1%eth0]", "-shop.example",
    "a" * 254, "shop.example\r\nx: y",
])
def test_what_is_no_host(text: str) -> None:
    assert not is_host(text)
