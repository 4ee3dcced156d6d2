"""Device types, measured against the third-party User-Agent corpora."""

from __future__ import annotations

import re

import pytest

from edge_personalizer.classify.device import ClientHints, DeviceClassifier

from ..corpora import crawler_instances, uap

# Families in uap-core's test_ua.yaml that are browsers people use (not tools or crawlers).
BROWSER_FAMILIES = re.compile(
    r"^(Chrome|Chromium|Firefox|Safari|Mobile Safari|Edge|IE|IE Mobile|Opera|Opera Mini|"
    r"Opera Mobile|Samsung Internet|UC Browser|Chrome Mobile|Chrome Mobile iOS|"
    r"Chrome Mobile WebView|Firefox Mobile|Firefox iOS|Android|Yandex Browser|Vivaldi|Brave|"
    r"Silk|QQ Browser|Baidu Browser|Edge Mobile|Maxthon|SeaMonkey|Konqueror|Epiphany|"
    r"Iceweasel|Puffin|Pale Moon|MIUI Browser|Huawei Browser|HeyTap Browser|"
    r"DuckDuckGo Mobile|Facebook|Instagram|Amazon Silk|Waterfox|Whale|Coc Coc|NetFront|"
    r"Obigo|Nokia Browser|Tizen Browser|Sleipnir|Iron|Comodo Dragon|Crosswalk)$")

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
ANDROID_TABLET = ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.0.0 Safari/537.36")
CHROME_ANDROID_REDUCED = ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like "
                          "Gecko) Chrome/131.0.0.0 Safari/537.36")


@pytest.fixture(scope="module")
def devices() -> DeviceClassifier:
    return DeviceClassifier(max_entries=64)


@pytest.mark.parametrize(("ua", "kind", "os"), [
    (IPHONE, "mobile", "iOS"),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/16.6 Mobile/15E148 Safari/604.1", "tablet", "iPadOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Mobile Safari/537.36", "mobile", "Android"),
    (ANDROID_TABLET, "tablet", "Android"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "desktop", "Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.1 Safari/605.1.15", "desktop", "Mac OS X"),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "desktop",
     "Linux"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36", "desktop", "Chrome OS"),
    ("Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36", "tv", "Tizen"),
    ("Mozilla/5.0 (Linux; Android 9; AFTSSS) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Silk/98.4.1 like Chrome/98.0.4758.136 Safari/537.36", "tv", "Android"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot",
     "Other"),
])
def test_device_types(devices: DeviceClassifier, ua: str, kind: str, os: str) -> None:
    device = devices.classify(ua)
    assert (device.type, device.os) == (kind, os)
    if kind in ("mobile", "tablet"):
        assert device.touch


def test_client_hints_refine_reduced_user_agents(devices: DeviceClassifier) -> None:
    # Chrome's reduced UA says "Android 10; K" on every device; the hints tell the truth.
    phone = devices.classify(CHROME_ANDROID_REDUCED, ClientHints.from_headers(
        {"sec-ch-ua-mobile": "?1", "sec-ch-ua-platform": '"Android"',
         "sec-ch-ua-model": '"Pixel 7"'}))
    assert (phone.type, phone.model) == ("mobile", "Pixel 7")
    tablet = devices.classify(CHROME_ANDROID_REDUCED, ClientHints.from_headers(
        {"sec-ch-ua-mobile": "?0", "sec-ch-ua-platform": '"Android"'}))
    assert tablet.type == "tablet"
    desktop = devices.classify("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", ClientHints(
        mobile=False, platform="Windows"))
    assert desktop.type == "desktop"
    assert not ClientHints.from_headers({})


def test_bot_is_never_turned_into_a_browser_by_hints(devices: DeviceClassifier) -> None:
    bot = devices.classify("GPTBot/1.2", ClientHints(mobile=True))
    assert (bot.type, bot.bot_category) == ("bot", "ai")


def test_cache_returns_the_same_value(devices: DeviceClassifier) -> None:
    assert devices.classify(IPHONE) is devices.classify(IPHONE)


def test_crawler_user_agents_are_bots(devices: DeviceClassifier) -> None:
    instances = crawler_instances()
    bots = sum(devices.classify(ua).type == "bot" for ua in instances)
    assert bots / len(instances) >= 0.98


def test_uap_browsers_are_not_bots(devices: DeviceClassifier) -> None:
    browsers = [case["user_agent_string"] for case in uap("tests/test_ua.yaml")
                if BROWSER_FAMILIES.match(case["family"])]
    assert len(browsers) > 200
    flagged = [ua for ua in browsers if devices.classify(ua).type == "bot"]
    assert len(flagged) / len(browsers) < 0.005, flagged


def test_uap_spiders_are_bots(devices: DeviceClassifier) -> None:
    spiders = [case["user_agent_string"] for case in uap("tests/test_device.yaml")
               if case["family"] == "Spider"]
    assert spiders
    assert all(devices.classify(ua).type == "bot" for ua in spiders)


@pytest.mark.parametrize(("family", "kind"), [("iPhone", "mobile"), ("iPad", "tablet")])
def test_uap_apple_devices(devices: DeviceClassifier, family: str, kind: str) -> None:
    cases = [case["user_agent_string"] for case in uap("tests/test_device.yaml")
             if case["family"] == family]
    right = sum(devices.classify(ua).type == kind for ua in cases)
    assert right / len(cases) >= 0.97


@pytest.mark.parametrize(("model", "kind"), [(r"SM-T|GT-P|SM-P|SM-X", "tablet"),
                                             (r"SM-[GANJ]|GT-I|GT-S", "mobile")])
def test_uap_samsung_devices(devices: DeviceClassifier, model: str, kind: str) -> None:
    cases = [case["user_agent_string"] for case in uap("tests/test_device.yaml")
             if case.get("brand") == "Samsung" and re.match(model, case.get("model") or "")]
    right = sum(devices.classify(ua).type == kind for ua in cases)
    assert right / len(cases) >= 0.97
