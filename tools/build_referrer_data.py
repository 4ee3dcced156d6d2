"""Build edge_personalizer/classify/data/referrers.json: our own list merged with Matomo's.

    python tools/build_referrer_data.py ../shared/corpora/matomo-referrers [--commit SHA]

Inputs:
- tools/referrer_sources.json: the project's own list (written by us; it wins on conflicts).
- Matomo's SearchEngines.yml, Socials.yml and AIAssistants.yml from
  github.com/matomo-org/searchengine-and-social-list, dedicated to the public domain (CC0 1.0,
  copied as data/referrers.matomo.LICENSE.txt): search engines with the query parameters or
  path expressions that carry the keywords and their charsets, social networks, AI assistants.

Every source in the output records where it came from (`"from": ["own", "matomo"]`) and the
file's `_sources` names the upstream commit. Matomo's `{}` (any country code) becomes our
`*`: `google.{}` -> `google.*`, `{}.search.yahoo.com` -> `search.yahoo.com` (a host also
matches its subdomains). Android app ids among Matomo's hosts go to the `apps` table. A host
that two sources claim keeps the first: ours, then AI assistants, social networks, search.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OWN = ROOT / "tools" / "referrer_sources.json"
DATA = ROOT / "edge_personalizer" / "classify" / "data"
OUT = DATA / "referrers.json"
HOST_MEDIA = ("search", "ai", "social", "email", "paid", "referral")
# Matomo's files, each with our medium.
MATOMO_FILES = (("AIAssistants.yml", "ai"), ("Socials.yml", "social"),
                ("SearchEngines.yml", "search"))
_APP_PREFIXES = ("com.", "org.", "net.", "ru.", "jp.", "de.", "ch.", "ai.", "io.")


def source_name(name: str) -> str:
    """Matomo's display name -> our key: "Yahoo! Japan" -> "yahoo_japan", "Mail.ru" -> "mail_ru"."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_") or name


def host_pattern(url: str) -> str | None:
    """A Matomo URL pattern as one of ours, or None when it cannot be one."""
    url = url.strip().lower().removeprefix("http://").removeprefix("https://").rstrip("/")
    if url.startswith("{}."):
        url = url[3:]
    if url.endswith(".{}"):
        url = url[:-3] + ".*"
    url = url.replace(".{}/", ".*/")
    if "{}" in url or "android-app" in url or not url:
        return None
    return url.removeprefix("www.")


def _wildcard_of(host: str) -> str:
    """"maps.google.co.uk" -> "maps.google.*": the pattern of ours that would cover it."""
    labels = host.split(".")
    while len(labels) > 2 and len(labels[-1]) <= 3 and len(labels[-2]) <= 3:
        labels.pop()
    return ".".join(labels[:-1]) + ".*"


def matomo_entries(folder: Path) -> list[tuple[str, str, int, dict[str, Any]]]:
    """(medium, our source name, configuration number, configuration) for every
    configuration in Matomo's files: an engine's configurations each have their own hosts
    and keyword parameters."""
    out: list[tuple[str, str, int, dict[str, Any]]] = []
    for filename, medium in MATOMO_FILES:
        data = yaml.safe_load((folder / filename).read_text())
        for name, value in data.items():
            configs = value if isinstance(value, list) else [value]
            if not all(isinstance(config, dict) for config in configs):
                configs = [{"urls": configs}]         # socials and AI: a plain host list
            for number, config in enumerate(configs, start=1):
                out.append((medium, source_name(str(name)), number, config))
    return out


