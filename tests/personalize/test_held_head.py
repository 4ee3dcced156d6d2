"""The head of a page whose slots are not known yet waits for them: the release rule
itself, and through the real server, in front of an origin that sends its pages in two
parts a second apart, a first view of a page lacking the slots (it names nothing it did
not show), of a page with its slots at the top (it still streams), at its end (held until
they come), a page too long to hold, compressed or not, a page the rewriter gives up
on while its head waits, and a page that flushes its top early and then stalls (its head
waits head_hold_seconds at most)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import brotli
import httpx
import pytest

from edge_personalizer.classify.profile_codec import (
    STATE_EXPOSURES,
    STATE_VARIANTS,
    ProfileCodec,
)
from edge_personalizer.config import Settings
from edge_personalizer.http.flow import HIGH_WATER
from edge_personalizer.personalize.held_head import HOLD_LIMIT, HeldHead

from ..conftest import PROFILE_KEY
from ..http.test_server import worker_pids
from ..servers import Server, free_port, start, start_proxy


def test_the_head_waits_until_every_slot_is_found_or_the_page_ends() -> None:
    held = HeldHead(("hero", "promo"), limit=1000)
    assert held.absent((True, False), read=500, ended=False) is None
    assert held.absent((True, True), read=500, ended=False) == frozenset()
    assert held.absent((True, False), read=900, ended=True) == frozenset({"promo"})
    assert held.absent((False, False), read=1001, ended=False) == frozenset()   # the bound
    assert held.absent(None, read=10, ended=False) == frozenset()   # cannot be told
    held.keep(b"ab")
    held.keep(None)
    assert held.take(b"c") == b"abc" and held.take(None) == b""


def test_the_bound_is_what_the_proxy_buffers_from_an_origin() -> None:
    assert HOLD_LIMIT == HIGH_WATER


# An origin that sends a page in two parts, a second apart (&wait=S: S seconds), with its
# Content-Length: /<anything>?slots=top|end|none&size=N&pause=M (the first M bytes, then
# the rest), or as &parts=b500,w1,b3000,w3,rest says (bytes, a wait, the rest; h: up to
# the garbage of &junk=1); slots=lost: the hero, then markup lol-html gives up on where
# the page cannot be told apart (its output ends in empty <select>s found all over the
# page's end, however far lol-html wrote); &gzip=1 sends it gzipped whatever was asked,
# &br=1 in brotli (quality 11), &junk=1 with 4000 bytes of garbage in its middle;
# &charset=0: no charset in its Content-Type.
ORIGIN = """
import brotli, gzip, http.server, random, sys, time, urllib.parse
HERO = '<section data-ep-slot="hero"><h1>Old hero</h1></section>'
PROMO = '<div data-ep-slot="promo">old promo</div>'
TEASER = '<p data-ep-slot="teaser">old teaser</p>'
class Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if self.path == "/":
            self.send_response(200); self.send_header("Content-Length", "0")
            self.end_headers(); return
        slots = HERO + PROMO
        top = {"top": slots, "teaser": TEASER, "lost": HERO}.get(query["slots"], "")
        lost = "<select></select>" * 40 + "<select><style>x</style></select>"
        end = {"end": slots, "lost": lost}.get(
            query["slots"], "")
        head = "<!doctype html><html><head><title>t</title></head><body><main>" + top
        tail = end + "</main></body></html>"
        filler = "<p>Lorem ipsum dolor sit amet.</p>"
        count = max(0, (int(query["size"]) - len(head) - len(tail)) // len(filler))
        body = (head + filler * count + tail).encode()
        parts = query.get("parts") or f"b{query['pause']},w{query.get('wait', '1')},rest"
        self.send_response(200)
        if "gzip" in query:
            body = gzip.compress(body, 9)
            self.send_header("Content-Encoding", "gzip")
        if "br" in query:
            body = brotli.compress(body, quality=11)
            self.send_header("Content-Encoding", "br")
        half = len(body) // 2
        if "junk" in query:
            body = body[:half] + random.Random(0).randbytes(4000) + body[half:]
        charset = "" if query.get("charset") == "0" else "; charset=utf-8"
        self.send_header("Content-Type", "text/html" + charset)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"v1"')
        self.end_headers()
        sent = 0
        for part in parts.split(","):
            if part.startswith("w"):
                time.sleep(float(part[1:]))
            else:
                upto = {"rest": len(body), "h": half}.get(part) or sent + int(part[1:])
                self.wfile.write(body[sent:upto]); self.wfile.flush()
                sent = upto
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Pages).serve_forever()
"""

RULES = """\
slots:
  hero: {}
  promo: {}
