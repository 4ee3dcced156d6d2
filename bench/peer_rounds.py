"""Several peer-kit runs read together: each run's ratios, and their median.

    for round in 1 2 3 4 5; do bench/peers.sh --only origin,nginx,workerd; done
    .venv/bin/python bench/peer_rounds.py bench/results/peers-<date>-*.json

On this 2-core machine the speed of the whole machine moves by ±20% within minutes, and a
ratio taken from one run compares targets measured minutes apart. Short runs of the
project's targets against nginx and workerd alone (the kit's `--only`) measure each pair
closer together; the median of several such runs says what one run cannot. Writes the
ratios to stdout (markdown), then each project target's p99 and slowest answer per run:
a maximum far above every other run's is a stall (of the project, or of the machine),
not its usual tail.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

PEERS = ("nginx", "workerd")
PAGES = (("big", "100 KB"), ("small", "5 KB"))


def _by_target(run: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row["target"], row["page"]): row for row in run["results"]}


def ratios(run: dict[str, Any]) -> dict[tuple[str, str, str], float]:
    """(project target, page, peer) -> the target's req/s over the peer's, in one run."""
    rows = _by_target(run)
    out: dict[tuple[str, str, str], float] = {}
    for (target, page), row in rows.items():
        if not target.startswith("project") or not row.get("rps"):
            continue
        for peer in PEERS:
            theirs = rows.get((peer, page), {}).get("rps")
            if theirs:
                out[(target, page, peer)] = row["rps"] / theirs
    return out


def table(runs: list[tuple[str, dict[str, Any]]]) -> str:
    per_run = [(name, ratios(run)) for name, run in runs]
    keys = sorted({key for _, found in per_run for key in found},
                  key=lambda key: (key[0] != "project", key[0], key[1], key[2]))
    lines = ["| target | page | vs | " + " | ".join(name for name, _ in per_run)
             + " | median |",
             "|---|---|---|" + "---|" * (len(per_run) + 1)]
    pages = dict(PAGES)
    for key in keys:
        values = [found.get(key) for _, found in per_run]
        known = [value for value in values if value is not None]
        cells = [f"{value:.2f}" if value is not None else "—" for value in values]
        lines.append(f"| {key[0]} | {pages.get(key[1], key[1])} | {key[2]} | "
                     + " | ".join(cells) + f" | **{statistics.median(known):.2f}** |")
    return "\n".join(lines)


def latency_table(runs: list[tuple[str, dict[str, Any]]]) -> str:
    """Each project target's p99 / slowest answer (ms) in each run."""
    per_run = [(name, _by_target(run)) for name, run in runs]
    keys = sorted({key for _, rows in per_run for key in rows if key[0].startswith("project")},
                  key=lambda key: (key[0] != "project", key[0], key[1]))
    lines = ["| target | page | " + " | ".join(f"{name} p99 / max ms" for name, _ in per_run)
             + " |", "|---|---|" + "---|" * len(per_run)]
    pages = dict(PAGES)
    for key in keys:
        cells = []
        for _, rows in per_run:
            row = rows.get(key)
            cells.append(f"{row['p99_ms']:.1f} / {row['max_ms']:.1f}"
                         if row is not None and "max_ms" in row else "—")
        lines.append(f"| {key[0]} | {pages.get(key[1], key[1])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit("usage: peer_rounds.py RESULT.json...")
    runs = [(Path(path).stem.removeprefix("peers-"), json.loads(Path(path).read_text()))
            for path in paths]
    print(table(runs))
    print()
    print(latency_table(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
