from __future__ import annotations

from edge_personalizer.rules.preview import PREVIEW_PARAM, PreviewSigner


def test_tokens_verify_until_they_expire() -> None:
    signer = PreviewSigner(b"k" * 32)
    token = signer.sign("rule-a", None, expires=1000)
    assert signer.verify(token, now=999) == ("rule-a", None)
    assert signer.verify(token, now=1001) is None
    assert PreviewSigner(b"x" * 32).verify(token, now=0) is None
    assert signer.verify("garbage", now=0) is None


def test_link_replaces_an_old_token() -> None:
    signer = PreviewSigner(b"k" * 32)
    link = signer.link(f"https://s.example/p?a=1&{PREVIEW_PARAM}=old", "r", "v", 10)
    assert link.startswith("https://s.example/p?a=1&__ep_preview=") and "old" not in link
