from __future__ import annotations

from edge_personalizer.report import classify_lines, render_summary, summarize, visitor_for

from .factories import default_classifier


def test_visitor_for_a_url() -> None:
    visitor = visitor_for(default_classifier(), url="https://shop.example/a?utm_source=fb",
                          headers={"Referer": "https://www.google.com/"}, now=1.795e9)
    assert visitor.request.host == "shop.example" and visitor.referral.source == "facebook"


def test_bad_lines_are_reported_not_fatal() -> None:
    rows = list(classify_lines(default_classifier(), [
        '{"url": "/", "time": "not a time"}', '[]', '{"url": "/", "headers": "x"}',
        '{"url": "ftp://x/"}', '{"url": "/ok", "time": 1795000000}'], now=0))
    assert [("error" in row) for row in rows] == [True, True, True, True, False]
    summary = summarize(rows)
    assert summary["visitors"] == 1 and summary["errors"] == 4
    assert "1 visitors, 4 unreadable lines" in render_summary(summary)


def test_a_url_without_its_scheme_is_an_error_not_a_path() -> None:
    # It classified as a visitor of host "site.invalidshop.example".
    (row,) = classify_lines(default_classifier(), ['{"url": "shop.example/sale"}'], now=0)
    assert "'shop.example/sale' is no http(s) URL; write https://shop.example/sale" \
        in str(row["error"])
