"""What the tests of personalization share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from ..servers import Server


def keyed_get(server: Server, path: str, params: Mapping[str, str | Sequence[str]],
              headers: dict[str, str]) -> httpx.Response:
    """A page asked for as a cache keyed on X-EP-Segment asks: naming its segment (a first
    request's, as /__ep/decide would tell)."""
    first = httpx.get(f"{server.url}{path}", params=params, headers=headers)
    return httpx.get(f"{server.url}{path}", params=params,
                     headers={**headers, "x-ep-segment": first.headers["x-ep-segment"]})
