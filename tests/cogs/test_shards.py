"""Shards and leases on Discord: a process drives only its shards' rooms, and only under their lease."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot import data
from bot.engine import Room
from bot.storage import Store
from cogs.coordinator import BACK, ELSEWHERE, OFFLINE
from tests.discord_world import World, answer, by_persona, notices

# Leases at the product's default length (the other Discord tests beat rarely: tests/discord_world.py).
pytestmark = pytest.mark.settings(room_lease_seconds=30.0)


async def store_room(world: World, guild_id: int, channel_id: int) -> int:
    """A running room stored for a channel, as another process (or an earlier start) left it."""
    room = Room(data.catalog(), data.scenarios()["open-room"], world.bot.settings.room_settings(6))
    room.add("Gemini 3 Flash")
    options = {"models": ["Gemini 3 Flash"], "scenario": "open-room", "turns": 6, "delay": 60.0}
    return await world.bot.store.create_room(room, "discord", guild_id=guild_id, channel_id=channel_id, options=options)


async def beat(world: World) -> None:
    """Let the coordinator's heartbeat run once (every ROOM_LEASE_SECONDS / 3, on simcord's clock)."""
    await world.env.advance_time(world.bot.settings.room_lease_seconds / 3)


async def lease_holder(world: World, room_id: int) -> str | None:
    held = await world.bot.store.leases()
    return held[room_id][0] if room_id in held else None


@pytest.mark.settings(shard_count=2, shard_ids=[1])
async def test_a_process_brings_back_only_the_rooms_of_its_shards_servers(world: World) -> None:
    ours = world.env.create_guild("Ours", shard_id=1)
    theirs = world.env.create_guild("Theirs", shard_id=0)
    here, there = ours.create_text_channel("seance"), theirs.create_text_channel("seance")
    mine = await store_room(world, ours.id, here.id)
    other = await store_room(world, theirs.id, there.id)

    await beat(world)

    assert world.session(here) is not None and world.session(there) is None
    assert await lease_holder(world, mine) == world.coordinator.leases.owner
    assert await lease_holder(world, other) is None  # left for the process that runs shard 0
    assert (await world.bot.store.room(other)).state == "running"
    reason = await world.coordinator.elsewhere(theirs.id, there.id)
    assert reason is not None and "shards 1 of 2" in reason and "SHARD_IDS" in reason


async def test_a_room_another_process_holds_is_left_to_it_then_taken_over_when_its_lease_ends(
    world: World, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="cogs.coordinator")
    room_id = await store_room(world, world.guild.id, world.channel.id)
    store: Store = world.bot.store
    assert await store.take_lease(room_id, "old-process", 30) == "old-process"

    await beat(world)
    assert world.session() is None
    result = await world.mod.slash(world.channel, "seance status")
    assert answer(result) == ELSEWHERE
    result = await world.start()  # a second room in the channel would be driven beside the first
    assert answer(result) == ELSEWHERE and len(await store.rooms()) == 1

    await store.release_leases("old-process")  # the old process shut down (or its lease expired)
    await beat(world)

    session = world.session()
    assert session is not None and session.room_id == room_id
    assert notices(world.channel)[-1] == BACK
    assert await lease_holder(world, room_id) == world.coordinator.leases.owner
    assert f"room {room_id} is taken over" in caplog.text


@pytest.mark.logs_errors  # nothing should be logged at ERROR: the check below says so
async def test_a_room_whose_lease_is_lost_stops_here_without_a_word_in_the_channel(
    world: World, fake_llm, caplog, error_logs
) -> None:
    await world.start(turns=10, delay=60)
    session = world.session()
    room_id = session.room_id
    store: Store = world.bot.store
    # Another process took the lease (this one was paused past its expiry, say).
    await store.db.execute("UPDATE room_leases SET owner = 'new-process', expires_at = expires_at + 600")
    await store.db.commit()
    events, posted, asked = await store.event_count(room_id), len(by_persona(world.channel)), len(fake_llm.chat_requests)

    await beat(world)
    await world.env.advance_time(600)

    assert world.session() is None
    assert await store.event_count(room_id) == events  # nothing more written for the room
    assert len(by_persona(world.channel)) == posted and len(fake_llm.chat_requests) == asked
    assert OFFLINE not in notices(world.channel)
    assert await lease_holder(world, room_id) == "new-process"
    assert f"room {room_id} is no longer this process's to drive" in caplog.text
    assert error_logs == []


async def test_a_process_that_cannot_be_sure_of_its_lease_writes_nothing(world: World, fake_llm) -> None:
    """The monotonic fence: past the trusted time, the room's next save is refused and the room stops."""
    await world.start(turns=10, delay=60)
    room_id = world.session().room_id
    leases = world.coordinator.leases
    world.coordinator._beating.cancel()  # the process was paused: no renewal ran meanwhile
    leases._trusted[room_id] = leases.monotonic() - 1  # and its trusted time has passed
    events = await world.bot.store.event_count(room_id)

    await world.env.advance_time(60)

    assert world.session() is None
    assert await world.bot.store.event_count(room_id) == events
    assert await lease_holder(world, room_id) is None  # given up: the room is taken again from storage


