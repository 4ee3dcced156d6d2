from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_personalizer.cli import main

from .servers import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", ["validate", "check"])   # (the name marketers try first)
def test_validate_accepts_the_demo_rules(capsys: pytest.CaptureFixture[str],
                                         command: str) -> None:
    assert main([command, str(ROOT / "rules")]) == 0
    assert ": valid (version " in capsys.readouterr().out


def test_validate_reports_errors_and_exits_1(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("rules:\n  - name: [\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'bad.yaml'}:2:12: invalid YAML: " in out
    assert "the file ends inside a '[' or '{' that is never closed" in out
    assert main(["validate", str(tmp_path), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["errors"][0]["line"] == 2


def test_validate_warns_of_a_rule_whose_schedule_has_ended_and_stays_valid(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A campaign's last day passes while the site runs: its rule set must go on loading,
    # but the rule matches no one any more.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - name: summer-sale\n"
        "    schedule: {start: 2025-06-01, end: 2025-08-31}\n    then: {hero: x}\n")
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"warning: {tmp_path / 'r.yaml'}:3: rule 'summer-sale': its schedule "
                      "ended on 2025-08-31 (the visitors' own dates), so it matches no one any "
                      "more; remove it, or move its end")
    assert out[1].endswith("); 1 warning")
    assert main(["validate", str(tmp_path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True
    assert report["warnings"] == [{"file": str(tmp_path / "r.yaml"), "line": 3,
                                   "where": f"{tmp_path / 'r.yaml'}:3", "kind": "rule",
                                   "message": out[0].split(":3: ", 1)[1]}]


def test_validate_warns_of_pages_keyed_caching_cannot_share_when_it_is_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An upgrade made pages printing referral.source private under keyed caching; validate
    # said "valid" and nothing else, the operator saw only the hit rate drop.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}, promo: {}}\nrules:\n  - name: welcome\n"
        "    then: {hero: {html: 'Welcome, {{ referral.source }} readers'}}\n"
        "  - name: facebook\n    when: {referral.source: facebook}\n"
        "    then: {promo: {html: 'Hello from {{ geo.country }}'}}\n")
    monkeypatch.delenv("EP_KEYED_CACHING", raising=False)
    monkeypatch.delenv("EP_CONFIG", raising=False)
    assert main(["validate", str(tmp_path), "--strict"]) == 0   # off: every page private
    assert "warning" not in capsys.readouterr().out
    assert main(["validate", str(tmp_path), "--keyed-caching"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"warning: {tmp_path / 'r.yaml'}:3: rule 'welcome' prints "
                             "referral.source in hero, so with keyed caching its pages are "
                             "made per visitor and sent private")
    assert out[1].endswith("); 1 warning")
    monkeypatch.setenv("EP_KEYED_CACHING", "true")   # the server's own setting
    assert main(["validate", str(tmp_path), "--strict", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(w["line"], w["kind"]) for w in report["warnings"]] == [(3, "rule")]


@pytest.mark.parametrize("files", [{}, {"hero.html": "<b>hi</b>", ".drafts/a.yaml": "rules: []"}])
def test_validate_refuses_a_directory_without_rule_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str]) -> None:
    # A server serving rules refuses such a directory on reload; validate said it was valid.
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().out == (
        f"{tmp_path}: the rules directory holds no rule file (.yaml or .yml, outside hidden "
        "folders): no page is personalized, and a server serving rules refuses it on "
        "reload; to serve no rules, leave one file with `rules: []`\n"
        "0 files: 1 error\n")
    assert main(["validate", str(tmp_path), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["errors"][0]["file"] == str(tmp_path)
    (tmp_path / "none.yaml").write_text("rules: []\n")
    assert main(["validate", str(tmp_path)]) == 0


def test_serve_without_origin_exits_2_with_a_message(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EP_ORIGIN_URL", raising=False)
    assert main(["serve"]) == 2
    assert "no origin configured" in capsys.readouterr().err


def test_serve_with_bad_rules_exits_before_listening(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    (tmp_path / "worse.yaml").write_text(
        "slots: {a: {}}\nrules:\n  - name: r\n    when: {device.type: tablett}\n"
        "    then: {b: x}\n")
    result = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", "http://127.0.0.1:9",
         "--rules", str(tmp_path), "--port", "1"],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2
    # every mistake, each on its line (it said the first "and 2 more")
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"edge-personalizer: {tmp_path / 'bad.yaml'}:1:9: invalid YAML")
    assert lines[1].startswith(f"edge-personalizer: {tmp_path / 'worse.yaml'}:4:")
    assert "unknown device.type 'tablett'" in lines[1]
    assert lines[2].startswith(f"edge-personalizer: {tmp_path / 'worse.yaml'}:5:")
    assert len(lines) == 3 and "more)" not in result.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, its output as text."""
    return subprocess.run([sys.executable, "-m", "edge_personalizer", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_a_number_too_large_for_a_float_is_told_at_its_place_not_a_traceback(
        tmp_path: Path) -> None:
    # validate ended in "OverflowError: int too large to convert to float" (with
    # --format json too: no JSON), and serve in a traceback and exit 1.
    huge = "1" + "0" * 400
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nrules:\n  - name: r\n    traffic: 50\n"
        f"    when: {{profile.visits: {{gte: {huge}}}}}\n    then: {{hero: x}}\n"
        f"experiments:\n  - name: e\n    slot: hero\n    holdout: {huge}\n"
        f"    variants: {{control: {{weight: {huge}}}, b: {{html: x}}}}\n")
    where = tmp_path / "r.yaml"
    told = [f"{where}:5:34: rule 'r': gte takes a number, got a number beyond ±1.8e308, "
            "too large to compare",
            f"{where}:10:14: experiment 'e': holdout is a percentage from 0 up to (not "
            "including) 100",
            f"{where}:11:34: experiment 'e': weight is a positive number"]
    text = _cli("validate", str(tmp_path))
    assert (text.returncode, text.stderr) == (1, "")
    lines = text.stdout.splitlines()
    assert len(lines) == 4
    assert all(line.startswith(one) for line, one in zip(lines[:3], told, strict=True))
    assert lines[3] == "1 file: 3 errors (0 rules and 0 experiments compile without errors)"
    as_json = _cli("validate", str(tmp_path), "--format", "json")
    assert (as_json.returncode, as_json.stderr) == (1, "")
    errors = json.loads(as_json.stdout)["errors"]
    assert [(e["line"], e["column"]) for e in errors] == [(5, 34), (10, 14), (11, 34)]
    serve = _cli("serve", "--origin", "http://127.0.0.1:9", "--rules", str(tmp_path),
                 "--port", str(free_port()))
    assert serve.returncode == 2 and "Traceback" not in serve.stderr
    assert serve.stderr.splitlines()[0] == f"edge-personalizer: {told[0]}"


def test_validate_refuses_weights_whose_sum_is_too_large(tmp_path: Path) -> None:
    # Two weights of 1e308 validated: explain then printed nan%, every visitor got one
    # variant and the results answered a ZeroDivisionError.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: e\n    slot: hero\n    variants:\n"
        "      control: {weight: 1.0e308}\n      bold: {weight: 1.0e308, html: x}\n")
    result = _cli("validate", str(tmp_path))
    assert result.returncode == 1
    where = tmp_path / "r.yaml"
    assert [line.split(": weight is")[0] for line in result.stdout.splitlines()[:2]] == [
        f"{where}:6:25: experiment 'e'", f"{where}:7:22: experiment 'e'"]
    assert "from 0.000001 up to 1,000,000,000" in result.stdout


def test_validate_refuses_a_segment_named_as_the_visitors_in_none(tmp_path: Path) -> None:
    # It validated clean, and the results showed one `other` cell mixing the segment's
    # phones with everyone in no segment.
    (tmp_path / "r.yaml").write_text(
        "slots: {hero: {}}\nsegments:\n  other: {when: {device.type: mobile}}\n"
        "  desktop: {when: {device.type: desktop}}\nexperiments:\n  - name: e\n"
        "    slot: hero\n    per: segment\n    variants: {a: {}, b: {html: x}}\n")
    result = _cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == (
        f"{tmp_path / 'r.yaml'}:8:10: experiment 'e': per: segment counts the visitors in none "
        "of the segments as other, and a segment is named other: name the segment otherwise")


def test_validate_refuses_a_name_that_would_print_as_something_else(tmp_path: Path) -> None:
    # A segment named "a<ESC>[31mRED<LF>line" validated, and `report` printed it raw: the
    # terminal turned red and the table broke across lines. The message shows it escaped.
    (tmp_path / "r.yaml").write_text(
        'slots: {hero: {}}\nsegments:\n  "a\\e[31mRED\\nline": {when: {device.type: mobile}}\n'
        "  phones: {when: {device.type: mobile}}\n")
    result = _cli("validate", str(tmp_path))
    assert result.returncode == 1 and "\x1b" not in result.stdout
    assert result.stdout.splitlines()[0] == (
        f"{tmp_path / 'r.yaml'}:3:3: segment 'a\\x1b[31mRED\\nline': a name may not hold a "
        "control character (a line break, a tab, an escape) or an invisible one (zero-width, "
        "a direction mark): names are printed in reports, terminals and dashboards")


def test_validate_and_serve_refuse_a_priority_beyond_a_million(tmp_path: Path) -> None:
    # A priority of 400 digits validated, and the server served the rules.
    (tmp_path / "r.yaml").write_text("slots: {hero: {}}\nrules:\n  - name: r\n"
                                     f"    priority: 1{'0' * 400}\n    then: {{hero: x}}\n")
    told = (f"{tmp_path / 'r.yaml'}:4:15: rule 'r': priority is a whole number from "
            "-1,000,000 to 1,000,000 (higher goes first)")
    result = _cli("validate", str(tmp_path))
    assert result.returncode == 1 and result.stdout.splitlines()[0] == told
    serve = _cli("serve", "--origin", "http://127.0.0.1:9", "--rules", str(tmp_path),
                 "--port", str(free_port()))
    assert (serve.returncode, serve.stderr.splitlines()[0]) == (2, f"edge-personalizer: {told}")


@pytest.mark.parametrize("command", ["serve", "demo", "replay"])
def test_what_writes_in_data_dir_refuses_one_among_the_rules(command: str,
                                                             tmp_path: Path) -> None:
    # What these write there (the store, the rule files' parses, the demo's secrets, each
    # worker's state) would count as edits of the rules: every worker would reload forever.
    # Refused before anything is written there, though settings with such a data_dir are
    # made (explain and preview-link, which write nothing, run from inside the rules).
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text("rules: []\n")
    flags = {"serve": ["--origin", "http://127.0.0.1:9", "--port", str(free_port())],
             "demo": ["--port", str(free_port()), "--origin-port", str(free_port())],
             "replay": []}[command]
    result = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", command, "--rules", ".", *flags],
        input='{"url": "https://shop.example/"}\n', capture_output=True, text=True,
        timeout=60, cwd=rules, env={k: v for k, v in os.environ.items()
                                    if not k.startswith("EP_")})
    assert result.returncode == 2
    assert ("edge-personalizer: data_dir (ep-data) lies inside rules_dir (.): what the "
            "server writes there would count as edits of the rules; put it elsewhere, or in "
            "a hidden folder of the rules (e.g. .ep-data), which the rules leave out\n"
            ) in result.stderr
    assert "Listening at" not in result.stderr + result.stdout
    assert [path.name for path in rules.iterdir()] == ["r.yaml"]   # nothing written there


def test_serve_refuses_an_origin_or_site_address_that_names_no_host(
        capsys: pytest.CaptureFixture[str]) -> None:
    # (a port past 65535 used to serve, and every request got a 502)
    assert main(["serve", "--origin", "http://127.0.0.1:99999"]) == 2
    assert "origin_url names no host the proxy could use: '127.0.0.1:99999'" \
        in capsys.readouterr().err
    assert main(["serve", "--origin", "http://127.0.0.1:9",
                 "--public-url", "https://shop..example"]) == 2
    assert "public_url names no host" in capsys.readouterr().err


def test_serve_with_missing_geo_db_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--origin", "http://127.0.0.1:9", "--geo-db", "/nonexistent.mmdb"])
    assert code == 2
    assert "geo database /nonexistent.mmdb does not exist" in capsys.readouterr().err


IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
GEO = str(ROOT / "geo_db" / "GeoLite2-City-Test.mmdb")


@pytest.mark.parametrize(("flags", "said"), [
    (["--port", "65535"], "the demo shop cannot take port 65536: give it another with "
                          "--origin-port (make demo ORIGIN_PORT=...)"),
    (["--port", "18500", "--origin-port", "18500"], "cannot take port 18500 (the proxy's)"),
    (["--port", "18500", "--origin-port", "0"], "cannot take port 0:"),
])
def test_the_demo_shop_is_refused_a_port_it_cannot_take(
        capsys: pytest.CaptureFixture[str], flags: list[str], said: str) -> None:
    assert main(["demo", *flags]) == 2
    assert said in capsys.readouterr().err


def test_explain_shows_the_classified_visitor(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explain", "--url", "https://shop.example/running?utm_source=fb&gclid=x",
                 "--header", f"User-Agent: {IPHONE_UA}", "--header", "Accept-Language: fr",
                 "--ip", "81.2.69.142", "--geo-db", GEO, "--rules", str(ROOT / "rules"),
                 "--time", "2026-11-23T19:30:00+00:00"])
    assert code == 0
    out = capsys.readouterr().out
    for line in ("referral.medium: paid", "referral.source: facebook", "geo.city: London",
                 "device.type: mobile", "language.primary: fr", "time.daypart: evening",
                 'profile.interests: {"running": 0.25}',
                 'won      facebook-welcome: referral.source is "facebook"',
                 "matched  mobile-app-nudge", "hero: facebook-welcome (rule facebook-welcome)",
                 "hero-headline-test (hero): not in the audience"):
        assert line in out
    # What rules cannot read is shown for the operator, and said so.
    for field in ("geo.source", "time.minute", "profile.first_seen", "request.client_ip"):
        assert f"  {field}: " in out
        assert next(line for line in out.splitlines() if f"  {field}: " in line).endswith(
            "(shown only: rules cannot read it)")
    for line in out.splitlines():
        if line.startswith(("  geo.city", "  device.type", "  request.path", "  referral.")):
            assert "shown only" not in line


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00",
                                  "1969-12-31T23:59:59Z"])
def test_explain_refuses_a_time_no_clock_shows(capsys: pytest.CaptureFixture[str],
                                               when: str) -> None:
    # The first two stopped explain with a traceback (years 10000 and 0 in the visitor's
    # time zone) and an exit code of 0.
    assert main(["explain", "--url", "/", "--time", when]) == 2
    assert capsys.readouterr() == ("", f"edge-personalizer: --time {when!r} is out of range: "
                                       "from 1970-01-01T00:00:00Z to 9999-12-31T00:00:00Z\n")


def test_explain_says_a_rule_s_value_as_written_and_an_experiment_s_holdout_share(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--url", "/shoes", "--header", f"User-Agent: {IPHONE_UA}",
                 "--ip", "81.2.69.142", "--geo-db", GEO, "--rules", str(ROOT / "rules"),
                 "--cookie", "x=1"]) == 0
    out = capsys.readouterr().out
    assert 'won      uk-shipping: geo.country is "GB"' in out   # as the rule has it
    # the demo's experiment holds out 10% of its visitors: the bucket is told against it
    line = next(line for line in out.splitlines() if "hero-headline-test (hero):" in line)
    assert re.search(r"holdout 10% \(buckets below 0\.1\): bucket 0\.\d+, (not )?held out, "
                     r"variant bucket", line), line


def test_explain_says_geo_is_unknown_for_an_address_without_a_database(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}",
                 "--ip", "81.2.69.142"]) == 0
    captured = capsys.readouterr()
    assert "geo.source: none" in captured.out
    assert captured.err == ("note: no geo database, so geo.* are unknown for --ip "
                            "81.2.69.142 (give one with --geo-db FILE or EP_GEO_DB: a "
                            "MaxMind GeoIP2 or GeoLite2 City or Country .mmdb)\n")


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}",
                 "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["visitor"]["referral"]["medium"] == "direct"
    assert data["visitor"]["profile"]["stored"] is True
    assert main(["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}",
                 "--header", "Sec-GPC: 1", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["visitor"]["profile"]["stored"] is False


def test_explain_without_a_user_agent_says_it_explains_a_bot(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--url", "/", "--format", "json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["visitor"]["device"]["type"] == "bot"
    assert data["visitor"]["profile"]["stored"] is False   # a bot is given no profile
    assert captured.err == ("note: no User-Agent given; the proxy takes a request without "
                            "one for a bot (explain a browser with --header "
                            "'User-Agent: ...')\n")
    assert main(["explain", "--url", "/", "--header", f"user-agent: {IPHONE_UA}"]) == 0
    assert capsys.readouterr().err == ""


def test_explain_rejects_a_malformed_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--url", "/", "--header", "no colon"]) == 2
    assert "expected 'Name: value'" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "error"), [
    # Taken as a path, it showed the visitor on host "site.invalidshop.example".
    (["--url", "shop.example/sale?utm_source=fb"],
     "--url 'shop.example/sale?utm_source=fb' is no http(s) URL; write "
     "https://shop.example/sale?utm_source=fb (or a path starting with /)"),
    (["--url", "localhost:8080/sale"], "--url 'localhost:8080/sale' is no http(s) URL; "
                                       "write https://localhost:8080/sale"),
    (["--url", "ftp://shop.example/x"], "--url 'ftp://shop.example/x' is no http(s) URL"),
    (["--url", "/", "--ip", "999.1.1.1"], "--ip '999.1.1.1' is not an IP address"),
])
def test_explain_refuses_what_is_no_url_or_address(
        capsys: pytest.CaptureFixture[str], argv: list[str], error: str) -> None:
    assert main(["explain", *argv]) == 2
    assert error in capsys.readouterr().err


def test_explain_says_a_search_crawler_is_served_the_page_as_it_is(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The proxy leaves the page as it is for search and AI crawlers: explain said the
    # Facebook rule won for Googlebot from Facebook.
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    assert main(["explain", "--url", "https://shop.example/", "--header",
                 f"User-Agent: {googlebot}", "--header", "Referer: https://www.facebook.com/",
                 "--rules", str(ROOT / "rules")]) == 0
    out = capsys.readouterr().out
    assert "  matched  facebook-welcome" in out
    assert "matched, but a search or AI crawler is served the page as it is" in out
    assert out.endswith("decision\n  none: a search or AI crawler: served the page as it is\n")


@pytest.mark.parametrize(("command", "url", "reason"), [
    (["explain"], "http://[::1/", "Invalid IPv6 URL"),
    (["explain"], "http://shop.example:99999/", "Port out of range 0-65535"),
    (["preview-link", "--rule", "facebook-welcome"], "http://[::1/", "Invalid IPv6 URL"),
])
def test_a_malformed_url_is_named_not_a_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        command: list[str], url: str, reason: str) -> None:
    monkeypatch.setenv("EP_PROFILE_KEYS", "test-profile-key-0123456789abcdef")
    assert main([*command, "--url", url, "--rules", str(ROOT / "rules")]) == 2
    assert capsys.readouterr().err == (f"edge-personalizer: --url {url!r} is not a URL "
                                       f"({reason}); write one such as "
                                       "https://shop.example/sale?utm_source=facebook\n")


@pytest.mark.parametrize("expires", ["99999999d", "31d", "0m", "30s"])
def test_a_preview_link_lasts_from_a_minute_to_30_days(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        expires: str) -> None:
    monkeypatch.setenv("EP_PROFILE_KEYS", "test-profile-key-0123456789abcdef")
    assert main(["preview-link", "--rule", "facebook-welcome", "--url", "https://x.example/",
                 "--rules", str(ROOT / "rules"), "--expires-in", expires]) == 2
    assert "lasts from a minute to 30 days" in capsys.readouterr().err
    assert main(["preview-link", "--rule", "facebook-welcome", "--url", "https://x.example/",
                 "--rules", str(ROOT / "rules"), "--expires-in", "30d"]) == 0


def test_a_preview_link_needs_the_rules_it_shows(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a rules directory, a link was signed for any name, and showed nothing.
    monkeypatch.setenv("EP_PROFILE_KEYS", "test-profile-key-0123456789abcdef")
    monkeypatch.delenv("EP_RULES_DIR", raising=False)
    monkeypatch.delenv("EP_CONFIG", raising=False)
    assert main(["preview-link", "--rule", "no-such-rule", "--url", "https://x.example/"]) == 2
    assert capsys.readouterr() == ("", (
        "edge-personalizer: preview-link checks the rule against the rules the server serves: "
        "pass --rules DIR, or set EP_RULES_DIR (or rules_dir in the config file) as the "
        "server has it\n"))
    monkeypatch.setenv("EP_RULES_DIR", str(ROOT / "rules"))
    assert main(["preview-link", "--rule", "facebook-welcome", "--url", "https://x.example/"]) == 0
    assert capsys.readouterr().out.startswith("https://x.example/?__ep_preview=")


@pytest.mark.parametrize(("rule", "variant", "error"), [
    ("facebok-welcome", None,
     f"no rule or experiment named 'facebok-welcome' in {ROOT / 'rules'}; did you mean "
     "'facebook-welcome'? Its rules: evening-deals, facebook-welcome, mobile-app-nudge, "
     "newsletter-readers, runner-picks, search-keywords, uk-shipping, welcome-back; its "
     "experiments: hero-headline-test"),
    ("hero-headline", "bold",
     f"no rule or experiment named 'hero-headline' in {ROOT / 'rules'}; did you mean "
     "'hero-headline-test'? Its rules: evening-deals, facebook-welcome, mobile-app-nudge, "
     "newsletter-readers, runner-picks, search-keywords, uk-shipping, welcome-back; its "
     "experiments: hero-headline-test"),
    ("hero-headline-test", "blod",
     "experiment 'hero-headline-test' has no variant 'blod'; did you mean 'bold'? Its "
     "variants: control, bold"),
    ("facebook-welcome", "bold",
     "'facebook-welcome' is a rule, not an experiment: its link shows what the rule does, "
     "with no variant; leave out --variant"),
])
def test_a_preview_link_names_what_the_rules_hold_when_it_shows_nothing(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        rule: str, variant: str | None, error: str) -> None:
    monkeypatch.setenv("EP_PROFILE_KEYS", "test-profile-key-0123456789abcdef")
    command = ["preview-link", "--rule", rule, "--url", "https://x.example/",
               "--rules", str(ROOT / "rules")]
    assert main([*command, *(["--variant", variant] if variant else [])]) == 2
    assert capsys.readouterr() == ("", f"edge-personalizer: {error}\n")


def _run_classify(lines: list[str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_personalizer", "classify",
                           "--geo-db", GEO, *flags], input="\n".join(lines), text=True,
                          capture_output=True, timeout=60, cwd=ROOT)


REQUESTS = [
    json.dumps({"url": "https://shop.example/?utm_source=newsletter&utm_medium=email",
                "headers": {"User-Agent": IPHONE_UA}, "ip": "81.2.69.142",
                "time": "2026-11-23T08:00:00Z"}),
    json.dumps({"url": "https://shop.example/trail", "ip": "89.160.20.112",
                "headers": {"Referer": "https://www.google.se/search?q=trail",
                            "User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"}}),
    json.dumps({"url": "/", "headers": {"User-Agent": "GPTBot/1.2"}}),
    "{not json",
    "",
]


def test_classify_writes_one_visitor_per_line() -> None:
    result = _run_classify(REQUESTS)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 4
    assert (rows[0]["referral"]["medium"], rows[0]["geo"]["country"],
            rows[0]["device"]["type"], rows[0]["time"]["hour"]) == ("email", "GB", "mobile", 8)
    assert (rows[1]["referral"]["source"], rows[1]["referral"]["keywords"],
            rows[1]["geo"]["country"], rows[1]["device"]["type"]) == \
        ("google", "trail", "SE", "desktop")
    assert rows[2]["device"]["bot_category"] == "ai"
    assert rows[3]["line"] == 4 and "error" in rows[3]


def test_classify_answers_a_time_out_of_range_on_its_line_and_goes_on() -> None:
    # A time of 1e300 stopped the run with a traceback (the clock of that moment has no
    # year), losing every line after it; NaN was answered with Python's words.
    result = _run_classify(['{"url": "/", "time": 1e300}', '{"url": "/", "time": NaN}',
                            '{"url": "/x", "time": 1795000000}'])
    assert result.returncode == 0 and result.stderr == ""
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row.get("line") for row in rows] == [1, 2, None]
    assert rows[0]["error"].startswith("time 1e+300 is out of range: epoch seconds from 0 ")
    assert rows[1]["error"].startswith("time nan is out of range")
    assert rows[2]["request"]["path"] == "/x"


def test_classify_summary_sizes_segments() -> None:
    result = _run_classify(REQUESTS, "--summary", "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["visitors"], summary["errors"]) == (3, 1)
    types = {row["value"]: row["count"] for row in summary["fields"]["device.type"]}
    assert types == {"mobile": 1, "desktop": 1, "bot": 1}
    text = _run_classify(REQUESTS, "--summary").stdout
    assert "3 visitors, 1 unreadable lines" in text and "referral.medium" in text


def test_classify_summary_names_missing_values_instead_of_none() -> None:
    text = _run_classify(REQUESTS, "--summary").stdout
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("  ")]
    assert "None" not in rows and "True" not in rows and "False" not in rows
    assert "(none)" in rows   # no bot category for the people
    summary = json.loads(_run_classify(REQUESTS, "--summary", "--format", "json").stdout)
    categories = {row["value"]: row["count"] for row in summary["fields"]["device.bot_category"]}
    assert categories == {None: 2, "ai": 1}
    assert summary["fields"]["profile.new"] == [{"value": True, "count": 3, "share": 1.0}]


@pytest.mark.parametrize("command", [["schema"], ["classify"]])
def test_a_reader_that_stops_early_gets_no_traceback(command: list[str]) -> None:
    # `edge-personalizer schema | head`: the pipe closes before everything is written.
    process = subprocess.Popen([sys.executable, "-m", "edge_personalizer", *command],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None and process.stdin is not None
    process.stdout.close()
    _, stderr = process.communicate("\n".join(REQUESTS * 2000).encode(), timeout=60)
    assert b"Traceback" not in stderr and b"BrokenPipe" not in stderr, stderr[-500:]
    assert process.returncode == 0


BANDIT_RULES = """\
slots: {hero: {}}
goals: {purchase: {when: {request.path: /thanks}}}
experiments:
  - name: hero-test
    slot: hero
    goals: [purchase]
    allocation: bandit
    per: [device.type]
    variants: {control: {weight: 1}, a: {weight: 1, html: A}}
"""


def _publish_weights(data_dir: Path) -> None:
    """Learned weights of BANDIT_RULES' experiment (version 3: the mobile cell all on
    variant a), published into the store in data_dir as the servers publish them."""
    import anyio

    from edge_personalizer.learn.bandit import (
        TABLE_NAME,
        CellWeights,
        ExperimentWeights,
        WeightsTable,
    )
    from edge_personalizer.learn.store import open_store

    learned = ExperimentWeights(3, 0.0, 0.0, (("control", 1.0), ("a", 1.0)), {
        "mobile": CellWeights((("control", 0.0), ("a", 1.0)), "learned", 500)})
    table = WeightsTable(0, {"hero-test": learned})

    async def publish() -> None:
        store = open_store("sqlite:///" + str((data_dir / "ep.db").absolute()).lstrip("/"))
        try:
            await store.publish(TABLE_NAME, table.encode())
        finally:
            await store.close()

    anyio.run(publish)


def test_explain_uses_the_bandit_weights_the_servers_share(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(BANDIT_RULES)
    explain = ["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}",
               "--rules", str(rules), "--data-dir", str(tmp_path), "--format", "json"]
    assert main(explain) == 0   # nothing published yet: the starting weights
    trace = json.loads(capsys.readouterr().out)["experiments"][0]
    assert trace["weights_version"] is None
    assert trace["weights"] == {"control": 50.0, "a": 50.0}

    _publish_weights(tmp_path)
    assert main(explain) == 0
    trace = json.loads(capsys.readouterr().out)["experiments"][0]
    assert trace["weights_version"] == 3
    assert "learned weights version 3 for cell 'mobile'" in trace["why"]
    assert trace["variant"] == "a"
    assert trace["weights"] == {"control": 0.0, "a": 100.0}
    assert main(explain[:-2]) == 0   # as text: the cell, the weights and their version
    assert ("    bandit, cell 'mobile': weights version 3 (control 0%, a 100%), period 3; "
            "learned weights version 3 for cell 'mobile'\n") in capsys.readouterr().out


def test_explain_and_preview_link_run_from_inside_the_rules_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # There, `--rules .` puts the default data_dir (ep-data) among the rules: a server is
    # refused it (what it writes there would count as edits of the rules), and so were
    # these, which write nothing.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(BANDIT_RULES)
    monkeypatch.chdir(rules)
    monkeypatch.setenv("EP_PROFILE_KEYS", "test-profile-key-0123456789abcdef")
    explain = ["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}",
               "--rules", ".", "--format", "json"]
    assert main(explain) == 0
    trace = json.loads(capsys.readouterr().out)["experiments"][0]
    assert (trace["name"], trace["weights_version"]) == ("hero-test", None)
    assert main(["preview-link", "--rule", "hero-test", "--variant", "a",
                 "--url", "https://x.example/", "--rules", "."]) == 0
    assert capsys.readouterr().out.startswith("https://x.example/?__ep_preview=")
    assert [path.name for path in rules.iterdir()] == ["r.yaml"]   # nothing written there
    _publish_weights(tmp_path / "data")   # the store is still where data_dir says
    assert main([*explain, "--data-dir", "../data"]) == 0
    assert json.loads(capsys.readouterr().out)["experiments"][0]["weights_version"] == 3


def test_validate_counts_one_of_a_kind_in_the_singular(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text("slots: {hero: {}}\nrules:\n  - {name: a, then: {hero: x}}\n"
                                     "  - {name: b, then: {heor: x}}\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert capsys.readouterr().out.endswith(
        "\n1 file: 1 error (1 rule and 0 experiments compile without errors)\n")


def test_explain_without_keys_says_nothing_of_restarts(
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EP_PROFILE_KEYS", raising=False)
    assert main(["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}"]) == 0
    assert "restart" not in capsys.readouterr().err + caplog.text


@pytest.mark.parametrize(("keys", "cookie_key", "why"), [
    (None, b"a-key-of-another-server-0123456789",
     "no profile_keys are configured (EP_PROFILE_KEYS) to verify it"),
    ("test-profile-key-0123456789abcdef", b"a-key-of-another-server-0123456789",
     "its signature matches none of the profile_keys"),
])
def test_explain_says_why_a_profile_cookie_was_not_read(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        keys: str | None, cookie_key: bytes, why: str) -> None:
    from edge_personalizer.classify.profile_codec import ProfileCodec

    if keys is None:
        monkeypatch.delenv("EP_PROFILE_KEYS", raising=False)
    else:
        monkeypatch.setenv("EP_PROFILE_KEYS", keys)
    cookie = ProfileCodec([cookie_key], max_bytes=4096, max_age_days=30).encode([1, 2])
    assert main(["explain", "--url", "/", "--header", f"User-Agent: {IPHONE_UA}",
                 "--cookie", f"ep_profile={cookie}"]) == 0
    captured = capsys.readouterr()
    assert captured.err == (f"edge-personalizer: the profile cookie was not read ({why}): "
                            "classified as a first visit\n")
    assert "profile.visits: 1" in captured.out


def test_an_unknown_flag_is_told_with_its_commands_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    # It came with the program's usage ("edge-personalizer [-h] COMMAND ..."), which
    # names none of the command's flags.
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--orgin", "http://127.0.0.1:8000"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: edge-personalizer serve [-h]") and "--origin URL" in err
    assert err.endswith("edge-personalizer serve: error: unrecognized arguments: --orgin "
                        "http://127.0.0.1:8000\n")


def test_explain_gives_no_weights_to_a_visitor_no_experiment_buckets(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--url", "https://shop.example/", "--header",
                 "User-Agent: curl/8.5.0", "--rules", str(ROOT / "rules")]) == 0
    out = capsys.readouterr().out
    assert "hero-headline-test (hero): not bucketed (bot or no profile) -> control\n" in out
    assert "placed by the visitor's id" not in out and "fixed weights" not in out
