"""Device from the User-Agent and Client Hints: type, OS, browser, touch, bot.

The one module that imports ua-parser and lru-dict. Types follow the user-agents library's
meaning (mobile, tablet, desktop, touch, bot) with sharper rules for what it misses: modern
Android tablets, Smart TVs and consoles, headless browsers and HTTP libraries.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from lru import LRU
from ua_parser import load_builtins
from ua_parser.core import Domain
from ua_parser.regex import Resolver

from .bots import BotCatalogue, BotCategory
from .visitor import Device, DeviceType

_UA_KEY_LIMIT = 512   # longer User-Agents are cut before parsing and caching

_TV = re.compile(
    r"smart-?tv|smarttv|googletv|google tv|android tv|\bcrkey\b|hbbtv|netcast|\bweb0s\b|"
    r"webos.*tv|tizen.*tv|\bbravia\b|\broku\b|appletv|apple tv|\btvos\b|\baft[a-z]{1,3}\b|"
    r"\bdtv\b|philipstv|\bviera\b|nettv|smarttv|playstation [345]|xbox|nintendo (?:switch|wiiu)|"
    r"\bvidaa\b|\bfoxxum\b|\bopera tv\b|\bhisense\b.*\btv\b|\bsonydtv\b",
    re.IGNORECASE)
_TABLET = re.compile(
    r"\bipad\b|tablet|\bkindle\b|\bsilk\b(?!.*mobile)|playbook|\bxoom\b|\bsm-[tpx]\d|"
    r"\bgt-p\d|\bgt-n[58]\d|galaxy tab|\bnexus (?:7|9|10)\b|\blenovo tb|\btb-[0-9a-z]|"
    r"mediapad|\bmatepad\b|\bmi pad\b|\bredmi pad\b|\bpad\b|\bkfa[a-z]{2,4}\b|\bkf[a-z]{2,4}\b|"
    r"\bsgp\d|\bsgpt\d|\bsht-|\bbah\d?-|\bags\d?-|\bkob\d?-|\bdbr-|\bscm-|\bat10|\bfire hd\b|"
    r"\bya?nexus ?(?:7|9|10)\b|\bpixel (?:c|tablet)\b|\bnook\b|\bbntv\d|\bhudl\b|\barchos\b.*\d",
    re.IGNORECASE)
# Names that mean a tablet even when the browser also says "Mobile".
_STRONG_TABLET = re.compile(
    r"tablet|\bsm-[tpx]\d|\bgt-p\d|galaxy tab|kindle|\bsilk\b|\bkf[a-z]{2,4}\b|"
    r"playbook|\bxoom\b|mediapad|matepad", re.IGNORECASE)
_MOBILE_TOKEN = re.compile(r"\bmobile\b", re.IGNORECASE)
_MOBILE = re.compile(
    r"\bmobi|iphone|ipod|windows phone|\bwpdesktop\b|iemobile|blackberry|\bbb10\b|opera mini|"
    r"opera mobi|\bj2me\b|\bmidp\b|\bcldc\b|symbian|series ?[46]0|\bkaios\b|\bpalm|webos(?!.*tv)|"
    r"\bnokia|\bsamsung-|\bsonyericsson|\bup\.browser|\bdocomo\b|\bkddi\b|\bvodafone\b|"
    r"\bbada\b|\bmaemo\b|\bmeego\b|\bfennec\b|\bminimo\b|\bnetfront\b|\bteleca\b|\bobigo\b|"
    r"\bucweb\b|\bucbrowser\b|android.*mobile|\bphone\b|\bhandheld\b|\bwap\b|\bfeaturephone\b",
    re.IGNORECASE)
_DESKTOP = re.compile(
    r"windows nt|windows (?:98|95|me|xp|2000|3\.1)|win(?:98|95|32|64|nt)|macintosh|mac os x|"
    r"\bmac_powerpc\b|\bx11\b|\blinux (?:x86_64|i[3-6]86|amd64)|\bcros\b|freebsd|openbsd|"
    r"netbsd|sunos|\bsolaris\b|\bubuntu\b|\bfedora\b|\bdebian\b|haiku|beos|\bos/2\b|amigaos",
    re.IGNORECASE)
# Phone models that often come without "Mobile" (apps, ad SDKs, old stock browsers).
_PHONE_MODEL = re.compile(
    r"\b(?:sm-[gansjfmew]\d|gt-[is]\d|gt-n7\d|gt-[bce]\d|sch-|sgh-|sph-|shv-|pixel [2-9]|"
    r"pixel \d{2}|nexus [456s]\b|redmi(?! ?pad)|\bpoco|moto [a-z]\d?|cph\d|rmx\d|"
    r"infinix|tecno|iphone)", re.IGNORECASE)
_ANDROID = re.compile(r"\bandroid\b", re.IGNORECASE)
_TOUCH_OS = frozenset({"iOS", "iPadOS", "Android", "Windows Phone", "Windows CE",
                       "Windows Mobile", "Firefox OS", "MeeGo", "KaiOS", "Tizen", "BlackBerry OS",
                       "BlackBerry Tablet OS"})


@dataclass(frozen=True)
class ClientHints:
    """The Client Hints a browser sent (Sec-CH-UA-Mobile, -Platform, -Model)."""

    mobile: bool | None = None
    platform: str | None = None
    model: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ClientHints:
        mobile = headers.get("sec-ch-ua-mobile")
        return cls(
            mobile={"?1": True, "?0": False}.get(mobile.strip()) if mobile else None,
            platform=_unquote(headers.get("sec-ch-ua-platform")),
            model=_unquote(headers.get("sec-ch-ua-model")),
        )

    def __bool__(self) -> bool:
        return self.mobile is not None or bool(self.platform) or bool(self.model)


def _unquote(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip().strip('"') or None


def _kind_from_ua(ua: str, os_family: str, device_family: str, bot: bool) -> DeviceType:
    if bot:
        return "bot"
    if _TV.search(ua):
        return "tv"
    lower = ua.lower()
    if device_family in ("iPad", "Kindle", "Kindle Fire") or "ipad" in lower:
        return "tablet"
    tablet = _TABLET.search(ua)
    if tablet and (_STRONG_TABLET.search(ua) or not _MOBILE_TOKEN.search(ua)):
        return "tablet"
    if _MOBILE.search(ua) or device_family in ("iPhone", "iPod", "Generic Smartphone",
                                               "Generic Feature Phone"):
        return "mobile"
    if _PHONE_MODEL.search(ua):
        return "mobile"
    if _ANDROID.search(ua) or os_family == "Android":
        # Android without "Mobile" is a tablet: Google's guidance to browser makers.
        return "tablet"
    if _DESKTOP.search(ua) or os_family in ("Windows", "Mac OS X", "Linux", "Chrome OS",
                                             "Ubuntu", "Fedora", "FreeBSD"):
        return "desktop"
    return "other"


def _refine_with_hints(kind: DeviceType, hints: ClientHints) -> DeviceType:
    if kind in ("bot", "tv") or hints.mobile is None:
        return kind
    platform = (hints.platform or "").lower()
    if hints.mobile:
        return "mobile"
    if platform == "android":
        return "tablet"      # Chromium on Android says ?0 only on large screens
    if platform in ("windows", "macos", "linux", "chrome os", "chromeos"):
        return "desktop"
    return kind


class DeviceClassifier:
    """User-Agent (and Client Hints) -> Device, with a bounded cache of parsed agents."""

    def __init__(self, *, max_entries: int = 4096, bots: BotCatalogue | None = None) -> None:
        self._resolver = Resolver(load_builtins())
        self._bots = bots or BotCatalogue()
        self._seen: LRU[str, Device] = LRU(max_entries)

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
        result = self._resolver(ua, Domain.ALL)
        os_family = result.os.family if result.os else "Other"
        browser = result.user_agent.family if result.user_agent else "Other"
        device_family = result.device.family if result.device else "Other"
        bot_match = self._bots.match(ua)
        bot_category: BotCategory | None = bot_match.category if bot_match else None
        if bot_match is None and device_family == "Spider":
            bot_category = "other"
        kind = _kind_from_ua(ua, os_family, device_family, bot_category is not None)
        if os_family == "iOS" and kind == "tablet":
            os_family = "iPadOS"
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
        return Device(type=kind, os=device.os, os_version=device.os_version,
                      browser=device.browser, browser_version=device.browser_version,
                      brand=device.brand, model=model,
                      touch=device.touch or kind in ("mobile", "tablet"),
                      bot_category=device.bot_category, bot_name=device.bot_name)


def _version(major: str | None, minor: str | None) -> str | None:
    if not major:
        return None
    return f"{major}.{minor}" if minor else major
