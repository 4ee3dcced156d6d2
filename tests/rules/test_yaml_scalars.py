"""What a value written on one line means: the same as the full YAML reader says, or a
decline."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from edge_personalizer.rules.yaml_scalars import (
    Decline,
    PlainValues,
    RuleFileLoader,
    plain_value,
    quoted,
)

from ..conftest import PROFILE_KEY
from ..servers import Server, start_proxy


def _full(text: str) -> object:
    """What the full reader of rule files makes of `k: <text>`."""
    return yaml.load(f"k: {text}", Loader=RuleFileLoader)["k"]   # noqa: S506 (a safe loader)


@pytest.mark.parametrize("text", [
    "a", "yes", "No", "OFF", "null", "~", "", "-1", "0x1F", "0o17", "017", "08", "1_000",
    "1:20", ".5", "1e3", ".inf", "-.Inf", "2026-12-24", "2026-12-24 10:00:00", "2026-1-2",
    "a b", "a#b", "http://x.com/a", "<b>1</b>", "é", "0b101", "12:30:45", "y", "Null",
])
def test_plain_values_mean_what_yaml_says(text: str) -> None:
    assert repr(plain_value(text)) == repr(_full(text))


@pytest.mark.parametrize(("text", "value"), [
    ("NO", "NO"), ("no", "no"), ("off", "off"), ("On", "On"), ("yes", "yes"), ("y", "y"),
    ("true", True), ("False", False), ("TRUE", True),
    ("02134", "02134"), ("0123", "0123"), ("08", "08"), ("0x1F", "0x1F"), ("0o17", "0o17"),
    ("1_000", "1_000"), ("12:30", "12:30"), ("1:20:30", "1:20:30"), (".inf", float("inf")),
    ("0", 0), ("-7", -7), ("+3", 3), ("1.5", 1.5), (".5", 0.5), ("2.", 2.0), ("1.5e3", 1500.0),
])
def test_plain_values_mean_what_a_marketer_wrote_as_yaml_1_2_reads_them(
        text: str, value: object) -> None:
    # Norway's code, a postal code with its leading zero, a time of day: text, not the
    # false, the octal number or the minutes of YAML 1.1.
    assert repr(plain_value(text)) == repr(value) == repr(_full(text))


@pytest.mark.parametrize("text", ["<<", "="])
def test_plain_values_yaml_would_build_otherwise_decline(text: str) -> None:
    with pytest.raises(Decline):
        plain_value(text)


@pytest.mark.parametrize("text", ["2026-13-45", "2026-02-30 10:00:00", "1" * 5000])
def test_plain_values_yaml_cannot_make_stay_the_text_written(text: str) -> None:
    assert plain_value(text) == text   # (as the loader's node reader keeps them)


@pytest.mark.parametrize(("line", "value"), [
    ("'it''s' # c", "it's"),
    ('"\\u00e9\\t\\"q\\"" x', 'é\t"q"'),
    ('"\\x41\\_\\/"', "A\xa0/"),
])
def test_quoted_values_and_where_they_end(line: str, value: str) -> None:
    text, end = quoted(line, 0)
    assert text == value == _full(line[:end])


@pytest.mark.parametrize("line", ["'open", '"open', '"\\q"', '"\\U0011FFFF"'])
def test_quotes_not_closed_on_their_line_or_unknown_escapes_decline(line: str) -> None:
    with pytest.raises(Decline):
        quoted(line, 0)


def test_a_files_plain_values_are_worked_out_once_and_kept_bounded() -> None:
    values = PlainValues(max_entries=2)
    assert values("3") == 3 and values("true") is True
    assert values("3") == 3 and len(values._known) == 2
    assert values("x") == "x" and len(values._known) == 1   # full: started again
    with pytest.raises(Decline):
        values("<<")


BROWSER = {"user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                         "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"}
NORWAY_RULES = """\
rules:
  - name: promo-off
    when: {request.query.promo: off, request.query.code: 0123}
    then:
      headers: {X-Code: 0123, X-Time: 12:30}
      cookies: {promo: off}
"""


def test_rules_written_unquoted_match_and_send_what_was_written(
        origin: Server, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(NORWAY_RULES)
    server = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                         env={"EP_PROFILE_KEYS": PROFILE_KEY})
    try:
        hit = httpx.get(server.url + "/page/sale?promo=off&code=0123", headers=BROWSER)
        missed = httpx.get(server.url + "/page/sale?promo=false&code=83", headers=BROWSER)
    finally:
        server.stop()
    assert hit.headers["x-code"] == "0123" and hit.headers["x-time"] == "12:30"
    assert any(c.startswith("promo=off;") for c in hit.headers.get_list("set-cookie"))
    assert "x-code" not in missed.headers
