"""FirstBytesMemo: rewritten first bytes, remembered by the edits and the bytes they came from."""

from __future__ import annotations

from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rewrite.first_bytes import FirstBytesMemo

HERO = (Edit('[data-ep-slot="hero"]', "replace", "<h1>Hi</h1>"),)
BANNER = (Edit('[data-ep-slot="banner"]', "replace", "<p>Sale</p>"),)


def test_a_page_starting_with_remembered_bytes_is_found_and_counted() -> None:
    memo = FirstBytesMemo()
    memo.store(HERO, b"<html><div>", b"<html><h1>Hi</h1>", 1)
    assert memo.lookup(HERO, b"<html><div> and the rest") == (b"<html><div>",
                                                             b"<html><h1>Hi</h1>", 1)
    assert memo.hits == 1
    assert memo.lookup(HERO, b"<html><span>") is None       # other bytes
    assert memo.lookup(BANNER, b"<html><div>") is None      # other edits


def test_the_memo_keeps_within_its_bytes_and_per_edits_bounds() -> None:
    memo = FirstBytesMemo(budget=100, max_prefix=40, per_key=2)
    memo.store(HERO, b"x" * 41, b"y", 1)                     # too long a prefix: not kept
    assert memo.size == 0
    for n in range(3):                                     # only the 2 latest per edits
        memo.store(HERO, b"p%d" % n, b"o%d" % n, 1)
    assert memo.lookup(HERO, b"p0...") is None and memo.lookup(HERO, b"p2...") is not None
    memo.store(BANNER, b"b" * 40, b"c" * 56, 1)            # past the budget: oldest go first
    assert memo.size <= 100
    assert memo.lookup(HERO, b"p2...") is None and memo.lookup(BANNER, b"b" * 40) is not None


def test_the_same_edits_find_the_same_entry_whether_a_list_or_a_tuple() -> None:
    memo = FirstBytesMemo()
    memo.store(list(HERO), b"<html><div>", b"<html><h1>Hi</h1>", 1)
    assert memo.lookup(HERO, b"<html><div>...") == (b"<html><div>", b"<html><h1>Hi</h1>", 1)
    assert memo.lookup(list(BANNER), b"<html><div>...") is None
