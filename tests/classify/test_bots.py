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
    # No browser named, and a web address or an e-mail to contact: a program.
    ("Mozilla/5.0 (compatible; Cludo; +https://www.cludo.com/)", "other"),
    ("Acme-Indexer/2.1 (+https://acme.example/about)", "other"),
    ("DataCollector 1.0 (ops@acme.example)", "other"),
    # Health checkers, monitors and link verifiers.
    ("ELB-HealthChecker/2.0", "monitor"),
    ("kube-probe/1.29", "monitor"),
    ("Consul Health Check", "monitor"),
    ("Blackbox Exporter/0.24.0", "monitor"),
    ("Prometheus/2.48.0", "monitor"),
    ("check_http/v2.3.3 (nagios-plugins 2.3.3)", "monitor"),
    ("W3C-checklink/5.0.0 libwww-perl/6.72", "monitor"),
    ("LinkWalker/3.0 (http://www.example.com/)", "other"),     # the catalogue's category
    ("Xenu Link Sleuth/1.3.8", "other"),
    ("Site Verifier 2.0", "other"),
    ("GoogleHC/1.0", "monitor"),
    ("Amazon-Route53-Health-Check-Service (ref 1234; report http://amzn.to/1vsZADi)",
     "monitor"),
    ("Sematext Synthetics Agent", "monitor"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0 Safari/537.36 RuxitSynthetic/1.0", "monitor"),
    ("Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120 Mobile Safari/537.36 PTST/230101", "monitor"),
    ("Uptime-Kuma/1.23.0", "monitor"),
    ("masscan/1.3 (https://github.com/robertdavidgraham/masscan)", "other"),
    ("Mozilla/5.0 zgrab/0.x", "other"),
    ("Deno/1.40.0", "other"),
    # A browser's string with a crawler's "+http" address: browsers never send one.
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0 Safari/537.36 (compatible; Acmefetch/2.0; +https://acme.example/about)",
     "other"),
    # The catalogue's own link-preview crawler of WhatsApp.
    ("WhatsApp/2.23.20.0 A", "social"),
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
    # Phones and apps that share a word with a catalogue entry.
    "Mozilla/5.0 (Linux; Android 4.1.1; HTC Butterfly Build/JRO03C) AppleWebKit/535.19 (KHTML, "
    "like Gecko) Chrome/18.0.1025.166 Mobile Safari/535.19",
    "Mozilla/5.0 (Linux; U; Android 2.2.2; En-us; ViewSonic-ViewPad4 Build/FRG83G) AppleWebKit/"
    "533.1 (KHTML, Like Gecko) Version/4.0 Mobile Safari/533.1",
    "WhatsApp/2.11.181 Android/4.2.2 Device/HTC-HTC_802w",
    "Mozilla/4.0 (compatible; MSIE 6.0; Windows NT 5.1; TeomaBar 2.01)",
    # An app naming its platform and its author's address is not a crawler.
    "(Android)(16)(someone@gmail.com)(Samsung GT-S6010)(com.example.films)",
    "Weather/1 CFNetwork/1490.0.4 Darwin/23.2.0",
])
def test_browsers_that_look_like_bots_are_not(bots: BotCatalogue, ua: str) -> None:
    assert bots.match(ua) is None


def test_crawler_user_agents_are_bots(bots: BotCatalogue) -> None:
    instances = crawler_instances()
    missed = [ua for ua in instances if bots.match(ua) is None]
    assert len(missed) / len(instances) < 0.02, missed[:20]


def test_a_self_named_agent_is_named_after_itself(bots: BotCatalogue) -> None:
    match = bots.match("Mozilla/5.0 (compatible; Cludo; +https://www.cludo.com/)")
    assert match is not None and match.name == "cludo"
