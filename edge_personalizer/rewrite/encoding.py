"""Content codings (gzip, deflate, br) and character sets of HTML responses.

Decoders check the compressed stream to its end: truncated, corrupt or followed by other
bytes, a body raises BrokenEncoding (a BodyDecodingError that also aborts the rewrite)
instead of passing for a shorter page.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, Protocol

import brotli

from ..errors import BodyDecodingError
from .recovery import RewriteAborted

# Encodings in which every ASCII byte stands for itself, so tags are found byte-wise and
# ASCII-only insertions (non-ASCII as character references) are safe.
_ASCII_COMPATIBLE: Final = re.compile(
    r"^(utf-?8|us-ascii|ascii|iso-8859-\d+|latin-?1|windows-125\d|cp125\d|koi8-[ru]|"
    r"shift[_-]jis|sjis|windows-31j|euc-jp|euc-kr|gbk|gb2312|gb18030|big5|x-mac-\w+|"
    r"macintosh|tis-620|windows-874)$")
_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
# A comment (`<!-->` and `<!--->` are whole ones), or the start of one the window cuts:
# browsers look for the <meta> outside.
_COMMENT: Final = re.compile(rb"<!--(?:>|->|.*?-->|.*\Z)", re.DOTALL)
SNIFF_BYTES: Final = 1024
# UTF-8 and its subset (what most pages declare: no pattern to match)
_UTF8: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
# The most a compressed body is decompressed into at once: a chunk of a page that
# compresses well (a few KB to many MB) is read in pieces, never whole.
PIECE: Final = 64 * 1024


def charset_from_content_type(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() or None
    return None


def sniff_meta_charset(prefix: bytes) -> str | None:
    """The charset a `<meta>` in the first KiB declares, as browsers look for it (not
    in a comment)."""
    if prefix.find(b"<!--", 0, SNIFF_BYTES) >= 0:
        prefix = _COMMENT.sub(b"", prefix[:SNIFF_BYTES])
    match = _META_CHARSET.search(prefix, 0, SNIFF_BYTES)
    return match.group(1).decode("ascii").lower() if match else None


def rewritable_charset(charset: str | None) -> bool:
    """Whether a page in this charset can be rewritten without mojibake (no charset: the
    page is taken as UTF-8 or one of its ASCII-compatible kin, which is what it is)."""
    return charset is None or charset in _UTF8 or bool(_ASCII_COMPATIBLE.match(charset))


def is_utf8(charset: str | None) -> bool:
    """Whether the page says it is UTF-8 (or ASCII). One that names no charset is not
    taken for it: a browser may read it as windows-1252, and what is inserted is then
    written in character references, right whatever the browser takes it for."""
    return charset in _UTF8


class BrokenEncoding(BodyDecodingError, RewriteAborted):
    """A compressed body that cannot be whole: the rewrite stops, and the client's
    connection closes like for any broken body (a page that merely looks complete
    would be worse)."""


class Decoder(Protocol):
    """A streaming decoder of one response body's content coding.

    `pieces` (and `decompress`, all of them as one) raises BrokenEncoding on corrupt data
    or bytes after the end of the compressed stream; `flush` raises it when the stream
    stopped before its end (a truncated body must never pass for a complete, shorter page:
    issue 20)."""

    def pieces(self, data: bytes) -> Iterator[bytes]: ...
    def decompress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Inflate:
    """gzip (members back to back, then NUL padding at most) or deflate (zlib-wrapped, or
    raw as some servers send it), checked to the end of the stream."""

    def __init__(self, *, gzip: bool) -> None:
        self._gzip = gzip
        self._inner = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16) if gzip else None
        self._first = b""   # deflate: its first bytes, until the header can be told
        self._padded = False
        self._started = False

    def decompress(self, data: bytes) -> bytes:
        return b"".join(self.pieces(data))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """`data` decompressed, in pieces of at most PIECE bytes."""
        if not data:
            return
        self._started = True
        try:
            yield from self._pieces(data)
        except zlib.error as exc:
            raise BrokenEncoding(f"corrupt {self._name} body: {exc}") from exc

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        if self._inner is None:
            data = self._first + data
            if len(data) < 2:
                self._first = data
                return
            self._first = b""
            self._inner = zlib.decompressobj(wbits=zlib.MAX_WBITS if _zlib_header(data)
                                             else -zlib.MAX_WBITS)
        while True:
            if self._inner.eof:
                data = self._after_end(data) if data else b""
                if not data:
                    return
            out = self._inner.decompress(data, PIECE)
            data = self._inner.unused_data if self._inner.eof else self._inner.unconsumed_tail
            if out:
                yield out
            if not data and len(out) < PIECE:
                return   # (a full piece: zlib may hold more output, asked for above)

    def _after_end(self, data: bytes) -> bytes:
        """Bytes past a member's end: the next gzip member (returned to be fed), NUL
        padding (dropped), else BrokenEncoding."""
        if self._gzip and not self._padded and data[0] == 0x1F:
            self._inner = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            return data
        if self._gzip and not data.strip(b"\x00"):
            self._padded = True
            return b""
        raise BrokenEncoding(f"{len(data)} bytes after the end of the {self._name} body")

    def flush(self) -> bytes:
        if not self._started:
            return b""   # no body at all (a HEAD, an empty page): nothing was cut off
        inner = self._inner
        tail = inner.flush() if inner is not None else b""
        if inner is None or not inner.eof:
            raise BrokenEncoding(f"{self._name} body truncated (its stream does not end)")
        return tail

    @property
    def _name(self) -> str:
        return "gzip" if self._gzip else "deflate"


def _zlib_header(data: bytes) -> bool:
    """Whether `data` opens with a zlib header (RFC 1950), not raw deflate."""
    return data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


# brotli's output buffer is made of blocks (32 KiB, then 64, 128 KiB...) added until it
# holds at least the limit asked for: the smallest limit takes one block per call, pieces of
# 32 KiB, where a limit of PIECE would make pieces of 96 KiB.
_BROTLI_OUTPUT_LIMIT: Final = 1


class _Brotli:
    """brotli, checked to the end of the stream (bytes after it are an error)."""

    def __init__(self) -> None:
        self._inner = brotli.Decompressor()
        self._started = False

    def decompress(self, data: bytes) -> bytes:
        return b"".join(self.pieces(data))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """`data` decompressed, in pieces of at most PIECE bytes."""
        if not data:
            return
        self._started = True
        if self._inner.is_finished():
            raise BrokenEncoding(f"{len(data)} bytes after the end of the br body")
        try:
            yield from self._pieces(data)
        except brotli.error as exc:
            raise BrokenEncoding(f"corrupt br body (or bytes after its end): {exc}") from exc

    def _pieces(self, data: bytes) -> Iterator[bytes]:
        # A full piece leaves the rest of `data` (and of its output) in the decoder, which
        # then takes empty input until all is out: an empty piece means nothing is left.
        while True:
            out: bytes = self._inner.process(data, output_buffer_limit=_BROTLI_OUTPUT_LIMIT)
            if not out:
                return
            yield out
            data = b""

    def flush(self) -> bytes:
        if self._started and not self._inner.is_finished():
            raise BrokenEncoding("br body truncated (its stream does not end)")
        return b""


class _Identity:
    def pieces(self, data: bytes) -> Iterator[bytes]:
        if data:
            yield data

    def decompress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


_IDENTITY: Final = _Identity()   # stateless: one for every response


def decoder_for(coding: str) -> Decoder | None:
    """A streaming decoder for a Content-Encoding value; None when we cannot decode it."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return _IDENTITY
    if coding in ("gzip", "x-gzip"):
        return _Inflate(gzip=True)
    if coding == "deflate":
        return _Inflate(gzip=False)
    if coding == "br":
        return _Brotli()
    return None


