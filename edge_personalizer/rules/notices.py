"""What rules that load may still get wrong: a rule or an experiment that reaches no one,
because its schedule has ended everywhere (as time passes) or because a rule before it
takes its slots for every visitor (a catch-all written first); a bandit that learns
`per:` a field any client fills as it likes (cells a flood can make up); and, with keyed
caching, a variant printing a field whose pages a CDN cannot share (one a client can fill
with words of its own: each value would be a cached page of its own). Told by
`validate`, the server's health and the dashboard, logged when the rules load; never a
reason to refuse them (a campaign's last day passes while the site runs, and the rule set
that held it must go on loading).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import NamedTuple

from ..classify.visitor import WEEKDAYS
from .conditions import AllOf, Condition, Segment, Traffic
from .fields import BOUNDED_FIELDS, lookup
from .model import Content, Experiment, Rule, RuleSet, counted
from .schedule import Schedule

# A schedule's dates are the visitor's own (the earliest local time is UTC-12, the latest
# UTC+14), and hours that span midnight belong to the day they start on: its last night
# ends the next day.
_LAST_ZONE = timedelta(hours=12)
_FIRST_ZONE = timedelta(hours=14)
_DAY = timedelta(days=1)


def schedule_in(condition: Condition) -> Schedule | None:
    """The schedule of a rule's condition or an experiment's audience, if it has one."""
    if isinstance(condition, Schedule):
        return condition
    if isinstance(condition, AllOf):
        return next((c for c in condition.conditions if isinstance(c, Schedule)), None)
    return None


def on_day(schedule: Schedule, day: date, step: int) -> date:
    """`day`, or the nearest day from it (later with `step` 1, earlier with -1) that the
    schedule's `days` take (a schedule whose days fall on none of its dates is refused)."""
    for n in range(7 if schedule.days else 1):
        candidate = day + timedelta(days=n * step)
        if not schedule.days or WEEKDAYS[candidate.weekday()] in schedule.days:
            return candidate
    return day


def last_day(schedule: Schedule) -> date | None:
    """The schedule's last day on (its end, or the last of its `days` before)."""
    return on_day(schedule, schedule.end, -1) if schedule.end is not None else None


def ended_for_everyone(schedule: Schedule, now: datetime) -> bool:
    """Whether no visitor anywhere is within the schedule's dates any more at `now`."""
    end = last_day(schedule)
    if end is None:
        return False
    last = datetime.combine(end + _DAY, datetime.min.time(), tzinfo=UTC)
    if schedule.hours is not None and schedule.hours[0] >= schedule.hours[1]:
        last += timedelta(minutes=schedule.hours[1])   # the last night's tail
    return now - _LAST_ZONE >= last


def begun_nowhere(schedule: Schedule, now: datetime) -> bool:
    """Whether no visitor anywhere has reached the schedule's first day yet at `now`."""
    if schedule.start is None:
        return False
    first = datetime.combine(on_day(schedule, schedule.start, 1), datetime.min.time(),
                             tzinfo=UTC)
    return now + _FIRST_ZONE < first


def phase(condition: Condition, now: datetime) -> str:
    """Where the schedule of a rule's condition or an experiment's audience stands at
    `now` for visitors anywhere: "scheduled" (its first day has come nowhere yet), "ended"
    (its last has passed everywhere), else "running" (so too with no schedule)."""
    schedule = schedule_in(condition)
    if schedule is None:
        return "running"
    if ended_for_everyone(schedule, now):
        return "ended"
    return "scheduled" if begun_nowhere(schedule, now) else "running"


class Notice(NamedTuple):
    """Where a rule or an experiment (`kind`, `name`) is written ("file:line"), and what it
    gets wrong; `unreached`: that it reaches no one."""

    where: str
    kind: str
    message: str
    name: str = ""
    unreached: bool = True

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

    @property
    def file(self) -> str:
        return self.where.rpartition(":")[0]

    @property
    def line(self) -> int:
        return int(self.where.rpartition(":")[2])


def _ended_on(condition: Condition, now: datetime) -> date | None:
    """The last day of the schedule in `condition` when it has ended everywhere at `now`."""
    schedule = schedule_in(condition)
    if schedule is None or not ended_for_everyone(schedule, now):
        return None
    return last_day(schedule)


def matches_everyone(condition: Condition, *, placed: bool = False) -> bool:
    """Whether `condition` holds for every visitor: no `when` (nor in a segment it names),
    no schedule, no traffic share; `placed`: for every visitor an experiment can place
    (those with a visitor id), whom `traffic: 100` takes in whole too."""
    if isinstance(condition, Segment):
        return matches_everyone(condition.condition, placed=placed)
    if placed and isinstance(condition, Traffic):
        return condition.percent >= 100
    return isinstance(condition, AllOf) and all(
        matches_everyone(part, placed=placed) for part in condition.conditions)


