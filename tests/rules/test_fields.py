from __future__ import annotations

from edge_personalizer.rules.fields import lookup, suggest, vary_headers


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
