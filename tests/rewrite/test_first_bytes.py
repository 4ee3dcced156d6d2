"""FirstBytesMemo: rewritten first bytes, remembered by the edits and the bytes they came from."""

from __future__ import annotations

from edge_personalizer.rewrite.edits import Edit
from edge_personalizer.rewrite.encoding import sniff_meta_charset
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


def test_the_charset_of_a_first_kib_met_before_is_the_one_sniffed_from_it() -> None:
    head = b'<!doctype html><html><head><meta charset="Shift_JIS">' + b" " * 1000
    pages = [
        head + b"<body>one page</body>",
        head + b"<body>another page of the same site</body>",   # the same first KiB
        head[:300],                                      # shorter than a KiB: all of it
        head[:300] + b"<p>the page goes on</p>",         # the same start, longer: not it
        b'<html><meta charset="koi8-r">' + b" " * 1200,
        b" " * 1100 + b'<meta charset="koi8-r">',        # past the first KiB: none
        b"<html>no charset at all</html>",
    ]
    for kept, sniffs in ((8, 6), (2, 12)):   # 6 different first KiBs; 2 kept: each again
        memo = FirstBytesMemo(max_charsets=kept)
        for page in pages * 2:
            assert memo.charset(page) == sniff_meta_charset(page), page[-40:]
        assert memo.sniffs == sniffs
