"""What every compile step shares: the error list, what earlier sections defined, and the
two ways a step stops (one error to record, or errors already recorded)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from ...errors import RuleError
from ..conditions import Condition, Segment
from ..loader import KeyPath, RuleFile, RuleFiles
from ..model import Goal, Slot
from ..template import Template

NAME_RULE: Final = ("names are ASCII letters, digits, '-', '_' and '.', starting with a letter or "
                    "digit")
NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# What no name written freely (a segment's, an interest's, a variant's) may hold: control
# characters (C0, DEL, C1: a line break, a tab, a terminal's escape), the line and
# paragraph separators, and the invisible ones that reorder or hide text (zero-width
# characters, direction marks and overrides, the byte order mark). Names are printed in
# headers, reports, terminals and dashboards. A character class's inside, as written both
# for Python's re and for the JSON Schema's patterns.
UNPRINTABLE: Final = (r"\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064"
                      r"\u2066-\u2069\ufeff")
_UNPRINTABLE: Final = re.compile(f"[{UNPRINTABLE}]")
UNPRINTABLE_RULE: Final = ("a name may not hold a control character (a line break, a tab, an "
                           "escape) or an invisible one (zero-width, a direction mark): "
                           "names are printed in reports, terminals and dashboards")


def unprintable(name: str) -> bool:
    """Whether `name` holds a character of UNPRINTABLE."""
    return _UNPRINTABLE.search(name) is not None


def name_problem(kind: str, name: Any) -> str | None:
    """What is wrong with the name of a rule or an experiment (None: nothing)."""
    if name is None or name == "":
        return f"every {kind} needs a name ({NAME_RULE})"
    if not isinstance(name, str):
        return f"{kind} name {name!r} is {kind_of(name)}: write it as text ({NAME_RULE})"
    if NAME.match(name):
        return None
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fixed = re.sub(r"[^A-Za-z0-9_.-]+", "-", ascii_name).strip("-_.")
    return f"{kind} name {name!r}: {NAME_RULE}" + (f"; e.g. {fixed!r}" if fixed else "")


class Invalid(Exception):
    """One error inside a compile step; the step is skipped, compiling goes on."""

    def __init__(self, message: str, at: KeyPath, *, on_key: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.at = at
        self.on_key = on_key


class Invalids(Exception):
    """Several errors inside a compile step (each wrong entry of a mapping)."""

    def __init__(self, errors: list[Invalid]) -> None:
        super().__init__("; ".join(error.message for error in errors))
        self.errors = errors


class Reported(Exception):
    """Errors already recorded; the enclosing step stops without adding another."""


@dataclass(frozen=True)
class SegmentSource:
    rule_file: RuleFile
    at: KeyPath
    when: Any


@dataclass
class CompileContext:
    """One compile run's state; thrown away when the RuleSet is built."""

    directory: Path
    own_cookies: Mapping[str, str] = field(default_factory=dict)   # see RuleCache
    errors: list[RuleError] = field(default_factory=list)
    slots: dict[str, Slot] = field(default_factory=dict)
    slots_in_error: set[str] = field(default_factory=set)   # declared, with errors reported
    interests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    segment_sources: dict[str, SegmentSource] = field(default_factory=dict)
    segments: dict[str, Segment] = field(default_factory=dict)
    compiling: list[str] = field(default_factory=list)   # segments being compiled, nested
    goals: dict[str, Goal] = field(default_factory=dict)
    goals_in_error: set[str] = field(default_factory=set)   # declared, with errors reported
    # Read once a compile: fragment files (their HTML, or why they cannot be read) and
    # parsed templates (or why they are wrong), by what the rules wrote.
    fragments: dict[str, tuple[str, str] | str] = field(default_factory=dict)
    templates: dict[tuple[str, str, str], Template | str] = field(default_factory=dict)
    # While one file's rules compile: the fragment files they show (a reload reuses the
    # compiled file only while each of them reads the same).
    fragments_shown: set[str] | None = None
    # Field clauses compiled without error, by field and value as written (with types).
    clauses: dict[tuple[str, Hashable], Condition] = field(default_factory=dict)

    # Where each slot, interest and segment was first defined (file:line), by kind and name.
    defined: dict[tuple[str, str], str] = field(default_factory=dict)

    def defined_before(self, kind: str, name: str, rule_file: RuleFile,
                       at: KeyPath) -> str | None:
        """Where `name` was defined before as a `kind` (file:line); None the first time,
        when this place is kept."""
        before = self.defined.get((kind, name))
        if before is None:
            self.defined[(kind, name)] = f"{rule_file.path}:{rule_file.line_of(at)}"
        return before

    def fail(self, rule_file: RuleFile, message: str, at: KeyPath, owner: str | None,
             *, on_key: bool = False) -> None:
        self.errors.append(rule_file.error(message, at, owner=owner, on_key=on_key))

    def reject(self, rule_file: RuleFile, exc: Invalid, owner: str | None) -> None:
        self.fail(rule_file, exc.message, exc.at, owner, on_key=exc.on_key)


