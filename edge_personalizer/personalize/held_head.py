"""The head of a page whose slots are not known yet, held until the page shows which it has.

SlotPresence knows, per page, which of the rules' slots a page lacks, and the choices for
those are dropped before anything is made of the decision. On a view where it does not
know (the page's first view in a worker, a look again after `relearn_views` or
`relearn_seconds`, changed validators, a rules reload), the response start waits here,
and with it the body the rewriter has made so far, until the rewriter has found each of
the decision's slots, or the page has ended. Only then are the choices for the slots it
did not find dropped, and the X-EP-Variant header, the cache tags, the goals reached, the
exposures counted and the profile cookie made of what the page shows:

- a page whose slots are near its top goes out as soon as the last is found (with the
  first KiB the charset is read from, it was held that long anyway);
- a page lacking a slot is held to its end, on such views only (later views know), and
  carries its exact Content-Length;
- at most HOLD_LIMIT bytes of the page are read while the head waits (as much as the
  proxy buffers from an origin before it stops reading, http.flow.HIGH_WATER), counted as
  the rewriter reads them, decompressed (a compressed page is held by what it holds, not
  by what it weighs on the wire; a chunk that decompresses to more is read 64 KiB at a
  time, the bound checked after each), and as much of what it made: past that, the head
  goes out with every slot taken as present, as before it was held, and what the
  rewriter finds by the page's end is learned for the next views;
- and for at most `head_hold_seconds` (SlotPresence.hold_seconds, OnTime): a page that
  flushes its top early and then renders slowly goes out then, as past HOLD_LIMIT, with
  what the rewriter made so far (unless the first KiB the charset is read from has not
  come yet);
- an experiment's control (a variant that leaves its slot as it is) is looked for like a
  treatment (a look-only edit, and a rewriter made just to look when nothing else
  changes the page), so it counts only where the page has its slot, as on later views;
  a page left with nothing to change goes out as the origin sent it once released (a
  page found with every slot is learned then: the rest passes unread). A holdout (and
  the control of a visitor without a stable id) counts nothing, but is looked for the
  same way: X-EP-Variant and the segment name it only where the page has the slot;
- a page that cannot be read for its slots (a charset or content coding the rewriter
  passes through, or markup lol-html gives up on) goes out at once, every slot taken as
  present.

A look again with unchanged validators (relearn_views, relearn_seconds) is held like a
first view: what was known is not used for its head. The rewriter must look for every
slot again, and a page that gained one behind validators that do not tell (none at all,
or a Last-Modified of the same second) would then show a variant its head does not name;
letting the rewriter skip the slots known absent instead would learn nothing of them.
That costs a held view per page and worker once per relearn period.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from starlette.types import Message, Send

from ..observability.logs import escaped
from .exchange import Exchange
from .response_headers import PageHeaders, ResponseHead
from .slot_presence import SlotPresence, hidden, nesting

logger = logging.getLogger(__name__)

# Bytes of a page read (decompressed), or made of it, while a head waits (=
# http.flow.HIGH_WATER, which this part of the package may not import).
HOLD_LIMIT: Final = 256 * 1024


def settle_known_slots(exchange: Exchange, headers: PageHeaders, head: ResponseHead, *,
                       look_only: bool = False) -> bool:
    """Drops the choices for the slots this page is known to lack (or to hide); False
    when which slots it has is not known (the head is to wait for the rewriter), True
    when it is, or when it does not matter (no slots, a preview, a page made for a
    segment an edge named, nothing learned). `look_only` (a HEAD, which shows nothing
    and waits for no rewriter): what is known is used, and the view is not counted; a
    page whose slots are not known is taken to have none of the decision's."""
    slots = headers.personalizer.slots
    if not exchange.trims_slots(slots, keyed=headers.cache.keyed):
        return True
    decision = exchange.decision
    page = exchange.page   # (worked out only here: a page with slots to know of)
    if look_only:
        gone = slots.known_gone(page, decision)
        if gone is None:
            # Not known: the page's own start, naming none of the decision's slots (a page
            # that lacks them, the most a HEAD can say without reading the page).
            exchange.settle_no_slots()
        elif gone:
            exchange.settle(slots.trim(decision, gone))
        return True
    absent = slots.absent(page, head, decision.slots)
    if absent is None:
        return False
    if absent:
        exchange.settle(slots.trim(decision, absent))
    return True


