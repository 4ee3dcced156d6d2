"""Content codings: decoders checked to the end of the stream, the gzip encoder, charsets.

The regression tests of issue 20 (item 3) put the real server between a raw-socket origin
that sends a damaged compressed page and a client: the rewritten page must never come out
as a complete, shorter page."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import brotli
import httpx
import pytest

from edge_personalizer.errors import BodyDecodingError
from edge_personalizer.rewrite.encoding import (
    PIECE,
    GzipEncoder,
    decoder_for,
    sniff_meta_charset,
)
from edge_personalizer.rewrite.recovery import RewriteAborted

from ..http.raw_origin import ThreadedOrigin, request_head
from ..servers import Server, start_proxy

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = ('<!doctype html><html><head><title>t</title></head><body>'
        '<section data-ep-slot="hero"><h1>Default hero</h1></section>'
        + "".join(f"<p>paragraph {i} of a long page</p>" for i in range(2000))
        + "</body></html>").encode()
FACEBOOK = {"accept": "text/html", "referer": "https://l.facebook.com/l.php?u=x",
            "accept-encoding": "identity",
            "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                          "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODINGS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}


def decode(coding: str, data: bytes, step: int = 97) -> bytes:
    decoder = decoder_for(coding)
    assert decoder is not None
    out = b"".join(decoder.decompress(data[i:i + step]) for i in range(0, len(data), step))
    return out + decoder.flush()


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_a_whole_stream_decodes_in_any_pieces(coding: str) -> None:
    for step in (1, 7, 4096):
        assert decode(coding, CODINGS[coding](PAGE), step) == PAGE


@pytest.mark.parametrize("coding", sorted(CODINGS))
@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:len(data) // 2], "truncated"),
    (lambda data: data[:-1], "truncated|corrupt"),
    (lambda data: data + b"<p>garbage</p>", "after the end|corrupt"),
    (lambda data: data + data, "after the end|corrupt"),
])
def test_a_damaged_stream_is_an_error_never_a_shorter_page(
        coding: str, damage: Callable[[bytes], bytes], message: str) -> None:
    if coding == "gzip" and damage(b"ab") == b"abab":
        return   # gzip members back to back are one valid body (below)
    with pytest.raises(BodyDecodingError, match=message) as caught:
        decode(coding, damage(CODINGS[coding](PAGE)))
    assert isinstance(caught.value, RewriteAborted)   # the rewrite stops: the connection closes


# A page that compresses well: some 10 MB in a few KB (a chunk of it, decompressed whole,
# would cost a worker all of that at once).
LARGE = PAGE.replace(b"</body>", b"<p>Lorem ipsum dolor sit amet.</p>" * 300_000 + b"</body>")


def pieces(coding: str, data: bytes, step: int) -> Iterator[bytes]:
    decoder = decoder_for(coding)
    assert decoder is not None
    for i in range(0, len(data), step):
        yield from decoder.pieces(data[i:i + step])
    yield decoder.flush()


@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_a_large_body_is_decompressed_a_piece_at_a_time(coding: str) -> None:
    body = CODINGS[coding](LARGE)
    assert len(body) < PIECE
    for step in (len(body), 1000):
        sizes = [len(piece) for piece in pieces(coding, body, step)]
        assert max(sizes) <= PIECE and sum(sizes) == len(LARGE)
    assert b"".join(pieces(coding, body, len(body))) == LARGE


@pytest.mark.parametrize("coding", sorted(CODINGS))
@pytest.mark.parametrize(("damage", "message"), [
    (lambda data: data[:-1], "truncated|corrupt"),
    (lambda data: data + b"<p>garbage</p>", "after the end|corrupt"),
    (lambda data: data[:len(data) // 2] + b"\xff" * 64 + data[len(data) // 2:],
     "corrupt|truncated"),
])
def test_a_damaged_large_body_in_one_chunk_is_still_an_error(
        coding: str, damage: Callable[[bytes], bytes], message: str) -> None:
    # The damage comes with megabytes still to decompress: found as the pieces come (or
    # at the end, for a stream that reads as one cut short).
    body = damage(CODINGS[coding](LARGE))
    with pytest.raises(BodyDecodingError, match=message):
        for piece in pieces(coding, body, len(body)):
            assert len(piece) <= PIECE


def test_gzip_members_back_to_back_and_nul_padding_are_one_body() -> None:
    data = gzip.compress(PAGE[:1000]) + gzip.compress(PAGE[1000:])
    assert decode("gzip", data) == PAGE
    assert decode("gzip", gzip.compress(PAGE) + b"\0" * 10) == PAGE
    with pytest.raises(BodyDecodingError):
        decode("gzip", gzip.compress(PAGE) + b"\0\0x")


def test_deflate_raw_or_zlib_wrapped_and_empty_bodies() -> None:
    assert decode("deflate", raw_deflate(PAGE)) == PAGE
    assert decode("deflate", raw_deflate(PAGE), step=1) == PAGE
    with pytest.raises(BodyDecodingError, match="truncated"):
        decode("deflate", raw_deflate(PAGE)[:-3])
    for coding in CODINGS:   # no body at all (a HEAD, a 204): nothing was cut off
        assert decode(coding, b"") == b""
    assert decoder_for("identity") is not None and decoder_for("zstd") is None


def test_streaming_gzip_round_trip() -> None:
    encoder = GzipEncoder()
    data = encoder.encode(b"part one, ") + encoder.encode(b"part two") + encoder.finish()
    assert gzip.decompress(data) == b"part one, part two"


def test_meta_charset_is_found_only_in_the_first_kib() -> None:
    assert sniff_meta_charset(b'<meta charset="Shift_JIS">') == "shift_jis"
    assert sniff_meta_charset(b" " * 2000 + b'<meta charset="koi8-r">') is None


def test_meta_charset_is_not_looked_for_in_a_comment() -> None:
    # As browsers look for it: the <meta> in the comment is an old one.
    assert sniff_meta_charset(b'<head><!-- old: <meta charset="utf-8"> -->'
                              b'<meta charset="windows-1252">') == "windows-1252"
    assert sniff_meta_charset(b'<!-- <meta charset="utf-8"> ' + b"x" * 2000) is None
    for empty in (b"<!-->", b"<!--->"):   # whole comments, as browsers read them
        assert sniff_meta_charset(empty + b'<meta charset="koi8-r"><!-- -->') == "koi8-r"
    assert sniff_meta_charset(b"<!-- a --><!-- b -->" + b" " * 990
                              + b'<meta charset="koi8-r">') is None   # past the first KiB


def test_a_page_of_no_known_charset_gets_character_references(tmp_path: Path) -> None:
    # Taken for UTF-8, a page of no declared charset (or one only a comment names) got
    # UTF-8 bytes a browser reading it as windows-1252 shows as "cafÃ©".
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(
        'slots: {hero: {}, note: {}}\nrules:\n  - name: r\n'
        '    then: {hero: {html: "<h1>Café</h1>"}, note: {text: "Café & <crème>"}}\n')
    pages = {
        "/none": b'<html><head><title>' + b"t" * 1500 + b'</title><meta charset="windows-1252">'
                 b'</head><body><section data-ep-slot="hero">x</section>'
                 b'<p data-ep-slot="note">n</p></body></html>',
        "/commented": b'<html><head><!-- old: <meta charset="utf-8"> -->'
                      b'<meta charset="windows-1252"></head>'
                      b'<body><section data-ep-slot="hero">x</section></body></html>',
        "/utf8": b'<html><head><meta charset="utf-8"></head>'
                 b'<body><section data-ep-slot="hero">x</section></body></html>'}

    async def origin(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await request_head(reader)
            except asyncio.IncompleteReadError:
                return
            body = pages[head.split(b" ")[1].decode()]
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                         b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
            await writer.drain()

    with ThreadedOrigin(origin) as origin_url:
        server = start_proxy(tmp_path, "--origin", origin_url, "--rules", str(rules))
        try:
            got = {path: httpx.get(server.url + path, headers=FACEBOOK).content
                   for path in pages}
        finally:
            server.stop()
    assert b"<h1>Caf&#233;</h1>" in got["/none"] and b"<h1>Caf&#233;</h1>" in got["/commented"]
    # text is written as text: its references are not escaped again (Caf&amp;#233;)
    assert b'<p data-ep-slot="note">Caf&#233; &amp; &lt;cr&#232;me&gt;</p>' in got["/none"]
    assert "<h1>Café</h1>".encode() in got["/utf8"]


# Through the real server (issue 20, item 3)


def damaged(coding: str, damage: str) -> bytes:
    body = CODINGS[coding](PAGE)
    if damage == "truncated":
        return body[:len(body) * 2 // 3]
    if damage == "garbage-after":
        return body + b"<p>garbage</p>"
    return body


async def damaged_pages(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers GET /{coding}/{damage}/{split} with the page in that coding and damage (its
    Content-Length right for the damaged bytes); in two writes a moment apart for "split",
    so the first part is rewritten and out before the damage arrives."""
    while True:
        try:
            head = await request_head(reader)
        except asyncio.IncompleteReadError:
            return
        coding, damage, split = head.split(b" ")[1].decode().strip("/").split("/")
        body = damaged(coding, damage)
        answer = (b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
                  b"Content-Encoding: %b\r\nContent-Length: %d\r\n\r\n%b"
                  % (coding.encode(), len(body), body))
        if split == "split":
            cut = len(answer) - len(body) + len(body) // 3
            writer.write(answer[:cut])
            await writer.drain()
            await asyncio.sleep(0.2)
            answer = answer[cut:]
        writer.write(answer)
        await writer.drain()


