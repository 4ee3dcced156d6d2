from __future__ import annotations

from pathlib import Path

from edge_personalizer import errors


def test_rule_errors_name_file_line_and_column() -> None:
    error = errors.RuleError("bad thing", source=Path("rules/a.yaml"), line=3, column=7)
    assert str(error) == "rules/a.yaml:3:7: bad thing"
    assert str(errors.RuleError("x", source=Path("a.yaml"))) == "a.yaml: x"


def test_rule_set_invalid_keeps_every_error() -> None:
    many = errors.RuleSetInvalid([errors.RuleError("one", source=Path("a"), line=1),
                                  errors.RuleError("two", source=Path("b"), line=2)])
    assert str(many) == "a:1: one (and 1 more)" and len(many.errors) == 2


def test_the_tree() -> None:
    assert issubclass(errors.UpstreamTimeout, errors.UpstreamError)
    for name in ("SettingsError", "RuleError", "GeoDatabaseError", "RequestRejected",
                 "UpstreamError"):
        assert issubclass(getattr(errors, name), errors.EdgePersonalizerError)
    assert errors.RequestRejected("too big", status=413).status == 413
