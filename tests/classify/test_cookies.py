from __future__ import annotations

from edge_personalizer.classify.cookies import cookie_values, parse_cookies


def test_the_first_of_a_repeated_name_wins() -> None:
    assert parse_cookies('a=1; b="two"; a=3; broken; =x') == {"a": "1", "b": "two"}
    assert parse_cookies("") == {}


def test_a_hostile_header_is_read_up_to_400_cookies() -> None:
    many = "; ".join(f"c{n}={n}" for n in range(1000))
    assert len(parse_cookies(many)) == 400 and parse_cookies(many)["c399"] == "399"
    assert cookie_values("; ".join(["a=1"] * 1000), "a") == ["1"] * 400


def test_every_value_of_a_name_in_the_order_sent() -> None:
    header = 'ep_profile=old; xep_profile=no; other=1; ep_profile="new"; ep_profile'
    assert cookie_values(header, "ep_profile") == ["old", "new"]
    assert cookie_values(header, "missing") == []
