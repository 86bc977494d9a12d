"""Room leases: taken atomically, renewed only while unbroken, given up, taken over after expiry."""

from __future__ import annotations

import asyncio

import pytest

from bot import data
from bot.engine import Room, RoomSettings
from bot.leases import LeaseLost, Leases
from bot.storage import Journal, Store, open_url


class Clocks:
    """A wall clock and a monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 100.0

    def advance(self, seconds: float, wall: float | None = None) -> None:
        self.mono += seconds
        self.wall += seconds if wall is None else wall


async def stored_rooms(store: Store, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings())
        room.add("Gemini 3 Flash")
        ids.append(await store.create_room(room, "discord", guild_id=1, channel_id=2))
    return ids


def leases(store: Store, clocks: Clocks, owner: str, seconds: float = 30.0) -> Leases:
    return Leases(store, seconds, owner, clock=lambda: clocks.wall, monotonic=lambda: clocks.mono)


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request, tmp_path):
    """Opens the test's database (again) each call: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return lambda: Store.open(tmp_path / "seance.sqlite3")
    url = request.getfixturevalue("pg_url")
    return lambda: open_url(url)


@pytest.fixture
async def store(reopen):
    store = await reopen()
    yield store
    await store.close()


async def test_a_lease_is_held_by_one_process_until_it_expires(store):
    clocks = Clocks()
    [room] = await stored_rooms(store, 1)
    old, new = leases(store, clocks, "old"), leases(store, clocks, "new")

    assert await old.take(room) is None
    assert await new.take(room) == "old"
    clocks.advance(29)
    assert await new.take(room) == "old"
    clocks.advance(2)  # past the expiry, never renewed: the owner is presumed dead
    assert await new.take(room) is None
    assert (await store.leases(clocks.wall))[room][0] == "new"


async def test_renewal_keeps_a_lease_and_a_lapsed_one_is_lost(store):
    clocks = Clocks()
    first, second = await stored_rooms(store, 2)
    mine, other = leases(store, clocks, "mine"), leases(store, clocks, "other")
    await mine.take(first)
    await mine.take(second)

    for _ in range(5):  # renewed every 10 s, held for a minute
        clocks.advance(10)
        assert await mine.renew() == set()
        assert await other.take(first) == "mine"
    mine.check(first)

    clocks.advance(40)  # paused past the expiry: even with nobody taking it over, it is lost
    assert await other.take(second) is None
    assert await mine.renew() == {first, second}
    assert mine.held == set()
    with pytest.raises(LeaseLost):
        mine.check(first)
    assert await other.take(first) is None


async def test_a_process_stops_trusting_its_lease_before_others_may_take_it(store):
    """check() is this process's own fence: no write for a room once others could take it."""
    clocks = Clocks()
    [room] = await stored_rooms(store, 1)
    mine = leases(store, clocks, "mine")
    await mine.take(room)
    clocks.advance(24)
    mine.check(room)
    clocks.advance(2, wall=0)  # even if the host's wall clock stood still
    with pytest.raises(LeaseLost, match=f"room {room} is no longer this process's"):
        mine.check(room)


async def test_released_leases_are_free_at_once(store):
    clocks = Clocks()
    rooms = await stored_rooms(store, 3)
    old, new = leases(store, clocks, "old"), leases(store, clocks, "new")
    for room in rooms:
        await old.take(room)
    await old.release([rooms[0]])
    assert not old.holds(rooms[0]) and old.holds(rooms[1])
    assert await new.take(rooms[0]) is None
    await old.release()
    assert [await new.take(room) for room in rooms[1:]] == [None, None]
    assert await store.leases(clocks.wall) == {room: ("new", clocks.wall + 30) for room in rooms}


async def test_unleased_rooms_are_listed_for_takeover(store):
    clocks = Clocks()
    rooms = await stored_rooms(store, 3)
    old = leases(store, clocks, "old")
    await old.take(rooms[1])
    free = await store.rooms(unleased_at=clocks.wall)
    assert [r.id for r in free] == [rooms[0], rooms[2]]
    clocks.advance(31)
    assert [r.id for r in await store.rooms(unleased_at=clocks.wall)] == rooms


async def test_a_lease_goes_with_its_room(store):
    clocks = Clocks()
    [room] = await stored_rooms(store, 1)
    await leases(store, clocks, "old").take(room)
    await store.delete_room(room)
    assert await store.leases(clocks.wall) == {}
    assert await leases(store, clocks, "new").take(room) == "nobody (the room is not stored)"


async def test_two_connections_racing_for_rooms_each_get_a_room_exactly_once(reopen):
    """Two processes' connections on one database, both taking every room at once: one owner per room."""
    first, second = await reopen(), await reopen()
    try:
        rooms = await stored_rooms(first, 20)
        clocks = Clocks()
        a, b = leases(first, clocks, "a"), leases(second, clocks, "b")
        takes = await asyncio.gather(*(lease.take(room) for room in rooms for lease in (a, b)))
        assert takes.count(None) == len(rooms)
        assert a.held.isdisjoint(b.held) and a.held | b.held == set(rooms)
        stored = await first.leases(clocks.wall)
        assert {room for room, (owner, _) in stored.items() if owner == "a"} == a.held
    finally:
        await first.close()
        await second.close()


