"""How long a shared cache may keep a page the rules personalize (keyed caching), through
the real server: what the origin's Cache-Control and its CDN-only cache controls say."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge_personalizer.personalize.lifetime import CDN_CONTROL_READERS, shared_lifetime
from edge_personalizer.rules.model import CDN_CACHE_CONTROLS

from ..conftest import ROOT
from ..servers import Server, start_proxy
from . import keyed_get

BROWSER = {"accept": "text/html", "referer": "https://blog.example.org/post",
           "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"}


@pytest.fixture(scope="module")
def keyed(origin: Server, server_logs: Path) -> Iterator[Server]:
    """Keyed caching behind a trusted edge (127.0.0.1) that names each page's segment."""
    server = start_proxy(server_logs, "--origin", origin.url,
                         "--rules", str(ROOT / "tests" / "data" / "rules"),
                         "--trusted-proxy", "127.0.0.1",
                         env={"EP_KEYED_CACHING": "true", "EP_SHARED_MAX_AGE": "300"})
    yield server
    server.stop()


def _shared_as(server: Server, cache_control: str | None, *targeted: str) -> httpx.Response:
    params: dict[str, str | list[str]] = {"header": list(targeted)}
    if cache_control is not None:
        params["cc"] = cache_control
    page = keyed_get(server, "/account/x", params, BROWSER)
    assert page.status_code == 200
    return page


PRIVATE = "private, max-age=600"


@pytest.mark.parametrize(("cache_control", "targeted", "expected"), [
    # A CDN-only control that forbids storing makes the page private...
    ("max-age=600", ["Surrogate-Control: no-store"], PRIVATE),
    ("max-age=600", ["CDN-Cache-Control: no-store"], PRIVATE),
    ("max-age=600", ["CDN-Cache-Control: max-age=0"], PRIVATE),
    ("max-age=600", ["CDN-Cache-Control: no-cache"], PRIVATE),
    ("max-age=600", ["Cloudflare-CDN-Cache-Control: private"], PRIVATE),
    ("max-age=600", ["Vercel-CDN-Cache-Control: no-store"], PRIVATE),
    ("max-age=600", ["Netlify-CDN-Cache-Control: no-store"], PRIVATE),
    ("max-age=600", ["Edge-Control: no-store"], PRIVATE),
    ("max-age=600", ["Edge-Control: bypass-cache"], PRIVATE),
    ("max-age=600", ["X-Accel-Expires: 0"], PRIVATE),
    ("max-age=600", ["Surrogate-Control: max-age=60", "CDN-Cache-Control: no-store"], PRIVATE),
    # ... and its lifetime is the CDN's, instead of Cache-Control's (RFC 9213)
    ("max-age=600", ["Surrogate-Control: max-age=10"], "s-maxage=10"),
    ("max-age=600", ["Surrogate-Control: max-age=10+30, content=\"ESI/1.0\""], "s-maxage=10"),
    ("max-age=600", ["CDN-Cache-Control: max-age=10"], "s-maxage=10"),
    ("max-age=600", ["CDN-Cache-Control: public, s-maxage=20, max-age=90"], "s-maxage=20"),
    ("max-age=600", ["Cloudflare-CDN-Cache-Control: max-age=15"], "s-maxage=15"),
    ("max-age=600", ["Edge-Control: !no-store, cache-maxage=2m"], "s-maxage=120"),
    ("max-age=600", ["X-Accel-Expires: 30"], "s-maxage=30"),
    ("max-age=600", ["Surrogate-Control: max-age=60", "CDN-Cache-Control: max-age=40"],
     "s-maxage=40"),   # behind whichever CDN: never longer than any was given
    ("max-age=60", ["CDN-Cache-Control: max-age=3600"], "s-maxage=300"),   # capped
    ("no-cache", ["Surrogate-Control: max-age=60"], "s-maxage=60"),         # Fastly's way
    ("no-store", ["CDN-Cache-Control: max-age=60"], "s-maxage=60"),
    (None, ["Surrogate-Control: max-age=60"], "s-maxage=60"),
    # A page the origin marks as one visitor's stays theirs whatever the CDN is told.
    ("private, max-age=60", ["Surrogate-Control: max-age=60"], "private, max-age=60"),
    # Controls that say nothing of storing leave it to Cache-Control.
    ("max-age=60", ['Surrogate-Control: content="ESI/1.0"'], "s-maxage=60"),
    ("max-age=60", ["X-Accel-Expires: soon"], "s-maxage=60"),
    ("no-cache", ["CDN-Cache-Control: public"], "private, no-cache"),
    # How a cache may serve it once stale, and what it must not do, go along.
    ("max-age=60, stale-while-revalidate=30, stale-if-error=86400", [],
     "s-maxage=60, stale-while-revalidate=30, stale-if-error=86400"),
    ("no-transform, max-age=60, must-revalidate", [], "s-maxage=60, must-revalidate, no-transform"),
    ("max-age=60, stale-while-revalidate", [], "s-maxage=60"),   # no seconds: not kept
    ("max-age=60, must-revalidate=5", [], "s-maxage=60"),   # a flag given seconds: not kept
    ("max-age=60, stale-if-error=99999999999999999999", [],
     "s-maxage=60, stale-if-error=2147483648"),   # past what a cache need read
    # Once a CDN-only control gives the lifetime, they are read there, not in what
    # Cache-Control tells browsers.
    ("no-cache, stale-if-error=31536000", ["Surrogate-Control: max-age=60"], "s-maxage=60"),
    ("max-age=600, stale-while-revalidate=86400", ["CDN-Cache-Control: max-age=10"],
     "s-maxage=10"),
    ("max-age=60", ["CDN-Cache-Control: max-age=120, must-revalidate"],
     "s-maxage=120, must-revalidate"),
])
def test_the_origin_s_cdn_controls_decide_how_long_the_cdn_keeps_the_page(
        keyed: Server, cache_control: str | None, targeted: list[str], expected: str) -> None:
    page = _shared_as(keyed, cache_control, *targeted)
    shared = expected.startswith("s-maxage=")
    assert page.headers["cache-control"] == (f"public, max-age=0, {expected}" if shared
                                             else expected)
    assert ("surrogate-key" in page.headers) == shared
    # Cache-Control is what every cache is told: the CDN's own controls never go on.
    assert not {name.partition(":")[0].lower() for name in targeted} & set(page.headers)


