"""Several peer-kit runs read together: each run's ratio, and the median."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "bench/peer_rounds.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("peer_rounds", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(nginx: float, workerd: float, project: float, page: str = "small") -> dict[str, object]:
    return {"results": [{"target": "nginx", "page": page, "rps": nginx},
                        {"target": "workerd", "page": page, "rps": workerd},
                        {"target": "project", "page": page, "rps": project},
                        {"target": "origin", "page": page, "rps": 60000.0}]}


def test_each_runs_ratio_and_the_median(tmp_path: Path) -> None:
    paths = []
    for number, (nginx, project) in enumerate([(20000, 6000), (25000, 5000), (22000, 7700)]):
        path = tmp_path / f"peers-2026120{number}.json"
        path.write_text(json.dumps(run(nginx, 2500, project)))
        paths.append(str(path))
    out = subprocess.run([sys.executable, str(SCRIPT), *paths], capture_output=True,
                         text=True, check=True).stdout
    assert "| project | 5 KB | nginx | 0.30 | 0.20 | 0.35 | **0.30** |" in out
    assert "| project | 5 KB | workerd | 2.40 | 2.00 | 3.08 | **2.40** |" in out
    assert "origin" not in out   # only the project's targets are compared


def test_a_target_missing_from_a_run_is_left_out_of_its_median() -> None:
    rounds = load()
    partial = run(20000, 2500, 6000)
    partial["results"] = [row for row in partial["results"]   # type: ignore[attr-defined]
                          if row["target"] != "workerd"]
    text = rounds.table([("a", run(20000, 2500, 6000)), ("b", partial)])
    assert "| project | 5 KB | workerd | 2.40 | — | **2.40** |" in text


def test_each_runs_p99_and_slowest_answer_tell_a_stall_from_the_tail() -> None:
    rounds = load()
    calm, stalled = run(20000, 2500, 6000), run(20000, 2500, 6000)
    for found, slowest in ((calm, 31.5), (stalled, 226.0)):
        for row in found["results"]:   # type: ignore[attr-defined]
            row.update(p99_ms=11.2, max_ms=slowest)
    text = rounds.latency_table([("a", calm), ("b", stalled)])
    assert "| project | 5 KB | 11.2 / 31.5 | 11.2 / 226.0 |" in text
    assert "nginx" not in text and "origin" not in text
