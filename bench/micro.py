"""Micro benchmarks of the per-request work, with baselines measured in the same run.

    .venv/bin/python bench/micro.py            # writes bench/results/micro.json

Each figure is the median of many timed calls (time.perf_counter_ns), after a warm-up.
Baselines: user-agents' parse for the never-seen User-Agent (what the product replaced),
and a JSON + HMAC cookie for the profile (the obvious hand-made alternative).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_personalizer.classify.classifier import Classifier, request_info  # noqa: E402
from edge_personalizer.classify.device import DeviceClassifier  # noqa: E402
from edge_personalizer.classify.geo import GeoDatabase, GeoLocator  # noqa: E402
from edge_personalizer.classify.profile import (  # noqa: E402
    InterestMap,
    ProfileTracker,
)
from edge_personalizer.classify.profile_codec import ProfileCodec  # noqa: E402
from edge_personalizer.classify.visitor import Referral  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CORPUS = ROOT.parent / "shared" / "corpora" / "uap-core" / "tests" / "test_ua.yaml"
KEY = b"bench-key-0123456789abcdef-0123456789"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
HEADERS = [("host", "shop.example"), ("user-agent", CHROME),
           ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
           ("accept-language", "en-GB,en;q=0.9,de;q=0.7"),
           ("referer", "https://www.google.co.uk/search?q=trail+shoes"),
           ("cookie", "session=abc; consent=yes")]


def median_us(fn: Callable[[], object], *, runs: int = 2000, warmup: int = 200) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def user_agents_corpus(path: Path = CORPUS) -> list[str]:
    import yaml

    cases = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)["test_cases"]
    return [case["user_agent_string"] for case in cases]


def cold_median_us(parse: Callable[[str], object], agents: list[str]) -> float:
    samples = []
    for ua in agents:
        start = time.perf_counter_ns()
        parse(ua)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def bench_classification() -> dict[str, Any]:
    geo = GeoLocator(GeoDatabase(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    tracker = ProfileTracker(ProfileCodec([KEY]),
                             interests=InterestMap({"running": ["/running*"]}))
    classifier = Classifier(geo=geo, profiles=tracker)

    def full() -> None:
        request = request_info(method="GET", path="/running/shoes", query_string="utm_source=x",
                               host="shop.example", headers=HEADERS, client_ip="81.2.69.142")
        visitor = classifier.visitor(request, now=1_795_000_000.0, page_view=True)
        for part in ("referral", "geo", "device", "language", "time", "profile"):
            getattr(visitor, part)

    agents = user_agents_corpus()
    devices = DeviceClassifier(max_entries=len(agents) + 10)
    # The parser compiles each of its regular expressions on first need. A server that has
    # run a while has them all compiled: warm up on variants of the agents (" warm-up"
    # appended), so that every measured string is still one the cache has never seen.
    for ua in agents:
        devices.classify(ua + " warm-up")
    cold_ours = cold_median_us(devices.classify, agents)
    try:
        import user_agents

        for ua in agents:
            user_agents.parse(ua + " warm-up")
        cold_baseline: float | None = cold_median_us(user_agents.parse, agents)
    except ImportError:
        cold_baseline = None
    warm = median_us(full)
    return {
        "full_classification_warm_us": round(warm, 2),
        "device_never_seen_ua_us": round(cold_ours, 2),
        "baseline_user_agents_parse_us": round(cold_baseline, 2) if cold_baseline else None,
        "never_seen_ua_speedup_vs_user_agents": round(cold_baseline / cold_ours, 1)
        if cold_baseline else None,
        "never_seen_ua_corpus_size": len(agents),
    }


def bench_profile() -> dict[str, Any]:
    tracker = ProfileTracker(ProfileCodec([KEY]),
                             interests=InterestMap({"running": ["/running*"],
                                                    "trail": ["/trail*"]}))
    referral = Referral("search", "google")
    first = tracker.observe(cookies={}, headers={}, now=1_795_000_000.0, path="/running",
                            page_view=True, referral=lambda: referral)
    cookie = tracker.cookie_value(first)

    def read_write() -> None:
        profile = tracker.observe(cookies={"ep_profile": cookie}, headers={},
                                  now=1_795_000_600.0, path="/trail/x", page_view=True,
                                  referral=lambda: referral)
        tracker.cookie_value(profile)

    state = {"i": "abc", "f": 1, "l": 2, "v": 3, "p": 4, "s": {"running": [0.5, 1]}}
    token = json.dumps(state).encode()
    naive = base64.urlsafe_b64encode(token) + b"." + base64.urlsafe_b64encode(
        hmac.new(KEY, token, hashlib.sha256).digest())

    def baseline() -> None:
        body, _, sig = naive.partition(b".")
        data = base64.urlsafe_b64decode(body)
        hmac.compare_digest(base64.urlsafe_b64decode(sig),
                            hmac.new(KEY, data, hashlib.sha256).digest())
        loaded = json.loads(data)
        loaded["p"] += 1
        out = json.dumps(loaded).encode()
        base64.urlsafe_b64encode(out) + b"." + base64.urlsafe_b64encode(
            hmac.new(KEY, out, hashlib.sha256).digest())

    ours = median_us(read_write)
    base = median_us(baseline)
    return {"profile_read_write_us": round(ours, 2),
            "baseline_json_hmac_cookie_us": round(base, 2),
            "profile_vs_baseline_ratio": round(ours / base, 2)}


def _rules_text(count: int) -> str:
    """`count` rules of the kinds marketers write: by source, country, device, path."""
    sources = ["facebook", "google", "bing", "newsletter", "linkedin", "tiktok", "instagram"]
    countries = ["US", "DE", "FR", "SE", "JP", "BR", "IN", "AU", "CA", "ES", "IT", "NL"]
    lines = ["slots: {hero: {}, banner: {}, promo: {}}", "rules:"]
    for i in range(count):
        kind = i % 4
        if kind == 0:
            when = f"{{referral.source: {sources[i % 7]}, geo.country: {countries[i % 12]}}}"
        elif kind == 1:
            when = f"{{geo.country: {countries[i % 12]}, device.type: [mobile, tablet]}}"
        elif kind == 2:
            when = f"{{request.path: /campaign/{i}, profile.visits: {{gte: 2}}}}"
        else:
            when = f"{{referral.campaign: spring-{i}, language.primary: de}}"
        slot = ("hero", "banner", "promo")[i % 3]
        lines.append(f"  - name: rule-{i}\n    when: {when}\n"
                     f"    then: {{{slot}: {{html: '<b>{i}</b>'}}}}")
    return "\n".join(lines) + "\n"


def bench_decisions() -> dict[str, Any]:
    import tempfile

    from edge_personalizer.rules.book import load_rules
    from edge_personalizer.rules.evaluator import decide
    from edge_personalizer.rules.model import RuleSet

    geo = GeoLocator(GeoDatabase(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    classifier = Classifier(geo=geo, profiles=ProfileTracker(ProfileCodec([KEY])))
    request = request_info(method="GET", path="/running", query_string="", host="shop.example",
                           headers=HEADERS, client_ip="81.2.69.142")
    visitor = classifier.visitor(request, now=1_795_000_000.0, page_view=True)
    out: dict[str, Any] = {}
    for count in (10, 1000, 10000):
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "rules.yaml").write_text(_rules_text(count))
            started = time.perf_counter()
            ruleset = load_rules(Path(directory))
            out[f"compile_{count}_rules_s"] = round(time.perf_counter() - started, 3)
        decide(ruleset, visitor)   # computes the visitor fields the rules read, once

        def decide_once(ruleset: RuleSet = ruleset) -> None:
            decide(ruleset, visitor)

        out[f"decide_{count}_rules_us"] = round(median_us(decide_once), 2)
    out["decide_10000_vs_10_ratio"] = round(out["decide_10000_rules_us"]
                                            / out["decide_10_rules_us"], 2)
    return out


def _page(size: int, slot_at_top: bool) -> bytes:
    paragraph = (b'<div class="card"><p>Lorem ipsum dolor sit amet, '
                 b'<a href="/x">link</a></p></div>\n')
    filler = paragraph * (size // len(paragraph))
    slot = b'<section data-ep-slot="hero"><h1>Default</h1></section>'
    head = b'<!doctype html><html><head><meta charset="utf-8"><title>p</title></head><body>'
    middle = slot + filler if slot_at_top else filler + slot
    return head + middle + b"</body></html>"


def _rewriting(edits: list[Any], chunks: list[bytes], *,
               remembered: bool = False) -> Callable[[], None]:
    """One page through the rewriter: as the first request for it (nothing remembered),
    or as a repeat whose first bytes were rewritten before (FirstBytesMemo)."""
    from edge_personalizer.rewrite.first_bytes import FirstBytesMemo
    from edge_personalizer.rewrite.html import Rewriter

    memo = FirstBytesMemo() if remembered else None

    def run() -> None:
        rewriter = Rewriter(edits, memo=memo)
        for chunk in chunks:
            rewriter.feed(chunk)
        rewriter.finish()

    return run


def bench_rewrite() -> dict[str, Any]:
    import re

    from edge_personalizer.rewrite.edits import Edit

    edits = [Edit('[data-ep-slot="hero"]', "inner", "<h1>Hello, friend from Facebook</h1>")]
    pattern = re.compile(rb'(<section data-ep-slot="hero">)(.*?)(</section>)', re.DOTALL)
    out: dict[str, Any] = {}
    tagged = [Edit('section[data-ep-slot="hero"]', "inner", edits[0].payload)]
    for name, size in (("100kb", 100_000), ("1mb", 1_000_000)):
        page = _page(size, False)
        chunks = [page[i:i + 16384] for i in range(0, len(page), 16384)]

        ours = median_us(_rewriting(tagged, chunks), runs=50 if size >= 1_000_000 else 300,
                         warmup=10)
        out[f"rewrite_{name}_tagged_slot_bottom_us"] = round(ours, 1)
        out[f"rewrite_{name}_tagged_slot_bottom_mb_per_s"] = round(len(page) / ours, 1)
    for name, size in (("5kb", 5_000), ("100kb", 100_000), ("1mb", 1_000_000)):
        for where in ("top", "bottom"):
            page = _page(size, where == "top")
            chunks = [page[i:i + 16384] for i in range(0, len(page), 16384)]

            def naive(page: bytes = page) -> None:
                pattern.sub(rb"\1<h1>Hello, friend from Facebook</h1>\3", page, count=1)

            runs = 50 if size >= 1_000_000 else 300
            ours = median_us(_rewriting(edits, chunks), runs=runs, warmup=10)
            base = median_us(naive, runs=runs, warmup=10)
            out[f"rewrite_{name}_slot_{where}_us"] = round(ours, 1)
            out[f"baseline_regex_{name}_slot_{where}_us"] = round(base, 1)
            out[f"rewrite_{name}_slot_{where}_mb_per_s"] = round(len(page) / ours, 1)
            if where == "top":
                again = median_us(_rewriting(edits, chunks, remembered=True), runs=runs,
                                  warmup=10)
                out[f"rewrite_{name}_slot_top_repeat_us"] = round(again, 1)
    return out


def main() -> None:
    results = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "classification": bench_classification(),
        "profile": bench_profile(),
        "decisions": bench_decisions(),
        "rewrite": bench_rewrite(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "micro.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
