from __future__ import annotations

from typing import Any

from edge_personalizer.endpoints.dashboard_session import SessionSigner, same_origin


def test_sessions_expire_after_their_lifetime() -> None:
    now = [1000.0]
    signer = SessionSigner("t", lifetime=60, clock=lambda: now[0])
    value = signer.issue()
    nonce = signer.nonce_of(value)
    assert nonce is not None and signer.form_token(nonce) != nonce
    now[0] = 1059.0
    assert signer.nonce_of(value) == nonce
    now[0] = 1060.0
    assert signer.nonce_of(value) is None


def test_same_origin_reads_the_browser_s_headers() -> None:
    def scope(*headers: tuple[bytes, bytes]) -> dict[str, Any]:
        return {"headers": [(b"host", b"shop.example"), *headers]}

    assert same_origin(scope())                                         # not a browser
    assert same_origin(scope((b"origin", b"https://shop.example")))
    assert not same_origin(scope((b"origin", b"https://evil.example")))
    assert not same_origin(scope((b"origin", b"null")))
    assert not same_origin(scope((b"sec-fetch-site", b"same-site")))
    assert same_origin(scope((b"sec-fetch-site", b"same-origin")))