# What a rewritten page costs to compress (bench/compression.py, bench/results/
# compression.json): brotli quality 3 and gzip level 4 take a 100 KB shop page to ~22 KB
# for about a millisecond of CPU; quality 4-5 or level 6 cost 2-5 times more for 2-8%
# smaller pages, quality 1 or level 1 save a third of the time for 10-20% larger ones.
BROTLI_QUALITY: Final = 3
BROTLI_WINDOW: Final = 18    # 256 KiB: a window as large as most pages, and bounded memory
GZIP_LEVEL: Final = 4


class Encoder(Protocol):
    """A streaming content coder: `encode()` returns bytes a client can decode as far as
    they go (flushed), `finish()` the end of the stream."""

    def encode(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes: ...


class GzipEncoder:
    """Streaming gzip for clients that accept it, flushed per chunk so bytes keep flowing."""

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self._inner = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)

    def encode(self, data: bytes) -> bytes:
        return self._inner.compress(data) + self._inner.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._inner.flush(zlib.Z_FINISH)


class BrotliEncoder:
    """Streaming brotli, flushed per chunk like GzipEncoder."""

    def __init__(self, quality: int = BROTLI_QUALITY) -> None:
        self._inner = brotli.Compressor(mode=brotli.MODE_TEXT, quality=quality,
                                        lgwin=BROTLI_WINDOW)

    def encode(self, data: bytes) -> bytes:
        return bytes(self._inner.process(data)) + bytes(self._inner.flush())

    def finish(self) -> bytes:
        return bytes(self._inner.finish())


_ENCODERS: Final[Mapping[str, Callable[[], Encoder]]] = MappingProxyType(
    {"br": BrotliEncoder, "gzip": GzipEncoder})


def _acceptable(accept_encoding: str) -> dict[str, float]:
    """Accept-Encoding as coding -> q (RFC 9110 12.5.3), names lower-cased."""
    out: dict[str, float] = {}
    if not accept_encoding:
        return out
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        coding = coding.strip()
        if not coding:
            continue
        q = 1.0
        for param in params.split(";") if params else ():
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        out[coding] = q
    return out


def preferred_coding(accept_encoding: str) -> str | None:
    """The coding to compress a page with for this client: br, else gzip (by the client's
    q, brotli first on a tie, "*" standing for either), or None for identity."""
    accepted = _acceptable(accept_encoding)
    wildcard = accepted.get("*", 0.0)
    best, best_q = None, 0.0
    for coding in ("br", "gzip"):
        q = accepted.get(coding, wildcard)
        if q > best_q:
            best, best_q = coding, q
    return best


def encoder_for(coding: str) -> Encoder:
    return _ENCODERS[coding]()


def accepts_gzip(accept_encoding: str) -> bool:
    q = _acceptable(accept_encoding)
    return q.get("gzip", q.get("*", 0.0)) > 0
