"""Pages whose slots are absent against pages whose slot is at the top, in-process.

    .venv/bin/python bench/absent_slots.py     # writes bench/results/absent_slots.json

The whole product (create_app: classify, decide, the learning loop counting into its
accumulator, headers, profile cookie, rewriting) in front of an ASGI site that serves the
peer kit's pages (../shared/bench/pages.py: /big.html ~100 KB, /small.html ~5 KB, the
kit's `<div data-ep-slot="hero">` near the top, body in 16 KiB messages), with the kit's
request mix (1/4 each: facebook Referer, utm_source=facebook, mobile UA, desktop UA; every
request a new visitor). Targets, timed in alternating rounds of the same run:

- kit rules (bench/peer-rules): the slot is at the top of the page (the reference);
- demo rules (rules/): none of their slots is in the kit's pages (their hero is a
  <section>, banner and promo are absent, cta is a CSS selector), the path learned;
- demo rules, every view a first view: what a path costs before it is learned.

Each figure is the median time of one request (microseconds) over rounds; the ratio is
the speed of a page without its slots to the speed of a page with its slot at the top.
"""

from __future__ import annotations

import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
KIT = ROOT.parent / "shared" / "bench"
sys.path.insert(0, str(KIT))

import pages as kit_pages  # type: ignore[import-not-found]  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from edge_personalizer import create_app, load_settings  # noqa: E402
from edge_personalizer.personalize.slot_presence import SlotPresence  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CHUNK = 16 * 1024
DESKTOP = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")
MOBILE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
MIX = [("", [(b"referer", b"https://www.facebook.com/"), (b"user-agent", DESKTOP.encode())]),
       ("utm_source=facebook&utm_medium=social", [(b"user-agent", DESKTOP.encode())]),
       ("", [(b"user-agent", MOBILE.encode())]),
       ("", [(b"user-agent", DESKTOP.encode())])]


def kit_site() -> ASGIApp:
    bodies = {f"/{name}.html": kit_pages.render(name, size).encode()
              for name, size in kit_pages.PAGES.items()}

    async def site(scope: Scope, receive: Receive, send: Send) -> None:
        body = bodies[scope["path"]]
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/html"), (b"content-length", str(len(body)).encode()),
            (b"etag", b'"kit-1"'), (b"last-modified", b"Wed, 02 Dec 2026 09:00:00 GMT")]})
        for start in range(0, len(body), CHUNK):
            await send({"type": "http.response.body", "body": body[start:start + CHUNK],
                        "more_body": start + CHUNK < len(body)})

    return site


def product(rules: Path, data: Path) -> ASGIApp:
    return create_app(load_settings({}, rules_dir=rules, data_dir=data, access_log=False,
                                    variant_header=True, profile_keys=["bench-key-0123456789"]),
                      site=kit_site())


def personalizer_of(app: Any) -> Any:
    while type(app).__name__ != "PersonalizeMiddleware":
        app = app.app
    return app.personalizer


async def one(app: ASGIApp, path: str, query: str,
              headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[bytes, bytes], int]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"shop.example"), (b"accept", b"text/html"), *headers],
             "client": ("203.0.113.7", 50000), "server": ("127.0.0.1", 8000)}
    start: dict[bytes, bytes] = {}
    size = 0
    status = 0

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal size, status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message["headers"]:
                start[name.lower()] = value
        else:
            size += len(message.get("body", b""))

    await app(scope, receive, send)
    return status, start, size


async def timed(app: ASGIApp, path: str, requests: int) -> float:
    """Microseconds a request (the mix, in order), median of the batch's per-request times."""
    samples = []
    for index in range(requests):
        query, headers = MIX[index % len(MIX)]
        began = time.perf_counter_ns()
        await one(app, path, query, headers)
        samples.append(time.perf_counter_ns() - began)
    return statistics.median(samples) / 1000


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="ep-bench-"))
    targets = {
        "kit_rules_slot_at_top": product(ROOT / "bench" / "peer-rules", data / "a"),
        "demo_rules_slots_absent": product(ROOT / "rules", data / "b"),
        "demo_rules_slots_absent_first_view": product(ROOT / "rules", data / "c"),
    }
    first_view = personalizer_of(targets["demo_rules_slots_absent_first_view"])
    # Every view looks again: as a path never seen before (or before this change).
    first_view.slots = SlotPresence(first_view.rules, relearn_views=-1)
    checks: dict[str, Any] = {}
    for name, app in targets.items():
        seen = []
        for query, headers in MIX:
            status, head, size = await one(app, "/big.html", query, headers)
            seen.append({"status": status, "bytes": size,
                         "content_length": head.get(b"content-length", b"").decode(),
                         "x_ep_variant": head.get(b"x-ep-variant", b"").decode(),
                         "tags": head.get(b"surrogate-key", b"").decode()})
        checks[name] = seen
    rounds = 15
    figures: dict[str, dict[str, list[float]]] = {page: {n: [] for n in targets}
                                                  for page in ("/big.html", "/small.html")}
    for _ in range(rounds):
        for page, by_target in figures.items():
            for name, app in targets.items():
                by_target[name].append(await timed(app, page, 200))
    out: dict[str, Any] = {"python": platform.python_version(),
                           "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rounds": rounds,
                           "requests_per_round": 200, "chunk_bytes": CHUNK, "checks": checks}
    for page, by_target in figures.items():
        name = "100KB" if page == "/big.html" else "5KB"
        medians = {t: round(statistics.median(v), 1) for t, v in by_target.items()}
        top = medians["kit_rules_slot_at_top"]
        out[name] = {
            "us_per_request": medians,
            "absent_speed_vs_slot_at_top": round(top / medians["demo_rules_slots_absent"], 2),
            "first_view_speed_vs_slot_at_top": round(
                top / medians["demo_rules_slots_absent_first_view"], 2),
        }
        print(name, json.dumps(out[name]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "absent_slots.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
