"""A rule's schedule in the visitor's own local time: a night across midnight, minutes."""

from __future__ import annotations

from pathlib import Path

from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.conditions import Condition

from ..factories import make_visitor


def _scheduled(tmp_path: Path, schedule: str) -> Condition:
    (tmp_path / "r.yaml").write_text(
        f"slots: {{a: {{}}}}\nrules:\n  - name: r\n    schedule: {schedule}\n"
        "    then: {a: x}\n")
    return load_rules(tmp_path).rules[0].condition


FRI_2330, SAT_0200, FRI_0200 = 1_795_822_200.0, 1_795_831_200.0, 1_795_744_800.0
FRI_1815, FRI_1845 = 1_795_803_300.0, 1_795_805_100.0   # 2026-11-27, UTC


def test_a_night_across_midnight_belongs_to_the_day_it_starts_on(tmp_path: Path) -> None:
    friday_night = _scheduled(tmp_path, '{days: [fri], hours: "22:00-06:00"}')
    assert friday_night(make_visitor(now=FRI_2330))
    assert friday_night(make_visitor(now=SAT_0200))       # still Friday night
    assert not friday_night(make_visitor(now=FRI_0200))   # Thursday night's end
    failure = friday_night.failure(make_visitor(now=FRI_0200))
    assert failure is not None and "the night of 2026-11-26" in failure
    from_friday = _scheduled(tmp_path, '{start: 2026-11-27, hours: "22:00-06:00"}')
    assert not from_friday(make_visitor(now=FRI_0200)) and from_friday(make_visitor(now=SAT_0200))


def test_hours_count_their_minutes(tmp_path: Path) -> None:
    evening = _scheduled(tmp_path, '{hours: "18:30-23:00"}')
    assert not evening(make_visitor(now=FRI_1815))
    assert evening(make_visitor(now=FRI_1845))   # (it waited for 19:00)


def test_explain_says_which_part_of_the_schedule_leaves_the_visitor_out(
        tmp_path: Path) -> None:
    visitor = make_visitor(now=FRI_1815)
    reasons = {schedule: _scheduled(tmp_path, schedule).failure(visitor) for schedule in (
        '{hours: "18:30-23:00"}', "{start: 2026-12-01}", "{days: [mon]}", "{days: [fri]}")}
    assert reasons == {
        '{hours: "18:30-23:00"}': "scheduled between 18:30 and 23:00 (it is 18:15)",
        "{start: 2026-12-01}": "scheduled from 2026-12-01 (it is 2026-11-27)",
        "{days: [mon]}": "scheduled on mon (it is fri)",
        "{days: [fri]}": None,
    }
