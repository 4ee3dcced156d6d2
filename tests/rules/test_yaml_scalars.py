"""What a value written on one line means: the same as the full YAML reader says, or a
decline."""

from __future__ import annotations

import pytest
import yaml

from edge_personalizer.rules.yaml_scalars import Decline, PlainValues, plain_value, quoted


@pytest.mark.parametrize("text", [
    "a", "yes", "No", "OFF", "null", "~", "", "-1", "0x1F", "0o17", "017", "08", "1_000",
    "1:20", ".5", "1e3", ".inf", "-.Inf", "2026-12-24", "2026-12-24 10:00:00", "2026-1-2",
    "a b", "a#b", "http://x.com/a", "<b>1</b>", "é", "0b101", "12:30:45", "y", "Null",
])
def test_plain_values_mean_what_yaml_says(text: str) -> None:
    assert repr(plain_value(text)) == repr(yaml.safe_load(f"k: {text}")["k"])


@pytest.mark.parametrize("text", ["<<", "=", "2026-13-45"])
def test_plain_values_yaml_would_build_otherwise_decline(text: str) -> None:
    with pytest.raises(Decline):
        plain_value(text)


@pytest.mark.parametrize(("line", "value"), [
    ("'it''s' # c", "it's"),
    ('"\\u00e9\\t\\"q\\"" x', 'é\t"q"'),
    ('"\\x41\\_\\/"', "A\xa0/"),
])
def test_quoted_values_and_where_they_end(line: str, value: str) -> None:
    text, end = quoted(line, 0)
    assert text == value == yaml.safe_load(f"k: {line[:end]}")["k"]


@pytest.mark.parametrize("line", ["'open", '"open', '"\\q"', '"\\U0011FFFF"'])
def test_quotes_not_closed_on_their_line_or_unknown_escapes_decline(line: str) -> None:
    with pytest.raises(Decline):
        quoted(line, 0)


def test_a_files_plain_values_are_worked_out_once_and_kept_bounded() -> None:
    values = PlainValues(max_entries=2)
    assert values("3") == 3 and values("yes") is True
    assert values("3") == 3 and len(values._known) == 2
    assert values("x") == "x" and len(values._known) == 1   # full: started again
    with pytest.raises(Decline):
        values("<<")
