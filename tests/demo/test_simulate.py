from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from edge_personalizer.config import load_settings
from edge_personalizer.demo.run import demo_settings
from edge_personalizer.demo.simulate import has_counts, simulate_week
from edge_personalizer.learn.results import results
from edge_personalizer.learn.store import open_store
from edge_personalizer.rules.book import load_rules

from ..factories import NOW

ROOT = Path(__file__).resolve().parents[2]


async def _week(data: Path) -> dict[str, Any]:
    settings = demo_settings(load_settings({}, rules_dir=ROOT / "rules", data_dir=data))
    assert not await has_counts(settings)
    # A fixed week: the demo's rules read the visitors' clock, so a week ending now would
    # differ by the hour the test runs; its visitors' ids come from their names in the
    # log, so the week is the same every run (bold 6.7% against control's 4.8% for
    # 7% and 4.5%; with 1,500 visitors bold's lead was within chance).
    summary = await simulate_week(settings, visitors=3000, start=NOW)
    assert summary.visitors == 3000 and summary.conversions > 0
    assert await has_counts(settings)
    store = open_store(settings.store_location())
    totals = await store.totals()
    await store.close()
    return results(load_rules(ROOT / "rules"), totals)


def test_a_simulated_week_gives_the_demo_s_experiment_numbers(tmp_path: Path) -> None:
    report = anyio.run(_week, tmp_path)
    (hero,) = report["experiments"]
    purchase = hero["goals"]["purchase"]["variants"]
    assert purchase["bold"]["rate"] > purchase["control"]["rate"] > 0
    assert hero["goals"]["add-to-cart"]["variants"]["bold"]["converted"] > 0