def _taking(rules: list[Rule]) -> str:
    """ "rule 'x' (file:line) leaves" or "rule 'x' (...) and rule 'y' (...) leave"."""
    named = {r.source: f"rule {r.written or r.name!r} ({r.source})" for r in rules}
    return " and ".join(named.values()) + (" leaves" if len(named) == 1 else " leave")


def _shadowed(ruleset: RuleSet) -> dict[str, Notice]:
    """The rules that can never win anything and the experiments never shown because
    rules before them take their slots (and page actions) for every visitor; rules
    rank first, then experiments."""
    takers: dict[str, Rule] = {}   # slot or page action -> the first rule taking it always
    placing: dict[str, Rule] = {}  # slot -> the first taking it from every placeable visitor
    told: dict[str, Notice] = {}
    for rule in ruleset.rules:   # (in rank order)
        targets = sorted(rule.targets)
        if targets and rule.targets <= takers.keys() and rule.source not in told:
            told[rule.source] = Notice(rule.source, "rule", (
                f"rule {rule.written or rule.name!r} can never win: "
                f"{_taking([takers[t] for t in targets])} {', '.join(targets)} to no "
                "visitor after it; give it a higher priority, or the rule before it a "
                "condition"), rule.written or rule.name)
        for target in targets:
            if matches_everyone(rule.condition):
                takers.setdefault(target, rule)
            if matches_everyone(rule.condition, placed=True):
                placing.setdefault(target, rule)
    for experiment in ruleset.experiments:
        taken = [slot for slot in experiment.slots if slot in placing]
        if taken:
            told[experiment.source] = Notice(experiment.source, "experiment", (
                f"experiment {experiment.name!r} is never shown: "
                f"{_taking([placing[slot] for slot in taken])} {', '.join(taken)} to no "
                "visitor (rules come before experiments); give that rule a condition, or "
                "the experiment another slot"), experiment.name)
    return told


def notices(ruleset: RuleSet, now: datetime, *, keyed_caching: bool = False) -> list[Notice]:
    """Each rule and experiment of `ruleset` that reaches no one at `now` (a UTC time):
    once for a rule written as several (`by:` a field); with `keyed_caching`, also each
    that reaches someone with a variant whose pages go private under it."""
    told: dict[str, Notice] = _shadowed(ruleset)
    for rule in ruleset.rules:
        ended = None if rule.source in told else _ended_on(rule.condition, now)
        if ended is not None:
            told[rule.source] = Notice(rule.source, "rule", (
                f"rule {rule.written or rule.name!r}: its schedule ended on {ended} (the "
                "visitors' own dates), so it matches no one any more; remove it, or move "
                "its end"), rule.written or rule.name)
    for experiment in ruleset.experiments:
        ended = _ended_on(experiment.audience, now)
        if ended is not None:
            told[experiment.source] = Notice(experiment.source, "experiment", (
                f"experiment {experiment.name!r}: its schedule ended on {ended} (the "
                "visitors' own dates), so it shows no variant any more and counts no one new "
                "(its results stay); remove it to stop it, or move its end"), experiment.name)
    found = [*told.values(), *filter(None, map(_cells_clients_make, ruleset.experiments))]
    if keyed_caching:
        found += _printing_unbounded(ruleset, told)
    return sorted(found, key=lambda n: (n.file, n.line))   # as the files read


# Visitor fields whose values any client writes as it likes: the query string (utm_*
# fields), headers, cookies, the User-Agent's words, the referrer. Fields of a few known
# values (referral.medium, device.type) are not among them.
_CLIENT_FILLED = ("referral.", "request.", "language.", "profile.first_referral.",
                  "profile.last_referral.", "profile.visitor_id", "device.os",
                  "device.browser", "device.brand", "device.model", "device.bot_name")


def _cells_clients_make(experiment: Experiment) -> Notice | None:
    """A bandit learning per a field clients fill freely: cells any client can make up."""
    settings = experiment.bandit
    free = [name for name in experiment.cells.fields if name.startswith(_CLIENT_FILLED)
            and not getattr(lookup(name)[0], "values", ())]
    if experiment.allocation != "bandit" or settings is None or not free \
            or settings.max_cells_written:   # the cells' bound chosen knowingly
        return None
    return Notice(experiment.source, "experiment", (
        f"experiment {experiment.name!r} learns per: {', '.join(free)}, which any client "
        "fills as it likes (a link's ?utm_source=, a header): every made-up value is a "
        f"cell. Its {settings.max_cells} cells with the most visitors have weights of their "
        "own (bandit: max_cells, which, written, says so knowingly and ends this warning) "
        "and the rest share one row, so made-up values do not grow the published table; "
        "the store's rows of the small ones are folded into one once their day is over, so "
        "what the trainer reads grows with the days, not with what clients make up "
        "(though made-up values each sent by more visitors than a real cell has take its "
        "place); per: a field of few values "
        "(referral.medium, device.type) or per: segment learns for more of your visitors"),
        experiment.name, unreached=False)


