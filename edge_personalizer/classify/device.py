"""Device from the User-Agent and Client Hints: type, OS, browser, touch, bot.

The one module that imports ua-parser and lru-dict. Types follow the user-agents library's
meaning (mobile, tablet, desktop, touch, bot) with sharper rules for what it misses: modern
Android tablets, Smart TVs and consoles, headless browsers and HTTP libraries.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final, Generic, TypeVar

import re2
from lru import LRU
from ua_parser import load_builtins
from ua_parser.core import Domain, Matcher, Matchers, PartialResult
from ua_parser.utils import fa_simplifier

from .bots import BotCatalogue, BotCategory
from .visitor import Device, DeviceType

T = TypeVar("T")

_UA_KEY_LIMIT: Final = 512   # longer User-Agents are cut before parsing and caching

# Every check runs on the lower-cased User-Agent: plain substring tests where a word is
# distinctive enough, small regexes (no IGNORECASE, which costs several times more) where
# a word boundary matters.
_TV_WORDS: Final = ("smart-tv", "smarttv", "googletv", "google tv", "android tv", "crkey", "hbbtv",
                    "netcast", "web0s", "bravia", "roku", "appletv", "apple tv", "tvos",
                    "philipstv", "nettv", "playstation 3", "playstation 4", "playstation 5", "xbox",
                    "nintendo switch", "nintendo wiiu", "vidaa", "foxxum", "opera tv", "sonydtv",
                    "viera", " dtv")
_TV: Final = re.compile(r"webos.*tv|tizen.*tv|\baft[a-z]{1,4}\b|\bhisense\b.*\btv\b")
_TABLET_WORDS: Final = ("tablet", "kindle", "playbook", "xoom", "galaxy tab", "mediapad", "matepad",
                        "mi pad", "redmi pad", "lenovo tb", "fire hd", "pixel c", "pixel tablet",
                        "nook", "hudl")
_TABLET: Final = re.compile(
    r"\b(?:silk\b|sm-[tpx]\d|gt-p\d|gt-n[58]\d|nexus (?:7|9|10)\b|tb-[0-9a-z]|pad\b|"
    r"kf[a-z]{2,4}\b|sgpt?\d|sht-|bah\d?-|ags\d?-|kob\d?-|dbr-|scm-|at10|bntv\d|archos\b.*\d)")
# Names that mean a tablet even when the browser also says "Mobile".
_STRONG_TABLET_WORDS: Final = ("tablet", "galaxy tab", "kindle", "playbook", "xoom", "mediapad",
                               "matepad")
_STRONG_TABLET: Final = re.compile(r"\b(?:sm-[tpx]\d|gt-p\d|silk\b|kf[a-z]{2,4}\b)")
_MOBILE_WORDS: Final = ("mobi", "iphone", "ipod", "windows phone", "wpdesktop", "iemobile",
                        "blackberry", "bb10", "opera mini", "j2me", "midp", "cldc", "symbian",
                        "series60", "series 60", "series40", "series 40", "kaios", "nokia",
                        "samsung-", "sonyericsson", "up.browser", "docomo", "kddi", "vodafone",
                        "bada", "maemo", "meego", "fennec", "minimo", "netfront", "teleca", "obigo",
                        "ucweb", "ucbrowser", "handheld", "featurephone", "windows ce", "wince",
                        "ppc;", "; ppc", "pda;")
_MOBILE: Final = re.compile(r"\bpalm|webos(?!.*tv)|android.*mobile|\bphone\b|\bwap\b")
# Phone models that often come without "Mobile" (apps, ad SDKs, old stock browsers).
_PHONE_MODEL: Final = re.compile(
    r"\b(?:sm-[gansjfmew]\d|gt-[is]\d|gt-n7\d|gt-[bce]\d|sch-|sgh-|sph-|shv-|pixel [2-9]|"
    r"pixel \d{2}|nexus [456s]\b|redmi(?! ?pad)|poco|moto [a-z]\d?|cph\d|rmx\d|"
    r"infinix|tecno|itel\b|oneplus|lm-[a-z]\d|xq-[a-z]{2}\d|asus_[a-z]\d|v2\d{3}\b|m2\d{3}j|"
    r"[a-z]{3}-(?:l|lx|al|tl|an|nx)\d{1,2}\b)")
_DESKTOP_WORDS: Final = ("windows nt", "windows 98", "windows 95", "windows me", "windows xp",
                         "windows 2000", "win98", "win95", "win32", "win64", "winnt", "macintosh",
                         "mac os x", "mac_powerpc", "x11", "linux x86_64", "linux i686",
                         "linux i386", "cros", "freebsd", "openbsd", "netbsd", "sunos", "solaris",
                         "ubuntu", "fedora", "debian", "haiku", "beos", "os/2", "amigaos")
# Chromebooks, and Android builds for PCs (Windows' Subsystem for Android, Android-x86 and
# its descendants).
_CHROME_OS: Final = re.compile(
    r"\bcros\b|chromebook|chromebox|subsystem for android|android[-_]x86|"
    r"remix ?os|phoenix ?os|prime ?os|bliss ?os")
_DESKTOP_ANDROID_HINTS: Final = ("cros", "chromebo", "subsystem", "x86", "remix", "phoenix",
                                 "prime", "bliss")
# A Mac app's CFNetwork agent: "... CFNetwork/1220.1 Darwin/20.3.0 (x86_64)" or "(MacBookPro16,1)".
_MAC_APP: Final = re.compile(
    r"\b(?:x86_64|i386|arm64|macintosh|macbook\w*|imac\w*|macmini\w*|macpro\w*|"
    r"macos|mac os x)\b")
_WINDOWS_TOUCH: Final = re.compile(r"windows nt (?:6\.[23]|10)[^)]*\btouch\b(?![^)]*tablet pc)")
# Model names of tablet lines, read from the device name only (the parser's model and the
# Android model before "Build/"): a browser saying "Mobile" on one of these is a tablet.
_TABLET_MODEL: Final = re.compile(
    r"tab(?!le\b)|(?<!cool)pad(?!fone)|\bmid[ _-]?\d|\bmid\b|\bnovo ?\d|\bkf[a-z]{2,4}\b|"
    r"\bsm-[tpx]\d|\bgt-p\d|\bgt-n[58]\d|lenovo tb|\btb[0-9]?-[0-9a-z]|mediapad|matepad|xoom|"
    r"playbook|nexus (?:7|9|10)\b|pixel (?:c|tablet)\b|transformer|kindle|\bsgpt?\d|\bsht-|"
    r"\bbah\d?-|\bags\d?-|\bkob\d?-|\bdbr-|\bscm-|\bbntv\d|flyer|nextbook|odys|xelio|\bmomo\d|mobii|"
    r"\bpmp\d{4}|\bpmt\d{4}|\byt\d?-[a-z]\d|\brmp\d|\bopd\d|iconia|\bvenue \d|teclast|chuwi|"
    # Archos names its devices by screen size: 70 and above are tablets; ASUS's K0xx codes
    # are its MeMO Pad tablets.
    r"archos ?(?:[7-9]\d|1[0-3]\d)(?!\d)|\bk0[0-2][0-9a-z]\b")
# A literal that every alternative of _TABLET_MODEL contains.
_TABLET_MODEL_HINTS: Final = ("tab", "pad", "mid", "novo", "kf", "sm-", "gt-", "tb", "mediapad",
                              "xoom", "playbook", "nexus", "pixel", "transformer", "kindle", "sgp",
                              "sht-", "bah", "ags", "kob", "dbr-", "scm-", "bntv", "flyer",
                              "nextbook", "odys", "xelio", "momo", "mobii", "pmp", "pmt", "yt",
                              "rmp", "opd", "iconia", "venue", "teclast", "chuwi", "archos", "k0")
_ANDROID_MODEL: Final = re.compile(
    r"android[^;)]*;(?: ?[a-z]{2}[-_][a-z]{2,3};)? ?([^;)]{2,40}?)(?: build/|\)|;)")
# Parser device families that name no device.
_NO_DEVICE: Final = frozenset({"Other", "Spider", "Generic", "Generic Desktop"})
_FORM_FACTORS: Final[Mapping[str, DeviceType]] = MappingProxyType({
    "tablet": "tablet", "mobile": "mobile", "desktop": "desktop", "eink": "tablet",
    "watch": "mobile",
})
_DESKTOP_BROWSERS: Final = frozenset({
    "Konqueror", "Epiphany", "Galeon", "Camino", "SeaMonkey", "Pale Moon", "K-Meleon", "iCab",
    "OmniWeb", "Midori", "Falkon", "QupZilla", "Otter", "Iceweasel", "Iceape", "Netscape",
    "Lunascape", "Avant", "Shiira", "Flock", "Chimera", "Phoenix", "Firebird", "Arora",
    "Vivaldi", "Waterfox", "Basilisk", "Brave", "Opera GX"})
_DESKTOP_OS: Final = frozenset({"Windows", "Mac OS X", "Linux", "Chrome OS", "Ubuntu", "Fedora",
                                "FreeBSD"})


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


_TOUCH_OS: Final = frozenset({"iOS", "iPadOS", "Android", "Windows Phone", "Windows CE",
                              "Windows Mobile", "Firefox OS", "MeeGo", "KaiOS", "Tizen",
                              "BlackBerry OS", "BlackBerry Tablet OS"})


@dataclass(frozen=True)
class ClientHints:
    """The Client Hints a browser sent (Sec-CH-UA-Mobile, -Platform, -Model, -Form-Factors)."""

    mobile: bool | None = None
    platform: str | None = None
    model: str | None = None
    form_factors: tuple[str, ...] = ()      # lower-case: ("tablet",), ("desktop", "xr")

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ClientHints:
        mobile = headers.get("sec-ch-ua-mobile")
        factors = headers.get("sec-ch-ua-form-factors")
        if mobile is None and factors is None and "sec-ch-ua-platform" not in headers \
                and "sec-ch-ua-model" not in headers:
            return _NO_HINTS   # most requests: nothing to read
        return cls(
            mobile={"?1": True, "?0": False}.get(mobile.strip()) if mobile else None,
            platform=_unquote(headers.get("sec-ch-ua-platform")),
            model=_unquote(headers.get("sec-ch-ua-model")),
            form_factors=tuple(f for f in (_unquote(part.lower()) for part in
                                           factors.split(",")[:8]) if f) if factors else (),
        )

    def __bool__(self) -> bool:
        return self.mobile is not None or bool(self.platform) or bool(self.model) \
            or bool(self.form_factors)


_NO_HINTS: Final = ClientHints()


def _unquote(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip().strip('"') or None


def _kind_from_ua(ua: str, os_family: str, device_family: str, model: str | None,
                  bot: bool) -> DeviceType:
    if bot:
        return "bot"
    lower = ua.lower()
    if _has(lower, _TV_WORDS) or _TV.search(lower):
        return "tv"
    if _has(lower, _DESKTOP_ANDROID_HINTS) and _CHROME_OS.search(lower):
        return "desktop"     # Chromebooks, also when they run Android apps, and PC Androids
    if device_family in ("iPad", "Kindle", "Kindle Fire") or "ipad" in lower:
        return "tablet"
    if "darwin/" in lower and "iphone" not in lower:
        # Apple's HTTP stack (CFNetwork) in an app: macOS names its architecture or Mac
        # model, iOS names neither.
        return "desktop" if _MAC_APP.search(lower) else "mobile"
    names = f"{device_family} {model or ''} {_android_model(lower)}".lower()
    if _has(lower, _STRONG_TABLET_WORDS) or _STRONG_TABLET.search(lower) \
            or _tablet_model(names) or "android 3." in lower:   # Honeycomb: tablets only
        return "tablet"
    if (_has(lower, _TABLET_WORDS) or _TABLET.search(lower)) and "mobile" not in lower:
        return "tablet"
    if _WINDOWS_TOUCH.search(lower):
        return "tablet"      # Windows 8 and later with a touch screen and no keyboard named
    if _has(lower, _MOBILE_WORDS) or _MOBILE.search(lower) or device_family in (
            "iPhone", "iPod", "Generic Smartphone", "Generic Feature Phone"):
        return "mobile"
    desktop = _has(lower, _DESKTOP_WORDS)
    if not desktop and _PHONE_MODEL.search(lower):
        return "mobile"
    if "android" in lower or os_family == "Android":
        # Android without "Mobile" is a tablet: Google's guidance to browser makers. It
        # holds for browsers only; apps and HTTP stacks (Dalvik) never say "Mobile", and
        # most of them run on phones.
        return "tablet" if "safari" in lower else "mobile"
    if desktop or os_family in _DESKTOP_OS:
        return "desktop"
    if device_family not in _NO_DEVICE:
        return "mobile"      # a handset the parser knows by maker and model (feature phones)
    return "other"


def _tablet_model(names: str) -> bool:
    # Plain substring tests first: the expression tries every alternative at every position.
    return _has(names, _TABLET_MODEL_HINTS) and _TABLET_MODEL.search(names) is not None


def _android_model(lower: str) -> str:
    found = _ANDROID_MODEL.search(lower)
    return found.group(1) if found else ""


def _refine_with_hints(kind: DeviceType, hints: ClientHints) -> DeviceType:
    if kind in ("bot", "tv"):
        return kind
    for factor in hints.form_factors:
        found = _FORM_FACTORS.get(factor)
        if found is not None:
            return found
    if hints.model and _tablet_model(hints.model.lower()):
        return "tablet"
    platform = (hints.platform or "").lower()
    if platform in ("chrome os", "chromeos"):
        return "desktop"
    if hints.mobile is None:
        return kind
    if hints.mobile:
        return "mobile"
    if platform == "android":
        return "tablet"      # Chromium on Android says ?0 only on large screens
    if platform in ("windows", "macos", "linux"):
        return "desktop"
    return kind


_NOT_ASCII: Final = re.compile(r"[^\x00-\x7f]")
# RE2's memory for one of uap-core's patterns (its program and its DFA's cache of states).
# At RE2's default, 8 MiB, the ~1,500 patterns' caches grow with every new agent (19 MiB
# over 5,000 agents, 26 over 20,000); 128 KiB holds the largest pattern's program and
# keeps the growth to 12 and 18 MiB, for ~35 us more a never-seen agent (a cache that
# fills is emptied and built again; the answers do not change).
_PATTERN_MEMORY: Final = 128 << 10
_STAND_INS: Final = ("a", "1", " ", "~")   # a letter, a digit, a space, a sign


class _Table(Generic[T]):
    """One of uap-core's tables (browsers, systems or devices): the first entry that matches.

    An RE2 filter picks the entries that can match and uap-core's own (Python) regexes
    decide, in table order, so the answer is the one ua-parser's reference resolver gives.
    The filter's patterns are the entries' with long bounded repetitions unbounded (they can
    only match more) and \\d, \\w as ASCII classes, the same on ASCII text. uap-core's
    patterns are all ASCII, so another character can only be taken by a class: an agent with
    such characters (rare: HTTP headers are Latin-1) is filtered as it reads with each of
    them as a letter, a digit, a space and a sign in turn, and the entries any reading picks
    are tried (trying the whole table costs ~16 ms a long agent: a cheap way to stall a
    worker).
    """

    def __init__(self, matchers: Sequence[Matcher[T]]) -> None:
        self._matchers = matchers
        self._filter = re2.Filter()
        bounded = re2.Options()
        bounded.max_mem = _PATTERN_MEMORY
        bounded.log_errors = False     # a full cache is expected, not an error to log
        for matcher in matchers:
            case = "(?i)" if matcher.flags & re.IGNORECASE else ""
            pattern = case + fa_simplifier(matcher.regex)
            try:
                self._filter.Add(pattern, bounded)
            except re2.error:
                # A pattern whose program alone outgrows the budget (none of today's
                # uap-core does) gets RE2's default rather than stopping the worker.
                self._filter.Add(pattern)
        self._filter.Compile()

    def __call__(self, ua: str) -> T | None:
        if ua.isascii():
            hits = self._filter.Match(ua)
        else:
            hits = {index for stand_in in _STAND_INS
                    for index in self._filter.Match(_NOT_ASCII.sub(stand_in, ua)) or ()}
        candidates: Iterable[int] = sorted(hits) if hits else ()
        for index in candidates:
            found = self._matchers[index](ua)
            if found is not None:
                return found
        return None


class Resolver:
    """uap-core's browser, OS and device tables, matched with little memory.

    Measured on uap-core's 30,000 test agents: ua-parser's Rust extractors take 26 MB once
    built, 38 MB after 4,000 distinct agents and 65 MB after all of them (their automata
    grow with every new agent), and ~40 µs of CPU a never-seen agent; the RE2 filters here
    take 7 MB built, +12 MB after 5,000 agents and +18 MB after 20,000 (each pattern's
    memory bounded), for ~110 µs. Agents seen before come from DeviceClassifier's cache
    either way. The answers are the reference resolver's (the Rust extractors differ
    on 10 of the 30,000: they ignore the bounds of repetitions).
    """

    def __init__(self, matchers: Matchers) -> None:
        browsers, systems, devices = matchers
        self.browser = _Table(browsers)
        self.os = _Table(systems)
        self.device = _Table(devices)

    def __call__(self, ua: str) -> PartialResult:
        return PartialResult(domains=Domain.ALL, string=ua, user_agent=self.browser(ua),
                             os=self.os(ua), device=self.device(ua))


class DeviceClassifier:
    """User-Agent (and Client Hints) -> Device, with a bounded cache of parsed agents.

    The parser's tables and the bot catalogue (~14 MB, ~0.4 s) are built by `warm()` or
    on first use: a process that only checks settings, such as the supervisor of several
    workers, never pays for them.
    """

    def __init__(self, *, max_entries: int = 4096, bots: BotCatalogue | None = None) -> None:
        self._resolver: Resolver | None = None
        self._bots = bots
        self._seen: LRU[str, Device] = LRU(max_entries)

    @property
    def loaded(self) -> bool:
        """Whether the parser and the bot catalogue are built."""
        return self._resolver is not None and self._bots is not None

    def warm(self) -> tuple[Resolver, BotCatalogue]:
        """Build the parser and the bot catalogue now (once)."""
        if self._resolver is None:
            self._resolver = Resolver(load_builtins())
        if self._bots is None:
            self._bots = BotCatalogue()
        return self._resolver, self._bots

    def classify(self, user_agent: str, hints: ClientHints | None = None) -> Device:
        key = user_agent[:_UA_KEY_LIMIT]
        device: Device | None = self._seen.get(key)
        if device is None:
            device = self._parse(key)
            self._seen[key] = device
        if hints:
            device = self._with_hints(device, hints)
        return device

    def _parse(self, ua: str) -> Device:
        resolver, bots = self.warm()
        result = resolver(ua)
        os_family = result.os.family if result.os else "Other"
        browser = result.user_agent.family if result.user_agent else "Other"
        device_family = result.device.family if result.device else "Other"
        bot_match = bots.match(ua)
        bot_category: BotCategory | None = bot_match.category if bot_match else None
        if bot_match is None and device_family == "Spider":
            bot_category = "other"
        model = result.device.model if result.device else None
        kind = _kind_from_ua(ua, os_family, device_family, model, bot_category is not None)
        if kind == "other" and browser in _DESKTOP_BROWSERS:
            kind = "desktop"     # a browser made for desktops only, on a system it does not name
        if os_family == "iOS" and kind == "tablet":
            os_family = "iPadOS"
        elif os_family == "iOS" and kind == "desktop":
            os_family = "Mac OS X"       # a Mac app's CFNetwork agent
        return Device(
            type=kind,
            os=os_family,
            os_version=_version(result.os.major, result.os.minor) if result.os else None,
            browser=browser,
            browser_version=_version(result.user_agent.major, result.user_agent.minor)
            if result.user_agent else None,
            brand=result.device.brand if result.device else None,
            model=result.device.model if result.device else None,
            touch=kind in ("mobile", "tablet") or os_family in _TOUCH_OS,
            bot_category=bot_category,
            bot_name=bot_match.name if bot_match else None,
        )

    @staticmethod
    def _with_hints(device: Device, hints: ClientHints) -> Device:
        kind = _refine_with_hints(device.type, hints)
        model = hints.model or device.model
        if kind == device.type and model == device.model:
            return device
        return replace(device, type=kind, model=model,
                       touch=device.touch or kind in ("mobile", "tablet"))


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major
