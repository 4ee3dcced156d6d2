"""A response through decode, charset check, rewrite and encode."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from itertools import pairwise

import brotli
import pytest

from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rewrite.encoding import (
    PIECE,
    accepts_gzip,
    charset_from_content_type,
    preferred_coding,
    rewritable_charset,
    sniff_meta_charset,
)
from edge_personalizer.rewrite.stream import ResponseRewriter, ascii_edit

EDIT = [Edit('[data-ep-slot="hero"]', "inner", "Grüße")]
PAGE = '<html><head><meta charset="{cs}"></head><body><div data-ep-slot="hero">Привет</div>' \
       '<p>{filler}</p></body></html>'


def run(body: bytes, *, content_type: str = "text/html", coding: str = "",
        accept: str = "", chunk: int = 100) -> tuple[bytes, ResponseRewriter]:
    rewriter = ResponseRewriter(EDIT, content_type=content_type, content_encoding=coding,
                                accept_encoding=accept)
    out = b""
    for i in range(0, len(body), chunk):
        piece = rewriter.feed(body[i:i + chunk])
        out += piece or b""
    return out + rewriter.finish(), rewriter


def page(charset: str) -> bytes:
    return PAGE.format(cs=charset, filler="x" * 2000).encode(charset)


def test_utf8_page_gets_utf8_content() -> None:
    out, rewriter = run(page("utf-8"))
    assert rewriter.rewriting and "Grüße" in out.decode("utf-8")
    assert "Привет" not in out.decode("utf-8")


@pytest.mark.parametrize("charset", ["windows-1251", "iso-8859-1", "shift_jis"])
def test_legacy_charsets_get_character_references(charset: str) -> None:
    original = PAGE.format(cs=charset, filler="x" * 2000)
    if charset != "windows-1251":
        original = original.replace("Привет", "old")
    out, rewriter = run(original.encode(charset))
    assert rewriter.rewriting
    assert b"Gr&#252;&#223;e" in out
    text = out.decode(charset)     # still valid in the page's own charset: no mojibake
    assert text.endswith("</p></body></html>")


def test_charset_from_header_wins_and_utf16_passes_through() -> None:
    body = page("utf-16")
    out, rewriter = run(body, content_type="text/html; charset=utf-16")
    assert not rewriter.rewriting and out == body


def test_gzip_origin_is_decoded_and_reencoded_for_gzip_clients() -> None:
    body = gzip.compress(page("utf-8"))
    out, rewriter = run(body, coding="gzip", accept="gzip")
    assert rewriter.content_encoding == "gzip"
    assert "Grüße" in gzip.decompress(out).decode()
    plain, other = run(body, coding="gzip", accept="identity")
    assert other.content_encoding is None and "Grüße" in plain.decode()


@pytest.mark.parametrize(("coding", "compress"), [
    ("deflate", zlib.compress), ("br", brotli.compress)])
def test_deflate_and_brotli_are_read(coding: str, compress: object) -> None:
    out, rewriter = run(compress(page("utf-8")), coding=coding,  # type: ignore[operator]
                        accept="gzip")
    assert rewriter.rewriting and "Grüße" in gzip.decompress(out).decode()


def test_unknown_coding_passes_through() -> None:
    body = b"\x00\x01compressed-somehow" * 100
    out, rewriter = run(body, coding="zstd")
    assert out == body and not rewriter.rewriting and rewriter.content_encoding == "zstd"


def test_short_page_without_charset_is_decided_at_the_end() -> None:
    # (naming no charset, it gets character references: right whatever a browser reads
    # it as)
    out, rewriter = run(b'<div data-ep-slot="hero">x</div>')
    assert out == b'<div data-ep-slot="hero">Gr&#252;&#223;e</div>'
    out, rewriter = run(b'<div data-ep-slot="hero">x</div>',
                        content_type="text/html; charset=utf-8")
    assert out == '<div data-ep-slot="hero">Grüße</div>'.encode()


def test_helpers() -> None:
    assert charset_from_content_type('text/html; charset="UTF-8"') == "utf-8"
    assert charset_from_content_type("text/html") is None
    assert sniff_meta_charset(b'<meta http-equiv="Content-Type" content="text/html; '
                              b'charset=windows-1251">') == "windows-1251"
    assert rewritable_charset("utf-8") and not rewritable_charset("utf-16le")
    assert accepts_gzip("br, gzip;q=0.8") and not accepts_gzip("gzip;q=0")
    assert not accepts_gzip("identity")


@pytest.mark.parametrize(("accept", "expected"), [
    ("gzip, deflate, br, zstd", "br"), ("br;q=0.5, gzip", "gzip"), ("gzip", "gzip"),
    ("br", "br"), ("*", "br"), ("*;q=0.1, br;q=0", "gzip"), ("gzip;q=0, br;q=0", None),
    ("identity", None), ("", None), ("deflate", None), ("GZIP ; Q=0.9", "gzip"),
    ("br;q=oops, gzip", "gzip"),
])
def test_the_client_gets_the_coding_it_prefers(accept: str, expected: str | None) -> None:
    assert preferred_coding(accept) == expected


@pytest.mark.parametrize(("accept", "decompress"), [
    ("gzip, deflate, br", brotli.decompress), ("gzip", gzip.decompress)])
def test_an_uncompressed_origin_page_is_compressed_for_clients_that_accept_it(
        accept: str, decompress: Callable[[bytes], bytes]) -> None:
    body = page("utf-8") * 20
    rewriter = ResponseRewriter(EDIT, content_type="text/html", content_encoding="",
                                accept_encoding=accept)
    pieces = [rewriter.feed(body[i:i + 4096]) or b"" for i in range(0, len(body), 4096)]
    assert rewriter.content_encoding == accept.split(",")[-1].strip()
    # Every piece decodes as far as it goes (flushed): the first bytes leave at once.
    assert "Grüße" in decompress_prefix(accept, pieces[0]).decode()
    whole = b"".join(pieces) + rewriter.finish()
    assert decompress(whole) == body.replace("Привет".encode(), "Grüße".encode(), 1)
    assert len(whole) < len(body) / 5
    assert not rewriter.verbatim   # encoded as it streams


def decompress_prefix(accept: str, data: bytes) -> bytes:
    if accept == "gzip":
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16).decompress(data)
    return bytes(brotli.Decompressor().process(data))


def test_verbatim_once_the_edits_are_behind_and_nothing_is_recoded() -> None:
    body = page("utf-8")
    rewriter = ResponseRewriter(EDIT, content_type="text/html", content_encoding="",
                                accept_encoding="identity")
    assert rewriter.feed(body[:200]) is None and not rewriter.verbatim   # still sniffing
    rewriter.feed(body[200:])
    assert rewriter.verbatim   # the slot closed in what was fed: the rest is unchanged
    compressed = ResponseRewriter(EDIT, content_type="text/html", content_encoding="gzip",
                                  accept_encoding="gzip")
    compressed.feed(gzip.compress(body))
    assert compressed.decided and not compressed.verbatim   # re-encoded as it streams
    late = ResponseRewriter([Edit('[data-ep-slot="late"]', "inner", "x")],
                            content_type="text/html", content_encoding="",
                            accept_encoding="")
    late.feed(body)
    assert not late.verbatim   # the edit has not happened yet


def _pieces(rewriter: ResponseRewriter, chunk: bytes) -> list[bytes]:
    """What a chunk makes, piece by piece (feed_piece, then next_piece while pending)."""
    made = [rewriter.feed_piece(chunk) or b""]
    while rewriter.pending:
        made.append(rewriter.next_piece())
    return made


@pytest.mark.parametrize(("coding", "compress"), [
    ("gzip", gzip.compress), ("deflate", zlib.compress), ("br", brotli.compress)])
def test_a_compressed_chunk_is_rewritten_a_piece_at_a_time(
        coding: str, compress: Callable[[bytes], bytes]) -> None:
    body = page("utf-8") * 500   # ~1.2 MB of page in a chunk of a few KB
    rewriter = ResponseRewriter(EDIT, content_type="text/html", content_encoding=coding,
                                accept_encoding="identity")
    made, read = [], []
    for piece in _pieces(rewriter, compress(body)):
        made.append(piece)
        read.append(rewriter.read)
    assert len(made) > 10 and max(len(piece) for piece in made) <= PIECE + 100
    assert all(later - earlier <= PIECE for earlier, later in pairwise(read))
    out = b"".join(made) + rewriter.finish()
    assert out == body.replace("Привет".encode(), "Grüße".encode(), 1)
    assert rewriter.read == len(body)
    whole = ResponseRewriter(EDIT, content_type="text/html", content_encoding=coding,
                             accept_encoding="identity")
    assert (whole.feed(compress(body)) or b"") + whole.finish() == out   # feed: all at once


def test_an_uncompressed_chunk_is_one_piece() -> None:
    body = page("utf-8") * 50
    rewriter = ResponseRewriter(EDIT, content_type="text/html", content_encoding="",
                                accept_encoding="identity")
    out = rewriter.feed_piece(body)
    assert not rewriter.pending and rewriter.next_piece() == b""
    assert out == body.replace("Привет".encode(), "Grüße".encode(), 1)
    assert rewriter.read == len(body)


def test_every_piece_of_a_chunk_is_read_before_the_next_chunk_or_the_end() -> None:
    body = gzip.compress(page("utf-8") * 100)
    rewriter = ResponseRewriter(EDIT, content_type="text/html", content_encoding="gzip",
                                accept_encoding="identity")
    rewriter.feed_piece(body[:len(body) // 2])
    assert rewriter.pending
    with pytest.raises(RuntimeError):
        rewriter.feed_piece(body[len(body) // 2:])
    with pytest.raises(RuntimeError):
        rewriter.finish()


def test_text_outside_ascii_is_written_as_references_the_page_shows_as_text() -> None:
    # Text's references were escaped again by the rewriter: visitors read "Caf&#233;".
    edit = Edit('[data-ep-slot="hero"]', "text", "Café & <crème>")
    rewriter = ResponseRewriter((edit,), content_type="text/html; charset=windows-1252",
                                content_encoding="", accept_encoding="")
    body = '<p data-ep-slot="hero">x</p>'.encode("windows-1252")
    out = (rewriter.feed(body) or b"") + rewriter.finish()
    assert out == b'<p data-ep-slot="hero">Caf&#233; &amp; &lt;cr&#232;me&gt;</p>'
    kept = Edit('[data-ep-slot="hero"]', "text", "plain & ascii")
    assert ascii_edit(kept) is kept   # nothing outside ASCII: the edit itself
    gone = Edit('[data-ep-slot="hero"]', "remove_class", "café")
    assert ascii_edit(gone) is gone   # matched as the page writes it
