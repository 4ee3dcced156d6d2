"""Skipping the rewriter after the last edit must never change a byte of the output."""

from __future__ import annotations

import random
import re

import pytest

from edge_personalizer.rewrite.bypass import (
    _RAW_TEXT,
    CONTAINERS,
    _tag_end,
    element_end,
    find_marker,
    marker_slot,
)
from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rewrite.first_bytes import FirstBytesMemo
from edge_personalizer.rewrite.html import Rewriter
from edge_personalizer.rewrite.recovery import RewriteAborted

from .test_html import _tree_inputs

EDITS = [Edit('[data-ep-slot="hero"]', "inner", "<b>NEW</b>"),
         Edit('[data-ep-slot="side"]', "after", "<i>+</i>")]


def run(page: bytes, *, bypass: bool, chunk: int, memo: FirstBytesMemo | None = None,
        edits: list[Edit] = EDITS) -> tuple[bytes, bool]:
    out, rewriter = _rewritten(page, edits, bypass=bypass, chunk=chunk, memo=memo)
    return out, rewriter.bypassed


def _rewritten(page: bytes, edits: list[Edit], *, bypass: bool, chunk: int,
               memo: FirstBytesMemo | None = None) -> tuple[bytes, Rewriter]:
    rewriter = Rewriter(edits, bypass=bypass, memo=memo)
    out: list[bytes] = []
    for i in range(0, len(page), chunk):
        out.append(rewriter.feed(page[i:i + chunk]))
    return b"".join(out) + rewriter.finish(), rewriter


@pytest.mark.parametrize(("html", "found"), [
    (b'<div data-ep-slot="hero">a<div>b</div>c</div>tail', True),
    (b'<div data-ep-slot="hero"><!-- </div> --></div>', True),
    (b'<div data-ep-slot="hero"><script>"</div>"</script></div>x', True),
    (b'<div data-ep-slot="hero" title="a>b"><span>x</span></div>', True),
    (b'<div data-ep-slot="hero"><svg><div></div></svg></div>', False),
    (b'<p data-ep-slot="hero">implied end<p>next', False),
    (b'<div data-ep-slot="hero">never closed', False),
    # "</ " opens a bogus comment that runs to the next ">": the first </div> is in it.
    (b'<div data-ep-slot="hero">a</ </div> b</div>', True),
    # In a script holding "<!--", "</script>" may not end it; <plaintext> never ends.
    (b'<div data-ep-slot="hero"><script><!--<script></script>x</script></div>', False),
    (b'<div data-ep-slot="hero"><plaintext></plaintext></div>', False),
])
def test_element_end(html: bytes, found: bool) -> None:
    start = find_marker(html, "hero")
    tag = html[1:html.index(b" ")].decode()
    expected = html.rindex(b"</div>") + len(b"</div>") if found else -1
    assert element_end(html, start, tag) == expected


def test_marker_selectors_only() -> None:
    assert marker_slot('[data-ep-slot="hero"]') == "hero"
    assert marker_slot('section[data-ep-slot="hero"]') == "hero"
    assert marker_slot("main .hero") is None


def test_bypass_happens_on_plain_pages_and_changes_nothing() -> None:
    page = (b'<html><body><div data-ep-slot="hero">old</div><aside data-ep-slot="side">s'
            b'</aside>' + b"<p>filler</p>" * 2000 + b"</body></html>")
    fast, bypassed = run(page, bypass=True, chunk=4096)
    slow, _ = run(page, bypass=False, chunk=4096)
    assert bypassed and fast == slow


def test_bypass_never_changes_output_on_html5lib_pages() -> None:
    rng = random.Random(11)
    checked = 0
    for text in _tree_inputs():
        body = text.encode("utf-8", "surrogatepass")
        cut = rng.randint(0, len(body))
        page = (body[:cut] + b'<div data-ep-slot="hero">x<div>y</div></div>'
                + b'<section data-ep-slot="side">z</section>' + body[cut:] + b"<p>end</p>" * 50)
        for chunk in (1, 7, 64, 4096, len(page)):
            try:
                slow, _ = run(page, bypass=False, chunk=chunk)
            except RewriteAborted:
                continue   # the full rewriter gives up on this page: nothing to compare
            fast, _ = run(page, bypass=True, chunk=chunk)
            assert fast == slow, page[:300]
        checked += 1
    assert checked > 1500


