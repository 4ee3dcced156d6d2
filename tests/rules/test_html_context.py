from __future__ import annotations

import pytest

from edge_personalizer.rules.html_context import MARK, Spot, is_safe_url, spots, url_fixed


def test_each_placeholder_knows_where_it_sits() -> None:
    html = (f'<p class="a {MARK}">Hi {MARK}<!-- {MARK} --><a href="/s?q={MARK}" '
            f"title='{MARK}'>x</a></p><script>var a = 1;</script>{MARK}")
    assert spots(html) == [Spot("attribute", "class", "a "), Spot("text"), Spot("text"),
                           Spot("attribute", "href", "/s?q="), Spot("attribute", "title", ""),
                           Spot("text")]


@pytest.mark.parametrize("html", [
    f"<script>{MARK}</script>", f"<SCRIPT type=module>a{MARK}</SCRIPT>",
    f"<style>{MARK}</style>", f"<div {MARK}>", f"<{MARK}>", f"<a href={MARK}>",
    f"</{MARK}>", f"<!DOCTYPE {MARK}>", f"<a b{MARK}=1>",
])
def test_places_where_no_escaping_helps_are_refused(html: str) -> None:
    with pytest.raises(ValueError, match="a visitor field cannot go"):
        spots(html)


@pytest.mark.parametrize(("url", "safe"), [
    ("/a", True), ("a/b", True), ("?q=1", True), ("#x", True), ("", True),
    ("https://x.example/", True), ("HTTP://x", True),
    ("javascript:alert(1)", False), ("JaVaScRiPt:x", False), (" javascript:x", False),
    ("java\tscript:x", False), ("\x01javascript:x", False), ("data:text/html,x", False),
    ("vbscript:x", False), ("mailto:a@b", False),
])
def test_only_relative_and_http_urls_are_safe(url: str, safe: bool) -> None:
    assert is_safe_url(url) is safe


def test_a_literal_start_can_fix_the_scheme() -> None:
    assert url_fixed("/search?q=") and url_fixed("https://x") and url_fixed(" #")
    assert not url_fixed("") and not url_fixed("java") and not url_fixed(f"{MARK}/")
