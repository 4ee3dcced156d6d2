"""Page edits: what each action does to its element, and what the handlers found."""

from __future__ import annotations

import dataclasses
from typing import get_args

import lolhtml
import pytest

from edge_personalizer.rewrite.edits import Edit, EditAction, Handlers, Tally
from edge_personalizer.rewrite.html import Rewriter
from edge_personalizer.rules.model import SLOT_ACTIONS

from .test_html import PAGE, SLOT, rewrite


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


def test_failing_edit_leaves_the_element_and_the_page() -> None:
    errors: list[Exception] = []
    rewriter = Rewriter([Edit(SLOT, "set_attribute", "v", "bad name with spaces")],
                        on_error=errors.append)
    out = rewriter.feed(PAGE) + rewriter.finish()
    assert out == PAGE and len(errors) == 1 and rewriter.errors == 1


def test_the_edits_rewrite_knows_are_the_slot_actions_rules_accept() -> None:
    assert set(get_args(EditAction)) == set(SLOT_ACTIONS)


def _through(handlers: Handlers, page: bytes) -> bytes:
    out = bytearray()
    rewriter = lolhtml.HTMLRewriter(out.extend)
    handlers.attach(rewriter)
    rewriter.write(page)
    rewriter.end()
    return bytes(out)


def test_handlers_plan_on_the_first_bytes_and_know_when_the_slots_closed() -> None:
    page = b'<p>intro</p><div data-ep-slot="hero">old</div><p>rest</p>'
    end = page.index(b"</div>") + len(b"</div>")
    tally = Tally(None)
    handlers = Handlers([Edit(SLOT, "inner", "NEW"), Edit('[data-ep-slot="side"]', "remove")],
                        [], tally)
    assert handlers.plan(page) == -1   # "side" is not in these bytes
    handlers = Handlers([Edit(SLOT, "inner", "NEW")], [], tally)
    assert handlers.plan(page) == end and handlers.planned
    assert not handlers.changed and not handlers.closed(page)
    assert _through(handlers, page) == page.replace(b">old<", b">NEW<")
    assert handlers.changed and handlers.found == (True,) and tally.applied == 1
    assert not handlers.closed(page[:end - 1])   # its end tag not read yet
    assert handlers.closed(page)


def test_injections_are_handlers_too_and_are_never_planned() -> None:
    tally = Tally(None)
    handlers = Handlers([Edit(SLOT, "inner", "NEW")], [("head", "<style></style>")], tally)
    page = b'<html><head></head><body><div data-ep-slot="hero">old</div></body></html>'
    assert handlers.plan(page) == -1 and not handlers.planned
    assert _through(handlers, page) == (b'<html><head><style></style></head><body>'
                                        b'<div data-ep-slot="hero">NEW</div></body></html>')
    assert handlers.found == (True,) and handlers.closed(page)


def test_the_tally_reports_each_failure() -> None:
    errors: list[Exception] = []
    tally = Tally(errors.append)
    tally.failed(ValueError("an edit"))
    tally.gave_up(RuntimeError("the parser"))
    assert tally.errors == 2 and [str(e) for e in errors] == ["an edit", "the parser"]


def test_an_edit_knows_the_slot_marker_and_element_its_selector_names() -> None:
    edit = Edit('section[data-ep-slot="hero"]', "inner", "<p>hi</p>")
    assert (edit.slot, edit.tag) == ("hero", "section")
    assert (Edit('[data-ep-slot="hero"]', "inner").slot, Edit('[data-ep-slot="hero"]',
                                                              "inner").tag) == ("hero", "")
    assert (Edit("h1.title", "inner").slot, Edit("h1.title", "inner").tag) == (None, "")
    moved = dataclasses.replace(edit, selector='div[data-ep-slot="promo"]')
    assert (moved.slot, moved.tag) == ("promo", "div")
    same = Edit('section[data-ep-slot="hero"]', "inner", "<p>hi</p>")
    assert same == edit and hash(same) == hash(edit) and same != moved
    assert repr(edit).endswith("first_only=True)")   # (what it works out is not shown)


NESTED_PAGE = (b'<main><section data-ep-slot="hero"><h1>Old</h1><div><a class="cta">Buy</a></div>'
               b'</section><p>x</p><aside data-ep-slot="promo">p</aside>'
               b'<section><a class="cta">second</a></section></main>')
PROBED = ('[data-ep-slot="hero"]', "section a.cta", '[data-ep-slot="promo"]')


@pytest.mark.parametrize("hero", [Edit('[data-ep-slot="hero"]', "inner", "<h1>Big</h1>"),
                                  Edit('[data-ep-slot="hero"]', "look")])
@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_probes_find_which_slot_is_inside_which_whatever_their_selectors(
        hero: Edit, chunk: int) -> None:
    # The call to action's own selector names the hero's <section>: only where its first
    # element sits tells; a variant that takes the hero's content away changes nothing
    # of that (lol-html still reads what it removed), and the output is the edits'.
    edits = [hero, Edit("section a.cta", "look"), Edit('[data-ep-slot="promo"]', "look")]
    probed = Rewriter(edits, probes=PROBED)
    plain = Rewriter(edits)
    out = b"".join(probed.feed(NESTED_PAGE[i:i + chunk])
                   for i in range(0, len(NESTED_PAGE), chunk)) + probed.finish()
    assert out == plain.feed(NESTED_PAGE) + plain.finish()
    assert probed.found == (True, True, True)
    assert probed.inside == frozenset({(0, 1)})   # the cta (1) inside the hero (0)


def test_without_probes_or_a_page_read_nothing_is_inside_anything() -> None:
    rewriter = Rewriter([Edit('[data-ep-slot="hero"]', "inner", "x")])
    rewriter.feed(NESTED_PAGE)
    rewriter.finish()
    assert rewriter.inside == frozenset()
    unread = Rewriter([Edit('[data-ep-slot="hero"]', "inner", "x")], probes=PROBED[:2])
    assert unread.feed(b"<p>no slot</p>") + unread.finish() == b"<p>no slot</p>"
    assert unread.inside == frozenset()


def test_a_slot_inside_a_later_element_of_the_outer_selector_is_not_taken_as_inside() -> None:
    # An edit takes the first element its selector finds: a slot inside the second
    # `section.promo` is shown whatever the first one's variant does.
    page = (b'<section class="promo"><h2>Sale</h2></section><p>x</p>'
            b'<section class="promo"><a id="signup">Join</a></section>')
    rewriter = Rewriter([Edit("section.promo", "inner", "<h2>New</h2>"),
                         Edit("#signup", "text", "Join now")],
                        probes=("section.promo", "#signup"))
    out = rewriter.feed(page) + rewriter.finish()
    assert b"Join now" in out and rewriter.inside == frozenset()
    # Slots inside slots inside slots: every pair.
    nested = Rewriter([Edit("#a", "look"), Edit("#b", "look"), Edit("#c", "look")],
                      probes=("#a", "#b", "#c"))
    nested.feed(b'<div id="a"><div id="b"><p id="c">x</p></div></div>')
    nested.finish()
    assert nested.inside == frozenset({(0, 1), (0, 2), (1, 2)})
