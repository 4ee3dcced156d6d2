"""Crawler detection: which bot a User-Agent belongs to, and its category.

The catalogue is crawler-user-agents (MIT, see data/bots.LICENSE.txt), ~1,500 patterns.
Running them all costs ~0.3 ms a User-Agent; instead one trie-shaped regular expression
finds the patterns' literal anchors, and only those few patterns run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Literal

BotCategory = Literal["search", "ai", "social", "monitor", "other"]

# crawler-user-agents tags -> our categories, most specific first.
_TAG_CATEGORY: tuple[tuple[str, BotCategory], ...] = (
    ("ai-crawler", "ai"),
    ("search-engine", "search"),
    ("social-preview", "social"),
    ("monitoring", "monitor"),
)

# Names whose category we state ourselves: the AI assistants and crawlers that matter most
# to site owners, whatever the catalogue's tags say.
_KNOWN: Mapping[str, BotCategory] = MappingProxyType({
    "gptbot": "ai", "chatgpt-user": "ai", "oai-searchbot": "ai", "claudebot": "ai",
    "claude-web": "ai", "claude-user": "ai", "claude-searchbot": "ai", "anthropic-ai": "ai",
    "perplexitybot": "ai", "perplexity-user": "ai", "ccbot": "ai", "bytespider": "ai",
    "google-extended": "ai", "applebot-extended": "ai", "meta-externalagent": "ai",
    "meta-externalfetcher": "ai", "amazonbot": "ai", "cohere-ai": "ai", "diffbot": "ai",
    "youbot": "ai", "deepseekbot": "ai", "mistralai-user": "ai", "timpibot": "ai",
    "imagesiftbot": "ai", "omgilibot": "ai", "petalbot": "search", "googlebot": "search",
    "bingbot": "search", "slurp": "search", "duckduckbot": "search", "baiduspider": "search",
    "yandexbot": "search", "applebot": "search", "seznambot": "search", "yeti": "search",
    "sogou": "search", "qwantify": "search", "qwantbot": "search", "mojeekbot": "search",
    "facebookexternalhit": "social", "facebot": "social",
    "twitterbot": "social", "linkedinbot": "social", "slackbot": "social",
    "discordbot": "social", "telegrambot": "social",
    "pinterestbot": "social", "redditbot": "social", "skypeuripreview": "social",
    "embedly": "social", "iframely": "social", "vkshare": "social",
    "uptimerobot": "monitor", "pingdom": "monitor", "statuscake": "monitor",
    "site24x7": "monitor", "newrelicpinger": "monitor", "datadog": "monitor",
    "better uptime": "monitor", "betteruptime": "monitor", "freshping": "monitor",
    "checkly": "monitor", "hetrixtools": "monitor",
})

# Signs of automation that no catalogue entry names. Words found anywhere (the bool says
# whether the next character must not be a letter, so "bot/" counts and "bottle" does not)...
_GENERIC_WORDS: Mapping[str, bool] = MappingProxyType({
    "bot": True, "robot": False, "crawl": False, "spider": False, "slurp": False,
    "scrape": False, "scraper": False, "fetcher": False, "archiver": False, "indexer": False,
    "headless": False, "phantomjs": False, "selenium": False, "puppeteer": False,
    "playwright": False, "lighthouse": False, "pagespeed": False, "monitor": False,
    "uptime": False, "checker": False, "validator": False, "sitemap": False,
    "httpclient": False, "http-client": False, "http_client": False,
    "feedfetcher": False, "feedreader": False, "linkcheck": False, "link-check": False,
    "link check": False, "linkwalker": False, "xenu": False, "healthcheck": False,
    "health-check": False, "health check": False, "health_check": False,
    "kube-probe": False, "check_http": False, "nagios": False, "zabbix": False,
    "icinga": False, "prometheus": False, "blackbox": False, "scanner": False,
    "googlehc": False, "synthetic": False, "catchpoint": False, "thousandeyes": False,
    "gtmetrix": False, "dynatrace": False, "ruxit": False, "sitebulb": False,
    "screaming frog": False, "contentking": False, "webpagetest": False, "ptst/": False,
    # Security scanners and internet-wide surveys.
    "masscan": False, "zgrab": False, "nmap": False, "nikto": False, "sqlmap": False,
    "wpscan": False, "nuclei": False, "censys": False, "shodan": False, "leakix": False,
    "internet-measurement": False, "l9explore": False,
})
# Device names that contain a generic word.
_BOT_LOOKALIKES = ("cubot",)
# ... and tools that announce themselves at the very start.
_GENERIC_PREFIXES = (
    "curl", "wget", "python", "java/", "go-http-client", "okhttp", "axios", "node-fetch",
    "node", "undici", "libwww", "lwp", "php", "ruby", "perl", "apache-httpclient", "httpie",
    "postman", "insomnia", "dart", "rest-client", "guzzle", "scrapy", "aiohttp", "httpx",
    "urllib", "reqwest", "winhttp", "wordpress", "jakarta", "mechanize", "http_request",
    "fasthttp", "colly", "nutch", "deno/", "bun/", "hackney", "faraday", "typhoeus",
    "restsharp", "unirest", "feign", "vertx", "akka-http",
)
_MONITOR_WORDS = ("monitor", "uptime", "check", "probe", "pingdom", "status", "health",
                  "nagios", "zabbix", "icinga", "prometheus", "blackbox", "linkwalker", "xenu",
                  "googlehc", "synthetic", "catchpoint", "thousandeyes", "gtmetrix",
                  "dynatrace", "ruxit", "webpagetest", "ptst/")
# A browser names its engine or itself, an app its platform; an agent that names none of
# these and gives a web address or an e-mail to contact is a program, whatever it calls
# itself.
_BROWSER_TOKENS = ("applewebkit", "gecko", "trident", "presto", "khtml", "msie", "chrome/",
                   "safari/", "firefox/", "opera", "edg/", "browser", "netfront", "obigo",
                   "up.link", "midp", "dalvik", "cfnetwork", "android", "iphone", "ipad",
                   "symbian", "blackberry", "windows phone")
_CONTACT = re.compile(r"https?://|www\.|[a-z0-9._+-]+@[a-z0-9-]+\.[a-z]|\+[a-z0-9-]+\.[a-z]{2,}")
# Words that betray a program only where no browser is named ("fetch", "rss" and "probe"
# also name browser add-ons and apps that embed a browser).
_PROGRAM_HINTS = ("fetch", "rss", "feed", "probe", "harvest", "archiv", "scan", "index", "check",
                  "verif", "validat", "monitor", "synthetic", "test", "bench")
_PROGRAM_WORDS = re.compile(r"fetch|\brss|\bfeed|\bprobe|harvest|archiv|\bscan|\bindex|"
                            r"\bcheck|\bverif|\bvalidat|\bmonitor|\bsynthetic|\btest(?:er|ing)?\b|"
                            r"\bload ?test|\bbench")


@dataclass(frozen=True)
class BotMatch:
    category: BotCategory
    name: str


def _trie_regex(words: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of `words`, shaped as a trie so it runs in near-linear time."""
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict) -> str:  # type: ignore[type-arg]
        ends = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if ends else body

    return re.compile(f"(?=({build(trie)}))")