def test_remembered_first_bytes_never_change_output_on_html5lib_pages() -> None:
    rng = random.Random(12)
    memo = FirstBytesMemo(budget=64 * 1024)
    checked = 0
    for text in _tree_inputs():
        body = text.encode("utf-8", "surrogatepass")
        cut = rng.randint(0, len(body))
        top = body[:cut] + b'<div data-ep-slot="hero">x<div>y</div></div>'
        for rest in (b"<p>end</p>", b"<p>another page</p>" + body[cut:], body[cut:] + b"<"):
            page = top + b'<section data-ep-slot="side">z</section>' + rest
            try:
                slow, _ = run(page, bypass=False, chunk=len(page))
            except RewriteAborted:
                continue
            for _ in range(2):   # rewritten, then the first bytes remembered
                assert run(page, bypass=True, chunk=len(page), memo=memo)[0] == slow, page[:300]
        checked += 1
    assert checked > 1500
    assert memo.hits > 3000   # the bytes before both slots' ends were known again
    assert memo.size <= memo.budget


def test_a_look_changes_no_byte_and_finds_what_an_edit_finds_on_html5lib_pages() -> None:
    hero = Edit('[data-ep-slot="hero"]', "inner", "<b>NEW</b>")
    side, look = Edit('[data-ep-slot="side"]', "after", "<i>+</i>"), Edit(
        '[data-ep-slot="side"]', "look")
    rng = random.Random(13)
    memo = FirstBytesMemo(budget=64 * 1024)
    checked = 0
    for text in _tree_inputs():
        body = text.encode("utf-8", "surrogatepass")
        cut = rng.randint(0, len(body))
        page = (body[:cut] + b'<div data-ep-slot="hero">x<div>y</div></div>'
                + b'<section data-ep-slot="side">z</section>' + body[cut:] + b"<p>end</p>")
        try:
            slow, _ = _rewritten(page, [hero], bypass=False, chunk=len(page))
            _, edited = _rewritten(page, [hero, side], bypass=False, chunk=len(page))
        except RewriteAborted:
            continue
        for bypass, chunk, kept in ((False, 7, None), (True, 7, None),
                                    (True, len(page), memo), (True, len(page), memo)):
            out, looked = _rewritten(page, [hero, look], bypass=bypass, chunk=chunk,
                                     memo=kept)
            assert out == slow and looked.found == edited.found, page[:300]
            out, looked = _rewritten(page, [look], bypass=bypass, chunk=chunk, memo=kept)
            assert out == page, page[:300]
            assert edited.found is None or looked.found == edited.found[1:], page[:300]
        checked += 1
    assert checked > 1500
    assert memo.hits > 1500   # (a look's first bytes remembered like an edit's)


def test_memo_keeps_to_its_budget_and_drops_the_least_recent() -> None:
    memo = FirstBytesMemo(budget=10_000, max_prefix=2_000, per_key=2)
    edits = [(Edit(f'[data-ep-slot="s{i}"]', "inner", "x"),) for i in range(20)]
    for i, key in enumerate(edits):
        memo.store(key, b"p" * 1000 + str(i).encode(), b"o" * 1000, 1)
    assert memo.size <= 10_000
    assert memo.lookup(edits[0], b"p" * 1000 + b"0") is None
    assert memo.lookup(edits[19], b"p" * 1000 + b"19 and more") is not None
    memo.store(edits[19], b"q" * 5000, b"o", 1)   # over max_prefix: not kept
    assert memo.lookup(edits[19], b"q" * 5000) is None
    for i in range(3):
        memo.store(edits[18], b"r" * 10 + str(i).encode(), b"o", 1)
    assert memo.lookup(edits[18], b"r" * 10 + b"0") is None   # per_key: two kept
    assert memo.lookup(edits[18], b"r" * 10 + b"2") is not None


_ANY_TAG = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9:-]*)")


