"""The shared store for many instances: Redis, through redis-py's asyncio client.

Layout under a prefix (default `ep`):
    ep:experiments          set of experiment names counted
    ep:counts:<experiment>  hash; field `["variant","goal","cell","day",period,"e"]` (JSON) ->
                            total, metric e exposures, c conversions, s value sum, q value
                            sum of squares (fields from before periods, without one, are
                            read in UNKNOWN_PERIOD)
    ep:table:<name>         hash: version, payload, published_at
    ep:converted:["<experiment>","<variant>","<goal>","<visitor>"]
                            a visitor's conversion, counted already: expires after the
                            goal's attribution window

    ep:flushed:<writer>     the number of a flusher's last batch applied (a week's expiry)

A flush is one Lua script (`_FLUSH`) of HINCRBY/HINCRBYFLOAT, so Redis applies all of it
at once. Redis does not undo what a failing script wrote before its error, so the script
first checks every key it writes (a string where a count hash belongs, a field that is no
number) and refuses the whole batch naming the key: a StoreError, and the flusher keeps the
counts until an operator removes the key. A batch with an id (`BatchId`: its writer, and a
number that grows) is applied at most once: a write that timed out may have landed, and the
flusher sends it again with the same id; the id is recorded as the script's last write. A
visitor's conversion is counted only if its `ep:converted:` key was set anew (SET NX EX) in
the same script. Timeouts are short and nothing is retried here: a store that is down fails
the flush at once, and the flusher keeps the counts for the next one.

A fold (the trainer's, of rows of cells too small to keep apart) is one script too
(store/redis_fold.py): each field's value as it is then moved to the other cell's field.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio.to_thread
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ...errors import StoreError, TableUnreadable
from ..counters import UNKNOWN_PERIOD, Batch, Converted, CountKey, Tally
from .base import BatchId, Table, check_table, copy_unreadable
from .redis_fold import FOLD, INT_METRICS, METRICS, count_field, fold_input

logger = logging.getLogger(__name__)

_MAX_SKIPPED = 20   # an experiment's foreign fields remembered (and told) at most
# KEYS: the experiments set, the writer's last batch number, the count hashes, then one
# key per visitor's conversion.
# ARGV: the batch's number ("": none), how many experiment names, the names, then
# operations: `i` or `f`, hash, field, amount (HINCRBY, HINCRBYFLOAT); `c`, hash, key,
# seconds, conversions field, value sum field, value, value squares field, value squared
# (a visitor's conversion, counted if its key is new; its value too, unless the value is
# ""). Returns the conversions counted, or -1 for a batch applied already (its number not
# above the writer's last), with the first addition that failed ("" for none).
# Redis keeps whatever a script wrote before a command of it failed. So every key the batch
# writes is checked first, and a key of the wrong kind refuses the whole batch, naming it
# (the counts wait for an operator to remove it). An addition to a field someone wrote by
# hand that is no number fails alone: the rest is written, the batch's number recorded, and
# the failure named (a batch is applied at most once, never again in part).
_REFUSED: Final = "nothing of the batch was written"   # (the script's refusal, below)
_FLUSH = """
local function holds(key, expected)
  local kind = redis.call('TYPE', key)['ok']
  if kind == 'none' or kind == expected then return nil end
  return redis.error_reply('ERR nothing of the batch was written: ' .. key .. ' holds a ' ..
                           kind .. ', not a ' .. expected .. ' (delete or rename it)')
end
local names = tonumber(ARGV[2])
if ARGV[1] ~= '' then
  local bad = holds(KEYS[2], 'string')
  if bad then return bad end
  local last = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if last >= tonumber(ARGV[1]) then return {-1, ''} end
end
local bad = holds(KEYS[1], 'set')
if bad then return bad end
local at, seen = names + 3, {}
while at <= #ARGV do
  local counts = ARGV[at + 1]
  if not seen[counts] then
    seen[counts] = true
    bad = holds(KEYS[tonumber(counts)], 'hash')
    if bad then return bad end
  end
  at = at + (ARGV[at] == 'c' and 9 or 4)