_T = TypeVar("_T")


class Parts:
    """A compile step of independent parts (an experiment's slots, variants, goals, ...):
    each part's mistakes are recorded and the next part still checked, so one mistake
    does not hide the next; `done()` then stops the step if any part failed."""

    def __init__(self, ctx: CompileContext, rule_file: RuleFile, owner: str) -> None:
        self.ctx = ctx
        self.rule_file = rule_file
        self.owner = owner
        self.failures = 0

    def take(self, build: Callable[[], _T], instead: _T) -> _T:
        """What `build` makes, or `instead` once its mistake is recorded."""
        return self.attempt(build, instead)[0]

    def attempt(self, build: Callable[[], _T], instead: _T) -> tuple[_T, bool]:
        """As `take`, and whether `build` made it (what depends on it is checked only
        then: no follow-on errors of a part already wrong)."""
        try:
            return build(), True
        except Invalid as exc:
            self.fail(exc)
        except Invalids as several:   # (every wrong entry of a mapping)
            for one in several.errors:
                self.fail(one)
        except Reported:
            self.failures += 1
        return instead, False

    def fail(self, exc: Invalid) -> None:
        self.ctx.reject(self.rule_file, exc, self.owner)
        self.failures += 1

    def done(self) -> None:
        if self.failures:
            raise Reported


def each(build: Callable[[int, Any], _T], items: Sequence[Any]) -> list[_T]:
    """What `build` makes of every item of a list (given its position and the item),
    every wrong item told: Invalids for the mistakes raised, Reported when the only ones
    were recorded already. One wrong item of a list hides no other."""
    made: list[_T] = []
    wrong: list[Invalid] = []
    reported = False
    for position, item in enumerate(items):
        try:
            made.append(build(position, item))
        except Invalid as exc:
            wrong.append(exc)
        except Invalids as several:
            wrong += several.errors
        except Reported:
            reported = True
    if wrong:
        raise wrong[0] if len(wrong) == 1 else Invalids(wrong)
    if reported:
        raise Reported
    return made


def rules_read(ctx: CompileContext) -> Hashable:
    """Everything a rules section's compile reads from the other sections: the names of
    the slots (and of those in error) and of the interests, and each segment as written
    (a rule holds the compiled segments it names). Rules compiled under an equal value
    compile the same;
    the fragment files they show are checked on their own (FileRules.fragments)."""
    return (tuple(ctx.slots), tuple(sorted(ctx.slots_in_error)), tuple(ctx.interests),
            tuple((name, frozen(source.when)) for name, source in ctx.segment_sources.items()))


def frozen(value: Any) -> Hashable:
    """A value as a hashable key that tells apart what compiles differently: the type goes
    with each scalar (1, 1.0 and true are equal in Python, not in a rule)."""
    if isinstance(value, dict):
        return ("{", tuple((frozen(k), frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("[", tuple(frozen(v) for v in value))
    return (type(value), value)


def sections(rule_files: RuleFiles, name: str) -> Iterator[tuple[RuleFile, Any]]:
    """Each file's section `name`, for the files that have one."""
    for rule_file in rule_files.files:
        if name in rule_file.sections:
            yield rule_file, rule_file.sections[name]


# A share written as text: 25, 2.5 or "25 %" (as the JSON Schema's pattern reads it: no
# sign but +, no exponent, no other digits than 0-9)
_SHARE: Final = re.compile(r"\+?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%?")


def as_float(value: int | float) -> float:
    """A number as a float: an int too large for one (10**400: YAML reads any number of
    digits) is infinity with its sign, which every bound refuses as it refuses .inf."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def percentage(raw: Any, what: str, at: KeyPath) -> float:
    """A share written as 25 or 25%."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) \
            and not math.isnan(as_float(raw)):
        return as_float(raw)
    written = _SHARE.fullmatch(str(raw).strip()) if isinstance(raw, str) else None
    if written is None:
        raise Invalid(f"{what} is a percentage such as 25 or 25%", at)
    return float(written.group(1))


def kind_of(value: Any) -> str:
    """A value's kind in a marketer's words."""
    if isinstance(value, bool):
        return "true/false"
    return {dict: "a mapping", list: "a list", str: "text", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)