async def test_the_rooms_listing_names_the_process_driving_each_room(store):
    import io

    from bot.export import list_rooms

    first, second = await stored_rooms(store, 2)
    await store.take_lease(first, "host-a:4242:beef01", 30)
    out = io.StringIO()
    await list_rooms(store, out)
    lines = out.getvalue().splitlines()
    assert "driven by" in lines[0]
    assert lines[1].split()[0] == str(first) and lines[1].endswith("host-a:4242:beef01")
    assert lines[2].split()[0] == str(second) and lines[2].endswith(" -")


class LateRenewals:
    """The store's renewals held back until the test lets them land (a writer busy with other rooms' batches)."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.landing = asyncio.Event()
        real = store.renew_leases

        async def late(*args, **kwargs):
            await self.landing.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(store, "renew_leases", late)


async def journaled_room(store: Store, lease: Leases) -> tuple[Room, Journal]:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings())
    room.add("Gemini 3 Flash")
    room_id = await store.create_room(room, "discord", guild_id=1, channel_id=2)
    assert await lease.take(room_id) is None
    return room, Journal(store, room_id, lease)


async def test_a_room_whose_trust_runs_out_while_its_renewal_is_written_waits_for_it(store, monkeypatch):
    """A busy process keeps its rooms: the renewal was asked in time but lands late (behind other
    rooms' batches); the room's next save waits for it instead of stopping, then is written."""
    clocks = Clocks()
    mine = leases(store, clocks, "mine")
    room, journal = await journaled_room(store, mine)
    late = LateRenewals(store, monkeypatch)
    clocks.advance(10)
    renewing = asyncio.ensure_future(mine.renew())  # asked 10 s after the take, as the heartbeat does
    await asyncio.sleep(0)
    clocks.advance(16)  # 26 s after the take: past the 25 s trusted, the renewal still being written
    room.announce("still here")
    before = len(await store.events(journal.room_id))
    recording = asyncio.ensure_future(journal.record(room))
    await asyncio.sleep(0.05)
    assert not recording.done() and len(await store.events(journal.room_id)) == before  # nothing written meanwhile

    late.landing.set()
    assert await renewing == set()
    assert [type(event).__name__ for _, event in await recording] == ["Notice"]
    assert len(await store.events(journal.room_id)) == before + 1
    assert mine.holds(journal.room_id)
    clocks.advance(8)  # 34 s after the take: trusted until 25 s after the renewal was asked (at 10 s),
    mine.check(journal.room_id)  # not after it landed (at 26 s)
    clocks.advance(2)
    with pytest.raises(LeaseLost):
        mine.check(journal.room_id)


async def test_a_room_waiting_for_a_renewal_that_finds_its_lease_taken_writes_nothing(store, monkeypatch):
    """The wait never lets two processes drive one room: the renewal landed after the lease had expired
    in storage and another process took it, so the room is lost and its save refused."""
    clocks = Clocks()
    mine, other = leases(store, clocks, "mine"), leases(store, clocks, "other")
    room, journal = await journaled_room(store, mine)
    late = LateRenewals(store, monkeypatch)
    clocks.advance(10)
    renewing = asyncio.ensure_future(mine.renew())
    await asyncio.sleep(0)
    clocks.advance(25)  # 35 s after the take: expired in storage, and taken by another process
    assert await other.take(journal.room_id) is None
    room.announce("still here")
    before = len(await store.events(journal.room_id))
    recording = asyncio.ensure_future(journal.record(room))
    await asyncio.sleep(0.05)
    late.landing.set()

    assert await renewing == {journal.room_id}
    with pytest.raises(LeaseLost):
        await recording
    assert len(await store.events(journal.room_id)) == before
    assert (await store.leases(clocks.wall))[journal.room_id][0] == "other"


async def test_a_room_waiting_for_a_renewal_that_fails_stops(store, monkeypatch):
    """Storage unreachable: the renewal raises, and a room past its trusted time writes nothing."""
    clocks = Clocks()
    mine = leases(store, clocks, "mine")
    room, journal = await journaled_room(store, mine)
    failing = asyncio.Event()

    async def unreachable(*args, **kwargs):
        await failing.wait()
        raise OSError("the database host is unreachable")

    monkeypatch.setattr(store, "renew_leases", unreachable)
    clocks.advance(10)
    renewing = asyncio.ensure_future(mine.renew())
    await asyncio.sleep(0)
    clocks.advance(16)
    room.announce("still here")
    recording = asyncio.ensure_future(journal.record(room))
    await asyncio.sleep(0.05)
    failing.set()
    with pytest.raises(OSError):
        await renewing
    with pytest.raises(LeaseLost):
        await recording
