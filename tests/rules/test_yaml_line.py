"""Values written on one line, and the (line, column) of each value and key."""

from __future__ import annotations

import pytest

from edge_personalizer.rules.yaml_line import KEY, MAX_DEPTH, LineReader, Repeated
from edge_personalizer.rules.yaml_scalars import Decline


def test_a_flow_mapping_and_the_marks_of_its_values_and_keys() -> None:
    reader = LineReader()
    reader.line = 3
    line = 'when: {geo.country: [DE, "AT"], visits: 2}  # c'
    value = reader.inline(line, 6, ("r",))
    assert value == {"geo.country": ["DE", "AT"], "visits": 2}
    assert reader.marks[("r",)] == (3, 7)
    assert reader.marks[("r", "geo.country", KEY)] == (3, 8)
    assert reader.marks[("r", "geo.country", 1)] == (3, 26)
    assert reader.marks[("r", "visits")] == (3, 41)


def test_a_key_written_twice_is_remembered_once() -> None:
    reader = LineReader()
    reader.line = 2
    reader.inline("{a: 1, a: 2, b: 3, b: 4}", 0, ())
    assert reader.repeated == Repeated("a", 2, 8)


def test_a_literal_block_header_waits_for_its_lines() -> None:
    reader = LineReader()
    assert reader.inline("html: |-  # the hero", 6, ("html",)) is None
    assert reader.literal == "-"


@pytest.mark.parametrize("line", [
    "[1, 2,]", "{a}", "{a: }", "[a #b]", "[1, 2", "a: b", "|2", ">", "&x 1", "'q' x",
])
def test_what_is_not_one_line_value_declines(line: str) -> None:
    with pytest.raises((Decline, IndexError)):   # (running off the line: read() declines)
        LineReader().inline(line, 0, ())


def test_values_nested_too_deep_decline() -> None:
    with pytest.raises(Decline):
        LineReader().inline("[" * (MAX_DEPTH + 2) + "]" * (MAX_DEPTH + 2), 0, ())
