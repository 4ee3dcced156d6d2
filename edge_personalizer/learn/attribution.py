"""Attribution: what a visitor was shown and what they did, counted once per visitor.

The profile cookie remembers each rule or experiment variant the visitor was exposed to,
when, in which cell and period (the bandit weights' version), and which conversions were
already counted; so the store only ever adds counters. A conversion is counted in the cell
and period of the exposure it is attributed to: a bandit's results compare variants within
each period, and a visitor assigned under one version of the weights stays in it.
The cookie alone cannot stop a stale copy of it from being sent again (a reload, a
double-clicked beacon, a replayed cookie): each conversion carries the visitor's id, and
the store counts it once per experiment, variant, goal and visitor within the goal's window.
A visitor without a profile (privacy signals) is never counted; neither are bots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from lru import LRU

from ..classify.profile import Profile, converted_key
from .affinity import record, strongest_before
from .counters import ALL_VISITORS, FIXED_PERIOD, Accumulator
from .goals import Conversion, GoalReader

if TYPE_CHECKING:   # the readers' module imports the rules; counting needs none of it
    from .bandit import WeightsTable
    from .catalog import GoalCatalog
    from .readers import TableReader

# The goals a rule or experiment is judged on, each with the earliest exposure (POSIX
# seconds) whose visitor's conversion on it counts; None: every goal, whenever exposed.
JudgedOn = Callable[[str], Mapping[str, int] | None]


_NEVER = 1 << 62   # later than any exposure


class Attribution:
    """Counts exposures and conversions into a worker's accumulator."""

    def __init__(self, counters: Accumulator, *, remembered: int = 4096) -> None:
        self.counters = counters
        self.exposures = 0     # since the process started, for the metrics
        self.conversions = 0
        # The exposures this worker counted last, by hash of (rule or experiment, visitor):
        # a request that brings a copy of the cookie from before one (replayed, sent from
        # two tabs at once) remembers the variant it is shown but counts no second
        # exposure, which would lower that variant's rate and steer a bandit.
        self._counted: LRU[int, None] = LRU(remembered)

    def exposed(self, profile: Profile, shown: Iterable[tuple[str, str]],
                cell: str = ALL_VISITORS, period: int = FIXED_PERIOD) -> Profile:
        """The profile with each (rule or experiment, variant) `shown` remembered; the
        first exposure of a visitor to each is counted, in `cell` and `period` (the
        version of the weights the variant was assigned under), unless this worker
        counted it lately from another copy of the cookie."""
        for by, variant in shown:
            if by in profile.exposures or not profile.stored:
                continue
            profile = profile.with_exposure(by, variant, cell, period)
            counted = hash((by, profile.visitor_id))
            if counted in self._counted:
                continue
            self._counted[counted] = None
            self.counters.expose(by, variant, cell, period=period)
            self.exposures += 1
        return profile

    def converted(self, profile: Profile, conversions: Iterable[Conversion],
                  judged_on: JudgedOn) -> Profile:
        """The profile after `conversions`: each counts for every exposure within its
        attribution window whose rule or experiment is judged on the goal, once per
        visitor, goal and rule or experiment."""
        if not profile.stored:
            return profile
        for conversion in conversions:
            profile = profile.with_conversion()
            for by, exposure in list(profile.exposures.items()):
                goals = judged_on(by)
                if goals is not None and exposure.at < goals.get(conversion.goal, _NEVER):
                    continue   # not judged on the goal, or exposed before it joined
                if profile.now - exposure.at > conversion.window_seconds:
                    continue
                if converted_key(conversion.goal, by) in profile.converted:
                    continue
                self.counters.convert(by, exposure.variant, conversion.goal, exposure.cell,
                                      conversion.value, period=exposure.period,
                                      visitor=profile.visitor_id,
                                      window=conversion.window_seconds)
                self.conversions += 1
                profile = profile.with_counted(conversion.goal, by)
        return profile


class Learning:
    """What the request path asks of the learning loop: which goals a response reaches,
    the counting of exposures and conversions, the bandit weights published last, and the
    goals recorded for experiments since removed from the rules."""

    def __init__(self, counters: Accumulator, *,
                 on_invalid: Callable[[str], None] | None = None,
                 weights: TableReader[WeightsTable] | None = None,
                 catalog: TableReader[GoalCatalog] | None = None) -> None:
        self.counters = counters
        self.attribution = Attribution(counters)
        self.goals = GoalReader(on_invalid)
        self.weights = weights
        self.catalog = catalog

    def viewed(self, profile: Profile, categories: Iterable[str], *,
               learning_rate: float) -> None:
        """Counts the interest categories of a page view against the strongest interests
        the visitor had before it (for the "visitors like you" model)."""
        if not profile.stored:
            return
        categories = tuple(categories)
        top = strongest_before(profile.scores, categories, learning_rate=learning_rate,
                               half_life_days=profile.half_life_days)
        record(self.counters, top, categories)

    def judged_on(self, experiment: str, goals: Iterable[str] | None,
                  now: int) -> Mapping[str, int] | None:
        """The goals `experiment` is judged on (JudgedOn): `goals` as its rules say, or,
        once removed from them, as recorded in the store (None: not recorded, so every
        goal); each from the start, or from the day it joined (as recorded, or about to be)
        when it joined an experiment under way."""
        recorded = self.catalog.current if self.catalog is not None else None
        if goals is None:
            goals = recorded.goals_of(experiment) if recorded is not None else None
            if goals is None:
                return None
        if recorded is None:
            return dict.fromkeys(goals, 0)
        return {goal: recorded.counted_from(experiment, goal, now) for goal in goals}

    def rules_judged_on(self, goals: Iterable[str], now: int) -> Mapping[str, int] | None:
        """The goals a rule is judged on (JudgedOn): every goal of the rules (`goals`),
        each from the start, or from the day it joined them once a rule's visitors were
        counted (as recorded, or about to be); None while the rules' goals are not
        recorded (every goal, from the start)."""
        recorded = self.catalog.current if self.catalog is not None else None
        if recorded is None or not recorded.rule_goals:
            return None
        return {goal: recorded.rule_counted_from(goal, now) for goal in goals}

    @property
    def allocations(self) -> WeightsTable | None:
        """The bandit weights this worker holds now (None when nothing reads them)."""
        return self.weights.current if self.weights is not None else None
