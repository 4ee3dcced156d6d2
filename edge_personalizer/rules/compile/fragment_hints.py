"""Why a fragment path names no file: a near miss in its folder, the folder of the rules
directory that holds its path, or what its folder holds (read only when a rule is wrong)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Final

_LISTED_FRAGMENTS: Final = 8   # a folder holding no more fragments is listed when none is near


def near_fragment(directory: Path, path_text: str) -> str:
    """`; did you mean 'fragments/x.html'?` for a fragment of a close name in the same
    folder of the rules directory (`hero_fb.html` for `hero-fb.html`), else what the
    folder holds when it holds few, else ``."""
    folder, _, name = path_text.rpartition("/")
    relative = os.path.normpath(folder) if folder else os.curdir
    if os.path.isabs(relative) or relative.split(os.sep)[0] == os.pardir \
            or any(part.startswith(".") for part in Path(relative).parts):
        return ""
    try:
        names = [entry.name for entry in os.scandir(directory / relative)
                 if entry.name.endswith(".html") and not entry.name.startswith(".")]
    except OSError:
        names = []   # no such folder here: maybe below (a path from a subfolder's file)
    # Names alike in a folder share their ending and often a start ("hero-"): only a
    # near miss of the name without its ending is a typo.
    stems = {entry.removesuffix(".html"): entry for entry in names}
    close = difflib.get_close_matches(name.removesuffix(".html"), stems, n=1, cutoff=0.8)
    where = folder + "/" if folder else ""
    if close:
        return f"; did you mean {where + stems[close[0]]!r}?"
    elsewhere = _in_subfolders(directory, path_text)
    if elsewhere:
        return f"; did you mean {' or '.join(repr(path) for path in elsewhere)}?"
    if names and len(names) <= _LISTED_FRAGMENTS:
        return f"; {where or 'the rules directory'} holds {', '.join(sorted(names))}"
    return ""


def _in_subfolders(directory: Path, name: str) -> list[str]:
    """`fragments/x.html` for a fragment written `x.html`, `campaigns/fragments/x.html` for
    one written `fragments/x.html` (paths are from the rules directory, not from the file
    that names them): the folders of the rules directory (not hidden) that hold a file of
    that path, up to three."""
    try:
        folders = sorted(entry.name for entry in os.scandir(directory)
                         if entry.is_dir() and not entry.name.startswith("."))
    except OSError:
        return []
    return [f"{folder}/{name}" for folder in folders
            if os.path.isfile(directory / folder / name)][:3]
