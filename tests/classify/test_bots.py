from __future__ import annotations

import pytest

from edge_personalizer.classify.bots import BotCatalogue

from ..corpora import crawler_instances


@pytest.fixture(scope="module")
def bots() -> BotCatalogue:
    return BotCatalogue()


@pytest.mark.parametrize(("ua", "category"), [
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
     "+https://openai.com/gptbot)", "ai"),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; "
     "+claudebot@anthropic.com)", "ai"),
    ("Mozilla/5.0 (compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)", "ai"),
    ("CCBot/2.0 (https://commoncrawl.org/faq/)", "ai"),
    ("Mozilla/5.0 (Linux; Android 5.0) AppleWebKit/537.36 (KHTML, like Gecko) Mobile Safari/"
     "537.36 (compatible; Bytespider; spider-feedback@bytedance.com)", "ai"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "search"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "search"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "social"),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "social"),
    ("Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitor"),
    ("curl/8.5.0", "other"),
    ("python-requests/2.31.0", "other"),
    ("", "other"),
    ("Mozilla/5.0 (compatible; SomeNewCrawler/0.1; +https://example.org/crawler)", "other"),
])
def test_bot_categories(bots: BotCatalogue, ua: str, category: str) -> None:
    match = bots.match(ua)
    assert match is not None and match.category == category


@pytest.mark.parametrize("ua", [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; U; Android 4.2.1; en-gb; CUBOT ONE Build/JOP40D) AppleWebKit/534.30 "
    "(KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
    "Mozilla/5.0 (iPad; U; CPU iPhone OS 7_0 like Mac OS X; de-DE) WIRED/3.2.3.11.87970",
    "Opera/9.80 (MAUI Runtime; Opera Mini/4.4.39008/37.9178; U; en) Presto/2.12.423 "
    "Version/12.16",
])
def test_browsers_that_look_like_bots_are_not(bots: BotCatalogue, ua: str) -> None:
    assert bots.match(ua) is None


def test_crawler_user_agents_are_bots(bots: BotCatalogue) -> None:
    instances = crawler_instances()
    missed = [ua for ua in instances if bots.match(ua) is None]
    assert len(missed) / len(instances) < 0.02, missed[:20]
