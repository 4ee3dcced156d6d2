from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.config import load_settings
from edge_personalizer.errors import SettingsError


def test_data_written_in_a_folder_the_rules_link_to_is_refused(tmp_path: Path) -> None:
    # rules/shared -> /srv/x with data_dir /srv/x/ep-data: the path check alone let it
    # through, and every worker reloaded its rules on each write of the store.
    rules, shared = tmp_path / "rules", tmp_path / "shared"
    (rules / "campaigns").mkdir(parents=True)
    (shared / "deeper").mkdir(parents=True)
    (rules / "campaigns" / "shared").symlink_to(shared)
    (rules / "loop").symlink_to(rules)   # the rules say it loops; the check ends
    base = {"EP_ORIGIN_URL": "http://o", "EP_RULES_DIR": str(rules)}
    for inside in (shared, shared / "ep-data", shared / "deeper" / "data"):
        with pytest.raises(SettingsError, match=f"lies inside {shared}, which the rules read "
                           f"through the folder link {rules / 'campaigns' / 'shared'}"):
            load_settings({**base, "EP_DATA_DIR": str(inside)})
    for outside in (tmp_path / "ep-data", shared / ".ep-data"):
        assert load_settings({**base, "EP_DATA_DIR": str(outside)}).data_dir == outside