def merge(own: dict[str, Any], folder: Path) -> tuple[dict[str, Any], list[str]]:
    data = {key: value for key, value in own.items() if not key.startswith("_")}
    claimed: dict[str, tuple[str, str]] = {}         # host pattern -> (medium, source)
    for medium in HOST_MEDIA:
        for name, entry in data.setdefault(medium, {}).items():
            entry["from"] = ["own"]
            for host in entry.get("hosts", ()):
                claimed.setdefault(host, (medium, name))
    notes: list[str] = []
    for medium, name, number, config in matomo_entries(folder):
        # Further configurations of an engine are entries of their own ("google/3"), with
        # the engine's name, so that each host keeps its own keyword parameters.
        key = name if number == 1 else f"{name}/{number}"
        entry = data[medium].setdefault(key, {"hosts": [], "from": []})
        if key != name:
            entry["name"] = name
        owners = [entry]
        for url in config.get("urls", ()):
            if str(url).startswith(_APP_PREFIXES):
                data["apps"].setdefault(str(url), [medium, name])
                continue
            host = host_pattern(str(url))
            if host is None:
                notes.append(f"{medium}/{name}: pattern {url!r} left out")
                continue
            owner = claimed.get(host) or claimed.get(_wildcard_of(host))
            if owner is None:
                claimed[host] = (medium, name)
                entry["hosts"].append(host)
            elif owner[0] != medium:
                notes.append(f"{medium}/{name}: {host} kept as {owner[0]}")
            elif owner[1] != name:
                # The same engine under our name: it gets Matomo's keyword parameters.
                owners.append(data[medium][owner[1]])
        for target in owners:
            _add_keywords(target, config)
    for medium in HOST_MEDIA:
        for name in [n for n, e in data[medium].items() if not e.get("hosts")]:
            del data[medium][name]
    return data, notes


def _add_keywords(entry: dict[str, Any], config: dict[str, Any]) -> None:
    """Matomo's keyword parameters, path expressions and charsets, added to an entry."""
    if "matomo" not in entry["from"]:
        entry["from"].append("matomo")
    for param in config.get("params") or ():
        key = "paths" if str(param).startswith("/") else "params"
        value = str(param)[1:-1] if key == "paths" else str(param).lower()
        if key == "paths":
            re.compile(value)                         # fails the build on a bad expression
        if value not in entry.setdefault(key, []):
            entry[key].append(value)
    for charset in config.get("charsets") or ():
        lowered = str(charset).lower()
        if lowered not in ("utf-8", "utf8") and lowered not in entry.setdefault("charsets", []):
            entry["charsets"].append(lowered)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("matomo", type=Path, help="folder with Matomo's three YAML files")
    parser.add_argument("--commit", default="3b3a82dc83cd146abe17aafe31254de1c25f7844",
                        help="the upstream commit the files were taken from")
    args = parser.parse_args()
    own = json.loads(OWN.read_text())
    data, notes = merge(own, args.matomo)
    out = {
        "_comment": "Generated by tools/build_referrer_data.py; edit tools/referrer_sources.json "
                    "and rebuild. medium -> source -> name (when the key is not the name), "
                    "hosts ('*' = any country domain; a host also matches its subdomains; "
                    "'host/path' matches under that path), params "
                    "(query keys with the search terms), paths (expressions over the path whose "
                    "first group is the terms), charsets (of the terms), from (provenance).",
        "_sources": {
            "own": "tools/referrer_sources.json (edge-personalizer)",
            "matomo": {
                "repository": "https://github.com/matomo-org/searchengine-and-social-list",
                "commit": args.commit,
                "files": [name for name, _ in MATOMO_FILES],
                "license": "CC0-1.0 (public domain dedication), see referrers.matomo.LICENSE.txt",
            },
        },
        **data,
    }
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False, sort_keys=False) + "\n")
    shutil.copyfile(args.matomo / "LICENSE.txt", DATA / "referrers.matomo.LICENSE.txt")
    counts = {m: (len(data[m]), sum(len(e["hosts"]) for e in data[m].values()))
              for m in HOST_MEDIA}
    print(f"sources and hosts per medium: {counts}; apps {len(data['apps'])}")
    for note in notes:
        print("  " + note)


if __name__ == "__main__":
    main()
