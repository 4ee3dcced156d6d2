"""A YAML mistake in a rule file in a marketer's words: where it is, and the usual fix."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import RuleError

# What PyYAML says -> what was most likely meant.
_HINTS = (
    ("mapping values are not allowed here",
     "a value holding ': ' is quoted: banner: \"Free: delivery\""),
    ("but got ':'", "a value holding ': ' is quoted: {banner: \"Free: delivery\"}"),
    ("found character '\\t'", "indent with spaces: YAML takes no tabs"),
    ("found '<stream end>'", "the file ends inside a '[' or '{' that is never closed"),
)
# ... unless the ':' is the first of its line: then the line is the mistake.
_DEEPER = ("this line is indented deeper than the line above, as if it belonged to its "
           "value: line it up with the keys it goes with")
# What was left open, by what PyYAML was reading when the file ended.
_OPENED = (("flow mapping", "a '{'"), ("flow sequence", "a '['"), ("quoted scalar", "a quote"))


def yaml_error(exc: yaml.MarkedYAMLError, path: Path, text: str) -> RuleError:
    """The rule error for `exc`, raised reading `text` (the file at `path`). A bracket or
    quote never closed is named where it opened: PyYAML names the end of the file, a line
    past the last."""
    problem, context = exc.problem or "", exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    reason = " ".join(part for part in (context, problem) if part)
    opened = next((what for name, what in _OPENED if name in context), None)
    start, stop = exc.context_mark, exc.problem_mark
    if ("<stream end>" in problem or "end of stream" in problem) and opened is not None \
            and start is not None:
        mark = start
        reason = f"{opened} opened here is never closed"
    elif opened is not None and "expected ','" in problem and start is not None \
            and stop is not None and stop.line > start.line:
        mark = start   # the '{' a line left open, not the next line's key PyYAML stops at
        reason = f"{opened} opened here is not closed before line {stop.line + 1}"
    elif "expected <block end>" in problem and start is not None and stop is not None:
        reason = _misaligned_item(problem, text, stop) or _misaligned(context, start, stop)
    else:
        hint = next((fix for said, fix in _HINTS if said in reason), None)
        if hint is not None and _indented_under_a_value(problem, text, stop):
            hint = _DEEPER
        if hint is not None:
            reason = f"{reason} ({hint})"
    line = column = None
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
        lines = text.splitlines()
        if line > len(lines):   # the end of the file: its last line
            line, column = max(len(lines), 1), len(lines[-1]) + 1 if lines else 1
    return RuleError(f"invalid YAML: {reason}", source=path, line=line, column=column)


def _indented_under_a_value(problem: str, text: str, mark: yaml.Mark | None) -> bool:
    """Whether a ':' PyYAML allows no mapping at ends a key alone on its line (`key:
    value` followed by a line indented deeper), not one more in a value (`banner: Free:
    x`), nor words a value wrapped onto the next line (`orders over: 50`)."""
    if "mapping values are not allowed" not in problem or mark is None:
        return False
    lines = text.splitlines()
    if mark.line >= len(lines):
        return False
    key = lines[mark.line][:mark.column].strip()
    return bool(key) and " " not in key and not key.startswith(("-", "{", "["))


def _misaligned_item(problem: str, text: str, stop: yaml.Mark) -> str | None:
    """For a list item out of line with the item before it: both columns."""
    if not problem.endswith(("'-'", "'<block sequence start>'")):
        return None
    # The list's items above it: up to the key that holds the list, the items least
    # indented (an item of a list nested in one of them, or a line of a text block
    # starting "- ", is deeper).
    lines = text.splitlines()
    before: tuple[int, int] | None = None   # (column, line number)
    for number in range(min(stop.line, len(lines)) - 1, -1, -1):
        line = lines[number]
        rest = line.lstrip(" ")
        if not rest or rest.startswith("#"):
            continue
        column = len(line) - len(rest) + 1
        if rest.startswith("-") and rest[1:2] in ("", " "):
            if before is None or column <= before[0]:
                before = (column, number + 1)
        elif column <= stop.column + 1 and column < (before[0] if before else column + 1):
            break   # the key the list belongs to
    if before is None or before[0] == stop.column + 1:
        return None
    return (f"this list item starts at column {stop.column + 1}, and the item before it "
            f"(line {before[1]}) at column {before[0]}: the items of one list start in the "
            "same column")


def _misaligned(context: str, start: yaml.Mark, stop: yaml.Mark) -> str:
    """What is wrong with a line that starts at a column no mapping or list around it
    has: PyYAML's "expected <block end>" in columns and lines."""
    column, lined_up = stop.column + 1, start.column + 1
    if "mapping" in context:
        return (f"this line starts at column {column}, and the keys it sits among at column "
                f"{lined_up} (from line {start.line + 1}): line it up with the keys it goes "
                "with")
    if column == lined_up:
        return (f"this line starts where the items of the list from line {start.line + 1} "
                "start, but is no item: start it with '- ', or indent it as far as the keys "
                "of the item it belongs to")
    return (f"this line starts at column {column}, and the list it sits in has its '- ' at "
            f"column {lined_up} (from line {start.line + 1}): line it up with the keys of the "
            "item it belongs to")
