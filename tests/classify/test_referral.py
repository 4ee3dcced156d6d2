from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_personalizer.classify.referral import ReferralClassifier, ReferrerTable
from edge_personalizer.classify.visitor import DIRECT, Referral
from edge_personalizer.errors import SettingsError

from ..corpora import referer_database

OWN = "shop.example"


@pytest.fixture(scope="module")
def referrals() -> ReferralClassifier:
    return ReferralClassifier()


@pytest.mark.parametrize(("query", "referer", "expected"), [
    ({}, "", DIRECT),
    ({}, "https://www.google.co.uk/search?q=trail+shoes",
     Referral("search", "google", keywords="trail shoes", host="www.google.co.uk")),
    ({}, "https://www.bing.com/search?q=boots&form=QBLH",
     Referral("search", "bing", keywords="boots", host="www.bing.com")),
    ({}, "https://duckduckgo.com/", Referral("search", "duckduckgo", host="duckduckgo.com")),
    ({}, "https://yandex.ru/search/?text=кроссовки",
     Referral("search", "yandex", keywords="кроссовки", host="yandex.ru")),
    ({}, "https://www.baidu.com/s?wd=跑鞋",
     Referral("search", "baidu", keywords="跑鞋", host="www.baidu.com")),
    ({}, "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example%2F",
     Referral("social", "facebook", host="l.facebook.com")),
    ({}, "https://t.co/abc123", Referral("social", "twitter", host="t.co")),
    ({}, "https://www.linkedin.com/feed/", Referral("social", "linkedin",
                                                    host="www.linkedin.com")),
    ({}, "https://mail.google.com/mail/u/0/", Referral("email", "gmail", host="mail.google.com")),
    ({}, "https://chatgpt.com/", Referral("ai", "chatgpt", host="chatgpt.com")),
    ({}, "https://www.perplexity.ai/search?q=x", Referral("ai", "perplexity",
                                                          host="www.perplexity.ai")),
    ({}, "https://claude.ai/chat/1", Referral("ai", "claude", host="claude.ai")),
    ({}, "https://gemini.google.com/app", Referral("ai", "gemini", host="gemini.google.com")),
    ({}, "https://copilot.microsoft.com/", Referral("ai", "copilot",
                                                    host="copilot.microsoft.com")),
    ({}, "android-app://com.google.android.gm/", Referral("email", "gmail",
                                                          host="com.google.android.gm")),
    ({}, "android-app://com.google.android.googlequicksearchbox/https/www.google.com",
     Referral("search", "google", host="com.google.android.googlequicksearchbox")),
    ({}, "android-app://com.example.reader/", Referral("app", "com.example.reader",
                                                       host="com.example.reader")),
    ({}, "https://shop.example/running", Referral("internal", "internal", host="shop.example")),
    ({}, "https://www.shop.example/", Referral("internal", "internal", host="www.shop.example")),
    ({}, "https://blog.runners.org/best-shoes", Referral("referral", "blog.runners.org",
                                                         host="blog.runners.org")),
    ({"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "newsletter-nov"}, "",
     Referral("email", "newsletter", campaign="newsletter-nov")),
    ({"utm_source": "fb", "utm_medium": "paid_social", "utm_campaign": "spring",
      "utm_content": "video"}, "https://m.facebook.com/",
     Referral("paid", "facebook", campaign="spring", content="video", host="m.facebook.com")),
    ({"utm_source": "google", "utm_medium": "cpc", "utm_term": "running shoes", "gclid": "x"},
     "https://www.google.com/", Referral("paid", "google", term="running shoes",
                                         keywords="running shoes", click_id="gclid",
                                         host="www.google.com")),
    ({"utm_source": "chatgpt.com"}, "", Referral("ai", "chatgpt")),
    ({"utm_source": "partner-blog"}, "", Referral("referral", "partner-blog")),
    ({"gclid": "abc"}, "https://www.google.com/", Referral("paid", "google", click_id="gclid",
                                                           host="www.google.com")),
    ({"wbraid": "abc"}, "", Referral("paid", "google", click_id="wbraid")),
    ({"msclkid": "abc"}, "", Referral("paid", "bing", click_id="msclkid")),
    ({"fbclid": "abc"}, "", Referral("social", "facebook", click_id="fbclid")),
    ({"ttclid": "abc"}, "", Referral("paid", "tiktok", click_id="ttclid")),
    ({"li_fat_id": "abc"}, "", Referral("paid", "linkedin", click_id="li_fat_id")),
    ({"UTM_SOURCE": "Newsletter", "utm_medium": "Email"}, "", Referral("email", "newsletter")),
    ({}, "not a url", DIRECT),
])
def test_classify_referral(referrals: ReferralClassifier, query: dict[str, str], referer: str,
                           expected: Referral) -> None:
    assert referrals.classify(query, referer, OWN) == expected


def test_operator_sources_extend_ours(tmp_path: Path) -> None:
    extra = tmp_path / "sources.json"
    extra.write_text(json.dumps({"social": {"runners_forum": {"hosts": ["forum.run.example"]}},
                                 "utm_medium": {"influencer": "social"}}))
    referrals = ReferralClassifier(ReferrerTable(extra))
    assert referrals.classify({}, "https://forum.run.example/t/1", OWN).source == "runners_forum"
    assert referrals.classify({"utm_source": "x", "utm_medium": "influencer"}, "", OWN).medium \
        == "social"
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    with pytest.raises(SettingsError, match="bad.json"):
        ReferrerTable(bad)


_MEDIUM = {"search": "search", "social": "social", "email": "email", "chatbot": "ai"}


def test_agrees_with_the_referer_parser_database(referrals: ReferralClassifier) -> None:
    """Where our own list knows a host of the third-party database, the medium agrees."""
    database = referer_database()
    known = agree = 0
    disagreements = []
    for section, medium in _MEDIUM.items():
        for name, entry in database.get(section, {}).items():
            for domain in entry.get("domains", []):
                host = domain.split("/", 1)[0]
                result = referrals.classify({}, f"https://{domain}", OWN)
                if result.medium == "referral":
                    continue
                known += 1
                if result.medium == medium:
                    agree += 1
                else:
                    disagreements.append((name, host, result.medium, medium))
    assert known >= 300
    assert agree / known >= 0.97, disagreements[:30]
