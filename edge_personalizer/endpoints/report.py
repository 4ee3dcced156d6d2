"""The results in words: `edge-personalizer report`'s text table, and the number formats
it shares with the dashboard's pages (the same rates, uplifts and warnings either way)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ..rules.compile.context import UNPRINTABLE
from .charts import percent, span
from .verdicts import leader_of, segment_leaders


def pct(value: float | None, digits: int = 1) -> str:
    """A rate as a percentage, a dash when there is none yet."""
    return "–" if value is None else percent(value, digits)


def signed(value: float | None, digits: int = 1) -> str:
    """An uplift with its sign (+3.1%), a dash when there is none yet."""
    return "–" if value is None else percent(value, digits, signed=True)


def points(value: float | None, digits: int = 2) -> str:
    """A difference of rates in percentage points (0.0012 -> "0.12 pp"): how a
    comparison's risk reads, a dash when there is none."""
    return "–" if value is None else f"{value * 100:.{digits}f} pp"


def count(value: float | None) -> str:
    """A count with thousands separators (a fraction, which counts seldom are, with two
    decimals)."""
    if value is None:
        return "–"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def amount(value: float | None) -> str:
    """A value (a sum of money, a value per visitor): always two decimals, so a column
    of them lines up (86.00 beside 29.56)."""
    return "–" if value is None else f"{value:,.2f}"


def p_value(value: float | None) -> str:
    """A p-value to four places, or "< 0.0001" below that."""
    if value is None:
        return "–"
    return "< 0.0001" if value < 0.0001 else f"{value:.4f}"


_STATUS_TEXT = MappingProxyType({
    "stopped": " (stopped: no longer in the rules; results from the store's counts, settling "
               "a goal's window after its removal)",
    "paused": " (paused: no variant shown, no one new counted)",
    "ended": " (ended: its schedule is over everywhere; no variant shown, no one new counted)",
    "scheduled": " (scheduled: its first day has come nowhere yet)",
})


def render_text(report: Mapping[str, Any]) -> str:
    """`edge-personalizer report`'s table: each experiment and goal, each variant's
    numbers against the control, warnings in words; then what each rule reached."""
    lines = [f"Rules version {report['rules_version']}"]
    for experiment in report["experiments"]:
        status = _STATUS_TEXT.get(experiment["status"], "")
        held_out = experiment.get("held_out", 0)
        lines += ["", f"{experiment['name']}: {experiment['exposed']:,} "
                  f"visitor{'' if experiment['exposed'] == 1 else 's'} exposed"
                  + (f", {held_out:,} held out" if held_out else "") + status]
        if "error" in experiment:
            lines.append(f"  ERROR {experiment['error']}")
        elif not experiment["goals"]:
            lines.append("  no goals: add goals: [...] to the experiment to judge it"
                         if experiment["status"] != "stopped" else "  no conversions counted")
        lines += [f"  WARNING {warning}" for warning in experiment["warnings"]]
        for goal_name, goal in experiment["goals"].items():
            valued = any(v["value_sum"] for v in goal["variants"].values())
            lines.append(f"  goal {goal_name}" + (
                f" (rates, uplifts and values per visitor weighted by {goal['weighted_by']}; "
                "exposed and converted as counted)" if goal.get("weighted_by") else ""))
            holdout = goal.get("holdout")
            shown = _column([*goal["variants"], *(_HOLDOUT_ROWS if holdout else ())])
            width = _width(shown.values())
            lines.append(f"    {'variant':<{width}} {'exposed':>9} {'converted':>9} {'rate':>7} "
                         f"{'95% interval':>17} {'uplift':>8} {'uplift interval':>19} "
                         f"{'chance':>7} {'risk':>9}" + ("  value/visitor" if valued else ""))
            for name, v in goal["variants"].items():
                lines.append(_row(shown[name], width, v, valued=valued,
                                  base="control" if name == goal["control"] else None)
                             + ("  (removed from the rules)" if v["removed"] else ""))
            if holdout is not None:
                lines += ["    against the holdout (the page as it is), every variant together, "
                          "both counted where both were shown:",
                          _row("held out", width, holdout["held_out"], base="baseline",
                               valued=valued),
                          _row("all variants", width, holdout["experiment"], valued=valued)]
            leader, chance = leader_of(goal)
            leaders = segment_leaders(goal)
            if leader is not None and chance is not None:
                lines.append(f"    ahead: {leader} ({pct(chance)} chance to "
                             + ("beat control)" if leader != goal["control"]
                                else "beat the best challenger)"))
            elif len(set(leaders.values())) > 1:
                lines.append("    ahead: none over all, each segment its own: " + ", ".join(
                    f"{cell} {name}" for cell, name in leaders.items()))
            if goal["srm"]:
                lines.append(f"    WARNING sample ratio mismatch (p = {p_value(goal['srm_p'])}): "
                             "exposures do not follow the weights; do not trust these "
                             "numbers until the cause is found")
            if "segments" in goal:
                lines += _segment_lines(goal, experiment["per"])
    if report["rules"]:
        lines += ["", "Rules (visitors reached; conversions per goal)"]
        for rule in report["rules"]:
            for name, v in rule["variants"].items():
                reached = ", ".join(
                    f"{g} {c['converted']:,} ({pct(c['rate'])}"
                    # a goal that joined the rules late: over the visitors reached since
                    + (f" of {c['exposed']:,} from {c['since']})" if "since" in c else ")")
                    for g, c in v["goals"].items())
                lines.append(f"  {rule['name']} [{name}]: {v['exposed']:,} exposed"
                             + (f"; {reached}" if reached else "")
                             + ("  (removed from the rules)" if rule["removed"] else ""))
    return "\n".join(lines)