end
local failed = ''
local function add(command, key, field, amount)
  local answer = redis.pcall(command, key, field, amount)
  if type(answer) == 'table' and answer['err'] then
    if failed == '' then failed = key .. ' ' .. field .. ': ' .. answer['err'] end
    return false
  end
  return true
end
if names > 0 then redis.call('SADD', KEYS[1], unpack(ARGV, 3, names + 2)) end
local counted = 0
at = names + 3
while at <= #ARGV do
  local op, counts = ARGV[at], KEYS[tonumber(ARGV[at + 1])]
  if op == 'i' then
    add('HINCRBY', counts, ARGV[at + 2], ARGV[at + 3])
    at = at + 4
  elseif op == 'f' then
    add('HINCRBYFLOAT', counts, ARGV[at + 2], ARGV[at + 3])
    at = at + 4
  else
    if redis.call('SET', KEYS[tonumber(ARGV[at + 2])], '1', 'NX', 'EX', ARGV[at + 3]) then
      if add('HINCRBY', counts, ARGV[at + 4], 1) then counted = counted + 1 end
      if ARGV[at + 6] ~= '' then
        add('HINCRBYFLOAT', counts, ARGV[at + 5], ARGV[at + 6])
        add('HINCRBYFLOAT', counts, ARGV[at + 7], ARGV[at + 8])
      end
    end
    at = at + 9
  end
end
if ARGV[1] ~= '' then redis.call('SET', KEYS[2], ARGV[1], 'EX', 604800) end
return {counted, failed}
"""

# KEYS: the table; ARGV: the version it must be at, payload, published_at. The new version,
# or nil when the table is at another version.
_PUBLISH_IF = """
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then return false end
redis.call('HSET', KEYS[1], 'version', version + 1, 'payload', ARGV[2], 'published_at', ARGV[3])
return version + 1
"""


def _redacted(url: str) -> str:
    """The URL with its password as ***, wherever redis-py reads one: before the host
    (redis://user:pw@host) or in the query (?password=pw, as unix:// URLs give it)."""
    parts = urlsplit(url)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)[1]
        url = urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))
    base, _, rest = url.partition("?")
    query, hash_mark, fragment = rest.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name.lower() == "password" for name, _ in pairs):
        return url
    query = "&".join(f"{name}=***" if name.lower() == "password"
                     else urlencode([(name, value)]) for name, value in pairs)
    return f"{base}?{query}{hash_mark}{fragment}"


def _decode_field(field: bytes, amount: bytes) -> tuple[CountKey, str, float] | None:
    """A count hash's field as a key (its experiment left blank), its metric and amount; None
    for a field edge-personalizer did not write (someone's HSET, another program's)."""
    try:
        parts, value = json.loads(field), float(amount)
    except (ValueError, RecursionError):   # (JSON's and UTF-8's errors among them)
        return None
    if not (isinstance(parts, list) and len(parts) in (5, 6) and parts[-1] in METRICS
            and all(isinstance(part, str) for part in parts[:4])
            and (len(parts) == 5 or type(parts[4]) is int)):
        return None
    period = parts[4] if len(parts) == 6 else UNKNOWN_PERIOD
    variant, goal, cell, day = parts[:4]
    return CountKey("", variant, goal, cell, day, period), parts[-1], value


def _decode_totals(experiments: list[str], hashes: list[dict[bytes, bytes]]
                   ) -> tuple[dict[CountKey, Tally], dict[str, list[str]]]:
    """The totals, and per experiment the fields skipped as no counts of ours."""
    totals: dict[CountKey, dict[str, float]] = {}
    skipped: dict[str, list[str]] = {}
    for name, fields in zip(experiments, hashes, strict=True):
        for field, amount in fields.items():
            decoded = _decode_field(field, amount)
            if decoded is None:
                skipped.setdefault(name, []).append(field.decode(errors="replace"))
                continue
            key, metric, value = decoded
            metrics = totals.setdefault(key._replace(experiment=name), {})
            # adds: an old field and a new one may both be in UNKNOWN_PERIOD
            metrics[metric] = metrics.get(metric, 0.0) + value
    return {key: Tally(int(metrics.get("e", 0)), int(metrics.get("c", 0)),
                       metrics.get("s", 0.0), metrics.get("q", 0.0))
            for key, metrics in totals.items()}, skipped


