"""The streaming HTML rewriter: the one module that imports lol-html (python-lolhtml).

Chosen by measurement (bench/README.md): lol-html streams (output flows while input is
still arriving, correct when a tag spans two chunks) and leaves every byte it does not
change as it was; selectolax would buffer the whole page first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import lolhtml

from .bypass import marker_element, marker_slot, marker_tag, marker_value, slot_end
from .first_bytes import FirstBytesMemo

# What an edit can do to its element (the rule files' slot actions name these).
EditAction = Literal["inner", "replace", "append", "prepend", "before", "after", "remove",
                     "text", "set_attribute", "remove_attribute", "add_class",
                     "remove_class"]

logger = logging.getLogger(__name__)

_HTML = lolhtml.ContentType.HTML
_TEXT = lolhtml.ContentType.TEXT


@dataclass(frozen=True)
class Edit:
    """One change: what to do to the elements a selector finds."""

    selector: str
    action: EditAction
    payload: str = ""                 # HTML, text, attribute value or class names
    attribute: str | None = None
    first_only: bool = True           # a slot is one element: later matches are left alone


def _classes(value: str | None) -> list[str]:
    return value.split() if value else []


def _apply(edit: Edit, element: lolhtml.Element) -> None:
    action = edit.action
    if action == "inner":
        element.set_inner_content(edit.payload, _HTML)
    elif action == "replace":
        element.before(edit.payload, _HTML)
        element.remove()
    elif action == "append":
        element.append(edit.payload, _HTML)
    elif action == "prepend":
        element.prepend(edit.payload, _HTML)
    elif action == "before":
        element.before(edit.payload, _HTML)
    elif action == "after":
        element.after(edit.payload, _HTML)
    elif action == "remove":
        element.remove()
    elif action == "text":
        element.set_inner_content(edit.payload, _TEXT)
    elif action == "set_attribute" and edit.attribute:
        element.set_attribute(edit.attribute, edit.payload)
    elif action == "remove_attribute" and edit.attribute:
        element.remove_attribute(edit.attribute)
    elif action in ("add_class", "remove_class"):
        current = _classes(element.get_attribute("class"))
        names = _classes(edit.payload)
        if action == "add_class":
            updated = current + [n for n in names if n not in current]
        else:
            updated = [c for c in current if c not in names]
        element.set_attribute("class", " ".join(updated))


class _Tally:
    """What a rewrite did: edits applied and failed. Handlers share it with the Rewriter
    instead of holding the Rewriter, so no reference cycle keeps a finished rewrite (and
    its lol-html state) alive until the garbage collector comes by."""

    __slots__ = ("applied", "errors", "on_error")

    def __init__(self, on_error: Callable[[Exception], None] | None) -> None:
        self.applied = 0
        self.errors = 0
        self.on_error = on_error

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        logger.warning("a page edit failed and was skipped: %s", exc)
        if self.on_error is not None:
            self.on_error(exc)


class _EditHandler:
    def __init__(self, edit: Edit, tally: _Tally) -> None:
        self.edit = edit
        self.slot = marker_slot(edit.selector) or ""   # the data-ep-slot it edits, if any
        self.done = False
        self.tag_name = ""
        self.ends_at = -1       # where the edited element's end tag ends, once found
        # (end, tag name) found before the rewriter read the page's first bytes
        self.planned: tuple[int, str] | None = None
        self._tally = tally

    def element(self, element: lolhtml.Element) -> None:
        if self.done and self.edit.first_only:
            return
        self.done = True
        self.tag_name = element.tag_name
        try:
            _apply(self.edit, element)
            self._tally.applied += 1
        except Exception as exc:   # the element stays as it was; the page goes on
            self._tally.failed(exc)


class _Injector:
    """Adds HTML at the end of <head> (so <meta charset> stays first) or before </body>."""

    def __init__(self, html: str, where: str) -> None:
        self.html = html
        self.where = where
        self.done = False

    def element(self, element: lolhtml.Element) -> None:
        if self.done:
            return
        self.done = True
        element.append(self.html, _HTML)


_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b(?![^>]*\bnonce=)", re.IGNORECASE)


def csp_nonce(policy: str) -> str | None:
    """The nonce a Content-Security-Policy allows scripts (and styles) with."""
    match = _NONCE.search(policy)
    return match.group(1) if match else None


def with_nonce(html: str, nonce: str | None) -> str:
    """Give injected <script> and <style> tags the page's CSP nonce, so they may run."""
    if not nonce:
        return html
    return _SCRIPT_OR_STYLE.sub(lambda m: f'{m.group(0)} nonce="{nonce}"', html)


class RewriteAborted(Exception):
    """The rewriter failed where the rest of the page cannot be told apart safely."""


