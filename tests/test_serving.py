"""Serving: workers start from the server's own check of the app."""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from edge_personalizer.serving import usable_cpus

from .conftest import ADMIN_TOKEN
from .http.test_server import worker_pids
from .servers import Server, free_port, start_proxy

ROOT = Path(__file__).resolve().parent.parent


def serve_a_copy(origin: Server, tmp_path: Path, *, watch: str = "0.2",
                 env: dict[str, str] | None = None) -> tuple[Path, Server]:
    """A copy of the demo rules, and a server of two workers watching it."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        "--workers", "2", env={"EP_RULES_WATCH_INTERVAL": watch, **(env or {})})
    return rules, proxy


def test_workers_start_from_the_rules_their_server_serves(origin: Server,
                                                          tmp_path: Path) -> None:
    # The server compiles the rules once, to check them before it listens; its forked
    # workers start from that. A worker started later (one replaced after a crash) serves
    # what the others serve: an edit on disk that no reload took (no watcher, no SIGHUP
    # yet) is not taken by it alone, which served two versions side by side; SIGHUP
    # takes it everywhere.
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    files = len(list(rules.rglob("*.yaml")))
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        "--workers", "2", env={"EP_RULES_WATCH_INTERVAL": "0"})
    try:
        started = re.findall(r"forwarding to .*", proxy.log())
        assert len(started) == 2
        assert all(f"{files} files; files read anew 0, compiled anew 0)" in line
                   for line in started)
        served = proxy.health(timeout=10).json()["rules"]["version"]
        (rules / "more.yaml").write_text("rules: []\n")
        os.kill(worker_pids(proxy)[0], signal.SIGKILL)
        wait_for(lambda: len(re.findall(r"forwarding to .*", proxy.log())) >= 3, proxy)
        replaced = re.findall(r"forwarding to .*", proxy.log())[2]
        assert f"(version {served};" in replaced and "files read anew 0, compiled anew 0" \
            in replaced
        for _ in range(10):
            assert httpx.get(proxy.url + "/page/home", timeout=10).status_code == 200
        wait_for(lambda: len(_workers(proxy)) == 2, proxy)
        assert {w["rules_version"] for w in _workers(proxy)} == {served}
        proxy.process.send_signal(signal.SIGHUP)
        wait_for(lambda: len(versions := {w["rules_version"] for w in _workers(proxy)}) == 1
                 and versions != {served}, proxy)
    finally:
        proxy.stop()


def test_a_worker_replaced_while_an_edit_is_refused_serves_and_the_server_stays_up(
        origin: Server, tmp_path: Path) -> None:
    # A refused edit on disk used to stop a replaced worker from starting, again and
    # again, until the server gave up and exited: the whole site down for one typo.
    rules, proxy = serve_a_copy(origin, tmp_path)
    try:
        started = proxy.health(timeout=10).json()["rules"]["version"]
        (rules / "more.yaml").write_text("rules: []\n")   # a good edit, served by all
        wait_for(lambda: proxy.log().count("rules reloaded") >= 2, proxy)
        served = proxy.health(timeout=10).json()["rules"]["version"]
        assert served != started
        (rules / "typo.yaml").write_text("rules:\n  - name: typo\n    then: {heor: x}\n")
        wait_for(lambda: proxy.log().count("rules not reloaded") >= 2, proxy)
        time.sleep(1.0)   # the server's own book (which logs nothing) has looked too
        os.kill(worker_pids(proxy)[0], signal.SIGKILL)
        wait_for(lambda: len(re.findall(r"forwarding to .*", proxy.log())) >= 3, proxy)
        for _ in range(10):
            assert httpx.get(proxy.url + "/page/home", timeout=10).status_code == 200
        wait_for(lambda: len(_workers(proxy)) == 2, proxy)   # the new one has published
        workers = proxy.health(timeout=10).json()["workers"]
        assert len(workers) == 2 and proxy.process.poll() is None
        assert all(w["rules_version"] == served and "typo.yaml:3:" in w["last_error"]
                   for w in workers)

        (rules / "typo.yaml").write_text("rules:\n  - name: typo\n    then: {hero: x}\n")

        def both_serve_the_fix() -> bool:
            workers = proxy.health(timeout=10).json()["workers"]
            return len(workers) == 2 and all(
                w["rules_version"] not in (started, served) and w["last_error"] is None
                for w in workers)

        wait_for(both_serve_the_fix, proxy)
    finally:
        proxy.stop()


def test_an_admin_reload_reloads_the_server_s_rules_too(origin: Server, tmp_path: Path) -> None:
    # One worker, no watcher: the admin reload reloaded that worker alone, and a worker
    # replaced after a crash then started from the rules the server started with.
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        env={"EP_RULES_WATCH_INTERVAL": "0", "EP_ADMIN_TOKEN": ADMIN_TOKEN})
    try:
        (rules / "more.yaml").write_text("rules: []\n")
        answer = httpx.post(proxy.url + "/__ep/reload", headers=admin, timeout=15).json()
        assert answer["reloaded"] is True and answer["error"] is None
        wait_for(lambda: "rules reloaded" in proxy.log(), proxy)   # (lines go in batches)
        time.sleep(0.5)
        assert proxy.log().count("rules reloaded") == 1   # once, by the server's SIGHUP
        os.kill(worker_pids(proxy)[0], signal.SIGKILL)
        wait_for(lambda: len(re.findall(r"forwarding to .*", proxy.log())) >= 2, proxy)
        replaced = re.findall(r"forwarding to .*", proxy.log())[1]
        assert f"(version {answer['version']};" in replaced
    finally:
        proxy.stop()


def wait_for(condition: Callable[[], bool], proxy: Server, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, proxy.log()
        time.sleep(0.1)


def _workers(proxy: Server) -> list[dict[str, object]]:
    workers: list[dict[str, object]] = proxy.health(timeout=10).json()["workers"]
    return workers


def test_removing_the_file_a_reload_was_refused_for_serves_the_edits_saved_with_it(
        origin: Server, tmp_path: Path) -> None:
    # A file or folder the rules cannot read (a name, an encoding, a link loop) is no part
    # of the rules' version: once removed, the version was the refused load's, and every
    # reload gave back the refused load, naming a file that was gone, while the edits
    # saved with it never served.
    admin = {"Authorization": "Bearer test-admin-token-0123456789abcdef"}
    rules, proxy = serve_a_copy(origin, tmp_path,
                                env={"EP_ADMIN_TOKEN": admin["Authorization"][7:]})
    hero = rules / "fragments" / "hero-facebook.html"
    mistakes: list[tuple[Path, Callable[[Path], object]]] = [
        (rules / "Promo.YAML", lambda p: p.write_text("rules: []\n")),
        (rules / "w.yaml", lambda p: p.write_bytes(b"rules: []\n# caf\xe9\n")),
        (rules / "fragments" / "up", lambda p: p.symlink_to("..")),
    ]
    try:
        for n, (bad, make) in enumerate(mistakes):
            hero.write_text(f"<h1>edit {n}</h1>")
            make(bad)
            wait_for(functools.partial(_all_refuse, proxy, bad.name), proxy)
            bad.unlink()
            wait_for(lambda: all(w["last_error"] is None for w in _workers(proxy)), proxy)
            for _ in range(4):
                page = httpx.get(proxy.url + "/slotted/x?utm_source=facebook", timeout=10)
                assert f"<h1>edit {n}</h1>" in page.text
            reload = httpx.post(proxy.url + "/__ep/reload", headers=admin, timeout=10)
            assert reload.status_code == 200, reload.text
    finally:
        proxy.stop()


def test_a_rule_file_linked_to_nothing_is_refused_and_its_rules_keep_serving(
        origin: Server, tmp_path: Path) -> None:
    # The rules of a link whose target went away were dropped at the next reload, with
    # no error anywhere.
    rules, shared = tmp_path / "rules", tmp_path / "shared"
    shutil.copytree(ROOT / "rules", rules)
    shared.mkdir()
    (shared / "promo.yaml").write_text(
        "rules:\n  - {name: promo, when: {referral.source: facebook}, "
        "then: {banner: {html: '<p>SHARED PROMO</p>'}}}\n")
    (rules / "promo.yaml").symlink_to(shared / "promo.yaml")
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        "--workers", "2", env={"EP_RULES_WATCH_INTERVAL": "0.2"})
    try:
        page = proxy.url + "/slotted/x?utm_source=facebook"
        assert "SHARED PROMO" in httpx.get(page, timeout=10).text
        (shared / "promo.yaml").rename(shared / "moved.yaml")
        wait_for(lambda: all(w["last_error"] for w in _workers(proxy)), proxy)
        assert all(f"{rules / 'promo.yaml'}: the link leads to {shared / 'promo.yaml'}, which "
                   "does not exist" in str(w["last_error"]) for w in _workers(proxy))
        for _ in range(4):
            assert "SHARED PROMO" in httpx.get(page, timeout=10).text
        (shared / "moved.yaml").rename(shared / "promo.yaml")
        wait_for(lambda: all(w["last_error"] is None for w in _workers(proxy)), proxy)
    finally:
        proxy.stop()


def test_a_fifo_or_device_among_the_rules_is_refused_and_the_rules_keep_serving(
        origin: Server, tmp_path: Path) -> None:
    # A rule file that is a FIFO or a link to a device was left out with no error
    # anywhere, and a fragment that is a FIFO was said not to exist; neither is ever
    # opened to read (a FIFO waits for a writer, a device never ends).
    rules, proxy = serve_a_copy(origin, tmp_path)
    hero = rules / "fragments" / "hero-facebook.html"
    saved = hero.read_bytes()
    page = proxy.url + "/slotted/x?utm_source=facebook"
    mistakes: list[tuple[Path, Callable[[Path], object], str]] = [
        (rules / "z.yaml", lambda p: p.symlink_to("/dev/zero"),
         f"{rules / 'z.yaml'}: cannot be read: not a regular file (a device)"),
        (rules / "f.yaml", os.mkfifo,
         f"{rules / 'f.yaml'}: cannot be read: not a regular file (a FIFO)"),
        (hero, _fifo_in_place_of,
         "fragment 'fragments/hero-facebook.html' cannot be read: not a regular file "
         "(a FIFO)")]
    try:
        for bad, make, said in mistakes:
            make(bad)
            wait_for(functools.partial(_all_refuse, proxy, said), proxy)
            for _ in range(4):
                assert "friend from Facebook" in httpx.get(page, timeout=10).text
            bad.unlink()
            if bad == hero:
                hero.write_bytes(saved)
            wait_for(lambda: all(w["last_error"] is None for w in _workers(proxy)), proxy)
    finally:
        proxy.stop()


def _fifo_in_place_of(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def test_a_folder_link_to_the_servers_data_dir_is_refused_not_reloaded_forever(
        origin: Server, tmp_path: Path) -> None:
    # The server marks its data_dir as it starts: a link the rules gain to it later (or a
    # mount) is refused with an error naming it, instead of a reload on each write there.
    rules, data = tmp_path / "rules", tmp_path / "shared" / "data"
    shutil.copytree(ROOT / "rules", rules)
    proxy = start_proxy(tmp_path, "--origin", origin.url, "--rules", str(rules),
                        "--data-dir", str(data), "--workers", "2",
                        env={"EP_RULES_WATCH_INTERVAL": "0.2",
                             "EP_PROFILE_KEYS": "test-profile-key-0123456789abcdef"})
    try:
        (rules / "shared").symlink_to(data.parent)
        wait_for(lambda: all(w["last_error"] for w in _workers(proxy)), proxy)
        assert all(f"{rules / 'shared' / 'data'}: a server's data_dir (it holds "
                   ".edge-personalizer-data), reached through the folder link "
                   f"{rules / 'shared'}" in str(w["last_error"])
                   for w in _workers(proxy))
        refused = proxy.log().count("rules not reloaded")
        for _ in range(20):   # the workers write their states there every second
            assert httpx.get(proxy.url + "/slotted/x", timeout=10).status_code == 200
            time.sleep(0.1)
        assert proxy.log().count("rules not reloaded") == refused
    finally:
        proxy.stop()


def test_a_rule_file_over_8_mib_is_refused_before_it_is_read(origin: Server,
                                                              tmp_path: Path) -> None:
    # A 50 MB rule file took each worker four minutes and over 2 GB before it was refused;
    # now it is refused as it is seen, and the rules before it serve.
    rules, proxy = serve_a_copy(origin, tmp_path)
    try:
        with (rules / "huge.yaml").open("w") as huge:
            huge.write("rules:\n")
            rule = "  - {name: r%d, when: {referral.source: x%d}, then: {hero: {html: y}}}\n"
            for i in range(150_000):   # 10 MB
                huge.write(rule % (i, i))
        seen = time.monotonic()
        wait_for(lambda: all(w["last_error"] for w in _workers(proxy)), proxy, timeout=60)
        assert time.monotonic() - seen < 10
        assert all(f"{rules / 'huge.yaml'}: the file is larger than 8 MiB" in
                   str(w["last_error"]) for w in _workers(proxy))
        page = httpx.get(proxy.url + "/slotted/x?utm_source=facebook", timeout=10)
        assert "Welcome, friend from Facebook" in page.text
    finally:
        proxy.stop()


def test_a_mistyped_fragment_name_is_refused_not_shown_as_text(origin: Server,
                                                                tmp_path: Path) -> None:
    # `banner: fragments/hero-facebook.htm` was valid, and the page showed the path.
    rules, proxy = serve_a_copy(origin, tmp_path)
    try:
        (rules / "typo.yaml").write_text(
            "rules:\n  - name: typo\n    when: {referral.source: facebook}\n"
            "    then: {banner: fragments/hero-facebook.htm}\n")
        wait_for(lambda: all(w["last_error"] for w in _workers(proxy)), proxy)
        assert all(f"{rules / 'typo.yaml'}:4:20: rule 'typo': no fragment file "
                   "'fragments/hero-facebook.htm'" in str(w["last_error"])
                   for w in _workers(proxy))
        for _ in range(4):
            page = httpx.get(proxy.url + "/slotted/x?utm_source=facebook", timeout=10).text
            assert "hero-facebook.htm" not in page and "Welcome, friend" in page
    finally:
        proxy.stop()


def test_a_rules_directory_made_anew_empty_is_named_so_and_its_rules_keep_serving(
        origin: Server, tmp_path: Path) -> None:
    # Removed, then made anew and empty (a deploy half-way): the health page went on
    # saying the directory did not exist, as an empty directory looked to the watcher
    # as a missing one did.
    rules, proxy = serve_a_copy(origin, tmp_path)
    gone = tmp_path / "gone"
    try:
        rules.rename(gone)
        wait_for(lambda: all("does not exist" in str(w["last_error"])
                             for w in _workers(proxy)), proxy)
        rules.mkdir()
        wait_for(lambda: all("the rules directory holds no rule file now" in
                             str(w["last_error"]) for w in _workers(proxy)), proxy)
        page = httpx.get(proxy.url + "/slotted/x?utm_source=facebook", timeout=10)
        assert "Welcome, friend from Facebook" in page.text
        for path in gone.iterdir():
            path.rename(rules / path.name)
        wait_for(lambda: all(w["last_error"] is None for w in _workers(proxy)), proxy)
    finally:
        proxy.stop()


def _all_refuse(proxy: Server, name: str) -> bool:
    return all(name in str(w["last_error"]) for w in _workers(proxy))


def test_a_second_server_on_a_port_in_use_stops_with_a_message(origin: Server,
                                                                tmp_path: Path) -> None:
    # granian's workers share their port, so a second server started beside the first:
    # visitors were shared out between two servers of different settings.
    first = start_proxy(tmp_path, "--origin", origin.url)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "edge_personalizer", "serve", "--origin", origin.url,
             "--port", str(first.port)], cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "EP_DATA_DIR": str(tmp_path / "second")})
        assert second.returncode == 2
        assert (f"cannot listen on 127.0.0.1:{first.port}: Address already in use (is "
                "another server running there?") in second.stderr
        assert "Listening at" not in second.stderr + second.stdout
        assert httpx.get(first.url + "/status/204").status_code == 204
    finally:
        first.stop()


def test_a_server_refused_for_its_rules_says_why_without_a_warning_first(
        origin: Server, tmp_path: Path) -> None:
    # The refusal is what the operator must read: no warning about profile keys (which
    # would matter only to a server that starts) comes before it.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text("rules:\n  - name: x\n    then: {hero: [1, 2]}\n")
    env = {key: value for key, value in os.environ.items() if key != "EP_PROFILE_KEYS"}
    refused = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", origin.url,
         "--rules", str(rules), "--port", str(free_port())], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={**env, "EP_DATA_DIR": str(tmp_path / "data")})
    assert refused.returncode == 2, refused.stderr
    assert "site.yaml:3:" in refused.stderr and "unknown slot" in refused.stderr, refused.stderr
    assert "profile_keys" not in refused.stderr


def test_a_server_refuses_rules_that_set_its_consent_cookie(origin: Server,
                                                           tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.yaml").write_text(
        "rules:\n  - name: accept-all\n    then: {cookies: {cmp_consent: granted}}\n")
    refused = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", origin.url,
         "--rules", str(rules), "--port", str(free_port())], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={**os.environ, "EP_DATA_DIR": str(tmp_path / "data"),
                                    "EP_CONSENT_COOKIE": "cmp_consent"})
    assert refused.returncode == 2, refused.stderr
    assert (f"{rules / 'site.yaml'}:3:22: rule 'accept-all': cookies: 'cmp_consent' is the "
            "cookie this server names in consent_cookie; choose another name"
            in refused.stderr), refused.stderr


def test_far_more_workers_than_cpus_are_refused_before_any_starts(
        origin: Server, tmp_path: Path) -> None:
    # 1,000 workers of ~55 MB each took a 2-CPU machine with 24 GiB down.
    cpus, by_quota = usable_cpus()
    where = "its CPU quota allows" if by_quota else "the server may use"
    refused = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", origin.url,
         "--workers", "1000", "--port", str(free_port())], cwd=ROOT, capture_output=True,
        text=True, timeout=60, env={**os.environ, "EP_DATA_DIR": str(tmp_path / "data")})
    assert refused.returncode == 2, refused.stderr
    assert (f"workers must be at most {4 * cpus} on this machine (4 for each of the {cpus} "
            f"CPUs {where}), got 1000" in refused.stderr), refused.stderr
    # Other commands read the same settings (a shared config file) and run as they did.
    explained = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "explain", "--url", "/", "--header",
         "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"], cwd=ROOT,
        capture_output=True, text=True, timeout=60, env={**os.environ, "EP_WORKERS": "1000"})
    assert explained.returncode == 0, explained.stderr


EIGHT_CPUS = frozenset(range(8))


@pytest.mark.parametrize(("files", "membership", "expected"), [
    # docker run --cpus 1.5, cgroup v2 in its own namespace: the root is the container's
    ({"cpu.max": "150000 100000\n"}, "0::/\n", (2, True)),
    ({"cpu.max": "50000 100000\n"}, "0::/\n", (1, True)),    # half a CPU: one worker's worth
    ({"cpu.max": "max 100000\n"}, "0::/\n", (8, False)),      # no quota
    ({"cpu.max": "1600000 100000\n"}, "0::/\n", (8, False)),  # more than the CPUs
    ({"cpu.max": "garbled\n"}, "0::/\n", (8, False)),
    ({}, "0::/\n", (8, False)),                                # no cgroup files at all
    # systemd's CPUQuota= on a slice above the service, the host's hierarchy seen whole
    ({"system.slice/cpu.max": "200000 100000\n", "system.slice/shop.service/cpu.max":
      "max 100000\n"}, "0::/system.slice/shop.service\n", (2, True)),
    # cgroup v1: the cpu controller's hierarchy, the container's own folder in it
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n",
      "cpu/docker/abc/cpu.cfs_quota_us": "300000\n",
      "cpu/docker/abc/cpu.cfs_period_us": "100000\n"},
     "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n", (3, True)),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/\n", (8, False)),
])
def test_a_cpu_quota_bounds_the_cpus_workers_are_counted_against(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str],
        membership: str, expected: tuple[int, bool]) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: EIGHT_CPUS)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert usable_cpus(tmp_path, membership) == expected


def test_a_config_file_s_relative_paths_are_its_folder_s(origin: Server, tmp_path: Path) -> None:
    # The server starts from the project's folder; the config, its rules and its store
    # lie in another, named from the file as an operator writes it beside them.
    site = tmp_path / "site"
    shutil.copytree(ROOT / "rules", site / "rules")
    (site / "ep.toml").write_text(f'origin_url = "{origin.url}"\nrules_dir = "rules"\n'
                                  'store_url = "sqlite:data/ep.db"\n')
    proxy = start_proxy(tmp_path, "--config", str(site / "ep.toml"))
    try:
        files = len(list((site / "rules").rglob("*.yaml")))
        assert f"{files} files;" in proxy.log()
        assert httpx.get(proxy.url + "/page/home", headers={"Accept": "text/html"},
                         timeout=10).status_code == 200
        assert proxy.health(timeout=10).json()["rules"]["directory"] == str(site / "rules")
        assert (site / "data" / "ep.db").exists()
    finally:
        proxy.stop()