rules:
  - name: hero-rule
    then: {hero: {html: "<h1>New hero</h1>"}}
experiments:
  - name: promo-test
    slot: promo
    holdout: 0
    variants:
      plain: {weight: 50, html: "<b>plain promo</b>"}
      bold: {weight: 50, html: "<b>bold promo</b>"}
goals:
  buy: {when: {request.path: /thanks}}
"""
PAGE = {"accept": "text/html", "accept-encoding": "identity",
        "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                      "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}


# An experiment whose control leaves its slot as it is (nearly every visitor is bucketed
# into the control; the profile cookie names the variant where it counts).
CONTROL_RULES = """\
slots:
  teaser: {}
experiments:
  - name: teaser-test
    slot: teaser
    holdout: 0
    variants:
      control: {weight: 99.9999}
      new: {weight: 0.0001, html: "new teaser"}
"""

HOLDOUT_RULES = CONTROL_RULES.replace("holdout: 0", "holdout: 99")


def _proxy(tmp_path: Path, rules_text: str, hold: str = "5") -> Iterator[Server]:
    """`hold`: head_hold_seconds (more than the origin's pause, unless a test says)."""
    port = free_port()
    origin = start([sys.executable, "-c", ORIGIN, str(port)], port, tmp_path / "origin.log")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(rules_text)
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_VARIANT_HEADER": "true", "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_HEAD_HOLD_SECONDS": hold})
    yield server
    server.stop()
    origin.stop()


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Server]:
    yield from _proxy(tmp_path, RULES)


@pytest.fixture
def control_proxy(tmp_path: Path) -> Iterator[Server]:
    yield from _proxy(tmp_path, CONTROL_RULES)


@pytest.fixture
def holdout_proxy(tmp_path: Path) -> Iterator[Server]:
    yield from _proxy(tmp_path, HOLDOUT_RULES)


@pytest.fixture
def default_hold_proxy(tmp_path: Path) -> Iterator[Server]:
    yield from _proxy(tmp_path, RULES, hold=str(Settings().head_hold_seconds))


def _profile(response: httpx.Response) -> list[Any]:
    cookie = next(h for h in response.headers.get_list("set-cookie")
                  if h.startswith("ep_profile="))
    state, _ = ProfileCodec([PROFILE_KEY.encode()]).decode(
        cookie.split(";")[0].split("=", 1)[1], time.time())
    assert state is not None
    return state


def _get(server: Server, path: str, cookie: str = "",
         headers: dict[str, str] = PAGE) -> tuple[httpx.Response, bytes, float]:
    """The response, its body, and seconds until its first body bytes came."""
    started = time.monotonic()
    headers = {**headers, "cookie": cookie} if cookie else headers
    with httpx.stream("GET", server.url + path, headers=headers, timeout=30) as response:
        chunks = response.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - started
        body = first + b"".join(chunks)
    return response, body, first_at


def test_a_first_view_of_a_page_lacking_the_slots_names_and_counts_none(
        proxy: Server) -> None:
    response, body, first_at = _get(proxy, "/about?slots=none&size=20000&pause=4000")
    assert b"data-ep-slot" not in body and body.endswith(b"</main></body></html>")
    assert first_at >= 0.9   # held to the page's end: it might have had them
    assert "x-ep-variant" not in response.headers
    assert response.headers["x-ep-segment"] == "default"
    state = _profile(response)
    assert state[STATE_EXPOSURES] == {} and not state[STATE_VARIANTS]
    # Held whole: the client gets its exact length.
    assert response.headers["content-length"] == str(len(body))
    assert "transfer-encoding" not in response.headers


def test_a_first_view_of_a_page_with_its_slots_at_the_top_streams(proxy: Server) -> None:
    started = time.monotonic()
    response, body, first_at = _get(proxy, "/home?slots=top&size=20000&pause=2000")
    assert first_at < 0.7   # the slots came in the first part: released at once
    assert time.monotonic() - started >= 1.0
    assert b"<h1>New hero</h1>" in body and b"promo</b>" in body
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")
    assert set(_profile(response)[STATE_EXPOSURES]) == {"hero-rule", "promo-test"}


def test_a_first_view_of_a_page_with_its_slots_at_the_end_waits_for_them(
        proxy: Server) -> None:
    response, body, first_at = _get(proxy, "/story?slots=end&size=20000&pause=15000")
    assert first_at >= 0.9   # held until the slots came, in the second part
    assert b"<h1>New hero</h1>" in body and b"promo</b>" in body
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")
    assert set(_profile(response)[STATE_EXPOSURES]) == {"hero-rule", "promo-test"}
    assert response.headers["content-length"] == str(len(body))