def _unbounded(contents: Mapping[str, Content]) -> dict[str, frozenset[str]]:
    """Slot -> the fields its content prints that a shared page cannot be kept per
    (segments.py makes a page printing any of them private under keyed caching)."""
    printed = {slot: content.template.fields - BOUNDED_FIELDS
               for slot, content in contents.items() if content.template is not None}
    return {slot: fields for slot, fields in printed.items() if fields}


# A name each field may hold, for the messages' examples.
_EXAMPLE_VALUES = MappingProxyType({"referral.source": "facebook", "device.browser": "Firefox",
                                    "device.os": "iOS", "language.primary": "de"})


def _kept_private(subject: str, printed: Iterable[dict[str, frozenset[str]]],
                  variants: str = "") -> str:
    """Why pages of `subject` ("rule 'x'") whose `variants` (an experiment's: " (variant
    'b')") print the fields `printed` (slot -> fields, for each variant) go private under
    keyed caching, and how to keep them shared."""
    by_slot: dict[str, set[str]] = {}
    for slots in printed:
        for slot, fields in slots.items():
            by_slot.setdefault(slot, set()).update(fields)
    slot = min(by_slot)
    field = min(by_slot[slot])
    value = _EXAMPLE_VALUES.get(field, "...")
    named = sorted(set().union(*by_slot.values()))
    chosen = (f"an audience (audience: {{{field}: {value}}}), or by rules: a condition"
              if variants else "a condition")
    return (f"{subject} prints {', '.join(named)} in {', '.join(sorted(by_slot))}{variants}, "
            "so with keyed caching its pages are made per visitor and sent private, never "
            "shared by the CDN (values from no closed set: each one a client made up would "
            "be a cached page of its own). To keep them shared, write the name in the "
            f"variant and choose the variant by {chosen} (when: {{{field}: {value}}}) or "
            f"by: (then: {{{slot}: {{by: {field}, variants: {{{value}: ...}}}}}})")


def _printing_unbounded(ruleset: RuleSet, told: Mapping[str, Notice]) -> list[Notice]:
    """Each rule and experiment (not already told to reach no one) with a variant that
    prints a field outside BOUNDED_FIELDS: under keyed caching its pages are private."""
    rules: dict[str, tuple[str, list[dict[str, frozenset[str]]]]] = {}
    for rule in ruleset.rules:   # (a rule written `by:` a field is several: told once)
        printed = _unbounded(rule.slots)
        if printed and rule.source not in told:
            rules.setdefault(rule.source, (rule.written or rule.name, []))[1].append(printed)
    found = [Notice(source, "rule", _kept_private(f"rule {name!r}", printed), name,
                    unreached=False) for source, (name, printed) in rules.items()]
    for experiment in ruleset.experiments:
        variants = {variant: _unbounded(contents)
                    for variant, contents in experiment.variants.items()}
        named = sorted(variant for variant, printed in variants.items() if printed)
        if named and experiment.source not in told:
            which = (f" (variant{'s' if len(named) > 1 else ''} "
                     f"{', '.join(map(repr, named))})")
            found.append(Notice(experiment.source, "experiment", _kept_private(
                f"experiment {experiment.name!r}", variants.values(), which),
                experiment.name, unreached=False))
    return found


def described(noticed: list[Notice]) -> str:
    """What `noticed` counts, for a heading: "2 rules and 1 experiment"."""
    counts = [(sum(n.kind == kind for n in noticed), kind) for kind in ("rule", "experiment")]
    return " and ".join(counted(n, kind) for n, kind in counts if n)


class Noticed:
    """The notices of the rules a book serves (`keyed_caching`: its server's setting),
    worked out at most once a minute and again for each version (health may be asked
    every second of a set of 10,000 rules)."""

    def __init__(self, *, keyed_caching: bool = False) -> None:
        self._held: tuple[str, int, list[Notice]] = ("", -1, [])
        self._keyed_caching = keyed_caching   # the server's: pages it shares, or none

    def of(self, ruleset: RuleSet, now: datetime) -> list[Notice]:
        minute = int(now.timestamp() // 60)
        version, at, held = self._held
        if version != ruleset.version or at != minute:
            held = notices(ruleset, now, keyed_caching=self._keyed_caching)
            self._held = (ruleset.version, minute, held)
        return held
