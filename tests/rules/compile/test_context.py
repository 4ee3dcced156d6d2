from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from edge_personalizer.rules.compile.context import CompileContext, Invalid, kind_of
from edge_personalizer.rules.loader import RuleFile


def test_kinds_are_named_as_a_marketer_would() -> None:
    samples: tuple[object, ...] = ({}, [], "a", 1, 1.5, None, True)
    assert [kind_of(v) for v in samples] == [
        "a mapping", "a list", "text", "a number", "a number", "nothing", "true/false"]


def test_a_rejected_step_is_an_error_at_its_place(tmp_path: Path) -> None:
    rule_file = RuleFile(tmp_path / "a.yaml", MappingProxyType({}),
                         MappingProxyType({("rules", 0): (3, 5)}))
    ctx = CompileContext(tmp_path)
    ctx.reject(rule_file, Invalid("bad", ("rules", 0, "when")), "rule 'x'")
    assert [str(e) for e in ctx.errors] == [f"{tmp_path / 'a.yaml'}:3:5: rule 'x': bad"]