def test_a_page_too_long_to_hold_goes_out_with_every_slot_taken_as_present(
        proxy: Server) -> None:
    under = HOLD_LIMIT - 20_000
    response, body, first_at = _get(proxy, f"/a?slots=none&size={under + 10_000}"
                                           f"&pause={under}")
    assert first_at >= 0.9 and "x-ep-variant" not in response.headers   # held whole
    over = HOLD_LIMIT + 20_000
    response, body, first_at = _get(proxy, f"/b?slots=none&size={over + 10_000}&pause={over}")
    assert first_at < 0.7   # past the bound: out before the origin's second part
    assert body.endswith(b"</main></body></html>")
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")
    assert set(_profile(response)[STATE_EXPOSURES]) == {"hero-rule", "promo-test"}
    # What the rewriter found by the page's end is known to the next view.
    again, _, _ = _get(proxy, f"/b?slots=none&size={over + 10_000}&pause={over}")
    assert "x-ep-variant" not in again.headers


def test_a_control_visitor_counts_only_where_the_page_has_the_slot(
        control_proxy: Server) -> None:
    # A first view of a page without the teaser: the control, changing nothing, is judged
    # by the page like a treatment; nothing counted, nothing remembered, the page as it was.
    response, body, first_at = _get(control_proxy, "/about?slots=none&size=20000&pause=4000")
    assert first_at >= 0.9   # held to the page's end: it might have had the teaser
    assert "x-ep-variant" not in response.headers
    state = _profile(response)
    assert state[STATE_EXPOSURES] == {} and not state[STATE_VARIANTS]
    assert response.headers["content-length"] == str(len(body)) and b"teaser" not in body
    cookie = response.headers["set-cookie"].split(";")[0]
    # The same visitor, on a first view of a page with the teaser: counted, once.
    response, body, first_at = _get(control_proxy, "/home?slots=teaser&size=20000&pause=2000",
                                    cookie)
    assert first_at < 0.7   # the teaser came in the first part: released at once
    state = _profile(response)
    assert set(state[STATE_EXPOSURES]) == {"teaser-test"}
    assert state[STATE_VARIANTS] == {"teaser-test": "control"}
    assert b'<p data-ep-slot="teaser">old teaser</p>' in body
    assert response.headers["content-length"] == str(len(body))   # as the origin sent it
    # Another visitor of the control, on the page with the teaser: counted too.
    again, _, first_at = _get(control_proxy, "/home?slots=teaser&size=20000&pause=2000")
    assert first_at < 0.7 and set(_profile(again)[STATE_EXPOSURES]) == {"teaser-test"}


def test_a_held_out_visitor_is_named_only_where_the_page_has_the_slot(
        holdout_proxy: Server) -> None:
    # A holdout changes nothing, but X-EP-Variant, the segment and the count of those held
    # out name it: a page without the teaser names none and counts nothing (it is looked
    # at like a control's).
    for _ in range(5):   # 99 visitors in 100 are held out
        response, _, first_at = _get(holdout_proxy, "/about?slots=none&size=20000&pause=1000")
        assert "x-ep-variant" not in response.headers
        assert response.headers["x-ep-segment"] == "default"
        assert _profile(response)[STATE_EXPOSURES] == {}
        cookie = response.headers["set-cookie"].split(";")[0]
        response, _, _ = _get(holdout_proxy, "/home?slots=teaser&size=20000&pause=1000",
                              cookie)
        if response.headers.get("x-ep-variant") == "teaser=holdout":
            break
    else:
        raise AssertionError("no visitor of five was held out")
    state = _profile(response)
    assert state[STATE_EXPOSURES]["teaser-test"][0] == "holdout"   # counted as held out
    assert state[STATE_VARIANTS] == {"teaser-test": "holdout"}   # ... and kept held out


def _worker_peak_kib(server: Server) -> int:
    """The peak memory (VmHWM) of the server's one worker process."""
    [pid] = worker_pids(server)
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def _peak_growth(proxy: Server, coding: str, accept_encoding: str,
                 page: str) -> tuple[int, httpx.Response, bytes]:
    """How far the worker's peak grew (KiB) while it served `page` (with `coding`, the
    origin's, after a warm-up page), and the response with its body."""
    headers = {**PAGE, "accept-encoding": accept_encoding}
    httpx.get(proxy.url + f"/warm?slots=top&size=20000&parts=rest&{coding}=1",
              headers=headers, timeout=10)
    before = _worker_peak_kib(proxy)
    response, body, _ = _get(proxy, f"{page}&{coding}=1", headers=headers)
    return _worker_peak_kib(proxy) - before, response, body


