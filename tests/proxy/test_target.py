from __future__ import annotations

import pytest

from edge_personalizer.proxy.target import (
    Origin,
    is_origin_form,
    may_hold_dot_segments,
    remove_dot_segments,
)


@pytest.mark.parametrize(("path", "expected"), [
    (b"/", b"/"),
    (b"/a/b/../c", b"/a/c"),
    (b"/../../etc/passwd", b"/etc/passwd"),
    (b"/a/./b/.", b"/a/b/"),
    (b"/a/..", b"/"),
    (b"/a/%2e%2E/b", b"/b"),
    (b"//double/slash", b"//double/slash"),
    (b"relative", b"/relative"),
    (b"/a/b/..", b"/a/"),
])
def test_remove_dot_segments(path: bytes, expected: bytes) -> None:
    assert remove_dot_segments(path) == expected


def test_urls_always_point_at_the_origin() -> None:
    origin = Origin.parse("http://origin.internal:8000/shop/")
    assert origin.url_for(b"/../../admin", b"") == "http://origin.internal:8000/shop/admin"
    assert origin.url_for(b"//evil.example/x", b"a=1") == \
        "http://origin.internal:8000/shop//evil.example/x?a=1"
    assert origin.url_for(b"/live", b"", websocket=True) == "ws://origin.internal:8000/shop/live"
    assert Origin.parse("https://user:pw@o.example").host_header == "o.example"
    assert Origin.parse("https://o.example").url_for(b"/s", b"", websocket=True) == \
        "wss://o.example/s"


@pytest.mark.parametrize("path", [b"/small.html", b"/a/b.c/d", b"a/b", b"/", b"/x.y.z/",
                                  b"/%41b", b"/a/.b", b"/a/..b/c", b"/a%2E/b"])
def test_paths_without_dot_segments_are_kept(path: bytes) -> None:
    # Dots inside names are not segments: only "." and ".." (also %2e-encoded) are.
    expected = path if path.startswith(b"/") else b"/" + path
    if path == b"/a%2E/b":
        expected = b"/a./b"   # an encoded dot is read as a dot
    assert remove_dot_segments(path) == expected


@pytest.mark.parametrize(("path", "expected"), [
    (b"/a/../b", True), (b"/a/./b", True), (b"/a/%2e%2e/b", True), (b"/a/%2E/b", True),
    (b"/a%2Fb", True), (b"./x", True), (b"/.", True),
    (b"/a.b/c", False), (b"/small.html", False), (b"/", False), (b"/%41b", False),
])
def test_the_paths_that_may_hold_dot_segments_are_told_apart(path: bytes,
                                                            expected: bool) -> None:
    assert may_hold_dot_segments(path) is expected
    if not expected:   # the shortcut keeps only what the whole algorithm would keep
        assert remove_dot_segments(path + b"/.") == path + b"/"


@pytest.mark.parametrize(("target", "expected"), [
    (b"/", True), (b"/a?b", True), (b"//x", True),
    (b"*", False), (b"", False), (b"x:443", False), (b"a/b", False),
])
def test_only_a_path_names_a_page_of_the_origin(target: bytes, expected: bool) -> None:
    # `OPTIONS *` is refused, never forwarded as `OPTIONS /*`.
    assert is_origin_form(target) is expected
