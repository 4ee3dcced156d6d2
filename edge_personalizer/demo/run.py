"""`edge-personalizer demo`: the demo shop and the proxy in front of it, in one process."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

import uvicorn

from ..config import Secret, Settings
from ..errors import SettingsError
from ..observability.logs import configure_logging
from .site import create_demo_site


def instructions(settings: Settings, origin_port: int) -> str:
    proxy = f"http://{settings.host}:{settings.port}"
    geo_db = settings.geo_db or "geo_db/GeoLite2-City-Test.mmdb"
    rules_dir = settings.rules_dir or "rules"
    return f"""
edge-personalizer demo
  demo shop (the origin):      http://127.0.0.1:{origin_port}/
  the shop through the proxy:  {proxy}/
  rules: {settings.rules_dir or "none"}    geo database: {settings.geo_db or "none"}

Try (the demo's rules are in {rules_dir}; edit them and the proxy reloads them):
  A visitor from Facebook on a phone gets another hero and banner:
  curl -s -H 'Accept: text/html' -H 'Referer: https://l.facebook.com/' \\
      -A 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148' \\
      {proxy}/ | grep -A2 'data-ep-slot'
  A newsletter reader gets the newsletter banner; see the decision in the headers:
  curl -si -H 'Accept: text/html' '{proxy}/?utm_medium=email&utm_campaign=newsletter-nov' \\
      | grep -iE 'x-ep-variant|set-cookie|data-ep-slot="banner"'
  Why a visitor sees what they see (every rule, the experiment bucket, the decision):
  .venv/bin/edge-personalizer explain --url '{proxy}/?utm_source=fb' --rules {rules_dir} \\
      --ip 81.2.69.142 --geo-db {geo_db}
  In a browser: open {proxy}/ and the shop itself at http://127.0.0.1:{origin_port}/
  Health: curl -s {proxy}/__ep/health | python3 -m json.tool

Press Ctrl+C to stop.
"""


def run_demo(settings: Settings, *, origin_port: int,
             serve: Callable[[Settings], None]) -> None:
    """The shop on a thread of this process, then `serve(settings)` runs the proxy in
    front of it (as `edge-personalizer serve` does) until interrupted."""
    # The demo is plain http on 127.0.0.1: a Secure cookie would never come back. Its
    # profiles are signed with a fixed, public key unless one is configured: demo only.
    settings = dataclasses.replace(
        settings, profile_cookie_secure=False,
        profile_keys=settings.profile_keys or (Secret("edge-personalizer-demo-only-key"),))
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    shop = uvicorn.Server(uvicorn.Config(create_demo_site(), host="127.0.0.1", port=origin_port,
                                         log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=shop.run, name="demo-shop", daemon=True)
    thread.start()
    while not shop.started:
        if not thread.is_alive():
            raise SettingsError(f"the demo shop could not listen on 127.0.0.1:{origin_port} "
                                "(choose another --origin-port)")
        time.sleep(0.05)
    print(instructions(settings, origin_port), flush=True)
    try:
        serve(settings)
    finally:
        shop.should_exit = True
        thread.join(timeout=5)
