"""The `goals` sections -> Goal values (rules/goals.py reads one goal; this walks them all,
reporting each mistake where it was written)."""

from __future__ import annotations

from typing import Any

from ..conditions import Condition
from ..goals import GoalInvalid, compile_goal
from ..loader import KeyPath, RuleFile, RuleFiles
from .conditions import compile_condition
from .context import CompileContext, Invalid, Reported, sections


def compile_goals(ctx: CompileContext, rule_files: RuleFiles) -> None:
    for rule_file, section in sections(rule_files, "goals"):
        if not isinstance(section, dict):
            ctx.fail(rule_file, "goals is a mapping of goal names to what reaches them",
                     ("goals",), None)
            continue
        for name, raw in section.items():
            owner = f"goal '{name}'"

            def condition(value: Any, at: KeyPath, rule_file: RuleFile = rule_file,
                          owner: str = owner) -> Condition:
                return compile_condition(ctx, rule_file, value, at, owner)

            where = f"{rule_file.path}:{rule_file.line_of(('goals', str(name)))}"
            try:
                goal = compile_goal(name, raw, condition, where)
            except GoalInvalid as exc:
                ctx.fail(rule_file, str(exc), exc.at, owner, on_key=exc.on_key)
                ctx.goals_in_error.add(str(name))
                continue
            except Invalid as exc:
                ctx.reject(rule_file, exc, owner)
                ctx.goals_in_error.add(str(name))
                continue
            except Reported:
                ctx.goals_in_error.add(str(name))
                continue
            if goal.name in ctx.goals:
                ctx.fail(rule_file, f"defined twice (first at {ctx.goals[goal.name].source})",
                         ("goals", str(name)), owner, on_key=True)
                continue
            ctx.goals[goal.name] = goal
