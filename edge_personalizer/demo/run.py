"""`edge-personalizer demo`: the demo shop and the proxy in front of it, in one process."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from ipaddress import ip_network
from pathlib import Path

import anyio
import uvicorn

from ..config import Secret, Settings
from ..config.paths import check_data_outside_rules
from ..errors import SettingsError
from ..observability.logs import configure_logging
from ..serving import check_listening, check_workers
from .simulate import has_counts, simulate_week
from .site import create_demo_site

SECRETS_FILE = "demo-secrets.json"
# The demo's rules and MaxMind's test database, beside the package in the project.
PROJECT = Path(__file__).resolve().parents[2]
DEMO_RULES = PROJECT / "rules"
DEMO_GEO_DB = PROJECT / "geo_db" / "GeoLite2-City-Test.mmdb"


def _shown(path: Path) -> Path:
    """`path` as the instructions print it: from the working directory when under it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def demo_files(settings: Settings, rules: Path = DEMO_RULES,
               geo_db: Path = DEMO_GEO_DB) -> tuple[Settings, Path]:
    """The settings with the project's demo rules and test geo database where none are
    given, and the rules directory; SettingsError when they are not there (a package
    installed without the project has neither)."""
    if settings.rules_dir is None and not (rules / "slots.yaml").is_file():
        raise SettingsError(f"the demo's rules are not at {rules} (they come with the "
                            "project, not the installed package): run `make demo` in the "
                            "project, or give --rules DIR and --geo-db FILE")
    if settings.geo_db is None and not geo_db.is_file():
        raise SettingsError(f"the demo's geo database is not at {geo_db}: give --geo-db FILE "
                            "(a MaxMind GeoIP2 or GeoLite2 .mmdb)")
    rules_dir = settings.rules_dir or _shown(rules)
    return dataclasses.replace(settings, rules_dir=rules_dir,
                               geo_db=settings.geo_db or _shown(geo_db)), rules_dir


def demo_secrets(data_dir: Path) -> tuple[str, str]:
    """The demo's admin token and profile key: made on the first run and kept in
    data_dir (only the owner may read it), so profiles and the printed token hold across
    restarts of the demo."""
    path = data_dir / SECRETS_FILE
    try:
        saved = json.loads(path.read_text())
        if isinstance(saved.get("admin_token"), str) and isinstance(saved.get("profile_key"),
                                                                     str):
            return saved["admin_token"], saved["profile_key"]
    except (OSError, ValueError, AttributeError):
        pass
    made = {"admin_token": secrets.token_urlsafe(18), "profile_key": secrets.token_urlsafe(32)}
    data_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(made, file)
    return made["admin_token"], made["profile_key"]


def demo_settings(settings: Settings) -> Settings:
    """What the demo changes: plain http on 127.0.0.1 (a Secure cookie would never come
    back), variant names shown, an admin token and profile key unless configured, and,
    unless configured, X-Forwarded-For believed from this machine, so that a visitor from
    anywhere can be tried with curl."""
    token, key = demo_secrets(settings.data_dir)
    return dataclasses.replace(
        settings, profile_cookie_secure=False, variant_header=True,
        admin_token=settings.admin_token or Secret(token),
        profile_keys=settings.profile_keys or (Secret(key),),
        trusted_proxies=settings.trusted_proxies or (ip_network("127.0.0.1/32"),))


