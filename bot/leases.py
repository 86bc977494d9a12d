"""Room leases: which process drives which room, when several share one database.

A rolling deploy runs the old and the new process side by side, and a host may
split Discord's shards over several processes; all of them read the same rooms.
A process drives a room only while it holds the room's lease, a row in storage
with its owner and an expiry (``Store.take_lease``). It renews its leases every
third of ``ROOM_LEASE_SECONDS``, gives them up when it shuts down, and a dead
process's leases expire, so another process takes its rooms over.

Expiry is judged on two clocks. Storage compares wall-clock times, so the hosts'
clocks must agree to within a few seconds (NTP does). This process also keeps,
on its own monotonic clock, until when each lease is surely still its own: once
that has passed (the process was paused, or its renewals kept failing) it writes
nothing more for the room (``check`` raises ``LeaseLost``), whatever storage says.

A renewal trusts a lease from when it was asked, never from when it landed: its
write may wait seconds behind others, and the lease in storage runs from the wall
clock read before it was sent. A room whose trust runs out while its renewal is
being written waits for that renewal (``confirm``) rather than stopping: a busy
process keeps its rooms, and none writes on a lease it is not sure of.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage import Store

log = logging.getLogger(__name__)

# Part of a lease kept back on this process's own clock, for the hosts' clocks to differ
# and a renewal to be written (a lease of 30 s is trusted here for 25 s after its renewal began).
MARGIN = 1 / 6


class LeaseLost(Exception):
    """This process no longer holds the room's lease: another process may be driving it."""

    def __init__(self, room_id: int, holder: str | None = None):
        self.room_id = room_id
        self.holder = holder
        by = f"process {holder} holds it now" if holder else "its lease ran out before it was renewed"
        super().__init__(f"room {room_id} is no longer this process's to drive: {by}")


def process_name() -> str:
    """This process's name in the leases: host, pid and a random part (pids repeat after restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases:
    """The leases this process holds, and until when it trusts each one."""

    def __init__(
        self,
        store: Store,
        seconds: float,
        owner: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.seconds = seconds
        self.owner = owner or process_name()
        self.clock = clock  # wall clock: what storage compares across processes
        self.monotonic = monotonic  # this process's own clock: unaffected by the host's clock changing
        self._trusted: dict[int, float] = {}  # room id -> monotonic time until which the lease is surely ours
        self._renewal: asyncio.Future[None] | None = None  # done when the renewal being written has landed
        self._renewing: set[int] = set()  # the rooms it asks for

    @property
    def held(self) -> set[int]:
        return set(self._trusted)

    def holds(self, room_id: int) -> bool:
        """Whether this process holds the room's lease (without copying ``held``: a restore asks
        for every room, and a copy each time was quadratic in rooms)."""
        return room_id in self._trusted

    def _trust_until(self, started: float) -> float:
        return started + self.seconds * (1 - MARGIN)

    async def take(self, room_id: int) -> str | None:
        """Take the room's lease; returns None if taken, else the process that holds it."""
        started = self.monotonic()
        holder = await self.store.take_lease(room_id, self.owner, self.seconds, self.clock())
        if holder != self.owner:
            return holder or "nobody (the room is not stored)"
        self._trusted[room_id] = self._trust_until(started)
        return None

    @property
    def terms(self) -> tuple[str, float]:
        """(owner, seconds): for a room created with its lease (``Store.create_room(lease=...)``)."""
        return self.owner, self.seconds

    def hold(self, room_id: int, started: float) -> None:
        """A lease taken in storage at monotonic time ``started`` or after (a new room's)."""
        self._trusted[room_id] = self._trust_until(started)

    async def renew(self) -> set[int]:
        """Renew every lease held; returns the rooms whose lease is lost (and forgets them)."""
        if not self._trusted:
            return set()
        started = self.monotonic()
        asked = set(self._trusted)
        landed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._renewal, self._renewing = landed, asked
        try:
            kept = await self.store.renew_leases(self.owner, asked, self.seconds, self.clock())
        finally:
            if self._renewal is landed:
                self._renewal, self._renewing = None, set()
            landed.set_result(None)  # whatever happened: the rooms waiting on it look again
        lost = {room_id for room_id in asked if room_id not in kept and room_id in self._trusted}
        for room_id in kept:
            if room_id in self._trusted:  # not released while the renewal was written
                self._trusted[room_id] = self._trust_until(started)
        for room_id in lost:
            del self._trusted[room_id]
        return lost

    async def release(self, room_ids: Iterable[int] | None = None) -> None:
        """Give leases up (all of them, or on ``room_ids``): another process may take them at once."""
        chosen = list(self._trusted) if room_ids is None else [r for r in room_ids if r in self._trusted]
        for room_id in chosen:
            del self._trusted[room_id]
        if chosen:
            await self.store.release_leases(self.owner, chosen)

    def lapsed(self) -> set[int]:
        """Rooms whose lease this process can no longer be sure of (renewals failed for too long);
        they are forgotten: the runner stops, and the heartbeat may take the room again later."""
        now = self.monotonic()
        gone = {room_id for room_id, until in self._trusted.items() if now >= until}
        for room_id in gone:
            del self._trusted[room_id]
        return gone

    async def confirm(self, room_id: int) -> None:
        """``check``, but a lease whose trust ran out while its renewal is being written waits for
        that renewal: it lands with trust from when it was asked, or the room is lost. Nothing
        is written meanwhile, so no room is driven on a lease this process is not sure of."""
        renewal = self._renewal
        if renewal is not None and room_id in self._renewing and not self._sure(room_id):
            await asyncio.wait([renewal])  # not the future itself: a cancelled room must not cancel it
        self.check(room_id)

    def _sure(self, room_id: int) -> bool:
        until = self._trusted.get(room_id)
        return until is not None and self.monotonic() < until

    def check(self, room_id: int) -> None:
        """Raise LeaseLost unless this process surely still holds the room's lease."""
        if not self._sure(room_id):
            raise LeaseLost(room_id)