async def test_rooms_stop_when_their_leases_cannot_be_renewed_for_too_long(world: World, monkeypatch, caplog) -> None:
    await world.start(turns=10, delay=600)
    room_id = world.session().room_id
    leases = world.coordinator.leases

    async def unreachable(*args, **kwargs):
        raise OSError("the database host is unreachable")

    monkeypatch.setattr(world.bot.store, "renew_leases", unreachable)
    await beat(world)
    assert world.session() is not None  # one failed renewal: the lease is still surely ours
    assert "could not renew the room leases (the database host is unreachable)" in caplog.text
    monkeypatch.setattr(leases, "monotonic", lambda: 10**9)  # renewals kept failing past the trusted time
    await beat(world)
    assert world.session() is None and room_id not in leases.held


async def test_shutdown_gives_up_the_leases_and_an_ended_room_its_own(world: World, tmp_path) -> None:
    await world.start(turns=1, delay=0)  # ends after one turn
    await world.env.settle()
    ended = (await world.bot.store.rooms())[-1].id
    assert world.session() is None and await lease_holder(world, ended) is None

    other = world.guild.create_text_channel("second")
    await world.start(other, turns=10, delay=60)
    running = world.session(other).room_id
    assert await lease_holder(world, running) == world.coordinator.leases.owner

    await world.bot.close()
    store = await Store.open(world.bot.settings.database_path)
    try:
        assert await store.leases() == {}
    finally:
        await store.close()


async def test_leases_are_renewed_while_the_rooms_are_still_coming_back_after_a_start(
    world: World, monkeypatch, caplog
) -> None:
    """A thousand rooms take minutes to come back, longer than a lease lasts unrenewed: the
    heartbeat renews the leases of the rooms already back meanwhile, and looks for rooms to
    take over only once the restore is done (a second restore beside it would find the same rooms)."""
    caplog.set_level(logging.INFO, logger="cogs.coordinator")
    second = world.guild.create_text_channel("second")
    first_id = await store_room(world, world.guild.id, world.channel.id)
    second_id = await store_room(world, world.guild.id, second.id)
    slow = asyncio.Event()  # the second room loads only once this is set: until then, the restore goes on
    loads: list[int] = []  # room ids, as the restore loads them from storage
    looks: list[float] = []  # each search for rooms to bring back (a restore or a takeover)
    load_room, rooms = Store.load_room, Store.rooms

    async def loading(store: Store, room_id: int, *args):
        loads.append(room_id)
        if room_id == second_id and not slow.is_set():
            await world.env.external_wait(slow.wait(), reason="the second room is slow to load")
        return await load_room(store, room_id, *args)

    async def listing(store: Store, *args, **kwargs):
        if kwargs.get("unleased_at") is not None and kwargs.get("states") == ("running", "paused"):
            looks.append(kwargs["unleased_at"])
        return await rooms(store, *args, **kwargs)

    monkeypatch.setattr(Store, "load_room", loading)  # every bot's store: the restarted one's too
    monkeypatch.setattr(Store, "rooms", listing)

    await world.restart()  # its start brings the first room back, and waits on the second
    coordinator, store = world.coordinator, world.bot.store
    owner = coordinator.leases.owner
    assert world.session() is not None and world.session(second) is None
    assert coordinator._restoring.locked()  # the restore is still under way
    expiry = {room_id: held[1] for room_id, held in (await store.leases()).items()}
    assert set(expiry) == {first_id, second_id}  # the second's is taken before it is loaded

    for _ in range(2):  # the beats go on while the restore does
        await beat(world)
        leases = await store.leases()
        for room_id in (first_id, second_id):
            assert leases[room_id][0] == owner and leases[room_id][1] > expiry[room_id]  # renewed
            expiry[room_id] = leases[room_id][1]
        assert len(looks) == 1 and loads == [first_id, second_id]  # no takeover beside the restore
    assert world.session(second) is None

    slow.set()  # the restore ends
    await world.env.settle()

    assert len(looks) == 1  # and no takeover was queued behind it
    assert sorted(loads) == [first_id, second_id]  # each room loaded once
    for channel, room_id in ((world.channel, first_id), (second, second_id)):
        session = world.session(channel)
        assert session is not None and session.room_id == room_id and not session.task.done()
        assert notices(channel).count(BACK) == 1
        assert caplog.text.count(f"room {room_id} is back") == 1
        assert await lease_holder(world, room_id) == owner


