"""Device-type labels for third-party User-Agent corpora that carry none.

uap-core names a device family, brand and model but no class (mobile, tablet...), so the
class is derived here from what uap-core's maintainers recorded, never from the raw
User-Agent our classifier reads. A case no rule below settles gets no label and is not
scored. The mapping, written down once and read by the tests and by bench/classify_accuracy.py:

- uap-core tests/test_device.yaml
  - family `Spider` -> bot
  - TV sets, media boxes, consoles (`HbbTV`, `NetCast*`, `Inettv`, `Chromecast`, ...) -> tv
  - brand Apple: model iPhone*/iPod* -> mobile, iPad* -> tablet, Mac* -> desktop
  - brand Generic: `Feature Phone`/`Smartphone` -> mobile, `Tablet` -> tablet
  - a model or family naming a tablet line (Tab, Pad but not PadFone, Tablet, MID, Kindle,
    Xoom, PlayBook, Nexus 7/9/10, Flyer, Galaxy Tab, Samsung SM-T/SM-P/SM-X/GT-P/GT-N5/GT-N8)
    -> tablet
  - brands that sold only tablets (Coby Kyros, Ainol, Yarvik, Ployer, Mpman, PoV, Nextbook,
    Odys, Trekstor) -> tablet
  - brands whose other devices are phones (Samsung, HTC, Nokia, Sony Ericsson, Siemens,
    BlackBerry, Motorola, Pantech, Kyocera, Sharp, DoCoMo, Huawei, ZTE, LG, Alcatel,
    Micromax, Xiaomi, Oppo, vivo, Gionee, Coolpad, Karbonn, Lava, Spice, Celkon, Intex,
    Fly, Blu, Qmobile, Sony) -> mobile
  - family `Other` with a desktop system in the string (Windows NT, Macintosh, X11, CrOS)
    and no phone or tablet word -> desktop
- uap-core tests/test_os.yaml: OS family Windows, Mac OS X, Linux, Ubuntu, Debian, Fedora,
  Chrome OS, FreeBSD, OpenBSD, NetBSD, Solaris on a browser's string (starting `Mozilla/` or
  `Opera/`) that names no handheld -> desktop
- uap-core test_resources/pgts_browser_list.yaml: desktop-only browser families (IE,
  Firefox, Netscape, Konqueror, Galeon, Epiphany, Camino, K-Meleon...) on a string that
  names a desktop system (Windows, Mac, Linux, X11, BSD, SunOS) and no handheld (Windows CE,
  PPC, Palm, Symbian, Mobile, Phone, PDA, a console or TV) -> desktop
- crawler-user-agents: every instance -> bot
"""

from __future__ import annotations

import re
from typing import Any

from ..corpora import crawler_instances, uap

_TV_FAMILIES = re.compile(r"^(HbbTV|NetCast|Inettv|Chromecast|PlayStation|Xbox|Roku|AppleTV|"
                          r"Smart ?TV|GoogleTV|Philips TV|Sony TV|Samsung SMART-TV)", re.I)
_TABLET_NAMES = re.compile(
    r"(\btab|tab\b|tablet|\bpad\b|pad(?!fone)|\bmid\d|\bmid\b|kindle|xoom|playbook|"
    r"nexus (7|9|10)\b|\bflyer\b|galaxy tab|^(sm-[tpx]|gt-p|gt-n[58]|sch-i800|sgh-t849))",
    re.I)
_TABLET_BRANDS = frozenset({"CobyKyros", "Ainol", "Yarvik", "Ployer", "Mpman", "POV", "Nextbook",
                            "Odys", "Trekstor"})
_PHONE_BRANDS = frozenset({
    "Samsung", "samsung", "HTC", "Nokia", "SonyEricsson", "Siemens", "BlackBerry", "Motorola",
    "Pantech", "Kyocera", "Sharp", "DoCoMo", "Huawei", "ZTE", "LG", "Alcatel", "Micromax",
    "XiaoMi", "Oppo", "vivo", "Gionee", "Coolpad", "Karbonn", "Lava", "Spice", "Celkon",
    "Intex", "Fly", "Blu", "Qmobile", "Sony"})
_DESKTOP_WORDS = re.compile(r"windows nt|macintosh|\bx11\b|\bcros\b", re.I)
_HANDHELD_WORDS = re.compile(
    r"windows ce|\bppc\b|palm|symbian|mobile|phone|\bpda\b|android|iphone|ipad|ipod|tablet|"
    r"nintendo|playstation|xbox|\btv\b|smart-tv|kindle|blackberry|j2me|midp|avantgo|"
    r"series ?60|wap|touch", re.I)
_DESKTOP_SYSTEMS = re.compile(r"windows|mac ?os|macintosh|mac_p|linux|x11|bsd|sunos", re.I)
_DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Debian", "Fedora",
                         "Chrome OS", "FreeBSD", "OpenBSD", "NetBSD", "Solaris"})
_DESKTOP_BROWSERS = frozenset({
    "IE", "Firefox", "Netscape", "MyIE2", "Konqueror", "Galeon", "Maxthon", "Epiphany",
    "Crazy Browser", "Camino", "Avant", "K-Meleon", "Bon Echo", "iCab", "Shiira", "OmniWeb",
    "Lunascape", "Phoenix", "Chimera", "Safari", "SeaMonkey", "Iceweasel", "Chrome"})


def device_label(case: dict[str, Any]) -> str | None:
    """The class of a test_device.yaml case, or None when the mapping does not settle it."""
    family, brand = case["family"], case.get("brand") or ""
    model = case.get("model") or ""
    if family == "Spider":
        return "bot"
    if _TV_FAMILIES.match(family):
        return "tv"
    if brand == "Apple":
        for prefix, kind in (("iPhone", "mobile"), ("iPod", "mobile"), ("iPad", "tablet"),
                             ("Mac", "desktop")):
            if model.startswith(prefix):
                return kind
        return None
    if brand == "Generic":
        return {"Feature Phone": "mobile", "Smartphone": "mobile", "Tablet": "tablet"}.get(model)
    if _TABLET_NAMES.search(model) or _TABLET_NAMES.search(family):
        return "tablet"
    if brand in _TABLET_BRANDS:
        return "tablet"
    if brand in _PHONE_BRANDS:
        return "mobile"
    ua = case["user_agent_string"]
    if family == "Other" and _DESKTOP_WORDS.search(ua) and not _HANDHELD_WORDS.search(ua):
        return "desktop"
    return None


def labelled_cases() -> list[tuple[str, str]]:
    """(User-Agent, class) for every case of the corpora the mapping settles, distinct."""
    out: dict[str, str] = {}
    for case in uap("tests/test_device.yaml"):
        label = device_label(case)
        if label is not None:
            out.setdefault(case["user_agent_string"], label)
    for name in ("tests/test_os.yaml", "test_resources/additional_os_tests.yaml"):
        for case in uap(name):
            ua = case["user_agent_string"]
            if case["family"] in _DESKTOP_OS and ua.startswith(("Mozilla/", "Opera/")) \
                    and not _HANDHELD_WORDS.search(ua):
                out.setdefault(ua, "desktop")
    for case in uap("test_resources/pgts_browser_list.yaml"):
        ua = case["user_agent_string"]
        if case["family"] in _DESKTOP_BROWSERS and _DESKTOP_SYSTEMS.search(ua) \
                and not _HANDHELD_WORDS.search(ua):
            out.setdefault(ua, "desktop")
    for ua in crawler_instances():
        out[ua] = "bot"
    return list(out.items())
