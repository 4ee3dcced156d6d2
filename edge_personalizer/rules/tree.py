"""The files under a rules directory, as the rules, their version and the watcher see them."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR, S_ISFIFO, S_ISREG, S_ISSOCK

from ..errors import RuleError

logger = logging.getLogger(__name__)

# Written into data_dir by a server as it starts (rules/parse_cache.py): a folder holding
# it is where a server writes, never rules, however the rules reach it (a folder link, a
# bind mount): what is written there would be an edit of the rules every second.
DATA_MARKER = ".edge-personalizer-data"


@dataclass(frozen=True)
class Tree:
    """Every file under a rules directory, as the rules see it: hidden files and folders
    (a name starting with '.', such as a checkout's .git) left out, folder links followed
    (a folder reached by two paths is listed under both). A FIFO, a device or a socket is
    listed too (its stat tells it): one named as a rule file or a fragment is an error,
    never a file silently left out, nor one opened to wait on."""

    files: tuple[tuple[str, os.stat_result], ...]   # in path order, each with its stat
    errors: tuple[RuleError, ...]   # folders that cannot be read, loops, links to nothing


def walk(directory: Path) -> Tree:
    """The files the rules, their version and the watcher all see (one walk for the three,
    so what is loaded, what makes a new version and what the watcher notices agree)."""
    found: list[tuple[str, os.stat_result]] = []
    errors: list[RuleError] = []
    try:
        top = os.stat(directory)
    except OSError as exc:   # removed (and, to the watcher, different from made anew empty)
        return Tree((), (RuleError(f"the rules directory cannot be read: {reason(exc)}",
                                   source=directory),))
    # Depth first, each folder's entries by name: the files come in path order.
    folders = [_Folder(str(directory), frozenset({(top.st_dev, top.st_ino)}), errors)]
    while folders:
        folder = folders[-1]
        entry = next(folder.entries, None)
        if entry is None:
            folders.pop()
            continue
        try:
            stat = entry.stat()   # through a link, what it links to
        except FileNotFoundError:   # removed meanwhile, or a link to nothing
            dangling = _dangling(entry.path)
            if dangling is not None:
                errors.append(dangling)
            continue
        except OSError as exc:
            if entry.is_symlink() and os.path.lexists(entry.path):
                errors.append(RuleError(f"the link cannot be followed: {reason(exc)}",
                                        source=shown(Path(entry.path))))
                continue
            errors.append(RuleError(f"the folder cannot be searched: {reason(exc)} (its "
                                    "files cannot be opened; a folder needs x permission)",
                                    source=shown(Path(folder.path))))
            folders.pop()
            continue
        if not S_ISDIR(stat.st_mode):
            found.append((entry.path, stat))
        else:
            if (stat.st_dev, stat.st_ino) in folder.within:
                errors.append(RuleError("the folder link leads back to a folder it is in (a "
                                        "loop): remove it", source=shown(Path(entry.path))))
                continue
            folders.append(_Folder(entry.path, folder.within | {(stat.st_dev, stat.st_ino)},
                                   errors, entry.path if entry.is_symlink() else folder.link))
    return Tree(tuple(found), tuple(errors))


def _dangling(path: str) -> RuleError | None:
    """The error for a link to nothing (a shared mount gone, a target renamed): what it
    led to is no longer read, and a file's rules must never go silently; None when the
    entry itself is gone (removed while the folder was walked)."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return RuleError(f"the link leads to {os.fsencode(target).decode('utf-8', 'backslashreplace')}"
                     ", which does not exist (moved, unmounted?): restore what it led to, or "
                     "remove the link", source=shown(Path(path)))


class _Folder:
    """A folder being walked: its entries left (none when it cannot be read), and the
    folders it is in (a link to one of them is a loop)."""

    def __init__(self, path: str, within: frozenset[tuple[int, int]],
                 errors: list[RuleError], link: str | None = None) -> None:
        self.path = path
        self.within = within
        self.link = link   # the folder link it is reached through, if any
        try:
            with os.scandir(path) as listing:
                listed = list(listing)
        except OSError as exc:
            errors.append(RuleError(f"the folder cannot be read: {reason(exc)}; the rules "
                                    "need to read every folder in the rules directory",
                                    source=shown(Path(path))))
            listed = []
        if any(e.name == DATA_MARKER for e in listed):
            through = f", reached through the folder link {shown(Path(link))}" if link else ""
            errors.append(RuleError(f"a server's data_dir (it holds {DATA_MARKER}){through}: "
                                    "what the server writes there would count as edits of the "
                                    "rules; remove the link, or move data_dir out of what the "
                                    "rules read", source=shown(Path(path))))
            listed = []
        self.entries = iter(sorted((e for e in listed if not e.name.startswith(".")),
                                   key=lambda e: e.name))


class NotAFile(OSError):
    """A path that leads to a FIFO, a device or a socket, which is never read: a FIFO
    waits for a writer, a device may never end."""

    def __init__(self, mode: int) -> None:
        kind = ("a FIFO" if S_ISFIFO(mode) else "a socket" if S_ISSOCK(mode)
                else "a folder" if S_ISDIR(mode) else "a device")
        super().__init__(f"not a regular file ({kind})")
        self.strerror = str(self)


def read_at_most(path: Path, limit: int) -> bytes | None:
    """The file's bytes, or None when it holds more than `limit` (its size told before it
    is read; read at most one byte more, should it grow meanwhile). OSError when it cannot
    be read: NotAFile for a FIFO, a device or a socket, told before it is opened (opening
    some devices does something), and again from what is opened (a file swapped
    meanwhile; opening waits for no writer); never read."""
    mode = os.stat(path).st_mode
    if not S_ISREG(mode):
        raise NotAFile(mode)
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
        stat = os.fstat(file.fileno())
        if not S_ISREG(stat.st_mode):
            raise NotAFile(stat.st_mode)
        if stat.st_size > limit:
            return None
        raw = file.read(limit + 1)
    return None if len(raw) > limit else raw


def is_regular(stat: os.stat_result) -> bool:
    return S_ISREG(stat.st_mode)


def reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def shown(path: Path) -> Path:
    """The path as it can be printed: a byte of a name that is not UTF-8 as \\xe9."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return path if text == str(path) else Path(text)


def mark_data_dir(data_dir: Path) -> None:
    """Mark data_dir as a server's (before the rules first load): rules that reach it, by
    a folder link or a mount, are refused rather than reloaded on each of its writes."""
    marker = data_dir / DATA_MARKER
    if marker.exists():
        return
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("edge-personalizer writes here (data_dir): no rules may be read "
                          "from this folder.\n")
    except OSError as exc:   # the store says why data_dir cannot be written
        logger.debug("data_dir not marked: %s", exc)
