from __future__ import annotations

import httpx
import pytest

from edge_personalizer.demo.site import create_demo_site

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_pages_carry_slot_markers() -> None:
    transport = httpx.ASGITransport(app=create_demo_site())
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        home = await client.get("/")
        sale = await client.get("/sale")
        missing = await client.get("/hiking")
    assert 'data-ep-slot="hero"' in home.text and 'data-ep-slot="banner"' in home.text
    assert 'data-ep-slot="promo"' in sale.text
    assert missing.status_code == 404