async def test_leases_are_renewed_while_rooms_are_being_taken_over(world: World, monkeypatch, caplog) -> None:
    """Taking over many rooms (a rolling deploy's old process gave up a thousand) takes minutes too:
    the beats go on meanwhile, renewing the leases of the rooms this process drove already."""
    caplog.set_level(logging.INFO, logger="cogs.coordinator")
    await world.start(turns=10, delay=60)
    mine = world.session().room_id
    second = world.guild.create_text_channel("second")
    theirs = await store_room(world, world.guild.id, second.id)
    store: Store = world.bot.store
    assert await store.take_lease(theirs, "old-process", 30) == "old-process"
    slow = asyncio.Event()  # the taken-over room loads only once this is set
    load_room = Store.load_room

    async def loading(store: Store, room_id: int, *args):
        if room_id == theirs and not slow.is_set():
            await world.env.external_wait(slow.wait(), reason="the taken-over room is slow to load")
        return await load_room(store, room_id, *args)

    monkeypatch.setattr(Store, "load_room", loading)
    await store.release_leases("old-process")  # it shut down
    await beat(world)  # the takeover begins
    assert world.session(second) is None and world.coordinator._restoring.locked()
    expiry = (await store.leases())[mine][1]

    await beat(world)  # the takeover is still under way

    owner, renewed = (await store.leases())[mine]
    assert owner == world.coordinator.leases.owner and renewed > expiry
    slow.set()
    await world.env.settle()
    session = world.session(second)
    assert session is not None and session.room_id == theirs
    assert notices(second).count(BACK) == 1 and caplog.text.count(f"room {theirs} is taken over") == 1
    assert await lease_holder(world, theirs) == world.coordinator.leases.owner
    assert world.session().room_id == mine and not world.session().task.done()


async def test_a_shutdown_during_the_restore_leaves_unlaunched_rooms_stored_and_silent(world: World, monkeypatch) -> None:
    """Rooms are all loaded before any is launched: one loaded but not yet launched when the bot
    shuts down never said it was back, so it says nothing of going offline either, and stays
    stored as running for the next start."""
    second = world.guild.create_text_channel("second")
    first_id = await store_room(world, world.guild.id, world.channel.id)
    second_id = await store_room(world, world.guild.id, second.id)
    slow = asyncio.Event()  # never set: the second room is still loading at the shutdown
    load_room = Store.load_room

    async def loading(store: Store, room_id: int, *args):
        if room_id == second_id:
            await world.env.external_wait(slow.wait(), reason="the second room is slow to load")
        return await load_room(store, room_id, *args)

    monkeypatch.setattr(Store, "load_room", loading)
    await world.restart()
    assert world.session() is not None and world.session().task is None  # opened, not launched

    await world.bot.close()

    assert OFFLINE not in notices(world.channel) and BACK not in notices(world.channel)
    store = await Store.open(world.bot.settings.database_path)
    try:
        assert (await store.room(first_id)).state == "running" and (await store.room(second_id)).state == "running"
    finally:
        await store.close()