class RedisStore:
    """Counts in Redis; see the module docstring. Opening connects lazily (on first use)."""

    def __init__(self, url: str, *, prefix: str = "ep", timeout: float = 0.5) -> None:
        # (two sites on one database told apart in logs and health by their prefixes)
        self.location = _redacted(url) + ("" if prefix == "ep" else f" (prefix {prefix})")
        self._prefix = prefix
        try:
            self._redis: Redis = Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
        except (ValueError, RedisError) as exc:
            raise StoreError(f"{self.location}: not a usable Redis URL: {exc}") from exc
        self._flush = self._redis.register_script(_FLUSH)
        self._skipped: dict[str, tuple[str, ...]] = {}   # experiment -> fields not ours
        self._lost: set[bytes] = set()   # the failed additions told
        self._publish_if = self._redis.register_script(_PUBLISH_IF)
        self._fold = self._redis.register_script(FOLD)

    def _counts_key(self, experiment: str) -> str:
        return f"{self._prefix}:counts:{experiment}"

    async def _run(self, pipe: Pipeline) -> list[Any]:
        try:
            results: list[Any] = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"{self.location}: {type(exc).__name__}: {exc}") from exc
        return results

    async def _one(self, *command: str) -> Any:
        pipe = self._redis.pipeline(transaction=False)   # one command, errors as for many
        pipe.execute_command(*command)
        return (await self._run(pipe))[0]

    async def _call(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except (RedisError, OSError) as exc:
            # (a script's refusal names a key in the way: it stays until someone removes it)
            raise StoreError(f"{self.location}: {type(exc).__name__}: {exc}",
                             passes=_REFUSED not in str(exc)) from exc

    async def flush(self, batch: Batch, converted: Sequence[Converted] = (), *,
                    batch_id: BatchId | None = None) -> None:
        if not batch and not converted:
            return
        keys, args = self._flush_script_input(batch, converted, batch_id)
        _, failed = await self._call(self._flush(keys=keys, args=args))
        if failed and failed not in self._lost and len(self._lost) < _MAX_SKIPPED:
            self._lost.add(failed)
            logger.warning("%s: an addition failed, and its counts are lost (the rest of the "
                           "batch is written): %s; that field is no count edge-personalizer "
                           "wrote: HDEL it", self.location, failed.decode(errors="replace"))

    def _flush_script_input(self, batch: Batch, converted: Sequence[Converted],
                            batch_id: BatchId | None
                            ) -> tuple[list[str], list[str | int | float]]:
        """The KEYS and ARGV of `_FLUSH` for one write."""
        writer = "-" if batch_id is None else batch_id.writer
        keys = [f"{self._prefix}:experiments", f"{self._prefix}:flushed:{writer}"]
        hashes: dict[str, int] = {}   # experiment -> its count hash's index in KEYS (1-based)

        def counts(experiment: str) -> int:
            index = hashes.get(experiment)
            if index is None:
                keys.append(self._counts_key(experiment))
                index = hashes[experiment] = len(keys)
            return index

        names = {key.experiment for key in batch} | {c.key.experiment for c in converted}
        args: list[str | int | float] = [
            "" if batch_id is None else batch_id.number, len(names), *sorted(names)]
        for key, tally in batch.items():
            for metric, amount in zip(METRICS, tally, strict=True):
                if not amount:
                    continue
                if metric in INT_METRICS:
                    args += ["i", counts(key.experiment), count_field(key, metric), int(amount)]
                else:
                    args += ["f", counts(key.experiment), count_field(key, metric), repr(amount)]
        for conversion in converted:
            key = conversion.key
            index = counts(key.experiment)
            keys.append(f"{self._prefix}:converted:" + json.dumps(
                [key.experiment, key.variant, key.goal, conversion.visitor],
                separators=(",", ":")))
            value = conversion.value
            args += ["c", index, len(keys), max(1, math.ceil(conversion.window)),
                     count_field(key, "c"), count_field(key, "s"), repr(value) if value else "",
                     count_field(key, "q"), repr(value * value)]
        return keys, args

    async def totals(self, experiment: str | None = None) -> dict[CountKey, Tally]:
        if experiment is None:
            names = await self._one("SMEMBERS", f"{self._prefix}:experiments")
            experiments = sorted(name.decode() for name in names)
        else:
            experiments = [experiment]
        pipe = self._redis.pipeline(transaction=False)
        for name in experiments:
            pipe.hgetall(self._counts_key(name))
        hashes = await self._run(pipe)
        # a year of cells is ~10^5 fields: decoded in a thread, not on the event loop
        totals, skipped = await anyio.to_thread.run_sync(_decode_totals, experiments, hashes)
        for name in experiments:
            self._note_skipped(name, skipped.get(name, []))
        return totals

    async def fold(self, rows: Sequence[CountKey], *, into: str) -> None:
        by_experiment: dict[str, list[CountKey]] = {}
        for key in rows:
            by_experiment.setdefault(key.experiment, []).append(key)
        for experiment, keys in by_experiment.items():
            await self._call(self._fold(keys=[self._counts_key(experiment)],
                                        args=fold_input(keys, into)))

    def _note_skipped(self, experiment: str, fields: list[str]) -> None:
        """Remember what a read of `experiment` skipped (for results' warnings); log each
        field once while it stays."""
        key = self._counts_key(experiment)
        told, fields = self._skipped.get(experiment, ()), fields[:_MAX_SKIPPED]
        for field in fields:
            if field not in told:
                logger.warning("%s: %s field %r is no count edge-personalizer wrote; its "
                               "results leave it out (HDEL it)", self.location, key, field)
        if fields:
            self._skipped[experiment] = tuple(fields)
        else:
            self._skipped.pop(experiment, None)

    def unreadable(self) -> dict[str, list[str]]:
        return {name: [f"{self._counts_key(name)} field {field!r} is no count edge-"
                       "personalizer wrote: left out of the results (HDEL it)"
                       for field in fields] for name, fields in self._skipped.items()}

    async def publish(self, name: str, payload: bytes) -> int:
        check_table(name, payload)
        key = f"{self._prefix}:table:{name}"
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(key, "version", 1)
        pipe.hset(key, mapping={"payload": payload, "published_at": repr(time.time())})
        version: int = (await self._run(pipe))[0]
        return version

    async def publish_if(self, name: str, payload: bytes, *, version: int) -> int | None:
        check_table(name, payload)
        published = await self._call(self._publish_if(
            keys=[f"{self._prefix}:table:{name}"], args=[version, payload, repr(time.time())]))
        return None if published is None else int(published)

    async def table(self, name: str, *, newer_than: int = 0) -> Table | None:
        key = f"{self._prefix}:table:{name}"
        version = await self._one("HGET", key, "version")
        if version is None or self._version(name, version) <= newer_than:
            return None
        # Read again as one command: a publication in between gives its own consistent triple.
        version, payload, published_at = await self._one(
            "HMGET", key, "version", "payload", "published_at")
        number = self._version(name, version)
        if payload is None:
            raise self._unreadable(name, "has no payload field", number)
        try:
            at = float(published_at)
        except (TypeError, ValueError):
            raise self._unreadable(name, f"published_at {published_at!r} is no number "
                                   "(POSIX seconds)", number) from None
        return Table(name, number, bytes(payload), at)

    def _version(self, name: str, version: bytes | None) -> int:
        try:
            return int(version or b"")
        except ValueError:
            raise self._unreadable(name, f"version {version!r} is no whole number") from None

    def _unreadable(self, name: str, what: str, version: int | None = None
                    ) -> TableUnreadable:
        return copy_unreadable(name, f"{self.location}: table {self._prefix}:table:{name} "
                               f"{what}; expected a hash of version, payload and "
                               "published_at as edge-personalizer publishes it",
                               version=version)

    async def ping(self) -> None:
        await self._one("PING")

    async def close(self) -> None:
        try:
            await self._redis.aclose()
        except (RedisError, OSError) as exc:
            raise StoreError(f"{self.location}: {exc}") from exc
