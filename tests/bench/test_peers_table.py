"""The peer table: every measure, and each as the project's ratio to every peer."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peers_table", ROOT / "bench/peers_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(target: str, rps: float, p99: float, cpu: float, rss: float | None) -> dict[str, object]:
    return {"target": target, "page": "small", "page_bytes": 4894, "rps": rps, "p50_ms": 1.0,
            "p99_ms": p99, "target_cpu_us_per_req": cpu, "rss_peak_mb": rss}


def test_ratios_of_every_measure_against_every_peer(tmp_path: Path) -> None:
    result = {"started": "2026-11-23T09:00:00", "command": "peers.py", "results": [
        row("nginx", 40000, 2.0, 25, 20), row("workerd", 5000, 150.0, 200, 300),
        row("project", 10000, 6.0, 175, None)]}
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(result))
    text = load().table(json.loads(path.read_text()))
    assert "| **project** | 10,000 | 1.00 | 6.00 | 175 | — |" in text
    assert "| nginx | 0.25 | 1.00 | 3.00 | 7.00 | — |" in text
    assert "| workerd | 2.00 | 1.00 | 0.04 | 0.88 | — |" in text