@pytest.fixture(scope="module")
def proxy(server_logs: Path) -> Iterator[Server]:
    """The real server in front of the damaged-pages origin, rewriting for Facebook visitors."""
    with ThreadedOrigin(damaged_pages) as origin_url:
        server = start_proxy(server_logs, "--origin", origin_url,
                             "--rules", str(ROOT / "tests" / "data" / "rules"),
                             "--read-timeout", "2")
        yield server
        server.stop()


def get_page(proxy: Server, path: str) -> tuple[int, bytes] | None:
    """Status and body of the page; None when the connection broke before its end."""
    try:
        with httpx.stream("GET", proxy.url + path, headers=FACEBOOK, timeout=5) as response:
            return response.status_code, b"".join(response.iter_raw())
    except httpx.RemoteProtocolError:
        return None


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
@pytest.mark.parametrize("damage", ["truncated", "garbage-after"])
def test_a_damaged_compressed_page_breaks_the_client_connection(
        proxy: Server, coding: str, damage: str) -> None:
    assert get_page(proxy, f"/{coding}/{damage}/split") is None
    # In one piece: never a complete-looking 200 either.
    answer = get_page(proxy, f"/{coding}/{damage}/whole")
    assert answer is None or answer[0] >= 500


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_an_intact_compressed_page_is_rewritten(proxy: Server, coding: str) -> None:
    for split in ("split", "whole"):
        answer = get_page(proxy, f"/{coding}/intact/{split}")
        assert answer is not None and answer[0] == 200
        assert b"Hello, friend from Facebook" in answer[1]
        assert answer[1].endswith(b"</body></html>")
