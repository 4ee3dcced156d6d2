"""A YAML mistake in a rule file is named where a marketer can fix it, with the usual fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import check_rules


@pytest.mark.parametrize(("text", "line", "column", "reason"), [
    # A '{' never closed was named at the line after the file's last (4:1 of 3 lines).
    ("rules:\n  - name: a\n    when: {geo.country: GB\n", 3, 11,
     "a '{' opened here is never closed"),
    ('rules:\n  - name: "a\n', 2, 11, "a quote opened here is never closed"),
    # A '{' left open at a line's end: named where it opened, not at the next line's key
    # with a hint about quoting.
    ("experiments:\n  - name: e\n    variants:\n      control: {weight: 50\n"
     "      b: {weight: 50, html: x}\n", 4, 16,
     "a '{' opened here is not closed before line 5"),
    ("rules: [a, b\n", 1, 8, "a '[' opened here is never closed"),
    ("rules:\n  - name: a\n    then:\n      banner: Free: delivery\n", 4, 19,
     "mapping values are not allowed here (a value holding ': ' is quoted: "
     'banner: "Free: delivery")'),
    # A key indented under the line above's value is an indentation mistake, not a ':'
    # to quote.
    ("rules:\n  - name: a\n    when:\n      segment: runner\n        request.path: /\n",
     5, 21, "mapping values are not allowed here (this line is indented deeper than the "
            "line above, as if it belonged to its value: line it up with the keys it goes "
            "with)"),
    # ... but words a value wrapped onto the next line are a ': ' to quote.
    ("rules:\n  - name: a\n    then:\n      banner: Free delivery on all\n"
     "        orders over: 50\n", 5, 20, "(a value holding ': ' is quoted"),
    ("rules:\n  - name: a\n    then: {banner: <p>Free: delivery</p>}\n", 3, 27,
     "(a value holding ': ' is quoted"),
    # A line no mapping or list around it lines up with: named in columns, not in
    # PyYAML's "expected <block end>, but found '<block mapping start>'".
    ("rules:\n  - name: a\n   then: {x: y}\n", 3, 4,
     "this line starts at column 4, and the list it sits in has its '- ' at column 3 (from "
     "line 2): line it up with the keys of the item it belongs to"),
    ("goals:\n  buy:\n    when: {request.path: /x}\n      value: 3\n", 4, 7,
     "this line starts at column 7, and the keys it sits among at column 5 (from line 3): "
     "line it up with the keys it goes with"),
    ("rules:\n  - name: a\n    then: {hero: x}\n  priority: 3\n", 4, 3,
     "this line starts where the items of the list from line 2 start, but is no item: start "
     "it with '- ', or indent it as far as the keys of the item it belongs to"),
    # A list item out of line with the one before: both columns, not the mapping's keys.
    ("rules:\n- name: a\n  then: {hero: x}\n - name: b\n", 4, 2,
     "this list item starts at column 2, and the item before it (line 2) at column 1: the "
     "items of one list start in the same column"),
    ("rules:\n  - name: a\n    then: {hero: x}\n - name: b\n", 4, 2,
     "this list item starts at column 2, and the item before it (line 2) at column 3"),
    # ... the list's own item, not one of a list nested in it nor a text block's line.
    ("rules:\n  - name: a\n    tags:\n      - one\n      - two\n    then: {hero: x}\n"
     " - name: b\n", 7, 2, "and the item before it (line 2) at column 3"),
    ("rules:\n  - name: a\n    then:\n      hero: |\n        - free\n - name: b\n", 6, 2,
     "and the item before it (line 2) at column 3"),
    ("rules:\n\t- name: a\n", 2, 1, "(indent with spaces: YAML takes no tabs)"),
])
def test_a_yaml_mistake_is_named_where_it_can_be_fixed(
        tmp_path: Path, text: str, line: int, column: int, reason: str) -> None:
    (tmp_path / "r.yaml").write_text(text)
    _, [error] = check_rules(tmp_path)
    assert (error.line, error.column) == (line, column)
    assert error.reason.startswith("invalid YAML: ") and reason in error.reason, error.reason
