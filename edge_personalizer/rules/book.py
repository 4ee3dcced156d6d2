"""RuleBook: the rule set being served, swapped whole on reload, the last good one kept."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import anyio

from ..errors import RuleError, RuleSetInvalid
from .file_cache import Loaded, RuleCache
from .loader import walk
from .model import RuleSet
from .notices import Notice, Noticed, described
from .parse_cache import ParseCache

logger = logging.getLogger(__name__)


def check_rules(directory: Path, *, parses: ParseCache | None = None
                ) -> tuple[RuleSet, list[RuleError]]:
    """Load and compile a rules directory, with every error in every file."""
    loaded = _read_and_compile(RuleCache(directory, parses=parses))
    return loaded.ruleset, loaded.errors


def _read_and_compile(cache: RuleCache) -> Loaded:
    with _no_garbage_collection():
        return cache.load()   # what loading made and did not keep is freed in it


@contextlib.contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """Loading builds hundreds of thousands of objects and frees none of them until it is
    done: the cycle collector would walk them all again and again (a third of the time for
    10,000 rules); it is back on as soon as loading ends, when only the rule set is left
    of them."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_rules(directory: Path) -> RuleSet:
    """The compiled rule set, or RuleSetInvalid with every error."""
    ruleset, errors = check_rules(directory)
    if errors:
        raise RuleSetInvalid(errors)
    return ruleset


# A server starts from such a directory serving nothing (and says so), but once it served
# rules it refuses one (rules/file_cache.py): what a directory made anew and not filled,
# or a volume not mounted yet, looks like.
NO_RULE_FILES = ("the rules directory holds no rule file (.yaml or .yml, outside hidden "
                 "folders): no page is personalized, and a server serving rules refuses it "
                 "on reload; to serve no rules, leave one file with `rules: []`")

Fingerprint = tuple[tuple[str, int, int, int, int], ...]
# No directory looks like this: the next look reloads.
_CHANGED_WHILE_LOADING: Fingerprint = (("(changed while it was loaded)", -1, -1, -1, -1),)


def _fingerprint(directory: Path) -> Fingerprint:
    """Names, sizes, modification and change times and inodes of everything the rules may
    read (loader.walk: hidden files and folders, such as a checkout's .git, are no part of
    them; folder links are followed): cheap to take every second, and any edit changes it,
    even one that keeps size and modification time (a file unpacked from a reproducible
    tarball, `touch -r`: a new inode or change time), or a folder link pointed elsewhere.
    A folder that cannot be read, or a link loop, is part of it too (to be reported)."""
    tree = walk(directory)
    return (*((path, stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns)
              for path, stat in tree.files),
            *((str(error), -1, 0, 0, 0) for error in tree.errors))


