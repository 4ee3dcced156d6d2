"""The start of a rewritten page, through the real server (rules in tests/data/rules): the
headers that described the origin's body go, and its own length is given when it can be
known before the start leaves."""

from __future__ import annotations

import time

import httpx

from edge_personalizer.classify.profile_codec import ProfileCodec

from ..conftest import PROFILE_KEY
from ..servers import Server

PAGE = {"accept": "text/html", "accept-encoding": "identity",
        "referer": "https://l.facebook.com/l.php?u=x",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
HERO = b'<section data-ep-slot="hero"><h1>Hello, friend from Facebook</h1>\n</section>'


def test_a_rewritten_page_drops_what_described_the_origin_s_body(proxy: Server) -> None:
    response = httpx.get(f"{proxy.url}/slotted/start", headers=PAGE)
    assert HERO in response.content
    for stale in ("etag", "content-md5", "content-encoding"):
        assert stale not in response.headers
    assert "accept-encoding" in response.headers["vary"].lower()


def test_a_rewritten_page_has_its_length_when_the_origin_gave_one(proxy: Server) -> None:
    # The slot is near the top: the rest passes as it comes, so the new length is known
    # from the origin's before the start leaves.
    whole = httpx.get(f"{proxy.url}/slotted/length", headers=PAGE)
    assert HERO in whole.content
    assert whole.headers["content-length"] == str(len(whole.content))
    # Streamed by the origin without a length: none to give, the page goes chunked.
    streamed = httpx.get(f"{proxy.url}/slotted/length?slow=1", headers=PAGE, timeout=10)
    assert HERO in streamed.content
    assert "content-length" not in streamed.headers
    assert streamed.headers["transfer-encoding"] == "chunked"


def test_a_page_the_rewriter_leaves_alone_names_and_counts_no_variant(proxy: Server) -> None:
    # A page in a charset the rewriter cannot write in (UTF-16) went as it came, and its
    # profile cookie still recorded the rule's variant as shown (an exposure counted).
    response = httpx.get(f"{proxy.url}/slotted/utf16?cs=utf-16", headers=PAGE)
    assert "Hello, friend from Facebook".encode("utf-16-le") not in response.content
    assert "x-ep-variant" not in response.headers
    cookie = response.cookies["ep_profile"]
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(cookie, time.time())
    assert state is not None and state[10] == {} and state[9] == {}
    rewritten = httpx.get(f"{proxy.url}/slotted/utf8", headers=PAGE).cookies["ep_profile"]
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(rewritten, time.time())
    assert state is not None and "facebook-hero" in state[10]
