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
