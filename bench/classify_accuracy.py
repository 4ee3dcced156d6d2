"""How right the referral and device classifiers are on third-party data, and what it costs.

    .venv/bin/python bench/classify_accuracy.py [--label NAME]   # -> bench/results/classify.json

Data (../shared/corpora, see SOURCES.md there):
- referral: the referer-parser database (GPL; read here, never shipped): every host in it
  as a Referer, scored on the medium (its `chatbot` section is our `ai`, `unknown` our
  `referral`); and for every search engine with keyword parameters a search URL, scored on
  medium and keywords.
- device: uap-core's device, OS and browser cases with the class mapping written down in
  tests/classify/corpus_labels.py, crawler-user-agents (all bots), and uap-core's browser
  cases (none of which may be a bot).
- cost: a never-seen User-Agent (median, parser warm, as bench/micro.py measures it) and
  `edge-personalizer classify` on 10,000 distinct User-Agents (one process, wall time).

Each run is stored under its label (default "current"), so before and after sit side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_personalizer.classify.device import DeviceClassifier  # noqa: E402
from edge_personalizer.classify.referral import ReferralClassifier  # noqa: E402
from tests.classify.corpus_labels import labelled_cases  # noqa: E402
from tests.classify.test_device import BROWSER_FAMILIES  # noqa: E402
from tests.corpora import referer_database, uap  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "classify.json"
OWN = "shop.example"
REFERER_MEDIA = {"search": "search", "social": "social", "email": "email", "paid": "paid",
                 "chatbot": "ai", "unknown": "referral"}


def referer_cases() -> list[tuple[str, str, str | None]]:
    """(Referer, expected medium, expected keywords) from the referer-parser database."""
    cases: list[tuple[str, str, str | None]] = []
    for section, medium in REFERER_MEDIA.items():
        for entry in referer_database().get(section, {}).values():
            params = entry.get("parameters") or []
            for domain in entry.get("domains", []):
                if domain.split(".", 1)[0] in ("com", "org", "net", "io", "ru", "jp", "de"):
                    cases.append((f"android-app://{domain}", medium, None))
                    continue
                cases.append((f"https://{domain}", medium, None))
                if medium == "search" and params:
                    sep = "&" if "?" in domain else "?"
                    cases.append((f"https://{domain}{sep}{params[0]}=running+shoes", medium,
                                  "running shoes"))
    return cases


def bench_referral() -> dict[str, Any]:
    referrals = ReferralClassifier()
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    keywords_right = keywords_total = 0
    misses: list[str] = []
    for referer, medium, keywords in referer_cases():
        result = referrals.classify({}, referer, OWN)
        total[medium] += 1
        if result.medium == medium:
            right[medium] += 1
        elif len(misses) < 100:
            misses.append(f"{referer} -> {result.medium} (expected {medium})")
        if keywords is not None:
            keywords_total += 1
            keywords_right += result.keywords == keywords
    return {
        "referer_parser_medium_accuracy": round(sum(right.values()) / sum(total.values()), 4),
        "referer_parser_cases": sum(total.values()),
        "by_medium": {m: {"accuracy": round(right[m] / total[m], 4), "cases": total[m]}
                      for m in sorted(total)},
        "search_keywords_accuracy": round(keywords_right / keywords_total, 4),
        "search_keyword_cases": keywords_total,
        "misses": misses,
    }


def bench_device() -> dict[str, Any]:
    devices = DeviceClassifier(max_entries=100_000)
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    confusion: Counter[str] = Counter()
    misses: dict[str, list[str]] = {}
    for ua, label in labelled_cases():
        kind = devices.classify(ua).type
        total[label] += 1
        if kind == label:
            right[label] += 1
        else:
            confusion[f"{label}->{kind}"] += 1
            bucket = misses.setdefault(label, [])
            if len(bucket) < 40:
                bucket.append(f"{kind}: {ua}")
    browsers = [case["user_agent_string"] for case in uap("tests/test_ua.yaml")
                if BROWSER_FAMILIES.match(case["family"])]
    for name in ("test_resources/firefox_user_agent_strings.yaml",
                 "test_resources/opera_mini_user_agent_strings.yaml"):
        browsers += [case["user_agent_string"] for case in uap(name)]
    as_bots = [ua for ua in browsers if devices.classify(ua).type == "bot"]
    return {
        "by_type": {t: {"accuracy": round(right[t] / total[t], 4), "cases": total[t]}
                    for t in sorted(total)},
        "browsers_taken_for_bots": round(len(as_bots) / len(browsers), 4),
        "browser_cases": len(browsers),
        "browsers_taken_for_bots_examples": as_bots[:50],
        "confusion": dict(confusion.most_common()),
        "misses": misses,
    }


def distinct_agents(count: int) -> list[str]:
    seen: dict[str, None] = {}
    for name in ("tests/test_device.yaml", "test_resources/pgts_browser_list.yaml",
                 "tests/test_ua.yaml", "tests/test_os.yaml"):
        for case in uap(name):
            seen.setdefault(case["user_agent_string"].replace("\n", " "), None)
    agents = list(seen)[:count]
    if len(agents) < count:
        raise SystemExit(f"only {len(agents)} distinct User-Agents in the corpora")
    return agents


def bench_cost() -> dict[str, Any]:
    agents = [case["user_agent_string"] for case in uap("tests/test_ua.yaml")]
    devices = DeviceClassifier(max_entries=len(agents) + 10)
    for ua in agents:
        devices.classify(ua + " warm-up")
    samples: list[int] = []
    for ua in agents:
        start = time.perf_counter_ns()
        devices.classify(ua)
        samples.append(time.perf_counter_ns() - start)
    lines = "".join(json.dumps({"url": "https://shop.example/", "headers": {"user-agent": ua}})
                    + "\n" for ua in distinct_agents(10_000))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "edge_personalizer", "classify", "--format", "json"]
    runs: list[float] = []
    for _ in range(3):
        began = time.perf_counter()
        done = subprocess.run(cli, input=lines, capture_output=True, text=True, env=env,
                              check=True, cwd=ROOT)
        runs.append(time.perf_counter() - began)
    assert done.stdout.count("\n") >= 10_000, done.stderr[-2000:]
    return {
        "device_never_seen_ua_us": round(statistics.median(samples) / 1000, 2),
        "never_seen_ua_corpus_size": len(agents),
        "cli_classify_10000_distinct_uas_s": round(min(runs), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="current")
    parser.add_argument("--no-cost", action="store_true", help="skip the timings")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "referral": bench_referral(),
        "device": bench_device(),
    }
    if not args.no_cost:
        result["cost"] = bench_cost()
    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored[args.label] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(stored, indent=1, ensure_ascii=False) + "\n")
    summary = {"referral": {k: v for k, v in result["referral"].items() if k != "misses"},
               "device": {k: v for k, v in result["device"].items()
                          if k in ("by_type", "browsers_taken_for_bots", "confusion")},
               "cost": result.get("cost")}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