@pytest.mark.parametrize(("accept_encoding", "bound_mib"), [("identity", 10), ("gzip", 20)])
def test_a_compressed_page_is_held_by_what_it_holds_decompressed(
        proxy: Server, accept_encoding: str, bound_mib: int) -> None:
    # An origin that sends gzip anyway: 40 MB of page in about 117 KB, no slot in it. The
    # head waits for HOLD_LIMIT bytes of the page as read, not of the gzip as it came (held
    # to the end, the worker's peak grew by 130 MB). What each piece of a chunk makes goes
    # out before the next is read, compressed again for a client that takes gzip, as it
    # is for one that does not (with each chunk from the origin, some 20 MB of page here,
    # rewritten whole, the peak grew by 58 MB for such a client).
    grown, response, body = _peak_growth(proxy, "gzip", accept_encoding,
                                         "/big?slots=none&size=40000000&pause=80000")
    assert grown < bound_mib * 1024, f"the worker's peak grew by {grown} KiB"
    assert response.status_code == 200 and body
    # Released before the page's end, which would have shown it lacks the slots.
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")


@pytest.mark.parametrize(("accept_encoding", "bound_mib"), [("identity", 10), ("br", 20)])
def test_a_brotli_page_is_read_a_piece_at_a_time(
        proxy: Server, accept_encoding: str, bound_mib: int) -> None:
    # An origin that sends brotli anyway: 40 MB of page in 141 bytes, come in one chunk, no
    # slot in it. The page is read for its slots a piece at a time, not decompressed whole
    # (the worker's peak grew by 195 MB), and what each piece makes goes out before the
    # next is read, compressed again for a client that takes brotli, as it is for one that
    # does not (what the chunk made, held whole with a copy, grew the peak by 127 MB).
    grown, response, body = _peak_growth(proxy, "br", accept_encoding,
                                         "/big?slots=none&size=40000000&parts=rest")
    assert grown < bound_mib * 1024, f"the worker's peak grew by {grown} KiB"
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == (
        None if accept_encoding == "identity" else "br")
    page = body if accept_encoding == "identity" else brotli.decompress(body)
    assert len(page) > 39_000_000 and page.endswith(b"</main></body></html>")
    # Past HOLD_LIMIT of page read (not at the chunk's end), the head went with every
    # slot taken as present; what the page lacks, read to its end, is known to the next
    # view, which goes as the origin sent it.
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")
    again, body, _ = _get(proxy, "/big?slots=none&size=40000000&parts=rest&br=1",
                          headers={**PAGE, "accept-encoding": accept_encoding})
    assert "x-ep-variant" not in again.headers and again.headers["content-encoding"] == "br"
    assert len(body) < 1000


def test_a_page_the_rewriter_gives_up_on_while_its_head_waits_goes_out_as_it_came(
        proxy: Server) -> None:
    # The hero rewritten, then markup lol-html gives up on, in the second part, while the
    # head still waits for the promo: nothing has reached the client, every byte is held.
    response, body, _ = _get(proxy, "/lost?slots=lost&size=20000&pause=4000")
    assert response.status_code == 200
    assert body.startswith(b"<!doctype html>") and body.endswith(b"</main></body></html>")
    assert b"Old hero" in body and b"New hero" not in body   # as the origin sent it
    assert response.headers["content-length"] == str(len(body))
    # It showed none of the decision's variants: nothing names or counts them.
    assert "x-ep-variant" not in response.headers
    assert _profile(response)[STATE_EXPOSURES] == {}


def test_a_page_the_rewriter_gives_up_on_before_its_head_left_names_and_counts_nothing(
        proxy: Server) -> None:
    # Its slots are known (a view before had them): the head waits only until the
    # rewriter has read the first KiB, and the whole page comes in one part, where the
    # rewriter gives up before anything went out.
    first, body, _ = _get(proxy, "/known?slots=top&size=20000&parts=rest")
    assert b"<h1>New hero</h1>" in body and "x-ep-variant" in first.headers
    response, body, _ = _get(proxy, "/known?slots=lost&size=20000&parts=rest")
    assert response.status_code == 200 and b"Old hero" in body and b"New hero" not in body
    assert "x-ep-variant" not in response.headers
    assert _profile(response)[STATE_EXPOSURES] == {}


