"""How a count is named in a Redis count hash, and the script that folds counts of one
cell into another's (`Store.fold` for Redis).

A field is `["variant","goal","cell","day",period,"metric"]` (JSON; fields from before
periods were kept have no period and are read in UNKNOWN_PERIOD). Folding a row moves the
value each of its fields holds when the script runs into the field of the same name but
the cell, and deletes the field: one script, so a flush that adds to a field meanwhile
adds before the move (and is moved with it) or after it (into a field of its own again,
folded by a later run). A field Redis cannot add (someone's HSET of no number, in it or
in the field it would go to) stays where it is; the others move.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from ..counters import UNKNOWN_PERIOD, CountKey

METRICS = ("e", "c", "s", "q")   # exposures, conversions, value sum, sum of squares
INT_METRICS = frozenset("ec")

# KEYS: the count hash. ARGV: per row, how many moves it has, then each move: `i` or `f`
# (HINCRBY or HINCRBYFLOAT), the field folded, the field it goes to. Returns the fields
# moved.
FOLD = """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return 0 end
local at, moved = 1, 0
while at <= #ARGV do
  local n = tonumber(ARGV[at])
  for i = 0, n - 1 do
    local kind, from, to = ARGV[at + 1 + 3 * i], ARGV[at + 2 + 3 * i], ARGV[at + 3 + 3 * i]
    local value = redis.call('HGET', KEYS[1], from)
    if value then
      local added = redis.pcall(kind == 'i' and 'HINCRBY' or 'HINCRBYFLOAT', KEYS[1], to, value)
      if not (type(added) == 'table' and added['err']) then
        redis.call('HDEL', KEYS[1], from)
        moved = moved + 1
      end
    end
  end
  at = at + 1 + 3 * n
end
return moved
"""


def count_field(key: CountKey, metric: str) -> str:
    """The field of a count hash that holds `metric` of `key` (its experiment is the
    hash's)."""
    return json.dumps([key.variant, key.goal, key.cell, key.day, key.period, metric],
                      separators=(",", ":"))


def _field_before_periods(key: CountKey, metric: str) -> str:
    return json.dumps([key.variant, key.goal, key.cell, key.day, metric],
                      separators=(",", ":"))


def fold_input(rows: Sequence[CountKey], into: str) -> list[str]:
    """FOLD's ARGV for moving `rows` (of one experiment) into cell `into`."""
    args: list[str] = []
    for key in rows:
        if key.cell == into:
            continue
        target = key._replace(cell=into)
        moves = [(metric, count_field(key, metric)) for metric in METRICS]
        if key.period == UNKNOWN_PERIOD:   # read together with the fields of before periods
            moves += [(metric, _field_before_periods(key, metric)) for metric in METRICS]
        args.append(str(len(moves)))
        for metric, field in moves:
            args += ["i" if metric in INT_METRICS else "f", field, count_field(target, metric)]
    return args