class RuleBook:
    """Holds the serving rule set of one directory.

    Construction loads the directory and raises RuleError when it is invalid (startup
    fails fast), except in a worker started from its server's book (`inherited`), which
    serves what the server serves, whatever the directory holds now (a worker replaced
    after a crash must not take the server down, nor serve other rules than the others).
    `reload()` never raises: an invalid change, or a failure of the loader itself, is
    logged, kept as `last_error`, and the previous set goes on serving.
    A file that held rules and is now empty is such an invalid change: it is what a save
    caught half-way looks like.
    """

    def __init__(self, directory: Path, *,
                 on_reload: Callable[[bool], None] | None = None,
                 parses: ParseCache | None = None, inherited: RuleBook | None = None,
                 reports: bool = True, own_cookies: Mapping[str, str] | None = None,
                 keyed_caching: bool = False) -> None:
        self.directory = directory
        # False: reloads and refusals are logged at debug level (a server's own book, whose
        # workers report the same).
        self._reports = reports
        # What the last load made of each file: a reload compiles only what changed (and
        # with `parses`, reads from disk only what changed since any worker last read it).
        # A forked worker starts from its server's (`inherited`).
        # (`own_cookies`: the cookies the server sets or reads itself, which no rule may
        # set; a forked worker's are its server's.)
        self._cache: RuleCache = (inherited._cache if inherited
                                  else RuleCache(directory, parses=parses,
                                                 own_cookies=own_cookies))
        # The watcher's thread, SIGHUP and the admin reload may reload at once: one at a
        # time, so an older load can never be swapped in over a newer one.
        self._reloading = threading.Lock()
        # what the served rules were loaded from (a forked worker's: its server's)
        self._fingerprint: Fingerprint = (inherited._fingerprint if inherited
                                          else _fingerprint(directory))
        self._last_look = self._fingerprint
        # files whose sections held something
        self._holding: frozenset[Path] = inherited._holding if inherited else frozenset()
        self.files_read = 0   # by the last load: files whose YAML it read (see ParseCache)
        self.files_compiled = 0   # ... and files whose rules it compiled
        self.last_error: str | None = None
        self.checked_at = 0.0   # when a reload last ended, taken or refused (epoch seconds)
        self.began_at = 0.0     # ... and when it began (an edit saved before it is in it)
        # (`keyed_caching`: the server's setting; with it, the notices tell of variants
        # whose pages go private under it)
        self._noticed = Noticed(keyed_caching=keyed_caching)
        self._on_reload = on_reload
        if inherited is not None:
            # A forked worker serves what its server serves, whatever the directory holds
            # now: a change no reload took (the watcher off, no SIGHUP yet) is not taken by
            # one worker alone; its own watcher, if any, sees the change as the others do.
            self.current: RuleSet = inherited.current
            self.last_error = inherited.last_error
            return
        self.current = self._load()
        if not self.current.file_count and self._reports:
            logger.warning("%s: %s", directory, NO_RULE_FILES)
        self._log_notices()

    def notices(self, now: datetime | None = None) -> list[Notice]:
        """What the rules served get wrong at `now` (default: now): see notices.py."""
        return self._noticed.of(self.current, now or datetime.now(UTC))

    def _log_notices(self) -> None:
        noticed = self.notices()
        for notice in noticed if self._reports else ():
            if not notice.unreached:
                logger.warning("rules version %s: %s", self.current.version, notice)
        noticed = [n for n in noticed if n.unreached]
        if noticed and self._reports:
            logger.warning("rules version %s: %s reach%s no one:\n%s",
                           self.current.version, described(noticed),
                           "es" if len(noticed) == 1 else "",
                           "\n".join(str(n) for n in noticed))

    def guard_forks(self) -> None:
        """Forking waits for a reload under way (the watcher's, SIGHUP's): a worker never
        starts from half of one, nor with its locks held by a thread it has not."""
        os.register_at_fork(before=self._reloading.acquire,
                            after_in_parent=self._reloading.release,
                            after_in_child=self._reloading.release)

    def watch_in_thread(self, interval: float) -> threading.Event:
        """Look every `interval` seconds in a thread of its own until the event returned is
        set (in a server process, whose workers start from this book: see `inherited`)."""
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(interval):
                self._look_logged()

        threading.Thread(target=watch, name="rules-watch", daemon=True).start()
        return stop

    def _load(self) -> RuleSet:
        loaded = _read_and_compile(self._cache)
        faulty = {error.source for error in loaded.errors}
        errors = loaded.errors + [
            RuleError("the file is empty but held rules until now, so it was not loaded (a "
                      "save still under way?); to remove its rules, delete the file or write "
                      "`rules: []`", source=path)
            for path in loaded.empty if path in self._holding and path not in faulty]
        if errors:
            raise RuleSetInvalid(errors)
        self._holding = loaded.holding
        self.files_read = loaded.read
        self.files_compiled = loaded.compiled
        return loaded.ruleset

    def reload(self) -> bool:
        """Load the directory again; True when the served set is now the directory's."""
        with self._reloading:
            return self._reload()

    def _reload(self) -> bool:
        self.began_at = time.time()
        self._fingerprint = before = _fingerprint(self.directory)
        try:
            fresh = self._load()
        except RuleError as exc:
            self._refused(exc, "rules not reloaded, version %s keeps serving")
            self._loaded_from(before)
            return self._ended(False)
        except Exception as exc:   # a fault of the loader: the served rules stay all the same
            logger.exception("rules not reloaded (the loader failed), version %s keeps "
                             "serving", self.current.version)
            self.last_error = f"{self.directory}: the loader failed: {exc!r}"
            self._loaded_from(before)
            return self._ended(False)
        refused_before, self.last_error = self.last_error, None
        self._loaded_from(before)
        level = logging.INFO if self._reports else logging.DEBUG
        if fresh.version != self.current.version:
            logger.log(level, "rules reloaded: version %s -> %s (%s; files read anew %d, "
                       "compiled anew %d)",
                       self.current.version, fresh.version, fresh.size, self.files_read,
                       self.files_compiled)
            self.current = fresh   # one reference swap: a request sees the old set or the new
            self._log_notices()
        else:   # (a SIGHUP with nothing changed, or a refused edit undone: said too)
            logger.log(level, "rules unchanged: version %s keeps serving%s",
                       self.current.version,
                       "; the last reload's error is gone" if refused_before else "")
        return self._ended(True)

    def _ended(self, ok: bool) -> bool:
        self.checked_at = time.time()
        if self._on_reload:
            self._on_reload(ok)
        return ok

    def _loaded_from(self, before: Fingerprint) -> None:
        """The directory changed while it was being loaded (a file saved between the look
        and the read): what was loaded is not `before`, and the next settled look loads
        again (else a refused file removed at once left the refusal serving for good)."""
        if _fingerprint(self.directory) != before:
            self._fingerprint = _CHANGED_WHILE_LOADING

    def _refused(self, exc: RuleError, what_serves: str) -> None:
        errors = exc.errors if isinstance(exc, RuleSetInvalid) else [exc]
        self.last_error = "\n".join(str(e) for e in errors[:20])   # one a line, as logged
        logger.log(logging.ERROR if self._reports else logging.DEBUG, what_serves + ":\n%s",
                   self.current.version, "\n".join(str(e) for e in errors))

    def changed_on_disk(self) -> bool:
        return _fingerprint(self.directory) != self._fingerprint

    def look(self) -> bool:
        """One look at the directory (the watcher's tick): reload when it differs from what
        is loaded and the look before saw the same, so files still being written are never
        loaded. True when it reloaded."""
        seen = _fingerprint(self.directory)
        settled = seen == self._last_look
        self._last_look = seen
        if settled and seen != self._fingerprint:
            self.reload()
            return True
        return False

    async def watch(self, interval: float) -> None:
        """Look every `interval` seconds until cancelled. Looking and compiling happen in a
        worker thread so requests keep flowing meanwhile."""
        while True:
            await anyio.sleep(interval)
            await anyio.to_thread.run_sync(self._look_logged)

    def _look_logged(self) -> None:
        """One look of a watcher: a fault in it is logged, and the watching goes on."""
        try:
            self.look()
        except Exception:
            logger.exception("the rules watcher's look at %s failed; it looks again",
                             self.directory)
