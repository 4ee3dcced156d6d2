"""Golden cases in tests/rules/cases/*.yaml: rules, a visitor, and what they decide (or
the errors they give). Marketers can read and add them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_personalizer.classify.classifier import request_info
from edge_personalizer.rules.book import check_rules
from edge_personalizer.rules.evaluator import decide

from ..factories import default_classifier

CASES = sorted((Path(__file__).parent / "cases").glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text())
    return case


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path, tmp_path: Path) -> None:
    case = _load(path)
    (tmp_path / "rules.yaml").write_text(case["rules"])
    ruleset, errors = check_rules(tmp_path)
    if "errors" in case:
        got = [str(e).removeprefix(f"{tmp_path / 'rules.yaml'}:") for e in errors]
        assert len(got) == len(case["errors"]), "\n".join(got)
        for actual, expected in zip(got, case["errors"], strict=True):
            assert actual.startswith(expected), f"{actual}\n  expected: {expected}"
        return
    assert errors == [], errors
    spec = case["visitor"]
    url = spec["url"]
    path_part, _, query = url.partition("?")
    request = request_info(method="GET", path=path_part, query_string=query,
                           host="shop.example", headers=list(spec.get("headers", {}).items()),
                           client_ip=spec.get("ip"))
    now = datetime.fromisoformat(spec["time"]).timestamp() if "time" in spec else 1.795e9
    visitor = default_classifier().visitor(request, now=now, page_view=True)
    decision = decide(ruleset, visitor)
    expected = dict(case["expect"] or {})
    redirect = expected.pop("redirect", None)
    headers = expected.pop("headers", {})
    cookies = expected.pop("cookies", {})
    assert {slot: {"variant": c.variant, "reason": c.reason}
            for slot, c in decision.slots.items()} == expected
    assert (decision.redirect.location if decision.redirect else None) == redirect
    assert dict(decision.headers) == headers
    assert dict(decision.cookies) == cookies
