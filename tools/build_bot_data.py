"""Build edge_personalizer/classify/data/bots.json from crawler-user-agents (MIT).

    python tools/build_bot_data.py ../shared/corpora/crawler-user-agents/crawler-user-agents.json

For each pattern it keeps the tags and an *anchor*: a lower-case literal that every match
contains, so the classifier only runs the few patterns whose anchor occurs in a User-Agent.
An anchor is accepted only when every example instance of the pattern contains it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT = (Path(__file__).resolve().parent.parent
       / "edge_personalizer" / "classify" / "data" / "bots.json")


# Catalogue patterns that also match real browsers (a build number shared by phones).
EXCLUDED = {r"AP3A\.240617\.008"}
# Catalogue patterns narrowed to what their crawler sends, so that the phones and apps that
# share the word are not taken for it ("HTC Butterfly", "ViewSonic", Ask's old "TeomaBar"
# toolbar in Internet Explorer, the WhatsApp app's own agent "WhatsApp/2.11 Android/4.2
# Device/..."). Every example instance must still match.
NARROWED = {
    "Butterfly": r"Butterfly/",
    "Sonic": r"Sonic(?:SiteAuditor)?/",
    "Teoma": r"Teoma(?!Bar)",
    "speedy": r"[Ss]peedy ?[Ss]pider",
    "WhatsApp": r"^WhatsApp(?:/[\d.]+(?:/i| [A-Za-z])?)?$",
}


def literal_words(pattern: str) -> list[str]:
    text = re.sub(r"\[[^\]]*\]", "\0", pattern)           # character classes
    text = re.sub(r"\([^()]*\|[^()]*\)", "\0", text)       # groups with alternatives
    if "|" in text:
        return []
    text = re.sub(r".[?*]|.\{0,?\d*\}", "\0", text)        # optional characters
    text = re.sub(r"\\(.)", r"\1", text)                  # escapes become literals
    runs = re.split(r"[\0().+^$|]", text)
    return [run.lower() for run in runs if len(run.strip()) >= 3]


def anchor_for(pattern: str, instances: list[str]) -> str | None:
    for word in sorted(literal_words(pattern), key=len, reverse=True):
        if all(word in instance.lower() for instance in instances):
            return word
    return None


def main(source: str) -> None:
    entries = json.loads(Path(source).read_text())
    out = []
    for entry in entries:
        if entry["pattern"] in EXCLUDED:
            continue
        pattern = NARROWED.get(entry["pattern"], entry["pattern"])
        missed = [i for i in entry.get("instances", []) if not re.search(pattern, i)]
        if missed:
            raise SystemExit(f"{pattern!r} no longer matches its instances {missed}")
        out.append({"pattern": pattern, "tags": entry.get("tags", []),
                    "anchor": anchor_for(pattern, entry.get("instances", []))})
    OUT.write_text(json.dumps(out, separators=(",", ":"), ensure_ascii=False) + "\n")
    missing = [e["pattern"] for e in out if e["anchor"] is None]
    print(f"{len(out)} patterns, {len(missing)} without anchor: {missing}")


if __name__ == "__main__":
    main(sys.argv[1])
