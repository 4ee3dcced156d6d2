"""Logging setup for the server: one handler writing batched lines in text or JSON."""

from __future__ import annotations

import json
import logging
import multiprocessing.util
import os
import re
import select
import sys
import threading
import time
import weakref
from typing import Any

ACCESS_LOGGER = "edge_personalizer.access"


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_TIME = "%Y-%m-%dT%H:%M:%S"

# What a log line never shows raw: control characters (a newline or CR would start a
# forged line, ESC a terminal's colours or title), the line separators some tools split
# on (U+0085, U+2028, U+2029), the marks that reorder text on screen, lone surrogates.
_CONTROLS = ("\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
             "\u2066-\u2069\ud800-\udfff")
_UNSAFE_FIELD = re.compile(f'[\n{_CONTROLS}"\\\\]')   # and what ends a quoted field
_UNSAFE_MESSAGE = re.compile(f"[{_CONTROLS}]")   # a newline continues, indented
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                             "\u2066-\u2069\ud800-\udfff]")   # JSON escapes the rest


def escaped(text: str, unsafe: re.Pattern[str] = _UNSAFE_FIELD) -> str:
    """`text`, which a client wrote, as a log line may show it: each character `unsafe`
    matches written as nginx writes it, \\xNN (\\uNNNN past U+00FF). By default the
    characters of a quoted field of the access line (its control characters, `"` and
    backslash)."""
    if unsafe.search(text) is None:
        return text
    return unsafe.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def json_line(entry: dict[str, Any]) -> str:
    """`entry` as one line of JSON, UTF-8 as it is but for the characters that would
    split or disguise the line (JSON escapes, reading back the same text)."""
    line = json.dumps(entry, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(_json_escape, line) if _UNSAFE_IN_JSON.search(line) else line


class AccessLineClock:
    """The time as a log line shows it, worked out once a second (access lines are many).
    JSON lines show it as RFC 3339, to the millisecond, with the UTC offset (what log
    stores parse without being told the server's zone)."""

    def __init__(self) -> None:
        # (second, text, JSON, UTC offset): one tuple, swapped whole, for the threads that
        # log at once
        self._at_second: tuple[int, str, str, str] = (-1, "", "", "")

    def _at(self, now: float) -> tuple[int, str, str, str]:
        second = int(now)
        known = self._at_second
        if known[0] != second:
            local = time.localtime(second)
            zone = time.strftime("%z", local)   # +0100
            known = (second, time.strftime("%Y-%m-%d %H:%M:%S", local),
                     time.strftime(JSON_TIME, local), f"{zone[:3]}:{zone[3:]}" if zone else "")
            self._at_second = known
        return known

    def now(self) -> tuple[float, str, str]:
        """(epoch, time as text lines show it, time as JSON lines show it)."""
        now = time.time()
        return now, self._at(now)[1], self.json_time(now)

    def json_time(self, at: float) -> str:
        """`at` (epoch seconds) as JSON lines show it: 2026-12-05T10:44:07.123+00:00."""
        _, _, stamp, zone = self._at(at)
        return f"{stamp}.{int(at % 1 * 1000):03d}{zone}"


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`; writes access lines without a log record too. A
    message of several lines (a refused reload's errors, a traceback) continues on lines
    indented by two spaces, which log shippers join to the line that began it (the
    convention of stack traces)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self.clock = AccessLineClock()

    def format(self, record: logging.LogRecord) -> str:
        # Messages carry what clients wrote (a path, a header in an error): no control
        # character of theirs reaches the log raw, and a newline only continues the line.
        text = escaped(super().format(record), _UNSAFE_MESSAGE)
        return text.replace("\n", "\n  ") if "\n" in text else text

    def access_line(self, fields: dict[str, Any]) -> str:
        """An access line exactly as format() would write its record."""
        now, text, _ = self.clock.now()
        return (f"{text},{int(now % 1 * 1000):03d} INFO {ACCESS_LOGGER}: "
                f"{access_message(fields)}\n")


def access_message(fields: dict[str, Any]) -> str:
    """The text access line; `aborted` at its end when the answer was cut short (the
    client went away, or the origin broke off mid-body: its warning says which). The
    method and path are the client's: escaped, so the line stays one line of its own."""
    return (f'{fields["client"]} "{escaped(fields["method"])} {escaped(fields["path"])}" '
            f'{fields["status"]} '
            f'{fields["bytes"]} {fields["duration_ms"]:.2f}ms'
            + (" aborted" if fields.get("aborted") else ""))


class JsonFormatter(logging.Formatter):
    """One JSON object a line; access lines carry their fields at the top level."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = AccessLineClock()

    def access_line(self, fields: dict[str, Any]) -> str:
        """An access line exactly as format() would write its record."""
        _, _, stamp = self.clock.now()
        entry = {"time": stamp, "level": "info", "logger": ACCESS_LOGGER, **fields}
        return json_line(entry) + "\n"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.clock.json_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json_line(entry)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler whose lines a thread of its own writes, in batches.

    One write a line was a system call on every request. Lines wait at most `interval`
    seconds, or until 64 KiB are pending; a WARNING or worse wakes the writer at once.
    Whoever logs (the event loop above all) only appends to a list: a log stream that
    stalls (a paused journald or docker pipe, a reader gone quiet) stalls the writer
    thread alone. Past `max_pending` characters waiting, lines are dropped and counted
    (`dropped`), and said once when the stream takes lines again. A flush (the exit's)
    waits for the writer at most `flush_timeout` seconds, and not again while it stays
    stuck.
    """

    def __init__(self, stream: Any, interval: float = 0.2, *, max_pending: int = 1 << 20,
                 flush_timeout: float = 5.0) -> None:
        super().__init__(stream)
        self._interval = interval
        self._max_pending = max_pending
        self._flush_timeout = flush_timeout
        self._start()
        _LIVE.add(self)

    def _start(self) -> None:
        # (in a forked worker too: fresh locks, none held by a thread it does not have)
        self._queue_lock = threading.Lock()   # held only to append or take, never to write
        self.dropped = 0           # lines this process dropped (a worker: not the server's)
        self._pending: list[str] = []
        self._size = 0
        self._queued = 0           # lines accepted, ever
        self._untold = 0           # lines dropped and not yet said so in the log
        self._written = 0          # lines the writer is done with
        self._done = threading.Condition()
        self._stuck = False        # a flush gave up waiting; the writer has not come back
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._writer = threading.Thread(target=self._write_every, name="log-flush",
                                        daemon=True)
        self._writer.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._append(line, urgent=record.levelno >= logging.WARNING)

    def write_line(self, line: str) -> None:
        """Queue a line formatted by the caller exactly as this handler would (the access
        log's own path: a logging record costs more than the rest of its work)."""
        self._append(line, urgent=False)

    def _append(self, line: str, *, urgent: bool) -> None:
        with self._queue_lock:
            # (a line larger than all that may wait goes when nothing else does: a traceback)
            if self._pending and self._size + len(line) > self._max_pending:
                self.dropped += 1
                self._untold += 1
                return
            self._pending.append(line)
            self._size += len(line)
            self._queued += 1
            urgent = urgent or self._size >= 65536
        if urgent and not self._wake.is_set():
            self._wake.set()

    def _write_every(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            self._write_pending()
        self._write_pending()

    def _write_pending(self) -> None:
        with self._queue_lock:
            lines, self._pending, self._size = self._pending, [], 0
            untold, self._untold = self._untold, 0
        if lines or untold:
            text = "".join(lines)
            if untold:
                text += self._dropped_line(untold)
            try:
                _write(self.stream, text)
            except (OSError, ValueError, LookupError):
                pass   # a closed or broken stream: nothing left to tell it
        with self._done:
            self._written += len(lines)
            self._stuck = False
            self._done.notify_all()

    def _dropped_line(self, untold: int) -> str:
        record = logging.LogRecord(
            __name__, logging.WARNING, __file__, 0, "%d log lines dropped: the log stream "
            "(stderr) did not take them as fast as they came, and %d KiB waited for it "
            "already (ep_log_lines_dropped_total in /__ep/metrics counts them)",
            (untold, self._max_pending // 1024), None)
        try:
            return self.format(record) + self.terminator
        except Exception:
            return f"{untold} log lines dropped: the log stream did not take them\n"

    def flush(self) -> None:
        """Waits until the lines queued so far are written: at most `flush_timeout`
        seconds, and not at all while the writer is stuck since a flush gave up on it."""
        with self._queue_lock:
            queued = self._queued
        self._wake.set()
        with self._done:
            if self._stuck or not self._writer.is_alive():
                return
            if not self._done.wait_for(lambda: self._written >= queued, self._flush_timeout):
                self._stuck = True

    def close(self) -> None:
        self.flush()
        self._stopped.set()
        self._wake.set()
        _LIVE.discard(self)   # (a closed one is not started again in a forked process)
        super().close()


# The handlers open in this process. A fork hook cannot be taken back: one a handler would
# stay behind each closed one, so one hook for all of them (as logging has for its locks).
_LIVE: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


def _restart_in_child() -> None:
    """A forked worker's handlers start empty, each with a writer of its own: the lines
    waiting at the fork are the server's to write."""
    for handler in list(_LIVE):
        handler._start()


if hasattr(os, "register_at_fork"):   # (not on Windows, which does not fork)
    os.register_at_fork(after_in_child=_restart_in_child)


def _write(stream: Any, text: str) -> None:
    """`text` written to `stream`'s file descriptor, all of it, by system calls alone. The
    stream's own write would hold its buffer's lock while a stalled pipe blocks it: a
    worker forked meanwhile would inherit that lock held by a thread it does not have,
    and never write to the stream again. A stream without a descriptor (a StringIO) is
    written as it is."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):   # (io.UnsupportedOperation is both)
        stream.write(text)
        stream.flush()
        return
    data = memoryview(text.encode(getattr(stream, "encoding", None) or "utf-8",
                                  "backslashreplace"))
    while data:
        try:
            data = data[os.write(fd, data):]   # a signal may cut a write short
        except BlockingIOError:   # a descriptor made non-blocking by another of its users
            writable = select.poll()
            writable.register(fd, select.POLLOUT)
            writable.poll(1000)


def _flush_at_process_exit() -> None:
    """A server's worker process (forked by multiprocessing) ends through multiprocessing's
    exit functions, never the interpreter's: the lines still batched then (the access
    lines of its last requests) are written there, after every other exit function (which
    may log), or they were lost. (Each setup adds one: a flush more at exit, no more.)"""
    multiprocessing.util.Finalize(None, _flush_root_handlers, exitpriority=-100)


def _flush_root_handlers() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def dropped_log_lines() -> int:
    """The lines this process's log handler dropped, its stream not taking them in time."""
    return sum(handler.dropped for handler in logging.getLogger().handlers
               if isinstance(handler, BatchingStreamHandler))


def configure_logging(*, fmt: str, level: str) -> None:
    handler = BatchingStreamHandler(sys.stderr)
    _flush_at_process_exit()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, BatchingStreamHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "granian", "granian.access",
                 "_granian"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("granian.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def direct_handler(logger: logging.Logger) -> BatchingStreamHandler | None:
    """The handler `logger`'s INFO lines may be written to directly: when logging is set up
    the way configure_logging leaves it (the logger adds nothing of its own and passes
    INFO to one BatchingStreamHandler with one of our two formatters). Anything else, such
    as a handler an embedding application attached, gets proper log records."""
    if logger.handlers or not logger.propagate or logger.disabled:
        return None
    root = logging.getLogger()
    if len(root.handlers) != 1 or not logger.isEnabledFor(logging.INFO):
        return None
    handler = root.handlers[0]
    if not isinstance(handler, BatchingStreamHandler) or handler.filters or \
            handler.level > logging.INFO:
        return None
    if type(handler.formatter) not in (TextFormatter, JsonFormatter):
        return None
    return handler
