"""First byte through the proxy while the origin is still sending (a slow origin).

    .venv/bin/python bench/first_byte.py     # writes bench/results/first_byte.json

The origin (tests/origin_app.py, /slotted/?slow=1) sends 2 KB of a page, then waits a
second before the rest. We time the first body bytes reaching the client, directly from
the origin (the baseline) and through edge-personalizer rewriting the page's hero slot.
The difference is what the proxy adds before a visitor sees anything.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import start_origin, start_proxy  # noqa: E402

FACEBOOK = {"accept": "text/html", "referer": "https://l.facebook.com/",
            "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"}


def first_byte_ms(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    with client.stream("GET", url, headers=FACEBOOK) as response:
        chunks = response.iter_raw()
        next(chunks)
        first = time.perf_counter() - started
        for _ in chunks:
            pass
    return first * 1000


def main(samples: int = 15) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp)
        origin = start_origin(logs)
        proxy = start_proxy(logs, "--origin", origin.url, "--rules",
                            str(ROOT / "tests" / "data" / "rules"), "--no-access-log")
        try:
            with httpx.Client(timeout=10) as client:
                path = "/slotted/a?slow=1"
                first_byte_ms(client, proxy.url + path)   # warm up
                direct = [first_byte_ms(client, origin.url + path) for _ in range(samples)]
                proxied = [first_byte_ms(client, proxy.url + path) for _ in range(samples)]
        finally:
            proxy.stop()
            origin.stop()
    results = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "samples": samples,
        "direct_first_byte_ms_median": round(statistics.median(direct), 2),
        "proxied_rewritten_first_byte_ms_median": round(statistics.median(proxied), 2),
        "added_ms_median": round(statistics.median(proxied) - statistics.median(direct), 2),
    }
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "first_byte.json").write_text(json.dumps(results, indent=2)
                                                                + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