def instructions(settings: Settings, origin_port: int) -> str:
    proxy = f"http://{settings.host}:{settings.port}"
    geo_db, rules_dir = settings.geo_db, settings.rules_dir
    token = settings.admin_token.reveal() if settings.admin_token else ""
    key = settings.profile_keys[0].reveal() if settings.profile_keys else ""
    return f"""
edge-personalizer demo
  demo shop (the origin):      http://127.0.0.1:{origin_port}/
  the shop through the proxy:  {proxy}/
  rules: {rules_dir}    geo database: {geo_db}
  admin token: {token}
  profile key: {key}
  (made for this demo and kept in {settings.data_dir / SECRETS_FILE})

Try (the demo's rules are in {rules_dir}; edit them and the proxy reloads them):
  A visitor from Facebook on a phone gets another hero and banner:
  curl -s -H 'Accept: text/html' -H 'Referer: https://l.facebook.com/' \\
      -A 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148' \\
      {proxy}/ | grep -A2 'data-ep-slot'
  A newsletter reader gets the newsletter banner; see the decision and the profile cookie
  in the headers (curl's own User-Agent is a bot's: bots get no profile, and count nothing):
  curl -si -H 'Accept: text/html' \\
      -A 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0' \\
      '{proxy}/?utm_medium=email&utm_campaign=newsletter-nov' \\
      | grep -iE 'x-ep-variant|set-cookie|data-ep-slot="banner"'
  A visitor from London (the demo believes X-Forwarded-For from this machine):
  curl -s -H 'Accept: text/html' -H 'X-Forwarded-For: 81.2.69.142' {proxy}/ \\
      | grep -A1 'data-ep-slot="banner"'
  Why a visitor sees what they see (every rule, the experiment bucket, the decision):
  .venv/bin/edge-personalizer explain --url '{proxy}/?utm_source=fb' --rules {rules_dir} \\
      --header 'User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) Mobile/15E148' \\
      --ip 81.2.69.142 --geo-db {geo_db}
  The same trace from the live site, in the X-EP-Trace header (needs the admin token):
  curl -s -o /dev/null -D - -H 'Accept: text/html' -H 'X-EP-Debug: {token}' \\
      '{proxy}/?utm_source=fb' | grep -i x-ep-trace
  A link that shows a rule's variant to anyone, for 24 hours (signed with the profile key):
  EP_PROFILE_KEYS='{key}' .venv/bin/edge-personalizer preview-link \\
      --rule facebook-welcome --url {proxy}/ --rules {rules_dir}
  In a browser: open {proxy}/ and the shop itself at http://127.0.0.1:{origin_port}/
  Results dashboard: open {proxy}/__ep/dashboard and sign in with the admin token
  (a simulated week of shoppers was counted into it on the first start)
  Results as JSON: curl -s -H 'Authorization: Bearer {token}' {proxy}/__ep/results
  Health: curl -s -H 'Authorization: Bearer {token}' {proxy}/__ep/health | python3 -m json.tool
  Metrics: curl -s -H 'Authorization: Bearer {token}' {proxy}/__ep/metrics
  Reload the rules now: curl -s -X POST -H 'Authorization: Bearer {token}' {proxy}/__ep/reload

Press Ctrl+C to stop.
"""


def run_demo(settings: Settings, *, origin_port: int,
             serve: Callable[[Settings], None]) -> None:
    """The shop on a thread of this process, then `serve(settings)` runs the proxy in
    front of it (as `edge-personalizer serve` does) until interrupted."""
    settings, rules_dir = demo_files(settings)
    check_data_outside_rules(settings.data_dir, rules_dir)   # before anything is written
    settings = demo_settings(settings)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    check_workers(settings)
    check_listening(settings)   # before the shop starts and the instructions are printed
    shop = uvicorn.Server(uvicorn.Config(create_demo_site(), host="127.0.0.1", port=origin_port,
                                         log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=shop.run, name="demo-shop", daemon=True)
    thread.start()
    while not shop.started:
        if not thread.is_alive():
            raise SettingsError(f"the demo shop could not listen on 127.0.0.1:{origin_port} "
                                "(choose another: --origin-port, or make demo "
                                "ORIGIN_PORT=...)")
        time.sleep(0.05)
    if not anyio.run(has_counts, settings):
        summary = anyio.run(simulate_week, settings)
        print(f"counted a simulated week into the demo's store: {summary.visitors} visitors, "
              f"{summary.exposures} exposures, {summary.conversions} conversions", flush=True)
    print(instructions(settings, origin_port), flush=True)
    try:
        serve(settings)
    finally:
        shop.should_exit = True
        thread.join(timeout=5)
