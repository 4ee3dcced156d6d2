"""Content codings (gzip, deflate, br) and character sets of HTML responses."""

from __future__ import annotations

import re
import zlib
from typing import Protocol

import brotli

# Encodings in which every ASCII byte stands for itself, so tags are found byte-wise and
# ASCII-only insertions (non-ASCII as character references) are safe.
_ASCII_COMPATIBLE = re.compile(
    r"^(utf-?8|us-ascii|ascii|iso-8859-\d+|latin-?1|windows-125\d|cp125\d|koi8-[ru]|"
    r"shift[_-]jis|sjis|windows-31j|euc-jp|euc-kr|gbk|gb2312|gb18030|big5|x-mac-\w+|"
    r"macintosh|tis-620|windows-874)$")
_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
SNIFF_BYTES = 1024


def charset_from_content_type(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower() or None
    return None


def sniff_meta_charset(prefix: bytes) -> str | None:
    """The charset a `<meta>` in the first KiB declares, as browsers look for it."""
    match = _META_CHARSET.search(prefix, 0, SNIFF_BYTES)
    return match.group(1).decode("ascii").lower() if match else None


def rewritable_charset(charset: str | None) -> bool:
    """Whether a page in this charset can be rewritten without mojibake (no charset: the
    page is taken as UTF-8 or one of its ASCII-compatible kin, which is what it is)."""
    return charset is None or bool(_ASCII_COMPATIBLE.match(charset))


def is_utf8(charset: str | None) -> bool:
    return charset in (None, "utf-8", "utf8", "us-ascii", "ascii")


class Decoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Brotli:
    def __init__(self) -> None:
        self._inner = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._inner.process(data))

    def flush(self) -> bytes:
        return b""


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


_IDENTITY = _Identity()   # stateless: one for every response


def decoder_for(coding: str) -> Decoder | None:
    """A streaming decoder for a Content-Encoding value; None when we cannot decode it."""
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return _IDENTITY
    if coding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    if coding == "deflate":
        return zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)   # zlib or raw, auto
    if coding == "br":
        return _Brotli()
    return None


class GzipEncoder:
    """Streaming gzip for clients that accept it, flushed per chunk so bytes keep flowing."""

    def __init__(self, level: int = 5) -> None:
        self._inner = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)

    def encode(self, data: bytes) -> bytes:
        return self._inner.compress(data) + self._inner.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._inner.flush(zlib.Z_FINISH)


def accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip() in ("gzip", "*"):
            q = params.strip().removeprefix("q=")
            return not (params.strip().startswith("q=") and q.strip() in ("0", "0.0", "0.00"))
    return False
