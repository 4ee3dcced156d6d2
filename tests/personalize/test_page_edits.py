from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from edge_personalizer.personalize.page_edits import (
    MAX_PROBED_SLOTS,
    PageEditor,
    probed_slots,
    to_look_for,
)
from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rules.book import RuleBook
from edge_personalizer.rules.evaluator import decide
from edge_personalizer.rules.model import Decision, Slot, SlotChoice

from ..factories import default_classifier, make_request


def _book(tmp_path: Path, html: str) -> RuleBook:
    (tmp_path / "site.yaml").write_text(
        "slots:\n  hero: {}\nrules:\n  - name: all\n    then:\n"
        f"      hero: {{html: \"{html}\"}}\n      head: {{html: \"<script>x()</script>\"}}\n")
    return RuleBook(tmp_path)


def test_static_variants_are_worked_out_once_per_choice_and_nonce(tmp_path: Path) -> None:
    book = _book(tmp_path, "<h1>Hi</h1>")
    editor = PageEditor(book)
    visitor = default_classifier().visitor(make_request("/"), now=0.0)
    decision = decide(book.current, visitor)
    first = editor.changes(decision, visitor, "n1")
    assert editor.changes(decision, visitor, "n1") is first
    other = editor.changes(decision, visitor, "n2")
    assert other is not first and 'nonce="n2"' in other.head
    assert [e.payload for e in first.edits] == ["<h1>Hi</h1>"]


def test_variants_printing_visitor_data_are_rendered_per_visitor(tmp_path: Path) -> None:
    book = _book(tmp_path, "<p>{{ request.path }}</p>")
    editor = PageEditor(book)
    for path in ("/a", "/b"):
        visitor = default_classifier().visitor(make_request(path), now=0.0)
        changes = editor.changes(decide(book.current, visitor), visitor, None)
        assert [e.payload for e in changes.edits] == [f"<p>{path}</p>"]


def test_decisions_made_apart_that_chose_alike_share_their_changes(tmp_path: Path) -> None:
    # An experiment decides for each visitor; those given the same variant get the same
    # page changes, worked out once. After a reload, the new rules' changes are used.
    book = _book(tmp_path, "<h1>Hi</h1>")
    editor = PageEditor(book)
    visitor = default_classifier().visitor(make_request("/"), now=0.0)
    one, two = decide(book.current, visitor), decide(book.current, visitor)
    assert one is not two
    first = editor.changes(one, visitor, None)
    assert editor.changes(two, visitor, None) is first
    (tmp_path / "site.yaml").write_text(
        "slots:\n  hero: {}\nrules:\n  - name: all\n    then:\n      hero: {html: '<h1>Ho</h1>'}\n")
    assert book.reload()
    changed = editor.changes(decide(book.current, visitor), visitor, None)
    assert [e.payload for e in changed.edits] == ["<h1>Ho</h1>"]


def test_a_control_or_holdout_is_looked_for_only_where_which_slots_a_page_has_is_not_known(
        tmp_path: Path) -> None:
    book = _book(tmp_path, "<h1>Hi</h1>")
    editor = PageEditor(book)
    visitor = default_classifier().visitor(make_request("/"), now=0.0)
    control = SlotChoice(slot="hero", variant="control", reason="experiment", by="t")
    held_out = SlotChoice(slot="hero", variant="holdout", reason="holdout", by="t")
    decision = Decision(slots=MappingProxyType({"hero": control}))
    assert not decision.changes_page and to_look_for(decision)
    looked = editor.changes(decision, visitor, None, look=True)
    assert looked.edits == (Edit('[data-ep-slot="hero"]', "look"),) and looked.slots == ("hero",)
    assert not editor.changes(decision, visitor, None)   # a known page: nothing to do
    # A holdout is neither counted nor remembered, but named in X-EP-Variant and the
    # segment: the page shows whether it has the slot before it is named there.
    holdout = Decision(slots=MappingProxyType({"hero": held_out}))
    assert to_look_for(holdout)
    assert editor.changes(holdout, visitor, None, look=True).edits == looked.edits
    assert not editor.changes(holdout, visitor, None)


def test_a_view_that_looks_probes_which_slot_is_inside_which() -> None:
    slots = {name: Slot(name, f'[data-ep-slot="{name}"]') for name in "abcdefghij"}
    slots["list"] = Slot("list", "main h1, main h2")
    assert probed_slots(["a", "list", "b"], slots) == ("a", "b")   # a list: no `x *`
    assert probed_slots(["a", "list"], slots) == ()               # nothing to pair
    many = list("abcdefghij")
    assert probed_slots(many[:MAX_PROBED_SLOTS], slots) == tuple(many[:MAX_PROBED_SLOTS])
    assert probed_slots(many, slots) == ()   # past the bound: none (each costs every element)
