"""The profile cookie's format: a msgpack array, signed with HMAC-SHA256.

Cookie value: `1.<payload>.<signature>`, both base64url, the signature over `1.<payload>`
with the first configured key; every configured key verifies, so keys rotate without
logging anyone out. The one module that imports msgpack for profiles.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Final, Literal

import msgpack

VERSION: Final = b"1"
_SIG_BYTES: Final = 16
_DAY: Final = 86400.0
RejectReason = Literal["malformed", "signature", "oversized", "expired", "version"]

# The cookie holds a msgpack array, in this order (version 1):
# [visitor id, first seen, last seen, visits, page views, {category: [score, at]},
#  first referral, last referral, conversions, {experiment: variant},
#  {rule or experiment: [variant, at, cell]}, {goal\x1fby: at}]
# The last two came later: cookies written without them read as having none.
_STATE_LENGTHS: Final = (10, 12)
# The longest value read, whatever the cap on writing (the settings' bound): a server whose
# cap was lowered reads the larger cookies it wrote before and trims them when it writes.
READ_LIMIT: Final = 4000
LAST_SEEN: Final = 2
STATE_SCORES: Final = 5
STATE_VARIANTS: Final = 9
STATE_EXPOSURES: Final = 10
STATE_CONVERTED: Final = 11


_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")


def _b64(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    """base64url without padding; raises binascii.Error on anything else."""
    if b"+" in text or b"/" in text:
        raise binascii.Error("not base64url")
    padded = text.translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4)
    return binascii.a2b_base64(padded, strict_mode=True)


class ProfileCodec:
    """Signs and verifies profile cookie values."""

    def __init__(self, keys: Sequence[bytes], *, max_bytes: int = 3000,
                 max_age_days: float = 395) -> None:
        if not keys:
            raise ValueError("at least one profile signing key is needed")
        # Keyed once; copying a keyed HMAC is cheaper than keying it for every cookie.
        self._macs = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)
        self._packer = msgpack.Packer(use_bin_type=True)
        self.max_bytes = max_bytes
        self.max_age = max_age_days * _DAY

    @staticmethod
    def _sign(mac: Any, message: bytes) -> bytes:
        signer = mac.copy()
        signer.update(message)
        return bytes(signer.digest()[:_SIG_BYTES])

    def encode(self, state: list[Any]) -> str:
        message = VERSION + b"." + _b64(self._packer.pack(state))
        return (message + b"." + _b64(self._sign(self._macs[0], message))).decode("ascii")

    def decode(self, value: str, now: float) -> tuple[list[Any] | None, RejectReason | None]:
        """The stored state, or None and why the cookie was rejected."""
        if len(value) > max(self.max_bytes, READ_LIMIT):
            return None, "oversized"
        raw = value.encode("ascii", "replace")
        message, _, signature = raw.rpartition(b".")
        version = message.partition(b".")[0]
        if version != VERSION:
            return None, "version" if message else "malformed"
        try:
            given = _unb64(signature)
        except (binascii.Error, ValueError):
            return None, "malformed"
        if not any(hmac.compare_digest(given, self._sign(mac, message)) for mac in self._macs):
            return None, "signature"
        try:
            state = msgpack.unpackb(_unb64(message.partition(b".")[2]), raw=False,
                                    strict_map_key=True)
        except (ValueError, msgpack.UnpackException, binascii.Error):
            return None, "malformed"
        if not isinstance(state, list) or len(state) not in _STATE_LENGTHS \
                or not isinstance(state[LAST_SEEN], int):
            return None, "malformed"
        if now - state[LAST_SEEN] > self.max_age:
            return None, "expired"
        return state, None
