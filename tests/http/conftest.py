"""One real server for the client-side tests (conformance table and fuzz): the product in
front of an origin that records what reaches it, with a short body timeout and small
limits so that slow and large cases end quickly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..servers import Server, start_proxy
from .raw_client import BODY_TIMEOUT, RecordingOrigin


@pytest.fixture(scope="session")
def recording() -> Iterator[RecordingOrigin]:
    origin = RecordingOrigin()
    with origin:
        yield origin


@pytest.fixture(scope="session")
def recorded_server(recording: RecordingOrigin, server_logs: Path) -> Iterator[Server]:
    proxy = start_proxy(server_logs, "--origin", recording.threaded.url,
                        "--body-timeout", str(BODY_TIMEOUT),
                        env={"EP_MAX_BODY_BYTES": "1048576", "EP_MAX_HEADER_BYTES": "4096"})
    yield proxy
    proxy.stop()
