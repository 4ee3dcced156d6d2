"""The byte search for the slots' markers: pages without them never reach lol-html, and a
slot found after bytes were sent is rewritten as if read from the page's start."""

from __future__ import annotations

import pytest

from edge_personalizer.rewrite.edits import Edit, EditAction
from edge_personalizer.rewrite.html import Rewriter
from edge_personalizer.rewrite.slot_search import SlotSearch

from .test_html import SLOT, rewrite

TEXT = b"<html><body>" + b"<p>text</p>" * 400


def test_a_page_passes_as_it_comes_but_its_last_tag() -> None:
    search = SlotSearch([Edit(SLOT, "inner", "NEW")])
    sent = search.push(TEXT + b"<div class=") or b""
    # Sent up to a tag's end, the last KiB held back (where the slot's tag may begin).
    assert TEXT.startswith(sent) and sent.endswith(b">")
    assert 1024 <= len(TEXT) + len(b"<div class=") - len(sent) < 1024 + 20
    more = search.push(b'"a">') or b""
    assert TEXT.startswith(sent + more)
    assert sent + more + (search.end() or b"") == TEXT + b'<div class="a">'


def test_a_tag_start_is_held_back_past_a_quoted_angle_bracket() -> None:
    search = SlotSearch([Edit(SLOT, "inner", "NEW")])
    page = TEXT + b'<section title="a>b" class="c<d" '
    sent = search.push(page)
    assert sent is not None and TEXT.startswith(sent) and sent.endswith(b">")
    assert search.push(b'data-ep-slot="hero">') is None   # lol-html reads `held`
    assert bytes(search.held) == page + b'data-ep-slot="hero">'
    assert search.sent == len(sent)


@pytest.mark.parametrize(("edits", "page", "found"), [
    ([Edit(SLOT, "inner", "x")], b'<div data-ep-slot="hero">', True),
    ([Edit(SLOT, "inner", "x")], b'<div data-ep-slot="other">', False),
    ([Edit('section[data-ep-slot="hero"]', "inner", "x")], b'<div data-ep-slot="hero">', False),
    ([Edit('section[data-ep-slot="hero"]', "inner", "x")], b'<section data-ep-slot="hero">',
     True),
    ([Edit(SLOT, "inner", "x")], b'<div data-ep-slot="h&#101;ro">', True),   # not plain
    ([Edit(SLOT, "inner", "x")], b'<div title="<a" data-ep-slot="hero">', True),
])
def test_which_markers_are_the_slots(edits: list[Edit], page: bytes, found: bool) -> None:
    assert SlotSearch(edits).marker_in(page, 0, final=True) is found


def test_a_marker_cut_by_a_chunk_s_end_is_read_with_the_next() -> None:
    search = SlotSearch([Edit(SLOT, "inner", "NEW")])
    assert not search.marker_in(b'<div data-ep-slot="he', 0)   # its value may still come
    assert search.marker_in(b'<div data-ep-slot="he', 0, final=True)
    assert search.push(b"<p>a</p>" * 200 + b'<div data-ep-sl') is not None
    assert search.push(b'ot="hero">') is None


def test_a_long_page_without_markers_goes_to_lol_html_rather_than_being_held() -> None:
    search = SlotSearch([Edit(SLOT, "inner", "NEW")])
    assert search.push(b"<p>text</p>" * 10_000) is not None
    assert search.push(b"<p>text</p>" * 2_000) is None   # past 128 KiB
    assert len(search.held) == 12_000 * len(b"<p>text</p>")


def test_a_page_without_the_slots_markers_is_never_parsed() -> None:
    page = b"<html><body>" + b"<p>text</p>" * 500 + b'<div data-ep-slot="other">x</div>'
    for chunk in (1, 7, 4096, 0):
        rewriter = Rewriter([Edit(SLOT, "inner", "NEW")])
        size = chunk or len(page)
        out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
        assert out + rewriter.finish() == page
        assert not rewriter.parsed and rewriter.found == (False,)


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
        assert rewriter.parsed


def test_a_marker_on_another_element_than_the_slot_names_is_not_the_slot() -> None:
    # The slot is declared as a <section>; the page marks a <div> with the same name.
    edit = Edit('section[data-ep-slot="hero"]', "inner", "NEW")
    page = b'<html><body><div data-ep-slot="hero">div</div>' + b"<p>text</p>" * 300
    for chunk in (1, 64, 0):
        rewriter = Rewriter([edit])
        size = chunk or len(page)
        out = b"".join(rewriter.feed(page[i:i + size]) for i in range(0, len(page), size))
        assert out + rewriter.finish() == page
        assert not rewriter.parsed and rewriter.found == (False,)
    later = page + b'<section data-ep-slot="hero">old</section></body></html>'
    for chunk in (1, 64, 0):
        assert rewrite(later, [edit], chunk=chunk) == later.replace(b">old<", b">NEW<")
