"""The rewriter on its own: exact edits, byte-identical elsewhere, any chunking."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_personalizer.rewrite.html import Edit, EditAction, Rewriter, csp_nonce, with_nonce

from ..corpora import CORPORA

SLOT = '[data-ep-slot="hero"]'
PAGE = (b'<!doctype html><html><head><title>t</title></head><body>'
        b'<div id=a data-ep-slot="hero" class="x y"><p>old</p></div>'
        b'<p>rest \xc3\xa9</p><div data-ep-slot="hero">second</div></body></html>')


def rewrite(page: bytes, edits: list[Edit], *, chunk: int = 0, **kwargs: Any) -> bytes:
    rewriter = Rewriter(edits, **kwargs)
    size = chunk or len(page) or 1
    out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
    return out + rewriter.finish()


@pytest.mark.parametrize(("edit", "expected"), [
    (Edit(SLOT, "inner", "<b>new</b>"),
     b'<div id=a data-ep-slot="hero" class="x y"><b>new</b></div>'),
    (Edit(SLOT, "replace", "<b>new</b>"), b"<b>new</b><p>rest"),
    (Edit(SLOT, "append", "<i>+</i>"), b"<p>old</p><i>+</i></div>"),
    (Edit(SLOT, "prepend", "<i>+</i>"), b'class="x y"><i>+</i><p>old</p>'),
    (Edit(SLOT, "before", "<i>+</i>"), b'<i>+</i><div id=a'),
    (Edit(SLOT, "after", "<i>+</i>"), b"</div><i>+</i><p>rest"),
    (Edit(SLOT, "remove"), b"<body><p>rest"),
    (Edit(SLOT, "text", "<b>&"), b'class="x y">&lt;b&gt;&amp;</div>'),
    (Edit(SLOT, "set_attribute", "promo", "data-x"), b'data-x="promo"'),
    (Edit(SLOT, "remove_attribute", "", "id"), b'<div data-ep-slot="hero" class="x y">'),
    (Edit(SLOT, "add_class", "z x"), b'class="x y z"'),
    (Edit(SLOT, "remove_class", "x"), b'class="y"'),
])
def test_each_action(edit: Edit, expected: bytes) -> None:
    out = rewrite(PAGE, [edit])
    assert expected in out
    assert b"<div data-ep-slot=\"hero\">second</div>" in out   # only the first slot element
    assert out.endswith(b"<p>rest \xc3\xa9</p>" + out.split(b"\xc3\xa9</p>", 1)[1])


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


def test_failing_edit_leaves_the_element_and_the_page() -> None:
    errors: list[Exception] = []
    rewriter = Rewriter([Edit(SLOT, "set_attribute", "v", "bad name with spaces")],
                        on_error=errors.append)
    out = rewriter.feed(PAGE) + rewriter.finish()
    assert out == PAGE and len(errors) == 1 and rewriter.errors == 1


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


AMBIGUOUS = b"<select><style>x</style></select>"   # lol-html cannot stream this


def test_engine_failure_before_any_change_passes_the_rest_exactly() -> None:
    # (the slot's marker comes after: lol-html reads the page from its start)
    page = (b"<html><body><p>intro</p>" + AMBIGUOUS
            + b'<p data-ep-slot="late">after</p></body></html>')
    errors: list[Exception] = []
    for chunk in (1, 5, 4096):
        out = rewrite(page, [Edit('[data-ep-slot="late"]', "inner", "x")], chunk=chunk,
                      on_error=errors.append)
        assert out == page
    assert errors


def test_engine_failure_after_a_change_keeps_the_change_and_the_rest() -> None:
    filler = b"".join(b"<p>paragraph %d of the story</p>" % i for i in range(20))
    page = (b'<html><body><div data-ep-slot="hero">old</div>' + filler + AMBIGUOUS
            + b"<p>after</p></body></html>")
    out = rewrite(page, [Edit(SLOT, "inner", "NEW")], chunk=64)
    assert out == page.replace(b">old<", b">NEW<")


def _fed(rewriter: Rewriter, page: bytes, chunk: int) -> tuple[bytes, int]:
    """The output, and the most input the rewriter held at any point."""
    out, held = [], 0
    for i in range(0, len(page), chunk):
        out.append(rewriter.feed(page[i:i + chunk]))
        held = max(held, len(rewriter._input))
    return b"".join(out) + rewriter.finish(), held


LONG = b"".join(b"<p>paragraph %d of a long story</p>\n" % i for i in range(20_000))  # ~750 KB


@pytest.mark.parametrize("chunk", [4096, 65536])
def test_a_long_page_is_not_held_whole_while_its_slot_has_not_come(chunk: int) -> None:
    page = (b"<html><body>" + LONG + b'<div data-ep-slot="hero">old</div>' + LONG
            + b"</body></html>")
    rewriter = Rewriter([Edit(SLOT, "inner", "NEW")])
    out, held = _fed(rewriter, page, chunk)
    assert out == page.replace(b">old<", b">NEW<")
    assert rewriter.bypassed   # the slot's end still found in what was kept
    assert held < 200 * 1024


def test_a_marker_in_dropped_input_turns_the_bypass_off() -> None:
    page = (b'<html><body><!-- <div data-ep-slot="hero"> -->' + LONG
            + b'<div data-ep-slot="hero">old</div><p>rest</p></body></html>')
    rewriter = Rewriter([Edit(SLOT, "inner", "NEW")])
    out, held = _fed(rewriter, page, 4096)
    assert out == page.replace(b">old<", b">NEW<")
    assert not rewriter.bypassed and held < 200 * 1024


def test_engine_failure_after_dropped_input_passes_the_rest_exactly() -> None:
    page = b"<html><body>" + LONG + AMBIGUOUS + b"<p>after</p>" + LONG + b"</body></html>"
    errors: list[Exception] = []
    out, _ = _fed(Rewriter([Edit('[data-ep-slot="late"]', "inner", "x")],
                           on_error=errors.append), page, 4096)
    assert out == page and errors


def test_the_edits_rewrite_knows_are_the_slot_actions_rules_accept() -> None:
    from typing import get_args

    from edge_personalizer.rewrite.html import EditAction
    from edge_personalizer.rules.model import SLOT_ACTIONS

    assert set(get_args(EditAction)) == set(SLOT_ACTIONS)


def test_a_page_without_the_slots_markers_is_never_parsed() -> None:
    page = b"<html><body>" + b"<p>text</p>" * 500 + b'<div data-ep-slot="other">x</div>'
    for chunk in (1, 7, 4096, 0):
        rewriter = Rewriter([Edit(SLOT, "inner", "NEW")])
        size = chunk or len(page)
        out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
        assert out + rewriter.finish() == page
        assert rewriter._lol is None and rewriter.found == (False,)


@pytest.mark.parametrize("action", ["inner", "replace", "before", "after", "remove"])
def test_a_slot_after_bytes_already_sent_is_rewritten_as_from_the_start(
        action: EditAction) -> None:
    # Its tag may open in one chunk and name the slot in the next; a "<" or ">" in an
    # attribute value before the marker does not let the tag's start go out early.
    page = (b"<html><body>" + b"<p>text</p>" * 400
            + b'<section title="a<b" class="c>d" data-ep-slot="hero">old</section>'
            + b"<p>after</p></body></html>")
    expected = rewrite(page, [Edit(SLOT, action, "<i>N</i>")], bypass=False)
    assert expected != page
    for chunk in (1, 5, 64, 1000, 4096, 4400, 4423, 4431, 0):
        rewriter = Rewriter([Edit(SLOT, action, "<i>N</i>")])
        size = chunk or len(page)
        out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
        assert out + rewriter.finish() == expected, chunk
        assert rewriter.found == (True,)


def test_a_marker_that_cannot_be_read_plainly_is_left_to_lol_html() -> None:
    page = b"<html><body>" + b"<p>text</p>" * 50 + b'<div data-ep-slot="h&#101;ro">old</div>'
    for chunk in (1, 64, 0):
        rewriter = Rewriter([Edit(SLOT, "inner", "NEW")])
        size = chunk or len(page)
        out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
        assert out + rewriter.finish() == rewrite(page, [Edit(SLOT, "inner", "NEW")],
                                                  bypass=False)
        assert rewriter._lol is not None


def test_a_marker_on_another_element_than_the_slot_names_is_not_the_slot() -> None:
    # The slot is declared as a <section>; the page marks a <div> with the same name.
    edit = Edit('section[data-ep-slot="hero"]', "inner", "NEW")
    page = b'<html><body><div data-ep-slot="hero">div</div>' + b"<p>text</p>" * 300
    for chunk in (1, 64, 0):
        rewriter = Rewriter([edit])
        size = chunk or len(page)
        out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
        assert out + rewriter.finish() == page
        assert rewriter._lol is None and rewriter.found == (False,)
    later = page + b'<section data-ep-slot="hero">old</section></body></html>'
    for chunk in (1, 64, 0):
        assert rewrite(later, [edit], chunk=chunk) == later.replace(b">old<", b">NEW<")
