"""One worker of the multi-process store tests, run as a process of its own:

    python -m tests.learn.count_worker STORE_URL SEED EVENTS

counts EVENTS random exposures and conversions while its flusher writes to the store every
10 ms, stops (the final flush), and prints what it counted as JSON: {"key-as-json": tally}.

    python -m tests.learn.count_worker STORE_URL SEED forever

counts one exposure every 0.1 ms or so, flushing every second (the product's default),
and prints "<wall-clock time> <exposures so far>" every 50 ms until it is killed.
"""

from __future__ import annotations

import json
import random
import sys
import time

import anyio

from edge_personalizer.learn.counters import Accumulator, CountKey, Tally
from edge_personalizer.learn.flusher import Flusher
from edge_personalizer.learn.store import open_store

VARIANTS = ("control", "bold", "quiet")
CELLS = ("mobile|search", "desktop|social", "all")
DAYS = ("2026-12-01", "2026-12-02")
PERIODS = (0, 1, 2)   # versions of a bandit's weights the visitors were assigned under


async def count(url: str, seed: int, events: int) -> dict[CountKey, Tally]:
    rng = random.Random(seed)
    counters = Accumulator()
    expected: dict[CountKey, Tally] = {}
    store = open_store(url)
    flusher = Flusher(counters, store, interval=0.01)
    async with anyio.create_task_group() as tasks:
        await tasks.start(flusher.run)
        for n in range(events):
            variant, cell, day = rng.choice(VARIANTS), rng.choice(CELLS), rng.choice(DAYS)
            period = rng.choice(PERIODS)
            if rng.random() < 0.7:
                counters.expose("hero", variant, cell, day=day, period=period)
                key, tally = CountKey("hero", variant, "", cell, day, period), Tally(1)
            else:
                value = round(rng.uniform(1, 100), 2)
                counters.convert("hero", variant, "purchase", cell, value=value, day=day,
                                 period=period)
                key = CountKey("hero", variant, "purchase", cell, day, period)
                tally = Tally(0, 1, value, value * value)
            expected[key] = expected[key].plus(tally) if key in expected else tally
            if n % 50 == 0:
                await anyio.sleep(0.001)   # let the flusher write while counting goes on
        tasks.cancel_scope.cancel()
    await store.close()
    if not flusher.healthy:
        raise SystemExit(f"the last flush failed ({flusher.failed_flushes} failures)")
    return expected


async def count_forever(url: str) -> None:
    counters = Accumulator()
    flusher = Flusher(counters, open_store(url), interval=1.0)
    async with anyio.create_task_group() as tasks:
        await tasks.start(flusher.run)
        counted = 0
        while True:
            for _ in range(500):
                counters.expose("hero", "bold", day="2026-12-02")
            counted += 500
            print(time.time(), counted, flush=True)
            await anyio.sleep(0.05)


def main() -> None:
    url, seed = sys.argv[1], int(sys.argv[2])
    if sys.argv[3] == "forever":
        anyio.run(count_forever, url)
        return
    counted = anyio.run(count, url, seed, int(sys.argv[3]))
    print(json.dumps({json.dumps(key): tally for key, tally in counted.items()}))


if __name__ == "__main__":
    main()
