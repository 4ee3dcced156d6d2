from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import check_rules, load_rules
from edge_personalizer.rules.fields import (
    SHOWN_ONLY,
    as_written,
    lookup,
    normalize,
    rules_can_read,
    suggest,
    vary_headers,
)

from ..factories import make_visitor


def test_lookup_known_prefixed_and_unknown() -> None:
    assert lookup("geo.country")[0] is not None
    assert lookup("request.header.x-country")[0] is not None
    spec, why = lookup("geo.contry")
    assert spec is None and why == "unknown field 'geo.contry'; did you mean 'geo.country'?"
    assert suggest("zzz", ["geo.country"]) == ""


def test_vary_headers_follow_the_fields() -> None:
    assert vary_headers(["geo.country"]) == []
    assert vary_headers(["device.type", "referral.source", "profile.visits"]) == [
        "User-Agent", "Sec-CH-UA-Mobile", "Sec-CH-UA-Platform", "Sec-CH-UA-Model", "Cookie",
        "Referer"]
    assert vary_headers(["request.header.x-segment", "request.cookie.crm",
                         "profile.visits"]) == ["Cookie", "x-segment"]


def test_header_names_are_case_insensitive(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {a: {}}\nrules:\n  - {name: r, when: "
                                     "{request.header.X-Country: SE}, then: {a: x}}\n")
    rule = load_rules(tmp_path).rules[0]
    assert rule.condition(make_visitor(headers={"X-Country": "se"}))
    assert normalize("request.header.X-A") == "request.header.x-a"


def test_rules_can_read_the_fields_they_may_name_and_the_groups_above_them() -> None:
    for name in ("geo.country", "profile.first_referral", "profile.first_referral.medium",
                 "profile.interests", "profile.interests.running", "request.query",
                 "request.header.x-country"):
        assert rules_can_read(name), name
    for name in ("geo.source", "time.minute", "profile.first_seen", "request.client_ip",
                 "geo.country_code_unknown"):
        assert not rules_can_read(name), name


def test_the_fields_explain_shows_that_rules_cannot_read_are_named_so(tmp_path: Path) -> None:
    shown = make_visitor().to_dict()
    unreadable = {f"{root}.{name}" for root, fields in shown.items() for name in fields
                  if not rules_can_read(f"{root}.{name}")}
    assert unreadable == SHOWN_ONLY
    (tmp_path / "r.yaml").write_text("rules:\n  - name: r\n    when: {time.minute: {gte: 3}}\n"
                                     "    then: {headers: {X-A: b}}\n")
    _, [error] = check_rules(tmp_path)
    assert error.reason == ("rule 'r': 'time.minute' is shown by explain, but rules cannot "
                            "read it (the fields rules read: docs/fields.md)")


def test_a_value_is_quoted_as_written_up_to_twenty_characters() -> None:
    assert as_written(10 ** 400) == "1" + "0" * 19 + "…"
    assert as_written("x" * 30) == "'" + "x" * 19 + "…"
    assert as_written(1.5) == "1.5" and as_written("tablett") == "'tablett'"
    assert as_written(10 ** 23) == "1" + "0" * 23   # (24 characters: whole)
