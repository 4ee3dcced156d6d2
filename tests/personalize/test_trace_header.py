"""The debug trace fitted to one header: whole JSON, what the page got first, the rules and
experiments left out counted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from edge_personalizer.personalize.trace_header import TRACE_LIMIT, trace_header

from ..conftest import ADMIN_TOKEN, ROOT
from ..servers import Server, start_proxy


def _trace(rules: int, experiments: int = 0) -> dict[str, Any]:
    return {
        "rules": [{"name": f"rule-{n:03}", "outcome": "failed",
                   "detail": f'referral.campaign is "campaign-{n}" (got "spring")'}
                  for n in range(rules)],
        "experiments": [{"name": f"test-{n}", "in_audience": True, "variant": "b"}
                        for n in range(experiments)],
        "as_is": None,
        "decision": {"slots": {"hero": {"variant": "rule-007", "reason": "rule",
                                        "by": "rule-007"}},
                     "redirect": None, "headers": {}, "cookies": {}},
        "page": {"slots": {"hero": "rule-007"}, "lacks": []},
    }


def test_a_trace_that_fits_goes_whole() -> None:
    trace = {**_trace(3, 1), "visitor": {"device": "mobile"}}
    assert json.loads(trace_header(trace)) == trace


def test_a_long_trace_stays_json_with_what_the_page_got_and_says_what_it_left_out() -> None:
    trace = _trace(200, 5)
    text = trace_header(trace)
    assert len(text) <= TRACE_LIMIT
    fitted = json.loads(text)
    assert fitted["decision"] == trace["decision"] and fitted["page"] == trace["page"]
    kept = fitted["rules"]
    assert kept == trace["rules"][:len(kept)] and len(kept) > 10   # the first, in order
    assert fitted["left_out"]["rules"] == 200 - len(kept)
    shown = fitted["experiments"]
    assert shown == trace["experiments"][:len(shown)]
    assert fitted["left_out"]["experiments"] == 5 - len(shown) > 0
    assert "edge-personalizer explain" in fitted["left_out"]["whole"]
    assert list(fitted)[:2] == ["decision", "page"]


def test_experiments_keep_their_place_when_only_they_are_long() -> None:
    trace = _trace(2, 400)
    fitted = json.loads(trace_header(trace, limit=3000))
    assert fitted["rules"] == trace["rules"]
    assert fitted["left_out"]["experiments"] == 400 - len(fitted["experiments"])
    assert "rules" not in fitted["left_out"]


def test_a_decision_larger_than_the_header_is_told_not_cut() -> None:
    trace = _trace(1)
    trace["decision"]["headers"] = {f"x-header-{n}": "v" * 50 for n in range(200)}
    text = trace_header(trace)
    assert len(text) <= TRACE_LIMIT
    fitted = json.loads(text)
    assert fitted["page"] == trace["page"] and fitted["left_out"]["bytes"] > TRACE_LIMIT
    assert "edge-personalizer explain" in fitted["left_out"]["whole"]


def test_the_trace_of_a_site_with_many_rules_is_whole_json_through_the_server(
        origin: Server, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "tests" / "data" / "rules", rules)
    (rules / "zz-campaigns.yaml").write_text("rules:\n" + "".join(
        f"  - name: campaign-{n:03}\n"
        f"    when: {{referral.campaign: summer-{n}, device.type: mobile}}\n"
        f"    then: {{banner: {{html: '<p>Summer {n}</p>'}}}}\n" for n in range(80)))
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules))
    try:
        traced = httpx.get(f"{proxy.url}/slotted/a", params={"utm_source": "facebook"},
                           headers={"accept": "text/html", "x-ep-debug": ADMIN_TOKEN,
                                    "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) "
                                                  "AppleWebKit/537.36 (KHTML, like Gecko) "
                                                  "Chrome/131.0.0.0 Safari/537.36"})
    finally:
        proxy.stop()
    header = traced.headers["x-ep-trace"]
    assert len(header) <= TRACE_LIMIT
    trace = json.loads(header)
    assert trace["decision"]["slots"]["hero"]["by"] == "facebook-hero"
    assert trace["page"]["slots"]["hero"] == "facebook-hero"
    named = [rule["name"] for rule in trace["rules"]]
    assert named[:1] == ["facebook-hero"] and len(named) > 10
    assert trace["left_out"]["rules"] == 85 - len(named)   # (5 rules of site.yaml)
