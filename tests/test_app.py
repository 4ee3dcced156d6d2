from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.types import Message

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


def test_user_agent_parser_is_built_by_the_serving_process_only() -> None:
    # A supervisor of several workers builds the app only to check the settings.
    app = create_app(load_settings({}, origin_url="http://127.0.0.1:9", rules_dir=ROOT / "rules"))
    assert not app.classifier.devices.loaded

    async def lifespan() -> list[str]:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        sent: list[str] = []
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            inbox.put_nowait({"type": kind})

        async def send(message: Message) -> None:
            sent.append(message["type"])
            if message["type"] == "lifespan.startup.complete":
                assert app.classifier.devices.loaded

        await app({"type": "lifespan"}, inbox.get, send)
        return sent

    assert asyncio.run(lifespan()) == ["lifespan.startup.complete",
                                       "lifespan.shutdown.complete"]
