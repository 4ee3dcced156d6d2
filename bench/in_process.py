"""The whole app in process, for callgrind: `create_app` in front of an ASGI site that
answers the peer kit's page (as nginx does: Content-Type, Content-Length, Last-Modified,
ETag, Accept-Ranges), then N requests of the kit's mix (learn_micro.KIT_MIX) through ASGI,
one after the other: no server, no client, no origin connection.

    .venv/bin/python bench/in_process.py bench/peer-rules small 1300

One request's instructions are the difference of two counts, 1,300 and 300 requests, over
1,000 (startup and shutdown cancel out; bench/README.md, "Where a personalized request's
instructions go"):

    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=kit.1300.out \\
        .venv/bin/python bench/in_process.py bench/peer-rules small 1300

RULES `none` serves an empty rules directory (the app without rules). With ORIGIN set
(`ORIGIN=http://127.0.0.1:18080`, the kit's origin or any nginx serving its pages) the
app forwards there instead, and the count includes the origin client and its connection.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from learn_micro import KIT_MIX, Page, _lifespan  # noqa: E402


def site_for(body: bytes) -> Any:
    head = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode()),
            (b"last-modified", b"Sat, 05 Dec 2026 10:00:00 GMT"),
            (b"etag", b'"6571f1c0-1400"'), (b"accept-ranges", b"bytes")]

    async def site(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": head})
        await send({"type": "http.response.body", "body": body})

    return site


async def run(rules: str, page: str, requests: int, data: Path) -> None:
    from edge_personalizer.app import create_app
    from edge_personalizer.config.settings import build_settings

    kit = Path(os.environ.get("PEER_KIT", ROOT.parent / "shared" / "bench"))
    if not (kit / "pages.py").exists():
        raise SystemExit("needs the peer kit's pages.py: set PEER_KIT")
    sys.path.insert(0, str(kit))
    # (written by this process: callgrind counts no child)
    importlib.import_module("pages").write_pages(data)
    if rules == "none":
        (data / "no-rules").mkdir()
        rules = str(data / "no-rules")
    origin = os.environ.get("ORIGIN")
    raw = {"origin_url": origin or "http://127.0.0.1:9", "rules_dir": rules, "access_log": "false",
           "profile_keys": "bench-profile-key-0123456789abcdef", "rules_watch_interval": "0",
           "data_dir": str(data / "data"), "store_poll_interval": "3600"}
    app: Any = create_app(build_settings(raw, source="bench"),
                     site=None if origin else site_for((data / f"{page}.html").read_bytes()))
    stop, started = asyncio.Event(), asyncio.Event()
    lifespan = asyncio.ensure_future(_lifespan(app, started, stop))
    await started.wait()
    pages = [Page(app, f"/{page}.html", query, headers) for query, headers in KIT_MIX]
    for n in range(requests):
        await pages[n % len(pages)].get()
    stop.set()
    await lifespan


def main() -> None:
    rules, page, requests = sys.argv[1], sys.argv[2], int(sys.argv[3])
    try:
        import uvloop  # the loop the server runs on
        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(rules, page, requests, Path(tmp)))


if __name__ == "__main__":
    main()
