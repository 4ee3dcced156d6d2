"""The third-party test data beside the project (../shared/corpora), read by tests only."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"


@cache
def uap(name: str) -> list[dict[str, Any]]:
    path = CORPORA / "uap-core" / name
    cases: list[dict[str, Any]] = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)["test_cases"]
    return cases


@cache
def crawler_instances() -> list[str]:
    data = json.loads((CORPORA / "crawler-user-agents" / "crawler-user-agents.json").read_text())
    return [ua for entry in data for ua in entry.get("instances", [])]


@cache
def referer_database() -> dict[str, Any]:
    """The GPL referer-parser database: test input only, never shipped."""
    data: dict[str, Any] = yaml.safe_load((CORPORA / "referer-parser" / "referers.yml").read_text())
    return data


def maxmind(name: str) -> Path:
    return CORPORA / "maxmind-db" / name
