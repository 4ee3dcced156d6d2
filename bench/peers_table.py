"""A peer-kit result as markdown: each measure, and each as a ratio to the peers of the run.

    .venv/bin/python bench/peers_table.py [bench/results/peers-<date>.json]

Without an argument, the newest bench/results/peers-*.json. For every page: the targets'
req/s, p50, p99, CPU µs per request and peak RSS, then edge-personalizer's figure divided
by each peer's (req/s: above 1 is better; latency, CPU and memory: below 1 is better).
bench/peers.sh writes this next to the JSON (same name, .md) and prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT = "project"
DEMO = "project-demo"
MEASURES = (   # JSON field, column, format
    ("rps", "req/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("target_cpu_us_per_req", "CPU µs/req", "{:,.0f}"),
    ("rss_peak_mb", "RSS MB", "{:,.0f}"),
)
PEERS = ("nginx", "workerd", "py-naive-2w", "py-aiohttp-2w", "project-pass")


def _cell(value: Any, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "—"


def _ratio(mine: Any, theirs: Any) -> str:
    if not isinstance(mine, (int, float)) or not isinstance(theirs, (int, float)) or not theirs:
        return "—"
    return f"{mine / theirs:.2f}"


def table(result: dict[str, Any]) -> str:
    rows: list[dict[str, Any]] = result["results"]
    pages = list(dict.fromkeys(row["page"] for row in rows))
    out = [f"Run {result.get('started', '?')} (`{result.get('command', '')[:60]}...`)", ""]
    for page in pages:
        by_target = {row["target"]: row for row in rows if row["page"] == page}
        size = next(iter(by_target.values())).get("page_bytes", 0) / 1024
        out += [f"**{page}** page ({size:.0f} KB)", "",
                "| target | " + " | ".join(label for _, label, _ in MEASURES) + " |",
                "|---|" + "---|" * len(MEASURES)]
        for target, row in by_target.items():
            name = f"**{target}**" if target == PROJECT else target
            out.append(f"| {name} | " + " | ".join(
                _cell(row.get(key), fmt) for key, _, fmt in MEASURES) + " |")
        mine = by_target.get(PROJECT)
        peers = [peer for peer in PEERS if peer in by_target]
        if mine is not None and peers:
            out += ["", f"{PROJECT} ÷ peer on the {page} page:", "",
                    "| peer | " + " | ".join(label for _, label, _ in MEASURES) + " |",
                    "|---|" + "---|" * len(MEASURES)]
            for peer in peers:
                out.append(f"| {peer} | " + " | ".join(
                    _ratio(mine.get(key), by_target[peer].get(key)) for key, _, _ in MEASURES)
                    + " |")
        demo = by_target.get(DEMO)
        if mine is not None and demo is not None:
            out += ["", f"{DEMO} (the demo rules: their slots absent from the page) ÷ "
                    f"{PROJECT} (the slot at the top): " + ", ".join(
                        f"{label} {_ratio(demo.get(key), mine.get(key))}"
                        for key, label, _ in MEASURES)]
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        path = Path(argv[1])
    else:
        runs = sorted(RESULTS.glob("peers-*.json"))
        if not runs:
            print("no bench/results/peers-*.json yet: run make bench-peers", file=sys.stderr)
            return 2
        path = runs[-1]
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