def _name(lower: str) -> str:
    """The agent's own name: the product after "compatible;", else the first product token."""
    text = lower
    if "compatible;" in text:
        text = text.partition("compatible;")[2].strip()
    elif text.startswith("mozilla/"):
        text = text.partition("(")[2].strip()
    return re.split(r"[/;()]", text, maxsplit=1)[0].strip()[:40] or "unnamed"


def _category(tags: list[str]) -> BotCategory:
    for tag, category in _TAG_CATEGORY:
        if tag in tags:
            return category
    return "other"


class BotCatalogue:
    """Matches User-Agents against the crawler catalogue and generic signs of automation."""

    def __init__(self) -> None:
        data = json.loads(resources.files(__package__).joinpath("data/bots.json").read_text())
        self._by_anchor: dict[str, list[tuple[str, BotCategory]]] = {}
        self._unanchored: list[tuple[re.Pattern[str], BotCategory]] = []
        for entry in data:
            category = _category(entry["tags"])
            if entry["anchor"]:
                self._by_anchor.setdefault(entry["anchor"], []).append(
                    (entry["pattern"], category))
            else:
                self._unanchored.append((re.compile(entry["pattern"]), category))
        self._anchors = _trie_regex([*self._by_anchor, *_KNOWN, *_GENERIC_WORDS])
        self._compiled: dict[str, re.Pattern[str]] = {}

    def _pattern(self, source: str) -> re.Pattern[str]:
        compiled = self._compiled.get(source)
        if compiled is None:
            compiled = self._compiled[source] = re.compile(source)
        return compiled

    def match(self, user_agent: str) -> BotMatch | None:
        lower = user_agent.lower()
        found: BotMatch | None = None
        generic: str | None = None
        for hit in self._anchors.finditer(lower):
            text = hit.group(1)
            # The trie gives the longest anchor at this position; shorter ones count too.
            for end in range(len(text), 2, -1):
                anchor = text[:end]
                known = _KNOWN.get(anchor)
                if known is not None:
                    return BotMatch(known, anchor)
                start = hit.start()
                # A short anchor must start a word: "red/" is a bot, "WIRED/" an app.
                if len(anchor) <= 4 and start and lower[start - 1].isalnum():
                    continue
                for source, category in self._by_anchor.get(anchor, ()):
                    if found is None and self._pattern(source).search(user_agent):
                        found = BotMatch(category, anchor)
                if generic is None and anchor in _GENERIC_WORDS:
                    after = start + end
                    if (not _GENERIC_WORDS[anchor] or not lower[after:after + 1].isalpha()) \
                            and not lower.startswith(_BOT_LOOKALIKES, max(start - 2, 0)):
                        generic = anchor
        if found is not None:
            return found
        for pattern, category in self._unanchored:
            if pattern.search(user_agent):
                return BotMatch(category, pattern.pattern)
        if generic is None and "+http" in lower:
            generic = _name(lower)       # a crawler's "+https://its.site/about"; browsers never
        if generic is None and (not lower or lower.startswith(_GENERIC_PREFIXES)):
            generic = lower.split("/", 1)[0][:40] or "empty"
        if generic is None and not any(token in lower for token in _BROWSER_TOKENS) and (
                _CONTACT.search(lower) or (any(word in lower for word in _PROGRAM_HINTS)
                                           and _PROGRAM_WORDS.search(lower))):
            generic = _name(lower)
        if generic is None:
            return None
        monitor = any(word in lower for word in _MONITOR_WORDS)
        return BotMatch("monitor" if monitor else "other", generic)