class HeldHead:
    """The rewritten body of a page whose head waits, and when the head may go.

    `slots` are the slots the rewriter looks for, in the order of its found flags;
    `probed` those it finds which is inside which of (by their places here).
    """

    __slots__ = ("slots", "probed", "limit", "output", "size", "overdue")

    def __init__(self, slots: Sequence[str], limit: int = HOLD_LIMIT,
                 probed: Sequence[str] = ()) -> None:
        self.slots = tuple(slots)
        self.probed = tuple(probed)
        self.limit = limit
        self.output: list[bytes] = []   # what the rewriter made while the head waited
        self.size = 0                   # its bytes
        self.overdue = False            # the head waited head_hold_seconds (OnTime)

    def absent(self, found: Sequence[bool] | None, read: int,
               ended: bool) -> frozenset[str] | None:
        """None while the head waits; else the slots the page lacks (empty: every slot is
        there, or taken to be). `found`: the rewriter's flags (None: it cannot tell);
        `read`: bytes of the page the rewriter read, decompressed; `ended`: the page is
        over."""
        if found is None or len(found) != len(self.slots) or all(found):
            return frozenset()
        if ended:
            return frozenset(slot for slot, there in zip(self.slots, found, strict=True)
                             if not there)
        if self.overdue or max(read, self.size) > self.limit:
            return frozenset()   # past a bound: taken as present, as before the hold
        return None

    def release(self, exchange: Exchange, presence: SlotPresence, head: ResponseHead,
                found: Sequence[bool] | None, read: int, ended: bool,
                inside: frozenset[tuple[int, int]] | None = None) -> bool:
        """Whether the head may go (see absent): if so, the choices for the slots the page
        lacks, or hides (inside a slot whose variant takes away what it held: `inside`,
        the rewriter's), are dropped; a page seen with every slot before its end is
        learned so (the rest of it may pass without the rewriter when nothing is left to
        change)."""
        absent = self.absent(found, read, ended)
        if absent is None:
            return False
        nested = nesting(self.slots, self.probed, inside)
        gone = absent | hidden(exchange.decision.slots,
                               (pair for pair, there in nested.items() if there))
        if gone:
            exchange.settle(presence.trim(exchange.decision, gone))
        if not absent and found is not None and not ended and len(found) == len(self.slots) \
                and all(found) and exchange.whole_page:
            presence.learned(exchange.page, head,
                             dict(zip(self.slots, found, strict=True)), nested)
        return True

    def keep(self, out: bytes | None) -> None:
        if out:
            self.output.append(out)
            self.size += len(out)

    def take(self, out: bytes | None) -> bytes:
        """Everything held, then `out`, as one."""
        if out:
            self.output.append(out)
        held, self.output, self.size = self.output, [], 0
        return held[0] if len(held) == 1 else b"".join(held)


class OnTime:
    """The time bound of a held head: when it passes, what the head and the body held so
    far become is sent at once, and anything sent after it waits until that is out."""

    __slots__ = ("timer", "sending")

    def __init__(self) -> None:
        self.timer: asyncio.TimerHandle | None = None
        self.sending: asyncio.Future[None] | None = None

    def arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self.timer = asyncio.get_running_loop().call_later(seconds, self._expire, expired)

    def _expire(self, expired: Callable[[], None]) -> None:
        self.timer = None
        expired()

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def send(self, send: Send, messages: list[Message]) -> None:
        self.sending = asyncio.ensure_future(_send_each(send, messages))

    async def sent(self) -> None:
        """Waits until what went out on time is out (raises what sending it raised)."""
        if self.sending is not None:
            sending, self.sending = self.sending, None
            await sending

    async def finish(self, path: str) -> None:
        """As sent(), at the response's end: a client that left is nothing to raise."""
        try:
            await self.sent()
        except Exception as exc:
            logger.debug("sending %s's head on time failed: %s", escaped(path), exc)

    def close(self) -> None:
        self.disarm()
        if self.sending is not None:   # (a response cut off by an error of the app's)
            self.sending.cancel()
            self.sending = None


async def _send_each(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)
