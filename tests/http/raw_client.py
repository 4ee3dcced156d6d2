"""What the client-side tests need around the real server: an origin that records every
request reaching it (strictly framed, as a careful origin would read it), raw-socket
answers read with a deadline, and a worker's resident memory.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .raw_origin import ThreadedOrigin

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
BIG = 64 * 1024   # the body /big gets
BODY_TIMEOUT = 1.0   # the test server's body_timeout, seconds


@dataclass
class Seen:
    """One request as the origin got it. `ended`: the origin stopped waiting for it, whole
    (`complete`) or cut off by the proxy closing the connection."""

    line: bytes
    head: bytes
    body: bytes = b""
    complete: bool = False
    ended: bool = False
    trailers: bytes = b""   # trailer fields after a chunked body (none may come)
    ambiguous: list[str] = field(default_factory=list)   # framing a careful origin refuses

    @property
    def summary(self) -> str:
        method, target = self.line.split(b" ")[:2]
        return f"{method.decode('latin-1')} {target.decode('latin-1')}" + (
            "" if self.complete else " (cut)")

    def header(self, name: bytes) -> list[bytes]:
        return [line.partition(b":")[2].strip() for line in self.head.split(b"\r\n")[1:]
                if line.partition(b":")[0].lower() == name]


class RecordingOrigin:
    """Answers each request `200 ok` (`/big`: 64 KiB) once it has all of it (`/slow-read`:
    begins to read the body after twice the body timeout); remembers what came (`seen`). A
    request it cannot frame is recorded and the connection closed."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.threaded = ThreadedOrigin(self.handle)

    def __enter__(self) -> str:
        return self.threaded.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.threaded.__exit__(*exc)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    self.seen.append(Seen(exc.partial.split(b"\r\n")[0] + b" ? ?",
                                          exc.partial, ended=True))
                return
            seen = Seen(head.split(b"\r\n", 1)[0], head, ambiguous=_ambiguous(head))
            self.seen.append(seen)
            try:
                if seen.ambiguous:
                    return
                if seen.line.split(b" ")[1] == b"/slow-read":
                    await asyncio.sleep(2 * BODY_TIMEOUT)   # an origin busy before it reads
                if seen.header(b"transfer-encoding"):
                    seen.body, seen.trailers = await _dechunk(reader)
                elif seen.header(b"content-length"):
                    seen.body = await reader.readexactly(int(seen.header(b"content-length")[0]))
            except (asyncio.IncompleteReadError, ValueError, ConnectionError):
                return
            finally:
                seen.ended = True
            seen.complete = True
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (BIG, b"b" * BIG)
                         if seen.line.split(b" ")[1] == b"/big" else OK)
            await writer.drain()

    def settled(self, timeout: float = 2.0) -> list[Seen]:
        """What came, once every request the origin began is ended (cut or whole)."""
        deadline = time.monotonic() + timeout
        while not all(seen.ended for seen in self.seen):
            assert time.monotonic() < deadline, \
                f"the origin still waits for a body: {[s.summary for s in self.seen]}"
            time.sleep(0.01)
        return list(self.seen)


def _ambiguous(head: bytes) -> list[str]:
    lines = head[:-4].split(b"\r\n")
    problems = [f"bare LF or CR in {line!r}" for line in lines if b"\n" in line or b"\r" in line]
    names = [line.partition(b":")[0] for line in lines[1:]]
    problems += [f"odd name {name!r}" for name in names
                 if not re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name)]
    lowered = [name.lower() for name in names]
    if lowered.count(b"content-length") > 1 or lowered.count(b"transfer-encoding") > 1:
        problems.append("a framing header twice")
    if b"content-length" in lowered and b"transfer-encoding" in lowered:
        problems.append("both Content-Length and Transfer-Encoding")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"transfer-encoding" and value.strip() != b"chunked":
            problems.append(f"transfer coding {value!r}")
        if name.lower() == b"content-length" and not value.strip().isdigit():
            problems.append(f"length {value!r}")
    return problems


async def _dechunk(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    body = b""
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line[:-2].split(b";")[0], 16)
        if size == 0:
            trailers = b""
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                trailers += line
            return body, trailers
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("chunk without its CRLF")


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes

    def header(self, name: str) -> str | None:
        for line in self.head.decode("latin-1").split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.lower() == name:
                return value.strip()
        return None


class RawClient:
    """One connection, read with a deadline: `answers()` gives the final answers that come
    (100 Continue and the like skipped) and says whether the server then closed."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.closed = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """Whether all of it was sent (the server may close before)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def pending(self) -> bool:
        """Whether the server has answered or closed (nothing is taken off the socket)."""
        if self.closed or self.buffer:
            return True
        self.sock.setblocking(False)
        try:
            self.sock.recv(1, socket.MSG_PEEK)   # a byte, or b"" at the close
            return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(self.timeout)

    def _fill(self, deadline: float) -> bool:
        if self.closed:
            return False
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buffer += data
        return True

    def answer(self, timeout: float = 5.0, *, to_head: bool = False) -> Answer | None:
        """The next final answer (to a HEAD request: without a body); None when the
        connection closes (or `timeout` passes) first."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n\r\n" not in self.buffer:
                if not self._fill(deadline):
                    return None
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            self.buffer = rest
            if 100 <= status < 200:
                continue
            answer = Answer(status, head + b"\r\n\r\n", b"")
            length = answer.header("content-length")
            if to_head or status in (204, 304):
                pass
            elif length is not None:
                while len(self.buffer) < int(length):
                    if not self._fill(deadline):
                        raise AssertionError(f"answer cut short: {answer.head!r}")
                answer.body, self.buffer = self.buffer[:int(length)], self.buffer[int(length):]
            elif answer.header("transfer-encoding") == "chunked":
                while not self.buffer.endswith(b"0\r\n\r\n"):
                    if not self._fill(deadline):
                        raise AssertionError(f"answer cut short: {answer.head!r}")
                answer.body, self.buffer = self.buffer, b""
            return answer

    def closes(self, timeout: float = 2.0) -> bool:
        """Whether the server closes the connection within `timeout` (with nothing more)."""
        deadline = time.monotonic() + timeout
        while self._fill(deadline):
            pass
        return self.closed


def worker_pid(log: str) -> int:
    """The (only) worker's pid, from granian's log."""
    found = re.findall(r"Spawning worker-\d+ with PID: (\d+)", log)
    assert len(found) == 1, log[-2000:]
    return int(found[0])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
