"""The `goals` sections -> Goal values (rules/goals.py reads one goal; this walks them all,
reporting each mistake where it was written)."""

from __future__ import annotations

import functools
from typing import Any

from ..conditions import Condition
from ..goals import GoalInvalids, compile_goal
from ..loader import KeyPath, RuleFiles
from .conditions import compile_condition
from .context import CompileContext, Parts, sections


def compile_goals(ctx: CompileContext, rule_files: RuleFiles) -> None:
    for rule_file, section in sections(rule_files, "goals"):
        if not isinstance(section, dict):
            ctx.fail(rule_file, "goals is a mapping of goal names to what reaches them",
                     ("goals",), None)
            continue
        for name, raw in section.items():
            owner = f"goal '{name}'"
            parts = Parts(ctx, rule_file, owner)   # its condition's errors, recorded

            def condition(value: Any, at: KeyPath, parts: Parts = parts) -> Condition | None:
                return parts.take(functools.partial(compile_condition, ctx, parts.rule_file,
                                                    value, at, parts.owner), None)

            line = (rule_file.mark_of(("goals", str(name)), on_key=True) or (0, 0))[0]
            where = f"{rule_file.path}:{line}"   # the goal's name, not its first key
            try:
                goal = compile_goal(name, raw, condition, where)
            except GoalInvalids as several:   # (each mistake of the goal)
                for mistake in several.errors:
                    ctx.fail(rule_file, str(mistake), mistake.at, owner,
                             on_key=mistake.on_key)
                ctx.goals_in_error.add(str(name))
                continue
            if goal.name in ctx.goals:
                ctx.fail(rule_file, f"defined twice (first at {ctx.goals[goal.name].source})",
                         ("goals", str(name)), owner, on_key=True)
                continue
            ctx.goals[goal.name] = goal
