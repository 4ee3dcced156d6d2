"""A real redis-server for the store tests (tests/servers.py RedisServer)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
