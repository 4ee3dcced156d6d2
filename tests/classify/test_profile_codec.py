from __future__ import annotations

import time

import pytest

from edge_personalizer.classify.profile_codec import ProfileCodec

OLD, NEW = b"o" * 32, b"n" * 32
STATE = ["id", 1, int(time.time()), 1, 1, {}, None, None, 0, {}]


def test_a_signed_state_reads_back_and_keys_rotate() -> None:
    value = ProfileCodec([OLD]).encode(STATE)
    assert value.startswith("1.")
    assert ProfileCodec([OLD]).decode(value, time.time()) == (STATE, None)
    # the new key signs, the old one still verifies: nobody is logged out
    assert ProfileCodec([NEW, OLD]).decode(value, time.time()) == (STATE, None)
    assert ProfileCodec([NEW]).decode(value, time.time()) == (None, "signature")


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda v: v[:-3] + "AAA", "signature"),
    (lambda v: "2" + v[1:], "version"),
    (lambda v: v + "x" * 4000, "oversized"),
    (lambda v: "garbage", "malformed"),
])
def test_what_cannot_be_trusted_is_rejected_with_its_reason(mangle: object,
                                                             reason: str) -> None:
    value = ProfileCodec([OLD]).encode(STATE)
    assert ProfileCodec([OLD]).decode(mangle(value), time.time()) == (None, reason)  # type: ignore[operator]


def test_an_old_cookie_expires() -> None:
    codec = ProfileCodec([OLD], max_age_days=1)
    value = codec.encode(STATE)
    assert codec.decode(value, time.time() + 2 * 86400) == (None, "expired")