_KEEP_INPUT = 16 * 1024 * 1024   # input kept for recovery; past this a failure aborts
_TRIM_AT = 64 * 1024              # unchanged input already sent: dropped past this much
_TRIM_MARGIN = 4096               # ...but this much before the output's end is kept
_STEP = 4096                      # bytes fed at a time while waiting to bypass
_TAIL = 256
_VIEW_AT = 16 * 1024   # a shorter rest is copied: cheaper than a body message of its own
_MARKER_SPAN = 256     # a marker and its value, searched again when cut by a chunk's end
_HOLD_TAIL = 1024      # bytes held back while searching (a tag may be this long)
_SEARCH_HOLD = 128 * 1024   # a page longer than this is read by lol-html (not held whole)


class Rewriter:
    """Feeds HTML through lol-html with the edits and injections of one response.

    `feed()` returns whatever output is ready (possibly nothing: lol-html holds back a
    tag cut in two); `finish()` returns the rest. An edit that fails leaves its element
    unchanged and is reported through `on_error`. If lol-html itself gives up (markup it
    cannot parse unambiguously while streaming), the rest of the page follows unchanged:
    exactly, by position, when nothing was changed yet; else by finding where the output
    so far ends in the input. Only when neither is certain does it raise RewriteAborted.

    With `views`, the part of a chunk that passes unchanged once the edits are behind is
    not copied onto the output when it is long: `feed()` leaves it in `rest`, a memoryview
    of the chunk, for the caller to send after what `feed()` returned.
    """

    def __init__(self, edits: Sequence[Edit], *, head: str = "", body_end: str = "",
                 on_error: Callable[[Exception], None] | None = None,
                 bypass: bool = True, memo: FirstBytesMemo | None = None,
                 views: bool = False) -> None:
        self.views = views
        self.rest: memoryview | None = None
        self._out = bytearray()
        self._tally = _Tally(on_error)
        self.broken = False
        self.bypassed = False
        # Once every edit is done and its element closed, the rest of the page skips
        # lol-html: possible when every edit targets a data-ep-slot marker and nothing
        # waits for an end tag (</head>, </body>) that may come after the last slot.
        self._bypass = bypass and not head and not body_end and bool(edits) and all(
            marker_slot(edit.selector) for edit in edits)
        self._memo = memo if self._bypass else None
        self._edits = edits
        self._injections = [(where, html) for where, html in (("head", head),
                                                              ("body", body_end)) if html]
        # Built when first needed (a page whose first bytes are remembered needs neither)
        self._handlers: list[_EditHandler | _Injector] = []
        self._lol: lolhtml.HTMLRewriter | None = None
        self._input = bytearray()
        self._dropped = 0       # bytes cut from the front of _input (sent, unchanged)
        self._emitted = 0
        self._tail = b""
        # Before lol-html starts, a plain byte search looks for the slots' markers: while
        # none has come, the page passes as it is (all but its last tag, which may be the
        # slot's, still open) and is kept; when one comes, lol-html reads the page from
        # its start and what it says of the part already sent is checked, then dropped.
        self._searching = self._bypass
        # slot -> the elements that carry it ("" for any)
        self._slots: dict[str, set[str]] = {}
        for edit in edits if self._searching else ():
            self._slots.setdefault(marker_slot(edit.selector) or "", set()).add(
                marker_tag(edit.selector))
        self._sent = 0          # bytes sent while searching (all of them in _input)
        self._scanned = 0       # bytes of _input searched for a marker
        self._skip = b""        # lol-html's output still to check against what was sent

    def _build_handlers(self) -> None:
        if not self._handlers:
            self._handlers = [_EditHandler(edit, self._tally) for edit in self._edits]
            self._handlers += [_Injector(html, where) for where, html in self._injections]

    @property
    def _rewriter(self) -> lolhtml.HTMLRewriter:
        if self._lol is None:
            self._build_handlers()
            self._lol = lolhtml.HTMLRewriter(self._out.extend)
            for handler in self._handlers:
                selector = (handler.edit.selector if isinstance(handler, _EditHandler)
                            else handler.where)
                self._lol.on(selector, handler)
        return self._lol

    @property
    def applied(self) -> int:
        return self._tally.applied

    @property
    def errors(self) -> int:
        return self._tally.errors

    def _take(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        self._emitted += len(data)
        self._tail = (self._tail + data)[-_TAIL:]
        return data

    @property
    def _changed(self) -> bool:
        return any(handler.done for handler in self._handlers)

    def _recover(self, exc: Exception) -> bytes:
        self.broken = True
        self._tally.errors += 1
        logger.warning("HTML rewriter gave up (%s); the rest of the page follows unchanged",
                       str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        if self._tally.on_error is not None:
            self._tally.on_error(exc)
        pending = self._take()
        if len(self._input) >= _KEEP_INPUT:
            raise RewriteAborted("page too large to recover") from exc
        if not self._changed:
            return pending + bytes(self._input[self._emitted - self._dropped:])
        tail = self._tail
        position = self._input.rfind(tail) if len(tail) >= 32 else -1
        if position < 0 or self._input.find(tail) != position:
            raise RewriteAborted("cannot tell where the page stands") from exc
        return pending + bytes(self._input[position + len(tail):])

    def _edits_closed(self) -> bool:
        """Whether every edited element's end tag is in the input seen so far."""
        for handler in self._handlers:
            if not handler.done:
                return False
            if isinstance(handler, _EditHandler) and handler.ends_at < 0:
                planned = handler.planned
                # Planned on the first bytes with the marker once up to the element's end:
                # true while the rewriter has read no further.
                if planned is not None and len(self._input) <= planned[0]:
                    end, tag = planned
                else:
                    end, tag = slot_end(self._input, handler.slot)
                if end < 0 or len(self._input) < end or tag != handler.tag_name.lower():
                    return False
                handler.ends_at = end
        return True

    def _slots_end(self, data: bytes) -> int:
        """Where the last edited slot element ends in `data` (the page's first bytes), if
        every one is there; else -1."""
        last = -1
        for handler in self._handlers:
            if not isinstance(handler, _EditHandler):
                return -1
            end, tag = slot_end(data, handler.slot, read=0)
            if end < 0:
                return -1
            handler.planned = (end, tag)
            last = max(last, end)
        return last

    @property
    def found(self) -> tuple[bool, ...] | None:
        """For each edit, whether its element was found in the page: once the whole page
        was read (or every edit done); None when that cannot be told (lol-html gave up)."""
        if self.broken:
            return None
        if not self._handlers:   # no marker came, or first bytes remembered
            return tuple(self.bypassed for _ in self._edits)
        return tuple(handler.done for handler in self._handlers
                     if isinstance(handler, _EditHandler))

    @property
    def ends(self) -> int:
        """Where the last edited element ends in the page's bytes (-1: unknown)."""
        ends = [h.ends_at for h in self._handlers if isinstance(h, _EditHandler)]
        return max(ends) if ends and min(ends) >= 0 else -1

    def feed(self, chunk: bytes) -> bytes:
        if self._skip:
            return self._unsent(self._feed_reading(chunk))
        if self.broken or self.bypassed:
            return chunk
        if self._searching:
            return self._search(chunk)
        return self._feed_reading(chunk)

    def _feed_reading(self, chunk: bytes) -> bytes:
        if self.broken or self.bypassed:
            return chunk
        if not self._bypass:
            return self._write(chunk)
        return self._feed(chunk)

    def _unsent(self, out: bytes) -> bytes:
        """Output without its part that was sent while searching (checked the same)."""
        if self.rest is not None:   # (nothing left uncopied while checking)
            out, self.rest = out + bytes(self.rest), None
        checked = min(len(out), len(self._skip))
        if out[:checked] != self._skip[:checked]:
            raise RewriteAborted("a slot's tag began in bytes already sent")
        self._skip = self._skip[checked:]
        return out[checked:]

    def _marker_in(self, data: bytes | bytearray, start: int, *, final: bool = False) -> bool:
        """Whether a data-ep-slot marker naming one of the edits' slots (or one that
        cannot be read plainly) starts in data[start:]."""
        position = data.find(b"data-ep-slot", start)
        while position >= 0:
            value = marker_value(data, position)
            tags = self._slots.get(value) if value is not None else None
            if tags is not None:
                if "" in tags:
                    return True
                element = marker_element(data, position)
                if element is None or element in tags:
                    return True   # (another element with the same marker: not this slot)
            if value is None and (final or len(data) - position >= _MARKER_SPAN):
                return True   # (one cut off by the chunk's end is read with the next)
            position = data.find(b"data-ep-slot", position + 12)
        return False

    def _search(self, chunk: bytes) -> bytes:
        held = self._input
        if not held and self._marker_in(chunk, 0):
            self._searching = False   # in the page's first bytes: read as they are
            return self._feed(chunk)
        if len(held) + len(chunk) > _SEARCH_HOLD:
            return self._start_reading(chunk)   # too long to keep: lol-html from here
        held += chunk
        # (a marker cut in two, or its value still coming: searched again with the rest)
        if self._marker_in(held, max(0, self._scanned - _MARKER_SPAN)):
            return self._start_reading(b"")
        self._scanned = len(held)
        # Held back: the last KiB, and from the last "<" or from just after the last ">",
        # whichever comes first (a "<" or ">" inside an attribute value does not let the
        # start of a tag whose marker is still to come go out).
        cut = held.rfind(b"<", self._sent, len(held) - _HOLD_TAIL)
        if cut < 0:
            cut = max(self._sent, len(held) - _HOLD_TAIL)
        cut = min(cut, held.rfind(b">", self._sent, cut) + 1 or self._sent)
        if cut <= self._sent:
            return b""
        out = bytes(held[self._sent:cut])
        self._sent = cut
        return out

    def _start_reading(self, chunk: bytes) -> bytes:
        """lol-html reads the page from its start: what it says of the part already sent
        must be what was sent (no edit can reach before the tag holding its marker)."""
        self._searching = False
        held = bytes(self._input) + chunk
        self._skip = bytes(self._input[:self._sent])
        self._input = bytearray()
        out = self._feed(held)
        return self._unsent(out) if self._skip else out

    def _feed(self, chunk: bytes) -> bytes:
        # The rewriter reads no further than it must: on the page's first bytes, up to
        # where the last slot element ends when that is there; otherwise in small steps,
        # so the rest of a large chunk skips lol-html as soon as the last one closes.
        out: list[bytes | memoryview] = []
        view = memoryview(chunk)
        first = not self._input and not self._emitted
        # (a tuple of edits, as the pipeline hands them, is its own key: no copy)
        key = tuple(self._edits) if first and self._memo is not None else ()
        if key and self._memo is not None:
            known = self._memo.lookup(key, chunk)
            if known is not None:
                prefix, output, applied = known
                self.bypassed = True
                self._tally.applied = applied
                if self.views and len(chunk) - len(prefix) >= _VIEW_AT:
                    self.rest = view[len(prefix):]   # the unchanged rest, as it came
                    return output
                return output + view[len(prefix):]
        self._build_handlers()
        stop = self._slots_end(chunk) if first else -1
        start = 0
        while start < len(chunk):
            if self.bypassed or self.broken:
                out.append(view[start:])   # the rest as it came, copied once by the join
                break
            end = stop if stop > start else start + _STEP
            piece = chunk[start:end]
            out.append(self._write(piece))
            if (key and start == 0 and end == stop and self.bypassed
                    and self._memo is not None and not self._tally.errors):
                self._memo.store(key, piece, bytes(out[-1]), self._tally.applied)
            start = end
        if self.views and len(out) > 1:
            last = out[-1]
            if isinstance(last, memoryview) and len(last) >= _VIEW_AT:
                self.rest = last   # the unchanged rest of the chunk, as it came
                out.pop()
        return out[0] if len(out) == 1 and isinstance(out[0], bytes) else b"".join(out)

    def _write(self, chunk: bytes) -> bytes:
        if len(self._input) < _KEEP_INPUT:
            self._input += chunk
        try:
            self._rewriter.write(chunk)
            if self._bypass and len(self._input) < _KEEP_INPUT and self._edits_closed():
                # Everything fed so far is final: flush it, and let the rest pass.
                self._rewriter.end()
                self.bypassed = True
        except RuntimeError as exc:
            return self._recover(exc)
        out = self._take()
        if self.bypassed:
            self._input = bytearray()
        elif self._emitted - self._dropped > _TRIM_AT + _TRIM_MARGIN:
            self._trim()
        return out

    def _trim(self) -> None:
        """Drop input that was sent unchanged, so a long page whose slots have not come
        yet is not held whole: while nothing changed, recovery needs only the input not
        yet sent (and a margin), and finding a slot's end needs only its element."""
        if self._changed or any(isinstance(h, _EditHandler) and h.planned is not None
                                for h in self._handlers):
            return
        cut = self._emitted - self._dropped - _TRIM_MARGIN
        if self._bypass and self._input.find(b"data-ep-slot", 0, cut + 11) >= 0:
            # A marker in what goes: whether the slot's marker occurs only once could no
            # longer be told, so this page is rewritten to its end instead.
            self._bypass = False
        del self._input[:cut]
        self._dropped += cut

    def finish(self) -> bytes:
        if self._searching and self._marker_in(
                self._input, max(0, self._scanned - _MARKER_SPAN), final=True):
            return self._start_reading(b"") + self.finish()
        if self._searching:   # no marker came: the rest of the page as it is
            self._searching = False
            rest = bytes(self._input[self._sent:])
            self._input = bytearray()
            return rest
        if self._skip:
            return self._unsent(self._finish())
        return self._finish()

    def _finish(self) -> bytes:
        if self.broken or self.bypassed:
            return b""
        try:
            self._rewriter.end()
        except RuntimeError as exc:
            return self._recover(exc)
        return self._take()
