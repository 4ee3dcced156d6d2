"""Where the server writes (data_dir) must lie outside what the rules read (rules_dir).

Checked by what writes there as it is built (the app, the demo), not when Settings are
made: commands that only read (explain, preview-link, report) run from inside the rules
folder too, where the default data_dir lies among the rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import SettingsError


def check_data_outside_rules(data_dir: Path, rules_dir: Path) -> None:
    """What the server writes (the store, each worker's state) would be edits of the rules
    if it lay among them: every worker would reload every second, forever. Among them is
    also inside a folder the rules reach through a folder link (`rules/shared -> /srv/x`
    with data_dir /srv/x/ep-data)."""
    data, rules = data_dir.resolve(), rules_dir.resolve()
    if _within(data, rules):
        raise SettingsError(f"data_dir ({data_dir}) lies inside rules_dir ({rules_dir}): what "
                            "the server writes there would count as edits of the rules; "
                            "put it elsewhere, or in a hidden folder of the rules "
                            "(e.g. .ep-data), which the rules leave out")
    for link, target in _folder_links(rules):
        if _within(data, target):
            raise SettingsError(f"data_dir ({data_dir}) lies inside {target}, which the rules "
                                f"read through the folder link {link}: what the server writes "
                                "there would count as edits of the rules; put it elsewhere")


def _within(path: Path, folder: Path) -> bool:
    """`path` is `folder` or lies in it, under no hidden folder (the rules leave those out)."""
    return path == folder or (folder in path.parents and not any(
        part.startswith(".") for part in path.relative_to(folder).parts))


def _folder_links(rules: Path) -> Iterator[tuple[Path, Path]]:
    """Each folder link the rules follow (as rules/tree.py walks: hidden names left out),
    with the folder it leads to; each folder once, so a link loop ends."""
    seen = {rules}
    folders = [rules]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = [e for e in listing if not e.name.startswith(".")]
        except OSError:   # the rules say why they cannot read it
            continue
        for entry in entries:
            try:
                if not entry.is_dir():   # through a link, what it leads to
                    continue
                target = Path(entry.path).resolve()
            except (OSError, RuntimeError):
                continue
            if target in seen:
                continue
            seen.add(target)
            if entry.is_symlink():
                yield Path(entry.path), target
            folders.append(Path(entry.path))
