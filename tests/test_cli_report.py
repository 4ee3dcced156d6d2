"""`edge-personalizer report`: the store's counts as a table, as the JSON of /__ep/results,
and as the dashboard's pages in one file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from edge_personalizer.cli import main
from edge_personalizer.learn.counters import Accumulator
from edge_personalizer.learn.store import open_store, sqlite_url

from .conftest import ADMIN_TOKEN, PROFILE_KEY
from .servers import RedisServer, Server, start_proxy

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "tests" / "data" / "rules"
DAYS = ("2026-11-20", "2026-11-21", "2026-11-22")


async def _count_into(url: str) -> None:
    """Counts as workers flush them: hero-test over three days (control converts 10 of
    100 a day, bold 20 of 100) and a rule's exposures."""
    counters = Accumulator()
    for day in DAYS:
        for variant, converted in (("control", 10), ("bold", 20)):
            for _ in range(100):
                counters.expose("hero-test", variant, day=day)
            for _ in range(converted):
                counters.convert("hero-test", variant, "purchase", value=12.5, day=day)
        for _ in range(30):
            counters.expose("facebook-hero", "facebook-hero", day=day)
    await _flushed(counters, url)


async def _flushed(counters: Accumulator, url: str) -> None:
    """What `counters` counted, flushed into the store at `url` as a worker flushes it."""
    counters.collect()
    store = open_store(url)
    try:
        await store.flush(counters.pending_batch(10_000))
    finally:
        await store.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    anyio.run(_count_into, sqlite_url(data / "ep.db"))
    return data


def test_text_report_is_a_table_a_marketer_reads(data_dir: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--rules", str(RULES), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "hero-test: 600 visitors exposed" in out
    lines = out.splitlines()
    control = next(line for line in lines if line.strip().startswith("control "))
    bold = next(line for line in lines if line.strip().startswith("bold "))
    assert control.split()[:4] == ["control", "300", "30", "10.0%"]
    # the Wilson interval of 60 in 300, worked out by hand: 15.87%..24.89%
    assert bold.split()[:5] == ["bold", "300", "60", "20.0%", "15.9%..24.9%"]
    assert "ahead: bold" in out
    assert "facebook-hero [facebook-hero]: 90 exposed" in out


def test_json_report_is_what_the_server_answers(data_dir: Path, origin: Server,
                                                server_logs: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--rules", str(RULES), "--store", sqlite_url(data_dir / "ep.db"),
                 "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    server = start_proxy(server_logs, "--origin", origin.url, "--rules", str(RULES),
                         env={"EP_ADMIN_TOKEN": ADMIN_TOKEN, "EP_PROFILE_KEYS": PROFILE_KEY,
                              "EP_DATA_DIR": str(data_dir)})
    try:
        answered = httpx.get(f"{server.url}/__ep/results",
                             headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    finally:
        server.stop()
    assert printed == answered
    (hero,) = printed["experiments"]
    assert hero["goals"]["purchase"]["variants"]["bold"]["value_sum"] == 60 * 12.5


def test_report_reads_a_redis_store(redis_server: RedisServer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    anyio.run(_count_into, redis_server.url)
    assert main(["report", "--rules", str(RULES), "--store", redis_server.url,
                 "--format", "json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    purchase = report["experiments"][0]["goals"]["purchase"]["variants"]
    assert (purchase["control"]["exposed"], purchase["control"]["converted"]) == (300, 30)


def test_html_report_is_one_self_contained_file(data_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "results.html"
    assert main(["report", "--rules", str(RULES), "--data-dir", str(data_dir),
                 "--html", str(target)]) == 0
    assert f"wrote {target}" in capsys.readouterr().out
    page = target.read_text()
    # Nothing to fetch: the style and script are inline, every link an anchor within.
    assert "<style>" in page and "<script>" in page and "<script src" not in page
    for link in re.findall(r'(?:src|href|action)="([^"]*)"', page):
        assert link.startswith("#"), link
    for anchor in ("experiments", "experiment-1", "segments", "predictions"):
        assert f'id="{anchor}"' in page and f'href="#{anchor}"' in page
    assert page.count("<polyline") == 2   # a line per variant; cta-click has no conversions
    assert 'data-variant="bold"' in page and "No prediction model exists yet." in page


def test_html_report_renders_in_a_browser(data_dir: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed (apt-get install chromium, or make system-deps)")
    target = tmp_path / "results.html"
    assert main(["report", "--rules", str(RULES), "--data-dir", str(data_dir),
                 "--html", str(target)]) == 0
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", target.as_uri()],
        capture_output=True, text=True, timeout=60).stdout
    footer = dom.split("<footer>")[1]
    # the script ran: the time is shown in the viewer's zone, the UTC text kept as a title
    assert re.search(r'<time datetime="[^"]+Z" title="\d{4}-\d\d-\d\d \d\d:\d\d UTC">',
                     footer), footer


def test_report_without_a_store_says_where_it_looked(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--rules", str(RULES), "--data-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert f"no store at {tmp_path / 'none' / 'ep.db'}" in err
    assert not (tmp_path / "none").exists()   # nothing created by looking


def test_html_report_counts_a_stopped_experiment_it_shows(
        data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # hero-test was counted, then taken out of the rules: its final results are a page too.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("slots: {hero: {}}\nrules:\n"
                                  "  - {name: facebook-hero, then: {hero: <b>Hi</b>}}\n")
    target = tmp_path / "results.html"
    assert main(["report", "--rules", str(rules), "--data-dir", str(data_dir),
                 "--html", str(target)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {target}: the results of 1 experiment ")
    assert "hero-test" in target.read_text()


def test_text_report_tells_apart_variants_whose_names_begin_alike(tmp_path: Path) -> None:
    # Names were cut to 16 characters: free-shipping-banner-eu and -us both printed as
    # free-shipping-b…, and which row was which could not be read.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(
        "slots: {hero: {}}\ngoals: {purchase: {when: {request.path: /thanks}}}\n"
        "experiments:\n  - name: shipping\n    slot: hero\n    goals: [purchase]\n"
        "    variants:\n      control: {}\n      free-shipping-banner-eu: {html: EU}\n"
        "      free-shipping-banner-us: {html: US}\n")

    async def count(url: str) -> None:
        counters = Accumulator()
        for variant, converted in (("control", 5), ("free-shipping-banner-eu", 9),
                                   ("free-shipping-banner-us", 14)):
            for _ in range(100):
                counters.expose("shipping", variant, day=DAYS[0])
            for _ in range(converted):
                counters.convert("shipping", variant, "purchase", day=DAYS[0])
        await _flushed(counters, url)

    data = tmp_path / "data"
    data.mkdir()
    anyio.run(count, sqlite_url(data / "ep.db"))
    result = subprocess.run([sys.executable, "-m", "edge_personalizer", "report", "--rules",
                             str(rules), "--data-dir", str(data)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()
            if line.startswith("    ") and line.split()[0].startswith(("control", "free"))}
    assert rows == {"control": ["100", "5"], "free-shipping-banner-eu": ["100", "9"],
                    "free-shipping-banner-us": ["100", "14"]}
    header = next(line for line in result.stdout.splitlines() if "variant" in line)
    assert header.index("exposed") > len("    free-shipping-banner-eu")   # the column fits
