from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_personalizer.rules.compile import EXPERIMENT_KEYS, RULE_KEYS
from edge_personalizer.rules.schema import build_schema

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted([*ROOT.glob("rules/*.yaml"), *ROOT.glob("tests/data/rules/*.yaml")])


def test_published_schema_is_up_to_date() -> None:
    published = json.loads((ROOT / "docs" / "rules.schema.json").read_text())
    assert published == build_schema(), "run: edge-personalizer schema > docs/rules.schema.json"


def test_schema_knows_every_key_the_compiler_knows() -> None:
    schema = build_schema()
    rule = schema["properties"]["rules"]["items"]["properties"]
    experiment = schema["properties"]["experiments"]["items"]["properties"]
    assert set(rule) == set(RULE_KEYS)
    assert set(experiment) == set(EXPERIMENT_KEYS)


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.name for p in RULE_FILES])
def test_shipped_rule_files_follow_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), build_schema())


@pytest.mark.parametrize("document", [
    {"rules": [{"name": "x", "when": {"device.type": "tablett"}, "then": {"hero": "a"}}]},
    {"rules": [{"name": "x", "when": {"geo.contry": "GB"}, "then": {"hero": "a"}}]},
    {"rules": [{"name": "x", "whne": {}, "then": {"hero": "a"}}]},
    {"rulez": []},
])
def test_schema_underlines_mistakes(document: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, build_schema())
