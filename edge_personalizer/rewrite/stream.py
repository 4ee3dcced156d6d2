"""One HTML response through the rewriter: decode, check the charset, rewrite, encode.

The first KiB is held back until the charset is known (header, else `<meta>`); a page in
an encoding that cannot be rewritten safely, or in a content coding we cannot decode,
passes through byte for byte instead. A rewritten page is compressed as it streams for a
client that accepts brotli or gzip, flushed at every chunk so its first bytes still leave
at once.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator, Sequence

from .edits import Edit
from .encoding import (
    SNIFF_BYTES,
    Decoder,
    Encoder,
    charset_from_content_type,
    decoder_for,
    encoder_for,
    is_utf8,
    preferred_coding,
    rewritable_charset,
    sniff_meta_charset,
)
from .first_bytes import FirstBytesMemo
from .html import Rewriter


def ascii_safe(markup: str) -> str:
    """Non-ASCII characters as character references: right in any ASCII-compatible page."""
    return markup.encode("ascii", "xmlcharrefreplace").decode("ascii")


def ascii_edit(edit: Edit) -> Edit:
    """`edit` with what it writes outside ASCII as character references. Text is written
    as HTML for it (the rewriter would escape the references of text); a class to remove
    is matched as the page writes it, and stays."""
    payload = edit.payload
    if payload.isascii() or edit.action == "remove_class":
        return edit
    if edit.action == "text":
        return Edit(edit.selector, "inner", ascii_safe(html.escape(payload, quote=False)),
                    edit.attribute, edit.first_only)
    return Edit(edit.selector, edit.action, ascii_safe(payload), edit.attribute,
                edit.first_only)


class ResponseRewriter:
    """Feed it the origin's body chunks as they come; it answers with what to send.

    `feed()` returns None while the first KiB is held back; once `decided`, `rewriting`
    says whether edits apply and `content_encoding` what the output is encoded with.
    `read` counts the bytes of the page taken in, decompressed: a compressed chunk is
    rewritten (and compressed again) a piece at a time, never decompressed whole.

    `feed()` returns what a whole chunk makes; `feed_piece()` only what its first piece
    makes (PIECE bytes decompressed at most), and while `pending`, `next_piece()` makes
    the next: a chunk that decompresses to many MB is then never held whole, neither
    decompressed nor rewritten. Every piece of a chunk is taken before the next chunk is
    fed, or the page finished.
    """

    def __init__(self, edits: Sequence[Edit], *, content_type: str, content_encoding: str,
                 accept_encoding: str, head: str = "", body_end: str = "",
                 on_error: Callable[[Exception], None] | None = None,
                 memo: FirstBytesMemo | None = None, probes: Sequence[str] = ()) -> None:
        self._memo = memo
        self._edits = edits
        self._probes = probes
        self._head = head
        self._body_end = body_end
        self._on_error = on_error
        self._charset = charset_from_content_type(content_type)
        self._original_coding = content_encoding.strip().lower()
        self._decoder: Decoder | None = decoder_for(self._original_coding)
        self._plain = self._original_coding in ("", "identity")   # a chunk is one piece
        self._pieces: Iterator[bytes] | None = None   # of the chunk fed last, not yet read
        self.pending = False   # pieces of the chunk fed last may be left for next_piece()
        self._accept_encoding = accept_encoding
        self._held_raw: list[bytes] = []
        self._held_plain: list[bytes] = []
        self._held_size = 0
        self._rewriter: Rewriter | None = None
        self._encoder: Encoder | None = None
        self.decided = False
        self.rewriting = False
        self.read = 0
        self.content_encoding: str | None = content_encoding or None

    def feed(self, chunk: bytes) -> bytes | None:
        """What the whole chunk makes (None while the first KiB is held back)."""
        out = self.feed_piece(chunk)
        if not self.pending:
            return out
        made = [out or b""]
        while self.pending:
            made.append(self.next_piece())
        return b"".join(made)

    def feed_piece(self, chunk: bytes) -> bytes | None:
        """What the chunk's first piece makes (None while the first KiB is held back);
        `next_piece()` makes the rest while `pending`."""
        if self.pending:
            raise RuntimeError("a chunk fed before its last has been read whole")
        if self.decided:
            return self._through(chunk)
        self._held_raw.append(chunk)
        if self._decoder is None:           # a coding we cannot read: pass it on
            self.read += len(chunk)
            return self._decide(False)
        # (not compressed: the chunk itself, no generator to make and drop half-read)
        pieces = iter((chunk,) if chunk else ()) if self._plain else self._decoder.pieces(chunk)
        for plain in pieces:
            self.read += len(plain)
            self._held_plain.append(plain)
            self._held_size += len(plain)
            if self._charset is not None or self._held_size >= SNIFF_BYTES:
                out = self._decide(True)
                if self._rewriter is not None and not self._plain:
                    self._pieces, self.pending = pieces, True
                return out
        return None

    def next_piece(self) -> bytes:
        """What the next piece of the chunk fed last makes (b"" once none is left:
        `pending` is then False)."""
        pieces, rewriter = self._pieces, self._rewriter
        if pieces is not None and rewriter is not None:
            for plain in pieces:
                self.read += len(plain)
                return self._encode(rewriter.feed(plain))
        self._pieces, self.pending = None, False
        return b""

    def decide_now(self) -> bytes:
        """Stop waiting for the first KiB (the page stalls before it): the charset is read
        from what came, as a browser does after the same wait; what that makes goes out."""
        return b"" if self.decided else self._decide(self._decoder is not None)

    @property
    def verbatim(self) -> bool:
        """Whether every byte still to come will pass unchanged: edits done and their
        elements closed (or nothing to rewrite), no content coding to undo or redo."""
        if not self.decided:
            return False
        if not self.rewriting:
            return True
        rewriter = self._rewriter
        return (rewriter is not None and (rewriter.bypassed or rewriter.broken)
                and self._encoder is None and self._original_coding in ("", "identity"))

    @property
    def found(self) -> tuple[bool, ...] | None:
        """For each edit, whether its element is in the page (see Rewriter.found); None
        when the page was not read (an encoding it cannot rewrite)."""
        rewriter = self._rewriter
        return rewriter.found if self.rewriting and rewriter is not None else None

    @property
    def inside(self) -> frozenset[tuple[int, int]] | None:
        """Which probed slots' elements are inside which (see Rewriter.inside); None when
        the page was not read."""
        rewriter = self._rewriter
        return rewriter.inside if self.rewriting and rewriter is not None else None

    def finish(self) -> bytes:
        if self.pending:
            raise RuntimeError("a page finished before its last chunk has been read whole")
        out = b""
        if not self.decided:
            out = self._decide(self._decoder is not None)
        if self.rewriting and self._rewriter is not None and self._decoder is not None:
            tail = self._rewriter.feed(self._decoder.flush()) + self._rewriter.finish()
            out += self._encode(tail) + (self._encoder.finish() if self._encoder else b"")
        return out

    def decide_by_headers(self) -> None:
        """Decides, for an answer without a body (a HEAD), what a GET's rewrite would do:
        judged by the headers alone, a charset only a meta tag names taken as readable
        (as a page that names none is)."""
        self.decided = True
        self.rewriting = self._decoder is not None and rewritable_charset(self._charset)
        if self.rewriting:
            self.content_encoding = preferred_coding(self._accept_encoding)

    def close(self) -> None:
        """Done with this response, read to its end or not (see Rewriter.close)."""
        if self._rewriter is not None:
            self._rewriter.close()

    def _decide(self, readable: bool) -> bytes:
        self.decided = True
        held = self._held_plain
        plain = held[0] if len(held) == 1 else b"".join(held)   # usually one chunk: no copy
        charset = self._charset or (self._memo.charset(plain) if self._memo is not None
                                    else sniff_meta_charset(plain))
        self.rewriting = readable and rewritable_charset(charset)
        if not self.rewriting:
            return b"".join(self._held_raw)
        if not is_utf8(charset) and not all(e.payload.isascii() for e in self._edits):
            self._edits = tuple(ascii_edit(e) for e in self._edits)
        if not is_utf8(charset):
            self._head, self._body_end = ascii_safe(self._head), ascii_safe(self._body_end)
        self._rewriter = Rewriter(self._edits, head=self._head, body_end=self._body_end,
                                  on_error=self._on_error, memo=self._memo,
                                  probes=self._probes)
        # Compressed for a client that accepts it (brotli first), whatever the origin sent:
        # the proxy asks the origin for identity when it will rewrite (issue 18, bug 5).
        coding = preferred_coding(self._accept_encoding)
        self._encoder = encoder_for(coding) if coding is not None else None
        self.content_encoding = coding
        out = self._rewriter.feed(plain)
        self._held_plain = []
        self._held_raw = []
        return self._encode(out)

    def _through(self, chunk: bytes) -> bytes:
        rewriter = self._rewriter
        if not self.rewriting or rewriter is None or self._decoder is None:
            self.read += len(chunk)
            return chunk
        if self._plain:   # (no decoder to go through)
            self.read += len(chunk)
            return self._encode(rewriter.feed(chunk)) if chunk else b""
        self._pieces, self.pending = self._decoder.pieces(chunk), True
        return self.next_piece()

    def _encode(self, data: bytes) -> bytes:
        if self._encoder is None or not data:
            return data
        return self._encoder.encode(data)
