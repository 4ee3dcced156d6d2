"""When lol-html gives up, the rest of the page follows unchanged; a long page is not held
whole while that stays possible."""

from __future__ import annotations

import pytest

from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rewrite.html import Rewriter
from edge_personalizer.rewrite.recovery import KEEP_INPUT, KeptInput, RewriteAborted

from .test_html import SLOT, rewrite

AMBIGUOUS = b"<select><style>x</style></select>"   # lol-html cannot stream this
LONG = b"".join(b"<p>paragraph %d of a long story</p>\n" % i for i in range(20_000))  # ~750 KB


def test_unchanged_output_is_followed_by_the_input_after_it() -> None:
    kept = KeptInput()
    kept.add(b"<p>one</p><p>two</p>")
    kept.output += b"<p>one</p>"
    assert kept.take() == b"<p>one</p>" and not kept.output and kept.emitted == 10
    assert kept.rest(changed=False) == b"<p>two</p>"


def test_changed_output_is_found_again_by_its_last_bytes() -> None:
    kept = KeptInput()
    story = b"".join(b"<p>paragraph %d of the story</p>" % i for i in range(20))
    kept.add(b"<div>old</div>" + story + b"<p>rest</p>")
    kept.output += b"<div>NEW</div>" + story   # its last 256 bytes occur once in the input
    kept.take()
    assert kept.rest(changed=True) == b"<p>rest</p>"
    twice = KeptInput()
    twice.add(story + story)
    twice.output += b"<div>NEW</div>" + story   # its last bytes twice in the input: not certain
    twice.take()
    with pytest.raises(RewriteAborted):
        twice.rest(changed=True)
    short = KeptInput()
    short.add(b"<p>x</p>")
    short.output += b"<p>y"   # too few bytes to find again
    short.take()
    with pytest.raises(RewriteAborted):
        short.rest(changed=True)


def test_a_page_past_what_is_kept_cannot_be_recovered() -> None:
    kept = KeptInput()
    kept.add(b"x" * KEEP_INPUT)
    kept.add(b"more")   # not kept
    assert len(kept.data) == KEEP_INPUT
    with pytest.raises(RewriteAborted):
        kept.rest(changed=False)


def test_trimming_keeps_what_recovery_needs_and_says_whether_a_marker_went() -> None:
    kept = KeptInput()
    page = b'<p data-ep-slot="x">' + b"<p>text</p>" * 1000
    kept.add(page)
    kept.output += page[:8000]
    kept.take()
    assert kept.trim(look=True)
    assert kept.dropped == 8000 - 4096 and kept.unsent == 4096
    assert kept.rest(changed=False) == page[8000:]
    kept.output += page[8000:9000]
    kept.take()
    assert not kept.trim(look=True) and kept.rest(changed=False) == page[9000:]


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
        search = rewriter._search
        held = max(held, len(rewriter._kept.data) + (len(search.held) if search else 0))
    return b"".join(out) + rewriter.finish(), held


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
