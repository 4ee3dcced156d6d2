"""Loading and compiling a big rule directory: what startup and every reload pay.

Writes a rules directory of RULES rules (by default 10,000) in the shapes marketers write
(block YAML, conditions on two to four fields, segments, schedules, slots filled with
inline HTML, text, fragment files and templates), with slots, interests, segments, goals and
experiments in files of their own, then times `check_rules` on it (read every file, keep
where each value was written, compile, index), each run as at startup (the cache of plain
values the reader keeps between reloads emptied first).

Then what a reload costs the server (RuleBook.reload, as the rules watcher, SIGHUP and the
admin reload do it), each run after one change: nothing changed; one rule file of 500
rules changed; the slots file changed in what rules do not read (a selector); a segment
changed, which every rule file reads (so every file is read and compiled again, as at
startup). A reload reuses, for each file whose content did not change, its compiled rules
(rules/file_cache.py), as long as what they read from other files did not change either.

The cold-start figure (load_and_compile_*) is what the first load of these files pays,
nothing read before. A server keeps each file's parse on disk (rules/parse_cache.py,
signed, by the file's digest): its workers, a restart and a reload that compiles every
file again (a segment changed) read no unchanged file's YAML again, so what they pay is
worker_start_parses_kept_* and the reload rows (which run as the server's reloads do,
with the parses kept).

Baseline in the same run: the plain `yaml.load(..., Loader=yaml.CSafeLoader)` of the same
files (libyaml, no line numbers kept, nothing checked or compiled). Wall and CPU seconds
both (medians of the runs): on a machine shared with other work, CPU seconds vary less.

    .venv/bin/python bench/compile_rules.py [--rules 10000] [--runs 5]

Writes bench/results/compile_rules.json.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_personalizer.rules.book import RuleBook, check_rules  # noqa: E402
from edge_personalizer.rules.loader import read_rule_directory  # noqa: E402
from edge_personalizer.rules.parse_cache import ParseCache  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "compile_rules.json"
RULES_PER_FILE = 500

SOURCES = ["facebook", "google", "bing", "newsletter", "linkedin", "tiktok", "instagram"]
COUNTRIES = ["US", "DE", "FR", "SE", "JP", "BR", "IN", "AU", "CA", "ES", "IT", "NL"]
LANGUAGES = ["de", "fr", "sv", "ja", "pt", "es", "it", "nl"]
SLOTS = ["hero", "banner", "promo", "cta", "footer-note", "sidebar"]
SEGMENTS = ["loyal", "runner", "social", "big-spender", "new-mobile", "returning-de"]


def _common() -> dict[str, str]:
    """The files every rule file relies on: slots, interests, segments, goals, experiments."""
    slots = "slots:\n" + "".join(f"  {name}: {{tag: section}}\n" for name in SLOTS[:4]) \
        + "  footer-note: {}\n  sidebar:\n    selector: \"aside.side\"\n"
    interests = ("interests:\n  running: [\"/running\", \"/running/*\", \"/products/rn-*\"]\n"
                 "  trail: [\"/trail\", \"/trail/*\"]\n  yoga: [\"/yoga\", \"/yoga/*\"]\n")
    segments = """segments:
  loyal:
    when:
      profile.visits: {gte: 3}
  runner:
    when:
      profile.interests.running: {gte: 0.5}
  social:
    when:
      referral.medium: social
  big-spender:
    description: visitors who came back often from a campaign
    when:
      profile.visits: {gte: 10}
      referral.medium: {in: [email, paid]}
  new-mobile:
    when:
      device.type: mobile
      profile.visits: {lt: 2}
  returning-de:
    when:
      all:
        - geo.country: DE
        - segment: loyal
"""
    goals = """goals:
  purchase:
    when: {request.path: /checkout/thanks}
    value: {query: total}
  add-to-cart:
    when: {request.path: /cart, request.method: POST}
    window: 24h
  signup:
    when: {request.path: {prefix: /account/welcome}}
  newsletter:
    when: {request.path: /newsletter/thanks}
    window: 7d
"""
    experiments = ["experiments:"]
    for i, slot in enumerate(SLOTS[:3]):
        experiments.append(f"""  - name: test-{slot}
    slot: {slot}
    audience:
      referral.medium: {{in: [direct, search]}}
      device.type: {["desktop", "mobile", "tablet"][i]}
    holdout: 10
    goals: [purchase, add-to-cart]
    variants:
      control: {{weight: 50}}
      bold:
        weight: 50
        html: "<h1>Run further {i}. Pay less.</h1><p>Our best shoes.</p>"
