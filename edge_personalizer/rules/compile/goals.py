"""The `goals` sections -> Goal values (rules/goals.py reads one goal; this walks them all,
reporting each mistake where it was written)."""

from __future__ import annotations

from typing import Any

from ..conditions import Condition
from ..goals import GoalInvalids, compile_goal
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
                          owner: str = owner) -> Condition | None:
                try:
                    return compile_condition(ctx, rule_file, value, at, owner)
                except Invalid as exc:
                    ctx.reject(rule_file, exc, owner)
                except Reported:
                    pass
                return None

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
