from __future__ import annotations

import pytest

from edge_personalizer.rules.template import Placeholder, Template

from ..factories import make_visitor


def test_placeholders_are_parsed_and_values_escaped() -> None:
    template = Template.parse('<p title="{{ request.query.q }}">Hi {{ geo.city | default: '
                              '"friend" }}</p>')
    assert Placeholder("geo.city", "friend") in template.parts
    visitor = make_visitor(query='q="><script>x</script>', ip="81.2.69.142")
    assert template.render(visitor) == ('<p title="&quot;&gt;&lt;script&gt;x&lt;/script&gt;">'
                                        "Hi London</p>")
    assert template.render(make_visitor()) == '<p title="">Hi friend</p>'


@pytest.mark.parametrize(("text", "message"), [
    ("{{ geo.citty }}", "did you mean 'geo.city'"),
    ("{{ geo.city | upper }}", "cannot read placeholder"),
    ("{{ }}", "cannot read placeholder"),
])
def test_bad_placeholders(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Template.parse(text)


def test_static_templates() -> None:
    assert Template.parse("<b>plain</b>").is_static
    assert not Template.parse("{{ geo.city }}").is_static


def test_url_attributes_take_only_relative_and_http_urls_from_visitors() -> None:
    template = Template.parse('<a href="{{ request.query.next | default: "/shop" }}">go</a>'
                              '<a href="/search?q={{ request.query.next }}">s</a>')
    rendered = [template.render(make_visitor(query=f"next={value}")) for value in (
        "%2Fsale", "https%3A%2F%2Fx.example%2F%3Fa%3D1%26b%3D2", "javascript%3Aalert(1)",
        "%20JaVa%09script%3Ax", "data%3Atext%2Fhtml%2Cx")]
    assert [r.split('"')[1] for r in rendered] == [
        "/sale", "https://x.example/?a=1&amp;b=2", "/shop", "/shop", "/shop"]
    # after a literal '?', the scheme is settled: the value is only escaped
    assert rendered[2].split('"')[3] == "/search?q=javascript:alert(1)"


def test_set_attribute_values_are_escaped_for_their_attribute() -> None:
    href = Template.parse("{{ request.query.u }}", kind="attribute", attribute="HREF")
    assert href.render(make_visitor(query="u=javascript%3Ax")) == ""
    assert href.render(make_visitor(query="u=%2Fa%3Fb%3D%22")) == "/a?b=&quot;"
    title = Template.parse("{{ request.query.u }}", kind="attribute", attribute="title")
    assert title.render(make_visitor(query="u=javascript%3Ax")) == "javascript:x"
    with pytest.raises(ValueError, match="event handler"):
        Template.parse("{{ request.query.u }}", kind="attribute", attribute="onload")


def test_text_templates_leave_escaping_to_the_writer() -> None:
    text = Template.parse("{{ request.query.n }} <b>", kind="text")
    assert text.render(make_visitor(query="n=Tom+%26+Jerry")) == "Tom & Jerry <b>"
    assert text.fields == {"request.query.n"} and not text.is_static
