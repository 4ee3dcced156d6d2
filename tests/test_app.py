from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer import create_app, load_settings
from edge_personalizer.errors import GeoDatabaseError, RuleError

ROOT = Path(__file__).resolve().parent.parent


def test_app_opens_rules_and_geo_at_build_time() -> None:
    app = create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=ROOT / "rules",
                                   geo_db=ROOT / "geo_db" / "GeoLite2-City-Test.mmdb"))
    assert app.rules is not None and app.geo is not None


def test_bad_rules_or_geo_fail_at_build_time(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("nonsense: 1\n")
    with pytest.raises(RuleError):
        create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=tmp_path))
    with pytest.raises(GeoDatabaseError):
        create_app(load_settings({}, origin_url="http://127.0.0.1:9", geo_db=tmp_path / "x"))