""")
    return {"slots.yaml": slots + interests, "audiences.yaml": segments, "goals.yaml": goals,
            "experiments.yaml": "\n".join(experiments)}


def _when(i: int) -> list[str]:
    """Two to four conditions, of the kinds rules are written with."""
    source, country = SOURCES[i % 7], COUNTRIES[i % 12]
    kind = i % 8
    if kind == 0:
        return [f"referral.source: {source}", f"geo.country: {country}"]
    if kind == 1:
        return [f"geo.country: {country}", "device.type: [mobile, tablet]",
                f"language.primary: {LANGUAGES[i % 8]}"]
    if kind == 2:
        return [f"request.path: /campaign/{i}", "profile.visits: {gte: 2}",
                "referral.medium: {in: [email, social, paid]}"]
    if kind == 3:
        return [f"referral.campaign: {{prefix: spring-{i % 50}}}", f"geo.country: {country}",
                "device.type: desktop", f"segment: {SEGMENTS[i % 6]}"]
    if kind == 4:
        return [f"segment: {SEGMENTS[i % 6]}", f"request.path: {{prefix: /products/{i % 97}}}"]
    if kind == 5:
        return [f"referral.keywords: {{contains: shoe{i % 30}}}", "referral.medium: search",
                f"geo.country: {{not: [{country}, GB]}}"]
    if kind == 6:
        return ["any:", f"  - referral.source: {source}", f"  - geo.country: {country}",
                f"time.daypart: {['morning', 'evening'][i % 2]}"]
    return [f"profile.interests.running: {{gte: 0.{i % 9 + 1}}}",
            f"request.path: /running/{i % 40}", "device.type: {not: tablet}"]


def _then(i: int) -> list[str]:
    """One or two slots: inline HTML, a text variant, a fragment file, a template."""
    slot, other = SLOTS[i % 6], SLOTS[(i + 2) % 6]
    kind = i % 5
    if kind == 0:
        return [f"{slot}:", f"  html: \"<h2>Offer {i}</h2><p>Only this week: {i % 40}% off "
                "the spring range.</p>\""]
    if kind == 1:
        return [f"{slot}:", f"  text: \"Free delivery to {{{{ geo.country }}}}, offer {i}\"",
                f"{other}: fragments/offer-{i % 20}.html"]
    if kind == 2:
        return [f"{slot}: \"<p>Welcome back, {{{{ geo.city | default: \\\"friend\\\" }}}} "
                f"({i})</p>\""]
    if kind == 3:
        return [f"{slot}:", "  action: replace", f"  html: \"<section class=x{i}>New</section>\"",
                f"{other}:", "  action: add_class", "  class: highlighted"]
    return [f"{slot}:", f"  file: fragments/offer-{i % 20}.html",
            "headers:", f"  X-Campaign: c{i}"]


def _rule(i: int) -> str:
    lines = [f"  - name: rule-{i}"]
    if i % 10 == 0:
        lines.append(f"    description: \"spring campaign, variant {i}\"")
    if i % 7 == 0:
        lines.append(f"    priority: {i % 5}")
    lines.append("    when:")
    lines += [f"      {line}" for line in _when(i)]
    if i % 25 == 0:
        lines += ["    schedule:", "      days: [mon, tue, wed, thu, fri]",
                  "      hours: \"18:00-23:00\""]
    if i % 40 == 0:
        lines.append("    traffic: 50%")
    lines.append("    then:")
    lines += [f"      {line}" for line in _then(i)]
    return "\n".join(lines) + "\n"


def write_rules(directory: Path, count: int) -> None:
    for name, text in _common().items():
        (directory / name).write_text(text)
    fragments = directory / "fragments"
    fragments.mkdir()
    for i in range(20):
        (fragments / f"offer-{i}.html").write_text(
            f"<div class=\"offer\"><h2>Offer {i}</h2><p>For {{{{ referral.source | default: "
            f"\"you\" }}}}.</p></div>\n")
    for start in range(0, count, RULES_PER_FILE):
        rules = "".join(_rule(i) for i in range(start, min(count, start + RULES_PER_FILE)))
        (directory / f"campaign-{start // RULES_PER_FILE:03d}.yaml").write_text(
            "# yaml-language-server: $schema=../docs/rules.schema.json\nrules:\n" + rules)


def _baseline(directory: Path) -> tuple[float, float]:
    """Wall and CPU seconds of the plain libyaml parse of every rule file."""
    wall, cpu = time.perf_counter(), time.process_time()
    for path in sorted(directory.glob("*.yaml")):
        yaml.load(path.read_bytes(), Loader=yaml.CSafeLoader)
    return time.perf_counter() - wall, time.process_time() - cpu


def _ours(directory: Path, count: int, parses: ParseCache | None = None
          ) -> tuple[float, float]:
    """Wall and CPU seconds of what startup and a reload do: read (or take the kept
    parses), check, compile, index."""
    _cold()
    wall, cpu = time.perf_counter(), time.process_time()
    ruleset, errors = check_rules(directory, parses=parses)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert not errors and len(ruleset.rules) == count, errors[:3]
    return wall, cpu


def _cold() -> None:
    try:
        from edge_personalizer.rules import quick_yaml
    except ImportError:   # a version before the line reader
        return
    cache = getattr(quick_yaml, "_PLAIN_CACHE", None)   # (versions that kept one per process)
    if cache is not None:
        cache.clear()


def _reading(directory: Path) -> float:
    """CPU seconds of reading the files alone (the rest is compiling)."""
    _cold()
    cpu = time.process_time()
    gc.disable()   # as check_rules does while it loads
    try:
        _, errors = read_rule_directory(directory)
    finally:
        gc.enable()
    assert not errors
    return time.process_time() - cpu


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def _reloads(directory: Path, count: int, runs: int, parses: ParseCache
             ) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds (medians) of RuleBook.reload after each kind of change."""
    book = RuleBook(directory, parses=parses)
    changes: dict[str, Callable[[int], None]] = {
        "nothing_changed": lambda i: None,
        "one_rule_file_changed": lambda i: _edit(
            directory / "campaign-005.yaml", f"name: rule-2500{'x' * i}\n",
            f"name: rule-2500{'x' * (i + 1)}\n"),
        "slot_selector_changed": lambda i: _edit(
            directory / "slots.yaml", f"aside.side{'x' * i}\"",
            f"aside.side{'x' * (i + 1)}\""),
        "segment_changed": lambda i: _edit(
            directory / "audiences.yaml", f"gte: {10 + i}}}", f"gte: {11 + i}}}"),
    }
    rows: dict[str, dict[str, float]] = {}
    for name, change in changes.items():
        walls, cpus = [], []
        for i in range(runs):
            change(i)
            wall, cpu = time.perf_counter(), time.process_time()
            ok = book.reload()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            assert ok and len(book.current.rules) == count, book.last_error
        rows[name] = {"s": round(statistics.median(walls), 3),
                      "cpu_s": round(statistics.median(cpus), 3)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one load and compile instead")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as data:
        directory = Path(tmp)
        write_rules(directory, args.rules)
        ruleset, errors = check_rules(directory)   # warm: imports, regex caches, file cache
        assert not errors, errors[:3]
        assert len(ruleset.rules) == args.rules, len(ruleset.rules)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            check_rules(directory)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        size = sum(p.stat().st_size for p in directory.glob("*.yaml"))
        load = os.getloadavg()[0]
        parses = ParseCache(Path(data), directory, b"compile-rules-benchmark-key")
        check_rules(directory, parses=parses)   # what a server's first load keeps
        ours, baselines, reads, kept = [], [], [], []
        for _ in range(args.runs):   # alternate, so a slower moment of the machine hits both
            baselines.append(_baseline(directory))
            ours.append(_ours(directory, args.rules))
            reads.append(_reading(directory))
            kept.append(_ours(directory, args.rules, parses))
        reloads = _reloads(directory, args.rules, args.runs, parses)
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": platform.python_version(),
        "load_average_at_start": round(load, 2),
        "rules": args.rules,
        "rule_files": -(-args.rules // RULES_PER_FILE) + 4,
        "yaml_bytes": size,
        "runs": args.runs,
        "load_and_compile_s": round(statistics.median(w for w, _ in ours), 3),
        "load_and_compile_cpu_s": round(statistics.median(c for _, c in ours), 3),
        "read_files_cpu_s": round(statistics.median(reads), 3),
        "worker_start_parses_kept_s": round(statistics.median(w for w, _ in kept), 3),
        "worker_start_parses_kept_cpu_s": round(statistics.median(c for _, c in kept), 3),
        "baseline_csafeloader_parse_s": round(statistics.median(w for w, _ in baselines), 3),
        "baseline_csafeloader_parse_cpu_s": round(statistics.median(c for _, c in baselines),
                                                  3),
    }
    result["ratio_to_baseline"] = round(result["load_and_compile_s"]
                                        / result["baseline_csafeloader_parse_s"], 2)
    result["cpu_ratio_to_baseline"] = round(result["load_and_compile_cpu_s"]
                                            / result["baseline_csafeloader_parse_cpu_s"], 2)
    result["reload"] = reloads
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
