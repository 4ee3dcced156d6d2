"""Dashboard sessions: a signed, short-lived cookie for browsers, and the checks that keep
the dashboard's forms from being posted by other sites.

The session is HMAC-SHA256 with a key made from the admin token, so every worker and
instance with the same token accepts it, and changing the token logs everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.types import Scope

SESSION_SECONDS = 3600.0


class SessionSigner:
    """Signed, expiring session values: `<expires>.<nonce>.<mac>`, nothing kept on the
    server. The key is derived from the admin token."""

    def __init__(self, admin_token: str, *, lifetime: float = SESSION_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self._key = hmac.new(admin_token.encode(), b"edge-personalizer dashboard session",
                             hashlib.sha256).digest()
        self.lifetime = lifetime
        self.clock = clock

    def _mac(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def sign(self, expires: int, nonce: str) -> str:
        payload = f"{expires}.{nonce}"
        return f"{payload}.{self._mac(payload)}"

    def issue(self) -> str:
        """A new session value, valid for `lifetime` seconds."""
        return self.sign(int(self.clock() + self.lifetime), secrets.token_urlsafe(12))

    def nonce_of(self, value: str) -> str | None:
        """The session's nonce when `value` is ours and unexpired, else None."""
        expires, _, rest = value.partition(".")
        nonce, _, mac = rest.partition(".")
        if not expires.isdigit() or not nonce or not mac:
            return None
        if not hmac.compare_digest(mac, self._mac(f"{expires}.{nonce}")):
            return None
        return nonce if int(expires) > self.clock() else None

    def form_token(self, nonce: str) -> str:
        """The token a session's forms carry (a cross-site page cannot read it)."""
        return self._mac(f"form.{nonce}")


def request_cookies(scope: Scope) -> dict[str, str]:
    jar: dict[str, str] = {}
    for key, value in scope["headers"]:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, sep, content = part.strip().partition("=")
                if sep:
                    jar.setdefault(name, content)
    return jar


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


def same_origin(scope: Scope) -> bool:
    """A POST from our own page: the browser's Sec-Fetch-Site says so, or its Origin names
    the host the request was sent to. A request with neither (a script, not a browser)
    passes here; the form token still has to match."""
    fetch_site = _header(scope, b"sec-fetch-site")
    if fetch_site is not None and fetch_site not in (b"same-origin", b"none"):
        return False
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    host = _header(scope, b"host") or b""
    return origin != b"null" and urlsplit(origin.decode("latin-1")).netloc.encode() == host


def cookie_header(scope: Scope, name: str, value: str, max_age: int, path: str) -> bytes:
    # Secure when the browser is on https, as it says in Origin (behind a proxy that ends
    # TLS, the scheme here is http).
    on_https = scope.get("scheme") == "https" or \
        (_header(scope, b"origin") or b"").startswith(b"https://")
    secure = "; Secure" if on_https else ""
    return (f"{name}={value}; Max-Age={max_age}; Path={path}; HttpOnly; "
            f"SameSite=Strict{secure}").encode()

