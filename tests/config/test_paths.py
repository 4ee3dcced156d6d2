from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.config.paths import check_data_outside_rules
from edge_personalizer.errors import SettingsError


def test_data_written_among_the_rules_is_refused(tmp_path: Path) -> None:
    # The store and the workers' states would be edits of the rules: reloads forever.
    rules = tmp_path / "rules"
    rules.mkdir()
    for inside in (rules, rules / "ep-data", rules / "fragments" / "data"):
        with pytest.raises(SettingsError, match="lies inside rules_dir"):
            check_data_outside_rules(inside, rules)
    for outside in (tmp_path / "ep-data", rules / ".ep-data", tmp_path / "rules-data"):
        check_data_outside_rules(outside, rules)


def test_data_written_in_a_folder_the_rules_link_to_is_refused(tmp_path: Path) -> None:
    # rules/shared -> /srv/x with data_dir /srv/x/ep-data: the path check alone let it
    # through, and every worker reloaded its rules on each write of the store.
    rules, shared = tmp_path / "rules", tmp_path / "shared"
    (rules / "campaigns").mkdir(parents=True)
    (shared / "deeper").mkdir(parents=True)
    (rules / "campaigns" / "shared").symlink_to(shared)
    (rules / "loop").symlink_to(rules)   # the rules say it loops; the check ends
    for inside in (shared, shared / "ep-data", shared / "deeper" / "data"):
        with pytest.raises(SettingsError, match=f"lies inside {shared}, which the rules read "
                           f"through the folder link {rules / 'campaigns' / 'shared'}"):
            check_data_outside_rules(inside, rules)
    for outside in (tmp_path / "ep-data", shared / ".ep-data"):
        check_data_outside_rules(outside, rules)
