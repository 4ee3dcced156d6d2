from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_personalizer.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_validate_accepts_the_demo_rules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "rules")]) == 0
    assert "0 errors" in capsys.readouterr().out


def test_validate_reports_errors_and_exits_1(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("rules:\n  - name: [\n")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'bad.yaml'}:3:1: invalid YAML" in out
    assert main(["validate", str(tmp_path), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert report["errors"][0]["line"] == 3


def test_serve_without_origin_exits_2_with_a_message(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EP_ORIGIN_URL", raising=False)
    assert main(["serve"]) == 2
    assert "no origin configured" in capsys.readouterr().err


def test_serve_with_bad_rules_exits_before_listening(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "edge_personalizer", "serve", "--origin", "http://127.0.0.1:9",
         "--rules", str(tmp_path), "--port", "1"],
        capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 2
    assert f"edge-personalizer: {tmp_path / 'bad.yaml'}:2:1: invalid YAML" in result.stderr


def test_serve_with_missing_geo_db_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--origin", "http://127.0.0.1:9", "--geo-db", "/nonexistent.mmdb"])
    assert code == 2
    assert "geo database /nonexistent.mmdb does not exist" in capsys.readouterr().err
