"""Plain data from the rule files -> an immutable RuleSet, or every error at once.

Each error names file, line, column and rule, says what is wrong, and suggests the likely
intended word for a misspelling. Fragment files are read here, so deciding for a visitor
does no I/O. One module per part of a rule file: sections (slots, interests, segments),
conditions, actions (`then`), rules, experiments, goals, and the redirects between
rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from types import MappingProxyType

from ...errors import RuleError
from ..conditions import fields_read
from ..fields import vary_headers
from ..index import RuleIndex
from ..loader import RuleFiles
from ..model import Experiment, Rule, RuleSet
from .conditions import OPERATORS, segment
from .context import CompileContext
from .experiments import EXPERIMENT_KEYS, compile_experiments
from .goals import compile_goals
from .redirects import check_redirect_circles, redirect_routes
from .rules import RULE_KEYS, FileRules, compile_file_rules, rank_rules
from .sections import collect_interests, collect_segments, collect_slots

__all__ = ["EXPERIMENT_KEYS", "OPERATORS", "RULE_KEYS", "FileRules", "build_ruleset",
           "compile_declarations", "compile_file_rules", "compile_rules", "in_written_order"]


def compile_rules(rule_files: RuleFiles) -> tuple[RuleSet, list[RuleError]]:
    """Compile every file; the RuleSet is only meant to serve when the error list is empty."""
    ctx = CompileContext(rule_files.directory)
    compile_declarations(ctx, rule_files)
    files = [compile_file_rules(ctx, rule_file) for rule_file in rule_files.files
             if "rules" in rule_file.sections]
    ruleset, errors = build_ruleset(ctx, rule_files, files, file_count=len(rule_files.files))
    return ruleset, in_written_order(errors, (f.path for f in rule_files.files))


def in_written_order(errors: Iterable[RuleError], files: Iterable[Path]) -> list[RuleError]:
    """The errors file by file, in the order the files are read (`files`), and within a
    file line by line, as a marketer reads them; errors of no file first."""
    order = {path: index for index, path in enumerate(files)}
    return sorted(errors, key=lambda e: (order.get(e.source, -1), e.line or 0, e.column or 0))


def compile_declarations(ctx: CompileContext, rule_files: RuleFiles) -> None:
    """What rules and experiments refer to: slots, interests, segments, goals."""
    collect_slots(ctx, rule_files)
    collect_interests(ctx, rule_files)
    collect_segments(ctx, rule_files)
    for name in list(ctx.segment_sources):   # unused segments are checked too
        segment(ctx, name, ())
    compile_goals(ctx, rule_files)


def build_ruleset(ctx: CompileContext, declared: RuleFiles, files: Sequence[FileRules], *,
                  file_count: int) -> tuple[RuleSet, list[RuleError]]:
    """The RuleSet of the files' compiled rules and the experiments of `declared` (whose
    declarations ctx holds), with every error."""
    rules, written = rank_rules(ctx, files)
    experiments = compile_experiments(ctx, declared, rule_names=frozenset(written))
    routes = redirect_routes(rules)
    check_redirect_circles(ctx, rules, routes, written)
    fields = _fields_read(rules, experiments)
    ruleset = RuleSet(
        version=declared.version, rules=rules, slots=MappingProxyType(dict(ctx.slots)),
        experiments=experiments, interests=MappingProxyType(dict(ctx.interests)),
        index=RuleIndex.build(rules), redirects=routes, loaded_at=declared.loaded_at,
        file_count=file_count, fields=frozenset(fields),
        vary=tuple(vary_headers(fields)), goals=MappingProxyType(dict(ctx.goals)))
    return ruleset, ctx.errors


def _fields_read(rules: tuple[Rule, ...], experiments: tuple[Experiment, ...]) -> set[str]:
    """Every visitor field the rules read, to decide or to fill a template."""
    fields: set[str] = set()
    for condition in [*(r.condition for r in rules), *(e.audience for e in experiments)]:
        fields |= fields_read(condition)
    for rule in rules:
        for content in rule.slots.values():
            if content.template is not None:
                fields |= content.template.fields
    for experiment in experiments:
        if len(experiment.weights) > 1:
            fields.add("profile.visitor_id")
        fields.update(experiment.cells.fields)
        for cell_segment in experiment.cells.segments:
            fields |= fields_read(cell_segment)
    return fields
