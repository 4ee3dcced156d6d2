"""The rewriter on its own: byte-identical but for its edits, any chunking."""

from __future__ import annotations

import gc
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lolhtml
import pytest

from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rewrite.first_bytes import FirstBytesMemo
from edge_personalizer.rewrite.html import Rewriter, csp_nonce, with_nonce
from edge_personalizer.rewrite.recovery import RewriteAborted

from ..corpora import CORPORA
from ..faults import watch

SLOT = '[data-ep-slot="hero"]'
PAGE = (b'<!doctype html><html><head><title>t</title></head><body>'
        b'<div id=a data-ep-slot="hero" class="x y"><p>old</p></div>'
        b'<p>rest \xc3\xa9</p><div data-ep-slot="hero">second</div></body></html>')


def rewrite(page: bytes, edits: list[Edit], *, chunk: int = 0, **kwargs: Any) -> bytes:
    rewriter = Rewriter(edits, **kwargs)
    size = chunk or len(page) or 1
    out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
    return out + rewriter.finish()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 16, 64])
def test_tags_and_markers_split_across_chunks(chunk: int) -> None:
    edits = [Edit(SLOT, "inner", "<b>new</b>")]
    assert rewrite(PAGE, edits, chunk=chunk) == rewrite(PAGE, edits)


def test_no_edit_is_byte_identical() -> None:
    assert rewrite(PAGE, []) == PAGE


def test_head_and_body_injection() -> None:
    out = rewrite(PAGE, [], head="<style>.p{}</style>", body_end="<script>x()</script>")
    assert b"<title>t</title><style>.p{}</style></head>" in out
    assert out.endswith(b"<script>x()</script></body></html>")


@pytest.mark.parametrize("chunk", [0, 7])
def test_head_injection_with_a_slot_edit(chunk: int) -> None:
    out = rewrite(PAGE, [Edit(SLOT, "inner", "<b>new</b>")], head="<style>.p{}</style>",
                  chunk=chunk)
    assert b"<title>t</title><style>.p{}</style></head>" in out
    assert b'class="x y"><b>new</b></div>' in out


def test_csp_nonce_is_given_to_injected_scripts() -> None:
    policy = "default-src 'self'; script-src 'nonce-r4nd0m' 'strict-dynamic'"
    assert csp_nonce(policy) == "r4nd0m"
    assert with_nonce("<script>a()</script><style>b{}</style>", "r4nd0m") == \
        '<script nonce="r4nd0m">a()</script><style nonce="r4nd0m">b{}</style>'
    assert with_nonce('<script nonce="kept">', "r4nd0m") == '<script nonce="kept">'
    assert csp_nonce("default-src 'self'") is None


def _tokenizer_inputs() -> Iterator[str]:
    for path in sorted((CORPORA / "html5lib-tests" / "tokenizer").glob("*.test")):
        data = json.loads(path.read_text())
        for test in data.get("tests", data.get("xmlViolationTests", [])):
            if not test.get("doubleEscaped"):
                yield test["input"]


def _tree_inputs() -> Iterator[str]:
    for path in sorted((CORPORA / "html5lib-tests" / "tree-construction").rglob("*.dat")):
        for block in path.read_text().split("\n#data\n"):
            yield block.removeprefix("#data\n").split("\n#errors", 1)[0]


def test_html5lib_inputs_come_back_byte_identical_without_edits() -> None:
    inputs = [*_tokenizer_inputs(), *_tree_inputs()]
    assert len(inputs) > 8000
    for text in inputs:
        page = text.encode("utf-8", "surrogatepass")
        assert rewrite(page, [Edit(SLOT, "inner", "x")]) == page, text[:200]


def test_html5lib_inputs_with_head_injection_differ_only_by_it() -> None:
    marker = "<meta name=ep-test>"
    for text in _tree_inputs():
        page = text.encode("utf-8", "surrogatepass")
        out = rewrite(page, [], head=marker)
        if out != page:
            assert out.replace(marker.encode(), b"", 1) == page, text[:200]


def test_demo_pages_without_matching_slots_are_identical() -> None:
    site = Path(__file__).resolve().parents[2] / "edge_personalizer" / "demo" / "site"
    layout = (site / "layout.html").read_bytes()
    assert rewrite(layout, [Edit('[data-ep-slot="nope"]', "inner", "x")]) == layout
    assert re.search(rb"data-ep-slot", layout)


def _freed_on_another_thread(used: Callable[[], Rewriter]) -> list[str]:
    """The rewriter `used()` gives, caught in a reference cycle and dropped, then garbage
    collected on another thread (as when a store's worker thread allocates): what could
    not be freed there."""
    class Cycle:
        pass
    cycle = Cycle()
    cycle.me = cycle, used()   # type: ignore[attr-defined]
    del cycle
    lost: list[str] = []
    hook = sys.unraisablehook
    sys.unraisablehook = lambda failed: lost.append(str(failed.exc_value))
    try:
        worker = threading.Thread(target=gc.collect)
        worker.start()
        worker.join()
    finally:
        sys.unraisablehook = hook
    return lost


@pytest.mark.parametrize("bypass", [True, False])
def test_a_finished_page_lets_go_of_its_parser_on_its_own_thread(bypass: bool) -> None:
    def finished() -> Rewriter:
        rewriter = Rewriter([Edit("#promo", "inner", "<b>new</b>")], bypass=bypass)
        page = b'<html><body><div id="promo" data-ep-slot="hero">old</div>' + b"x" * 9000
        assert b"<b>new</b>" in rewriter.feed(page) + rewriter.finish()
        return rewriter
    assert _freed_on_another_thread(finished) == []


def test_a_page_cut_off_lets_go_of_its_parser_when_closed() -> None:
    def cut_off() -> Rewriter:
        rewriter = Rewriter([Edit("#promo", "inner", "<b>new</b>")], body_end="<i>end</i>")
        rewriter.feed(b'<html><body><div id="promo">old</div><p>more to come')
        rewriter.close()                             # the visitor left before the page ended
        return rewriter
    assert _freed_on_another_thread(cut_off) == []


def test_a_page_fed_after_its_rewriter_was_closed_is_never_half_rewritten() -> None:
    # Closing is for a response that is over: bytes fed after it are not read by a fresh
    # parser (which would miss the <body> and drop the injection without a word).
    rewriter = Rewriter([Edit("#promo", "inner", "<b>new</b>")], body_end="<i>end</i>")
    assert b"<b>new</b>" in rewriter.feed(b'<html><body><div id="promo">old</div>')
    rewriter.close()
    with pytest.raises(RewriteAborted):          # the connection is cut: honest
        rewriter.feed(b"<p>more</p></body></html>")
    untouched = Rewriter([Edit("#promo", "inner", "<b>new</b>")])
    untouched.feed(b"<html><body><p>nothing edited yet")
    untouched.close()
    assert untouched.feed(b"</p></body></html>") == b"</p></body></html>"   # exactly


def test_a_page_starting_with_remembered_bytes_is_copied_without_a_parse(
        monkeypatch: pytest.MonkeyPatch) -> None:
    memo = FirstBytesMemo()
    edits = [Edit(SLOT, "inner", "<b>new</b>")]
    page = b'<html><body><div data-ep-slot="hero">old</div><p>rest</p></body></html>'
    first = rewrite(page, edits, memo=memo)
    assert b"<b>new</b>" in first and memo.hits == 0
    parsers = watch(monkeypatch, lolhtml, "HTMLRewriter", "write")
    assert rewrite(page, edits, memo=memo) == first
    assert memo.hits == 1 and parsers.calls == []   # the memo knew: no lol-html at all