def test_a_page_that_flushes_early_then_stalls_keeps_its_early_bytes(
        default_hold_proxy: Server) -> None:
    # The origin sends the page's first part, then renders 3 s before the rest (where the
    # slots are): the head waits head_hold_seconds (0.5 s by default), not the page's end.
    hold = Settings().head_hold_seconds
    response, body, first_at = _get(default_hold_proxy,
                                    "/slow?slots=end&size=20000&pause=4000&wait=3")
    assert hold * 0.8 <= first_at < 2.0, first_at
    assert body.startswith(b"<!doctype html>") and body.endswith(b"</main></body></html>")
    assert b"<h1>New hero</h1>" in body and b"promo</b>" in body   # still rewritten
    # Released before the page could show its slots: every slot taken as present.
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")
    assert set(_profile(response)[STATE_EXPOSURES]) == {"hero-rule", "promo-test"}
    # A page lacking the slots, stalled the same way: out on time, and what the rewriter
    # found by the page's end is what the next view knows (it names nothing).
    response, body, first_at = _get(default_hold_proxy,
                                    "/gone?slots=none&size=20000&pause=4000&wait=3")
    assert first_at < 2.0 and body.endswith(b"</main></body></html>")
    assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")
    again, body, first_at = _get(default_hold_proxy,
                                 "/gone?slots=none&size=20000&pause=4000&wait=3")
    assert "x-ep-variant" not in again.headers and first_at < 0.7   # known: not held
    assert again.headers["content-length"] == str(len(body))


@pytest.fixture
def default_hold_control_proxy(tmp_path: Path) -> Iterator[Server]:
    yield from _proxy(tmp_path, CONTROL_RULES, hold=str(Settings().head_hold_seconds))


def test_a_control_looked_for_on_a_page_that_stalls_goes_out_as_it_came_on_time(
        default_hold_control_proxy: Server) -> None:
    response, body, first_at = _get(default_hold_control_proxy,
                                    "/about?slots=none&size=20000&pause=4000&wait=3")
    assert first_at < 2.0 and body.endswith(b"</main></body></html>")
    assert response.headers["content-length"] == str(len(body))   # as the origin sent it
    # Released before the page could show it lacks the teaser: taken as present.
    assert set(_profile(response)[STATE_EXPOSURES]) == {"teaser-test"}
    # The page, sent as it came, was still read to its end: the next view knows it lacks
    # the teaser (not held, nothing counted).
    again, _, first_at = _get(default_hold_control_proxy,
                              "/about?slots=none&size=20000&pause=4000&wait=3")
    assert first_at < 1.0 and _profile(again)[STATE_EXPOSURES] == {}


def test_the_time_bound_holds_when_the_first_kib_comes_late(
        default_hold_proxy: Server) -> None:
    # No charset in the Content-Type: the first KiB is read for it, and comes at 1 s;
    # then the origin renders 3 s before the slots. The page's first bytes go out with
    # that KiB (a tag holding a slot could still begin in bytes before it), not at the
    # page's end.
    response, body, first_at = _get(
        default_hold_proxy, "/late?slots=end&size=20000&charset=0&parts=b500,w1,b4000,w3,rest")
    assert 0.9 <= first_at < 2.5, first_at
    assert b"<h1>New hero</h1>" in body and body.endswith(b"</main></body></html>")


def test_a_page_without_charset_that_stalls_before_its_first_kib_goes_out_on_time(
        default_hold_proxy: Server) -> None:
    # 500 bytes with the slots, then 2 s of rendering: the charset is read from what came
    # once the bound has passed (as a browser waits for the first KiB at most 500 ms),
    # on the path's first view (held) as on the next (its slots known).
    for view in ("first", "next"):
        response, body, first_at = _get(
            default_hold_proxy, "/stalls?slots=top&size=20000&charset=0&parts=b500,w2,rest")
        assert first_at < 0.9, (view, first_at)
        assert b"<h1>New hero</h1>" in body and body.endswith(b"</main></body></html>")
        assert response.headers["x-ep-variant"].startswith("hero=hero-rule,promo=")


def test_a_compressed_page_found_broken_while_its_head_waits_is_a_502(
        default_hold_proxy: Server) -> None:
    # The gzip's first half (a page read far enough to know its charset), then garbage,
    # then the origin goes on 2 s: nothing of the page reached the visitor, so the 502 can
    # still be said (the hold's time bound must not send what was held).
    response = httpx.get(default_hold_proxy.url + "/broken?slots=end&size=200000&gzip=1"
                         "&junk=1&parts=h,w0.1,b4100,w2,rest", headers=PAGE, timeout=30)
    assert response.status_code == 502
    assert "x-ep-variant" not in response.headers
