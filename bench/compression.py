"""What compressing a rewritten page costs, and what it saves.

    .venv/bin/python bench/compression.py      # writes bench/results/compression.json

The pages are the peer kit's (../shared/bench/pages.py, or $PEER_KIT/pages.py): a 5 KB
and a 100 KB shop page with the slot near the top. Each is streamed in 16 KiB chunks
through ResponseRewriter with one slot edit, as the proxy does: once for a client that
accepts no compression (the baseline), once for one that sends `Accept-Encoding: gzip`,
once for one that also accepts `br`. Each figure is the median of many timed pages after
a warm-up. For other settings than the product's (brotli quality 3, gzip level 4), the
rewritten chunks are fed to a streaming coder with the same per-chunk flush.

Then through the real server: `edge-personalizer serve` (one worker, tests/data/rules) in
front of a static origin serving the same pages; a Facebook visitor's page fetched 300
times over a kept-alive connection per Accept-Encoding, with the proxy's CPU time (its
worker included, from /proc) and the bytes received.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import brotli
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_personalizer.rewrite.edits import Edit  # noqa: E402
from edge_personalizer.rewrite.encoding import (  # noqa: E402
    BROTLI_QUALITY,
    BROTLI_WINDOW,
    GZIP_LEVEL,
)
from edge_personalizer.rewrite.stream import ResponseRewriter  # noqa: E402
from tests.servers import free_port, start, start_proxy  # noqa: E402

RESULTS = ROOT / "bench" / "results"
KIT = Path(os.environ.get("PEER_KIT", ROOT.parent / "shared" / "bench"))
CHUNK = 16 * 1024
EDIT = (Edit('[data-ep-slot="hero"]', "inner", "<h1>Hello, friend from Facebook</h1>"),)


def kit_pages() -> dict[str, bytes]:
    spec = importlib.util.spec_from_file_location("kit_pages", KIT / "pages.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no pages.py in {KIT}: set PEER_KIT to the shared benchmark kit")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with tempfile.TemporaryDirectory() as tmp:
        module.write_pages(tmp)
        return {name: (Path(tmp) / f"{name}.html").read_bytes() for name in ("small", "big")}


def median_us(fn: Callable[[], object], runs: int) -> float:
    for _ in range(max(10, runs // 10)):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1000


def through_rewriter(page: bytes, accept: str) -> Callable[[], bytes]:
    def run() -> bytes:
        rewriter = ResponseRewriter(EDIT, content_type="text/html; charset=utf-8",
                                    content_encoding="", accept_encoding=accept)
        out = [rewriter.feed(page[i:i + CHUNK]) or b"" for i in range(0, len(page), CHUNK)]
        out.append(rewriter.finish())
        return b"".join(out)
    return run


def coder(name: str, level: int) -> Callable[[list[bytes]], bytes]:
    def gzip_chunks(chunks: list[bytes]) -> bytes:
        inner = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        out = [inner.compress(c) + inner.flush(zlib.Z_SYNC_FLUSH) for c in chunks]
        return b"".join(out) + inner.flush(zlib.Z_FINISH)

    def brotli_chunks(chunks: list[bytes]) -> bytes:
        inner = brotli.Compressor(mode=brotli.MODE_TEXT, quality=level, lgwin=BROTLI_WINDOW)
        out = [bytes(inner.process(c)) + bytes(inner.flush()) for c in chunks]
        return b"".join(out) + bytes(inner.finish())

    return gzip_chunks if name == "gzip" else brotli_chunks


def measure(name: str, page: bytes) -> dict[str, Any]:
    runs = 3000 if len(page) < 20_000 else 400
    rewritten = through_rewriter(page, "")()
    chunks = [rewritten[i:i + CHUNK] for i in range(0, len(rewritten), CHUNK)]
    base_us = median_us(through_rewriter(page, ""), runs)
    result: dict[str, Any] = {"page_bytes": len(page), "rewrite_identity_us": round(base_us, 1),
                              "product": {}, "settings": {}}
    for accept, coding, decode in (("gzip", "gzip", gzip.decompress),
                                   ("gzip, deflate, br", "br", brotli.decompress)):
        run = through_rewriter(page, accept)
        body = run()
        assert decode(body) == rewritten, (name, coding)
        total = median_us(run, runs)
        result["product"][coding] = {
            "rewrite_and_compress_us": round(total, 1),
            "added_us": round(total - base_us, 1),
            "added_ratio": round(total / base_us, 2),
            "bytes": len(body), "share_of_page": round(len(body) / len(page), 3)}
    for coding, levels in (("gzip", (1, 4, 6, 9)), ("br", (1, 3, 4, 5, 11))):
        for level in levels:
            compress = coder(coding, level)
            body = compress(chunks)
            result["settings"][f"{coding}-{level}"] = {
                "compress_us": round(median_us(lambda c=compress: c(chunks),  # type: ignore[misc]
                                               max(20, runs // (8 if level >= 9 else 2))), 1),
                "bytes": len(body)}
    return result


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the server's workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def through_server(pages: dict[str, bytes], requests: int = 300) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, page in pages.items():
            (folder / f"{name}.html").write_bytes(page)
        port = free_port()
        origin = start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                        "--directory", tmp], port, folder / "origin.log", ready_path="/small.html")
        proxy = start_proxy(folder, "--origin", origin.url, "--rules",
                            str(ROOT / "tests" / "data" / "rules"), "--no-access-log")
        visitor = {"accept": "text/html", "referer": "https://l.facebook.com/",
                   "user-agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0"}
        try:
            for name in pages:
                for label, accept in (("identity", "identity"), ("gzip", "gzip"),
                                      ("br", "gzip, deflate, br")):
                    with httpx.Client(headers={**visitor, "accept-encoding": accept}) as client:
                        for _ in range(30):
                            client.get(f"{proxy.url}/{name}.html")
                        cpu, received, times = cpu_seconds(proxy.process.pid), 0, []
                        for _ in range(requests):
                            began = time.perf_counter()
                            with client.stream("GET", f"{proxy.url}/{name}.html") as response:
                                received += sum(len(c) for c in response.iter_raw())
                            times.append(time.perf_counter() - began)
                        cpu = cpu_seconds(proxy.process.pid) - cpu
                    assert response.headers.get("content-encoding", "identity") == label
                    out.setdefault(name, {})[label] = {
                        "proxy_cpu_ms_a_request": round(cpu * 1000 / requests, 3),
                        "median_ms": round(statistics.median(times) * 1000, 3),
                        "bytes_a_request": received // requests}
        finally:
            proxy.stop()
            origin.stop()
    return out


def main() -> None:
    pages = kit_pages()
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform()},
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "product": {"brotli_quality": BROTLI_QUALITY, "brotli_window": BROTLI_WINDOW,
                    "gzip_level": GZIP_LEVEL, "chunk_bytes": CHUNK},
        "pages": {name: measure(name, page) for name, page in pages.items()},
        "through_the_server": through_server(pages),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "compression.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("pages", "through_the_server")}, indent=2))


if __name__ == "__main__":
    main()