def reference_element_end(data: bytes, tag_start: int, tag_name: str) -> int:
    """The same answer as element_end, read plainly tag by tag."""
    name = tag_name.lower()
    if name not in CONTAINERS:
        return -1
    position = _tag_end(data, tag_start)
    if position < 0 or data[position - 2:position] == b"/>":
        return -1
    depth = 1
    while True:
        lt = data.find(b"<", position)
        if lt < 0:
            return -1
        if data.startswith(b"<!--", lt):
            close = data.find(b"-->", lt + 4)
            if close < 0:
                return -1
            position = close + 3
            continue
        if data.startswith((b"<!", b"<?"), lt):
            return -1
        if data.startswith(b"</", lt) and not data[lt + 2:lt + 3].isalpha():
            close = data.find(b">", lt + 2)   # "</>" is dropped; "</ x>" a bogus comment
            if close < 0:
                return -1
            position = close + 1
            continue
        match = _ANY_TAG.match(data, lt)
        if match is None:
            position = lt + 1
            continue
        closing, found = match.group(1) == b"/", match.group(2).decode("ascii").lower()
        end = _tag_end(data, lt)
        if end < 0:
            return -1
        if found in ("svg", "math"):
            return -1
        if not closing and found in _RAW_TEXT:
            close = data.lower().find(b"</" + found.encode(), end)
            if close < 0 or found == "plaintext" or found == "script" and b"<!--" in data[
                    end:close]:
                return -1   # escaped script text: "</script>" may not end it
            position = close
            continue
        if found == name:
            depth += -1 if closing else 1
            if depth == 0:
                return end
        position = end


def test_element_end_agrees_with_a_plain_reading_on_html5lib_pages() -> None:
    rng = random.Random(5)
    compared = found = 0
    for text in _tree_inputs():
        body = text.encode("utf-8", "surrogatepass")
        for tag in ("div", "SECTION", "span"):
            cut = rng.randint(0, len(body))
            page = body[:cut] + b"<" + tag.encode() + b' data-ep-slot="hero">' + body[cut:]
            for end in (len(page), rng.randint(cut, len(page))):   # whole, and cut short
                data = page[:end] + b"</" + tag.encode() + b">" * rng.randint(0, 1)
                start = find_marker(data, "hero")
                expected = reference_element_end(data, start, tag)
                assert element_end(data, start, tag) == expected, data[:300]
                compared += 1
                found += expected >= 0
    assert compared > 10000 and found > 1000


SIDE = b'<aside data-ep-slot="side">s</aside>'


@pytest.mark.parametrize("page", [
    # The marker quoted in a comment first; the real slot's end comes in a later chunk.
    SIDE + b'<!-- <div data-ep-slot="hero">quoted</div> --><div data-ep-slot="hero">old'
    + b"<p>x</p>" * 1000 + b"</div>" + b"<p>y</p>" * 900,
    # ... or in a script.
    SIDE + b'<script>var s = \'<div data-ep-slot="hero"></div>\';</script>'
    + b'<div data-ep-slot="hero">' + b"<p>x</p>" * 1000 + b"</div>" + b"<p>y</p>" * 900,
    # One tag named "a<div", as the HTML tokenizer reads it.
    SIDE + b'<a<div data-ep-slot="hero">old<div>in</div>' + b"<p>x</p>" * 1000 + b"</div>"
    + b"<p>y</p>" * 900,
])
def test_a_marker_that_is_not_the_slot_never_ends_rewriting_early(page: bytes) -> None:
    for chunk in (len(page), 4096, 1000):
        fast, _ = run(page, bypass=True, chunk=chunk)
        slow, _ = run(page, bypass=False, chunk=chunk)
        assert fast == slow


def test_rewriter_reads_the_first_chunk_only_up_to_the_last_slot() -> None:
    # A marker quoted far below the slots is never read: it does not stop the bypass.
    page = (b'<div data-ep-slot="hero">old</div><aside data-ep-slot="side">s</aside>'
            + b"<p>filler</p>" * 2000 + b"<script>'<div data-ep-slot=\"hero\">'</script>")
    fast, bypassed = run(page, bypass=True, chunk=len(page))
    assert bypassed and fast == run(page, bypass=False, chunk=len(page))[0]


def test_the_unchanged_rest_of_a_chunk_follows_the_rewritten_first_bytes_as_bytes() -> None:
    page = b'<div data-ep-slot="hero">old</div><section data-ep-slot="side">s</section>'
    page += b"<p>filler</p>" * 2000
    memo = FirstBytesMemo()
    for _ in range(2):   # rewritten, then the first bytes remembered
        rewriter = Rewriter(EDITS, memo=memo)
        out = rewriter.feed(page)
        assert type(out) is bytes and rewriter.bypassed
        assert out + rewriter.finish() == run(page, bypass=False, chunk=len(page))[0]
    assert memo.hits == 1