def test_every_cdn_control_a_page_loses_has_its_say_first() -> None:
    assert set(CDN_CONTROL_READERS) == CDN_CACHE_CONTROLS


@pytest.mark.parametrize("value", ["max-age=\u00b2", "s-maxage=\u0663\u0660", "max-age=+5"])
def test_a_lifetime_in_other_digits_is_no_lifetime(value: str) -> None:
    # str.isdigit() says yes to superscripts and Arabic-Indic digits; int() does not read
    # all of them: such a header is an origin's mistake, and the page stays private.
    assert shared_lifetime({b"cache-control": value}, authorized=False) is None


def test_an_answer_to_credentials_is_shared_only_when_cache_control_says_public() -> None:
    # RFC 9111 3.5: what the CDN alone is told does not make one user's answer everyone's.
    head = {b"cache-control": "max-age=60", b"surrogate-control": "max-age=30"}
    assert shared_lifetime(head, authorized=True) is None
    assert shared_lifetime({**head, b"cache-control": "public"}, authorized=True) == 30


def test_x_accel_expires_at_a_time_is_the_seconds_until_then() -> None:
    head = {b"cache-control": "max-age=600", b"x-accel-expires": f"@{int(time.time()) + 40}"}
    assert 38 <= (shared_lifetime(head, authorized=False) or 0) <= 40
    assert shared_lifetime({**head, b"x-accel-expires": "@1"}, authorized=False) is None
