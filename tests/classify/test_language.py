from __future__ import annotations

import pytest

from edge_personalizer.classify.language import parse_accept_language
from edge_personalizer.classify.visitor import Language


@pytest.mark.parametrize(("header", "expected"), [
    ("de-CH,de;q=0.9,en;q=0.8", Language("de", ("de-CH", "de", "en"))),
    ("en-US,fr;q=0.5", Language("en", ("en-US", "en", "fr"))),
    ("fr;q=0.4, en-gb;q=0.9", Language("en", ("en-GB", "en", "fr"))),
    ("en-US,en-GB;q=0.9", Language("en", ("en-US", "en-GB", "en"))),
    ("zh-hant-tw,zh;q=0.8", Language("zh", ("zh-Hant-TW", "zh"))),
    ("*", Language()),
    ("", Language()),
    ("de;q=0, en", Language("en", ("en",))),
    ("1234, en;q=abc, es", Language("es", ("es",))),
])
def test_parse_accept_language(header: str, expected: Language) -> None:
    assert parse_accept_language(header) == expected


def test_huge_header_is_bounded() -> None:
    language = parse_accept_language(",".join(f"x{i % 26 + 10}" for i in range(1000)))
    assert len(language.tags) <= 12
