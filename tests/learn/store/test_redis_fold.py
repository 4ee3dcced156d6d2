from __future__ import annotations

import pytest
import redis.asyncio

from edge_personalizer.learn.counters import OTHER_CELLS, UNKNOWN_PERIOD, CountKey, Tally
from edge_personalizer.learn.store.redis import RedisStore
from edge_personalizer.learn.store.redis_fold import count_field, fold_input

from ...servers import RedisServer

pytestmark = pytest.mark.anyio
MADE_UP = CountKey("hero", "bold", "", "made-up", "2026-12-02", 4)


def test_a_row_s_fields_go_to_the_other_cell_s_of_the_same_name() -> None:
    args = fold_input([MADE_UP, MADE_UP._replace(cell=OTHER_CELLS)], OTHER_CELLS)
    assert args[:4] == ["4", "i", count_field(MADE_UP, "e"),
                        '["bold","","(other cells)","2026-12-02",4,"e"]']
    assert len(args) == 1 + 4 * 3   # the other cell's own row is none to move


async def test_fields_from_before_periods_are_folded_with_their_row(
        redis_server: RedisServer) -> None:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.hset("ep:counts:hero", mapping={   # as written before periods were kept
        '["bold","","made-up","2026-12-02","e"]': 7})
    await client.sadd("ep:experiments", "hero")
    store = RedisStore(redis_server.url)
    old = MADE_UP._replace(period=UNKNOWN_PERIOD)
    await store.flush({old: Tally(2)})
    assert await store.totals() == {old: Tally(9)}
    await store.fold([old], into=OTHER_CELLS)
    assert await store.totals() == {old._replace(cell=OTHER_CELLS): Tally(9)}
    assert await client.hlen("ep:counts:hero") == 1
    await client.aclose()
    await store.close()


@pytest.mark.parametrize("value", ["lots", "007", " 5"])
async def test_a_field_redis_cannot_add_stays_and_the_rest_of_its_row_moves(
        redis_server: RedisServer, value: str) -> None:
    # A check in the script let "007" and " 5" through, which Redis's additions refuse: the
    # script stopped half-way (a row split, the rest of the fold undone) and the trainer
    # took the error for an outage, pausing all learning for good.
    client = redis.asyncio.Redis.from_url(redis_server.url)
    store = RedisStore(redis_server.url)
    fine = MADE_UP._replace(cell="fine")
    await store.flush({fine: Tally(1), MADE_UP: Tally(3)})
    await client.hset("ep:counts:hero", count_field(MADE_UP, "c"), value)   # by hand
    await store.fold([MADE_UP, fine], into=OTHER_CELLS)
    fields = await client.hgetall("ep:counts:hero")
    other = MADE_UP._replace(cell=OTHER_CELLS)   # (fine's row and MADE_UP's are one there)
    assert fields == {count_field(MADE_UP, "c").encode(): value.encode(),
                      count_field(other, "e").encode(): b"4"}
    await client.aclose()
    await store.close()
