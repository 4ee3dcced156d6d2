from __future__ import annotations

from pathlib import Path

import pytest

from edge_personalizer.rules.book import load_rules
from edge_personalizer.rules.preview import PREVIEW_PARAM, PreviewSigner, check_preview


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


def test_a_name_the_rules_lack_lists_the_first_30_they_hold(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("slots: {hero: {}}\nrules:\n" + "".join(
        f"  - {{name: rule-{i:02}, then: {{hero: x}}}}\n" for i in range(35)))
    ruleset = load_rules(tmp_path)
    check_preview(ruleset, "rule-07", None, directory=tmp_path)
    with pytest.raises(ValueError) as raised:
        check_preview(ruleset, "spring", None, directory=tmp_path)
    names = ", ".join(f"rule-{i:02}" for i in range(30))
    assert str(raised.value) == (f"no rule or experiment named 'spring' in {tmp_path}. Its "
                                 f"rules: {names} and 5 more; its experiments: none")
    (tmp_path / "r.yaml").write_text("rules: []\n")
    with pytest.raises(ValueError, match="named 'spring' in .*: it holds none$"):
        check_preview(load_rules(tmp_path), "spring", None, directory=tmp_path)


def test_an_experiment_is_previewed_with_one_of_its_variants(tmp_path: Path) -> None:
    (tmp_path / "e.yaml").write_text(
        "slots: {hero: {}}\nexperiments:\n  - name: hero-test\n    slot: hero\n"
        "    variants: {control: {weight: 1}, bold: {weight: 1, html: B}}\n")
    ruleset = load_rules(tmp_path)
    check_preview(ruleset, "hero-test", "bold", directory=tmp_path)
    with pytest.raises(ValueError) as raised:
        check_preview(ruleset, "hero-test", None, directory=tmp_path)
    assert str(raised.value) == ("experiment 'hero-test' has the variants control, bold; "
                                 "pick one with --variant")