def _row(shown: str, width: int, v: Mapping[str, Any], *, valued: bool,
         base: str | None = None) -> str:
    """One line of a goal's table: `v`'s numbers against what it is compared with, or
    (`base`: the word in its uplift column) what the others are compared with; `shown`:
    its name as its column (`width` wide) shows it."""
    uplift = span(v["uplift_low"], v["uplift_high"], "..")
    return (f"    {shown:<{width}} {v['exposed']:>9,} {v['converted']:>9,} "
            f"{pct(v['rate']):>7} {_rate_interval(v):>17} "
            f"{base or signed(v['uplift']):>8} "
            f"{uplift:>19} {pct(v['chance_to_beat_control']):>7} {points(v['risk']):>9}"
            + (f"  {amount(v['mean_value']):>13}" if valued else "") + _few(v))


def _few(v: Mapping[str, Any]) -> str:
    """What a row says when its comparison had too few conversions to be a verdict."""
    return "  (too few conversions to judge yet)" if v.get("too_few_conversions") else ""


_HOLDOUT_ROWS = ("held out", "all variants")
_NARROWEST = 16   # a name column's width when its names are shorter
_WIDEST = 40      # ... and at most, unless cutting would make two names alike
_UNPRINTABLE = re.compile(f"[{UNPRINTABLE}]")


def _column(names: Iterable[str]) -> dict[str, str]:
    """Each of a column's names as it shows it: a control character written as an escape
    (\\x1b, \\n: results counted under such a name before the rules refused it), and a name
    longer than the column cut in its middle (its start and end tell apart
    free-shipping-banner-eu and -us); whole where cutting leaves two alike."""
    printable = {name: _UNPRINTABLE.sub(
        lambda found: found.group().encode("unicode_escape").decode(), name) for name in names}
    cut = {name: shown if len(shown) <= _WIDEST
           else shown[:_WIDEST - 13] + "…" + shown[-12:] for name, shown in printable.items()}
    return cut if len(set(cut.values())) == len(cut) else printable


def _width(shown: Iterable[str]) -> int:
    """A name column's width: its longest name, at least _NARROWEST."""
    return max([_NARROWEST, *map(len, shown)])


def _rate_interval(v: Mapping[str, Any]) -> str:
    """A variant's 95% interval of its rate, or a dash when too few were counted."""
    return f"{pct(v['rate_low'])}..{pct(v['rate_high'])}" if v["rate_low"] is not None else "–"


def _segment_lines(goal: Mapping[str, Any], per: str | list[str] | None) -> list[str]:
    """A goal's numbers within each segment (or cell) the experiment counts per: one
    line a variant, the segment named on its first; then, where the cell held visitors
    out, those held out and every variant together against them."""
    kind = "segment" if per == "segment" else "cell"
    heading = "segment" if per == "segment" else \
        "cell (" + ", ".join(per) + ")" if per else "cell"   # (a stopped one's: unknown)
    cells = _column(goal["segments"])
    variants = _column([*(name for result in goal["segments"].values()
                          for name in result["variants"]), *_HOLDOUT_ROWS])
    wide, width = _width(cells.values()), _width(variants.values())
    lines = [f"    by {heading}",
             f"      {kind:<{wide}} {'variant':<{width}} {'exposed':>9} {'converted':>9} "
             f"{'rate':>7} {'95% interval':>17} {'uplift':>9} {'chance':>7}"]
    for cell, result in goal["segments"].items():
        shown_cell = cells[cell]
        rows = [(name, v, "control" if name == result["control"] else None)
                for name, v in result["variants"].items()]
        holdout = result.get("holdout")
        if holdout is not None:
            rows += [("held out", holdout["held_out"], "baseline"),
                     ("all variants", holdout["experiment"], None)]
        for name, v, base in rows:
            lines.append(
                f"      {shown_cell:<{wide}} {variants[name]:<{width}} {v['exposed']:>9,} "
                f"{v['converted']:>9,} {pct(v['rate']):>7} {_rate_interval(v):>17} "
                f"{base or signed(v['uplift']):>9} {pct(v['chance_to_beat_control']):>7}"
                + _few(v))
            shown_cell = ""
        if result["srm"]:
            lines.append(f"      {'':<{wide}} WARNING sample ratio mismatch in this {kind} "
                         f"(p = {p_value(result['srm_p'])})")
    return lines
