"""Logging setup for the server: one handler writing batched lines in text or JSON."""

from __future__ import annotations

import json
import logging
import multiprocessing.util
import re
import sys
import threading
import time
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
    """A stream handler that writes INFO lines (the access log above all) in batches.

    One write a line was a system call on every request. Lines now wait at most
    `interval` seconds (a background thread flushes) or until 64 KiB are pending; a
    WARNING or worse goes out at once, after everything logged before it. Exit flushes.
    """

    def __init__(self, stream: Any, interval: float = 0.2) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._size = 0
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._flush_every, args=(interval,),
                                         name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)   # logging holds this handler's lock around emit()
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= 65536:
            self._write()

    def _write(self) -> None:
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._size = 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):
                pass   # a closed or broken stream: nothing left to tell it

    def flush(self) -> None:
        with self.lock:   # type: ignore[union-attr]
            self._write()

    def write_line(self, line: str) -> None:
        """Queue a line formatted by the caller exactly as this handler would (the access
        log's own path: a logging record costs more than the rest of its work)."""
        with self.lock:   # type: ignore[union-attr]
            self._pending.append(line)
            self._size += len(line)
            if self._size >= 65536:
                self._write()

    def _flush_every(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.flush()

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()


def _flush_at_process_exit() -> None:
    """A server's worker process (forked by multiprocessing) ends through multiprocessing's
    exit functions, never the interpreter's: the lines still batched then (the access
    lines of its last requests) are written there, after every other exit function (which
    may log), or they were lost. (Each setup adds one: a flush more at exit, no more.)"""
    multiprocessing.util.Finalize(None, _flush_root_handlers, exitpriority=-100)


def _flush_root_handlers() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


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
