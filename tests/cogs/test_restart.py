"""Rooms outlive the process: stored when started, journaled with their Discord message ids,
brought back after a restart (running or paused), and nothing is posted twice."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import pytest
import simcord

from bot.bot import SeanceBot
from bot.engine import Picture, Reply, RoomSettings
from bot.guilds import GuildConfig
from bot.runner import RoomRunner
from bot.storage import Journal, Store
from cogs.coordinator import BACK, BACK_PAUSED, NOT_BACK, NOT_BACK_HERE, OFFLINE, RoomOptions
from tests.discord_world import World, answer, by_persona, notices
from tests.fakes import Reply as Scripted

THREE = "Gemini 3 Flash, DeepSeek R1, Claude Haiku 4.5"


def speakers(world: World) -> list[str]:
    return [m.author.name for m in by_persona(world.channel)]


def texts(world: World) -> list[str]:
    return [m.content for m in by_persona(world.channel)]


def webhook_lists(world: World) -> int:
    return sum(1 for r in world.env.http_requests if r.method == "GET" and r.path.endswith("/webhooks"))


async def latest(world: World) -> int:
    """The id of the newest stored room."""
    return (await world.bot.store.rooms())[-1].id


async def stored_reply(world: World, text: str) -> Reply:
    """A reply the room has recorded but not shown: what a crash right after recording leaves."""
    session = world.session()
    room = session.room
    turn = room.next_turn()
    room.complete_turn(turn, text)
    stored = await Journal(world.bot.store, session.room_id).record(room)
    return next(e for _, e in stored if isinstance(e, Reply))


async def test_a_started_room_is_stored_with_its_channel_and_options(world: World) -> None:
    await world.start(turns=7, delay=60, topic="tides", open_floor=True)

    [record] = await world.bot.store.rooms()
    assert (record.origin, record.state, record.scenario) == ("discord", "running", "open-room")
    assert (record.guild_id, record.channel_id, record.thread_id) == (world.guild.id, world.channel.id, None)
    assert record.options == {
        "models": ["Gemini 3 Flash", "DeepSeek R1"], "scenario": "open-room", "topic": "tides", "turns": 7,
        "delay": 60.0, "open_floor": True, "moderator_id": world.mod.id,
    }
    assert world.session().room_id == record.id


async def test_a_room_in_its_own_thread_is_stored_with_both_ids(world: World) -> None:
    await world.start(turns=3, delay=60, thread=True)
    [thread] = world.channel.threads
    [record] = await world.bot.store.rooms()
    assert (record.channel_id, record.thread_id) == (world.channel.id, thread.id)


async def test_events_are_marked_posted_with_the_messages_they_became(world: World) -> None:
    await world.start(models="Gemini 3 Flash", turns=1, delay=0)

    events = await world.bot.store.events(await latest(world))
    assert events and all(e.posted_at is not None for e in events)
    [reply] = [e for e in events if isinstance(e.event, Reply)]
    [post] = by_persona(world.channel)
    assert reply.message_ids == [post.id]
    ended = world.channel.history()[-1]
    assert ended.content == "-# ⏹️ The room has ended: reached the limit of 1 turn"
    assert any(e.message_ids == [ended.id] for e in events)
    assert await world.bot.store.ai_for_message(post.id) == (reply.room_id, 1)


async def test_a_running_room_goes_offline_and_carries_on_after_a_restart(world: World, fake_llm) -> None:
    fake_llm.script(Scripted.text("Before the night."), Scripted.text("After the dawn."))
    await world.start(turns=4, delay=60)

    await world.restart()  # the next turn comes at once: the wait was spent offline

    history = world.channel.history()
    assert [m.content for m in history[-3:-1]] == [f"-# {OFFLINE}", f"-# {BACK}"]
    session = world.session()
    assert session is not None and session.room.state == "running"
    assert texts(world) == ["Before the night.", "After the dawn."]
    assert speakers(world) == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)"]  # the turn order carries on
    assert "Before the night." in str(fake_llm.chat_requests[-1].body["messages"])  # so does the history
    await world.env.advance_time(60)
    assert len(texts(world)) == 3


async def test_a_paused_room_stays_paused_after_a_restart(world: World, fake_llm) -> None:
    await world.start(turns=4, delay=60)
    await world.mod.slash(world.channel, "seance pause")
    requests = len(fake_llm.chat_requests)

    await world.restart()
    await world.env.advance_time(600)

    assert notices(world.channel)[-1] == BACK_PAUSED
    assert world.session().room.state == "paused" and len(fake_llm.chat_requests) == requests
    await world.mod.slash(world.channel, "seance resume")
    assert speakers(world) == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)"]


async def test_what_was_stored_but_never_shown_is_posted_once_after_a_crash(world: World) -> None:
    await world.start(turns=6, delay=60)
    await stored_reply(world, "Stored, then the power went out.")

    await world.restart(crash=True)

    assert texts(world).count("Stored, then the power went out.") == 1
    history = [m.content for m in world.channel.history()]
    back = history.index(f"-# {BACK}")
    assert history[back - 1] == "Stored, then the power went out."  # the backlog first, then the news
    assert await world.bot.store.unposted(await latest(world)) == []
    await world.env.advance_time(60)
    assert texts(world).count("Stored, then the power went out.") == 1


async def test_a_batch_posted_just_before_the_crash_is_found_and_not_posted_again(world: World) -> None:
    await world.start(turns=6, delay=60)
    reply = await stored_reply(world, "Posted, but the crash came before it was written down.")
    [posted] = await world.session().stage.show([reply])  # on Discord, never marked in the journal

    await world.restart(crash=True)

    assert texts(world).count("Posted, but the crash came before it was written down.") == 1
    stored = [e for e in await world.bot.store.events(await latest(world)) if e.event == reply]
    assert [e.message_ids for e in stored] == [[posted]]
    assert notices(world.channel)[-1] == BACK


async def test_an_identical_notice_from_before_is_still_posted(world: World) -> None:
    await world.start(turns=6, delay=600)
    await world.restart(crash=True)
    await world.restart(crash=True)  # the second "back" notice reads like the first, which was recorded

    assert notices(world.channel).count(BACK) == 2


async def test_a_missing_permission_mid_room_keeps_the_reply_for_after_resume(world: World, fake_llm) -> None:
    fake_llm.script(Scripted.text("One."), Scripted.text("Two, held back."), Scripted.text("Three."))
    await world.start(turns=6, delay=60)
    world.env.inject_error("POST", "/webhooks/*", status=403, code=50013, message="Missing Permissions", times=None)

    await world.env.advance_time(60)

    session = world.session()
    assert session.room.state == "paused" and texts(world) == ["One."]
    world.env.backend.faults.clear()
    await world.mod.slash(world.channel, "seance resume")
    assert texts(world) == ["One.", "Two, held back.", "Three."]


async def test_a_reply_held_back_by_a_refusal_is_posted_after_a_restart(world: World, fake_llm) -> None:
    fake_llm.script(Scripted.text("One."), Scripted.text("Two, held back."))
    await world.start(turns=6, delay=60)
    world.env.inject_error("POST", "/webhooks/*", status=403, code=50013, message="Missing Permissions", times=None)
    await world.env.advance_time(60)
    world.env.backend.faults.clear()

    await world.restart()

    assert texts(world) == ["One.", "Two, held back."]
    assert world.session().room.state == "paused"
    assert notices(world.channel)[-1] == BACK_PAUSED


async def test_votes_on_messages_from_before_a_restart_still_count(world: World) -> None:
    await world.start(models=THREE, turns=20, delay=60)
    await world.env.advance_time(120)
    before = next(m for m in by_persona(world.channel) if m.author.name == "AI-2 (DeepSeek R1)")

    await world.restart()
    await world.viewer.react(before, "🔥")
    await world.env.advance_time(60)

    assert speakers(world)[-1] == "AI-2 (DeepSeek R1)"
    assert notices(world.channel)[-1] == "🗳️ AI-2 (DeepSeek R1) speaks next by vote (1 vote)"
    async with world.bot.store.db.execute("SELECT voter, ai_number, turn FROM votes") as cursor:
        assert await cursor.fetchall() == [(str(world.viewer.id), 2, 4)]  # cast after turn 4 (AI-1's, at the restart)


async def test_the_stored_webhook_is_reused_after_a_restart(world: World, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    await world.start(turns=6, delay=60)
    first = by_persona(world.channel)[0].webhook_id
    hook_id, token = await world.bot.store.webhook(world.channel.id)
    assert hook_id == first

    lists = webhook_lists(world)
    await world.restart()

    assert [m.webhook_id for m in by_persona(world.channel)] == [first, first]
    assert webhook_lists(world) == lists  # not listed again: the stored one was used as it is
    assert token not in caplog.text


async def test_a_stored_webhook_deleted_meanwhile_is_replaced(world: World) -> None:
    await world.start(turns=6, delay=60)
    old = by_persona(world.channel)[0].webhook_id
    world.env.backend.delete_webhook(old)  # someone removed it while the bot was away

    await world.restart(crash=True)

    posts = by_persona(world.channel)
    assert len(posts) == 2 and posts[1].webhook_id != old
    assert (await world.bot.store.webhook(world.channel.id))[0] == posts[1].webhook_id


async def test_a_room_whose_channel_is_gone_is_marked_stopped(world: World, caplog) -> None:
    await world.start(turns=6, delay=60)
    store = world.bot.store
    gone = await store.create_room(world.session().room, "discord", guild_id=world.guild.id, channel_id=4242)

    await world.restart(crash=True)

    assert (await world.bot.store.room(gone)).state == "stopped"
    assert f"room {gone} cannot come back (its channel is gone or out of reach)" in caplog.text
    assert world.session() is not None  # the other room is back


async def test_a_stopped_room_stays_stopped(world: World) -> None:
    await world.start(turns=6, delay=60)
    await world.mod.slash(world.channel, "seance stop")
    await world.restart()
    assert world.session() is None
    assert notices(world.channel)[-1] == "⏹️ The room has ended: stopped by Morgan"


async def test_a_reconnect_does_not_bring_rooms_back_twice(world: World) -> None:
    await world.start(turns=6, delay=600)
    await world.restart()
    world.bot.dispatch("ready")
    await world.env.settle()
    assert notices(world.channel).count(BACK) == 1


async def test_a_room_in_a_thread_comes_back_in_its_thread(world: World) -> None:
    await world.start(turns=6, delay=600, thread=True)
    [thread] = world.channel.threads

    await world.restart()

    assert world.session(thread) is not None and world.session() is None
    assert notices(thread)[-1] == BACK


class FirstPictureHangs:
    """The first picture is never finished (the process goes down first); later ones come at once."""

    name = "test"

    def __init__(self, world: World):
        self.world = world
        self.prompts: list[str] = []

    async def generate(self, prompt: str) -> Picture:
        self.prompts.append(prompt)
        if len(self.prompts) == 1:
            await self.world.env.external_wait(asyncio.Event().wait(), reason="a picture still being made")
        return Picture(b"\x89PNG drawn after the restart", "image/png")


async def test_an_ended_rooms_last_picture_is_posted_after_a_restart(world: World, fake_llm) -> None:
    fake_llm.script(Scripted.text('The last word.\n!image "a lamp left burning"'))
    world.bot.images = FirstPictureHangs(world)
    await world.start(models="Gemini 3 Flash", turns=1, delay=0)
    assert notices(world.channel)[-1] == "⏹️ The room has ended: reached the limit of 1 turn"
    assert not [m for m in world.channel.history() if m.attachments]

    await world.restart()

    pictures = [m for m in world.channel.history() if m.attachments]
    assert len(pictures) == 1 and pictures[0].author.name == "AI-1 (Gemini 3 Flash)"
    assert notices(world.channel)[-1].startswith("🎨 AI-1 (Gemini 3 Flash) created an image")
    assert BACK not in notices(world.channel) and OFFLINE not in notices(world.channel)  # it had ended
    assert world.session() is None  # the channel is free again
    room_id = await latest(world)
    assert await world.bot.store.rooms(pending_pictures=True) == []
    assert await world.bot.store.unposted(room_id) == []
    await world.restart()
    assert len([m for m in world.channel.history() if m.attachments]) == 1  # once


async def test_an_ended_rooms_picture_waits_for_a_channel_a_new_room_holds(world: World, fake_llm) -> None:
    fake_llm.script(Scripted.text('!image "a lamp left burning"'))
    world.bot.images = FirstPictureHangs(world)
    await world.start(models="Gemini 3 Flash", turns=1, delay=0)
    # Meanwhile a new room took the channel (stored directly: the ended room holds the
    # channel while it waits for its picture, and only the restart matters here).
    options = RoomOptions(models=["Gemini 3 Flash"], scenario="open-room", turns=5, delay=60)
    newer = world.coordinator.build_room(options, await world.bot.guild_settings.get(world.guild.id))
    await world.bot.store.create_room(
        newer, "discord", guild_id=world.guild.id, channel_id=world.channel.id, options=asdict(options)
    )

    await world.restart()

    session = world.session()
    assert session is not None and session.room.state == "running"  # the live room keeps its channel
    assert not [m for m in world.channel.history() if m.attachments]
    assert await world.bot.store.rooms(pending_pictures=True) == []  # given up, not tried at every start


def user_fetches(world: World) -> int:
    return sum(1 for r in world.env.http_requests if r.method == "GET" and r.path == f"/users/{world.mod.id}")


async def test_rooms_of_one_moderator_come_back_without_asking_for_them_and_share_one_fetch(world: World) -> None:
    second = world.guild.create_text_channel("second")
    await world.start(turns=6, delay=600)
    await world.start(second, turns=6, delay=600)
    before = user_fetches(world)

    await world.restart(crash=True)
    assert user_fetches(world) == before  # bringing rooms back does not need the moderator

    sessions = [world.session(), world.session(second)]
    assert all(s.moderator_id == world.mod.id for s in sessions)
    await asyncio.gather(*(s.runner.on_problem("⚠️ A test problem.") for s in sessions))
    await world.env.settle()
    assert user_fetches(world) == before + 1  # both DMs, one fetch
    assert all(s.moderator is not None and s.moderator.id == world.mod.id for s in sessions)
    dms = [r for r in world.env.http_requests if r.method == "POST" and "A test problem" in str(r.json)]
    assert len(dms) == 4  # in each channel, and to the moderator for each room


def history_reads(world: World) -> int:
    return sum(1 for r in world.env.http_requests if r.method == "GET" and r.path.endswith("/messages"))


async def test_rooms_that_left_nothing_unshown_come_back_without_reading_their_channels(world: World) -> None:
    """Reading a channel's history guards against posting twice what a crash left unmarked;
    a room with nothing unmarked skips it (at a thousand rooms, a thousand requests saved)."""
    second = world.guild.create_text_channel("second")
    await world.start(turns=6, delay=600)
    await world.start(second, turns=6, delay=600)
    await stored_reply(world, "Stored, never shown.")  # the first room owes its channel a reply
    before = history_reads(world)

    await world.restart(crash=True)
    assert history_reads(world) == before + 1  # the first room's channel only
    assert texts(world).count("Stored, never shown.") == 1
    assert world.session(second).room.state == "running"


# --- bringing many rooms back ---------------------------------------------------------


def restore_in_batches_of(monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    """Bots started from now on bring rooms back ``size`` at a time (each bot loads its cogs afresh,
    so the constant is set in the module each one loads)."""
    load_extension = SeanceBot.load_extension

    async def loading(bot: SeanceBot, name: str, **kwargs: Any) -> None:
        await load_extension(bot, name, **kwargs)
        if name == "cogs.coordinator":
            monkeypatch.setattr(sys.modules[name], "RESTORE_AT_ONCE", size)

    monkeypatch.setattr(SeanceBot, "load_extension", loading)


async def stored_room(world: World, channel: simcord.ChannelHandle, ended: bool = False) -> int:
    """A room stored for ``channel`` as an earlier process left it: running, or ended with its
    last notice still owed to the channel (so it comes back only to post that)."""
    options = RoomOptions(models=["Gemini 3 Flash", "DeepSeek R1"], scenario="open-room", turns=6, delay=600)
    room = world.coordinator.build_room(options, await world.bot.guild_settings.get(world.guild.id))
    stored = asdict(options) | {"moderator_id": world.mod.id}
    store = world.bot.store
    room_id = await store.create_room(room, "discord", guild_id=world.guild.id, channel_id=channel.id, options=stored)
    if ended:
        room.stop("the test ended it")
        await store.save(room_id, room, room.take_events())
    return room_id


async def test_every_room_is_loaded_before_any_is_launched(world: World, fake_llm, monkeypatch) -> None:
    """A room launched while others still load takes the CPU they need (a thousand rooms were back
    only after six minutes): no runner starts, and no model is asked, until the last room is loaded,
    over several batches, and the ended rooms after the live ones."""
    restore_in_batches_of(monkeypatch, 2)
    channels = [world.guild.create_text_channel(f"room-{i}") for i in range(5)]
    live = [await stored_room(world, channel) for channel in channels[:4]]
    last = await stored_room(world, channels[4], ended=True)  # loaded last: after the live rooms
    loads: list[int] = []
    loaded = asyncio.Event()  # the last room's load finishes only once this is set
    load_room = Store.load_room

    async def loading(store: Store, room_id: int, *args):
        loads.append(room_id)
        if room_id == last:
            await world.env.external_wait(loaded.wait(), reason="the last room is slow to load")
        return await load_room(store, room_id, *args)

    monkeypatch.setattr(Store, "load_room", loading)  # every bot's store: the restarted one's too
    await world.restart()

    assert sys.modules[type(world.coordinator).__module__].RESTORE_AT_ONCE == 2  # three batches
    assert loads == [*live, last] and world.coordinator._restoring.locked()  # the last one is loading
    sessions = [world.session(channel) for channel in channels[:4]]
    assert all(s is not None and s.task is None for s in sessions)  # opened, none launched
    assert fake_llm.chat_requests == []
    assert not any(BACK in notices(channel) for channel in channels)

    loaded.set()
    await world.env.settle()

    assert not world.coordinator._restoring.locked()
    for channel in channels[:4]:
        session = world.session(channel)
        assert session.task is not None and not session.task.done()
        assert notices(channel) == [BACK] and len(by_persona(channel)) == 1  # back, and its first turn
    assert len(fake_llm.chat_requests) == 4
    assert notices(channels[4]) == ["⏹️ The room has ended: the test ended it"]  # what it owed, then gone
    assert world.session(channels[4]) is None


async def test_a_restored_room_takes_its_servers_settings_once(world: World, monkeypatch) -> None:
    """Each room of a server is given the server's settings once: given to all of the server's
    rooms at each room's restore, a thousand rooms cost half a million settings copies."""
    channels = [world.guild.create_text_channel(f"room-{i}") for i in range(6)]
    for channel in channels:
        await stored_room(world, channel)
    await world.bot.guild_settings.update(world.guild.id, images_per_room=3)  # changed while the bot was away
    applied: list[RoomSettings] = []
    apply = GuildConfig.apply

    def counted(config: GuildConfig, settings: RoomSettings) -> RoomSettings:
        applied.append(settings)
        return apply(config, settings)

    monkeypatch.setattr(GuildConfig, "apply", counted)
    await world.restart()

    assert len(applied) == len(channels)  # once per room, not once per room already back
    assert all(world.session(channel).room.settings.images_per_room == 3 for channel in channels)


async def corrupt_snapshot(world: World, room_id: int, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Awaitable[None]]:
    """The room's stored state cut off mid-write (a disk that lied); returns the repair."""
    db = world.bot.store.db
    async with db.execute("SELECT snapshot FROM rooms WHERE id = ?", (room_id,)) as cursor:
        (snapshot,) = await cursor.fetchone()
    await db.execute("UPDATE rooms SET snapshot = ? WHERE id = ?", (snapshot[: len(snapshot) // 2], room_id))
    await db.commit()

    async def repair() -> None:
        await world.bot.store.db.execute("UPDATE rooms SET snapshot = ? WHERE id = ?", (snapshot, room_id))
        await world.bot.store.db.commit()

    return repair


async def failing_load(world: World, room_id: int, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Awaitable[None]]:
    """Storage fails to read this one room (an I/O error); returns the repair."""
    load_room = Store.load_room

    async def loading(store: Store, loaded: int, *args: Any) -> Any:
        if loaded == room_id:
            raise sqlite3.OperationalError("disk I/O error")
        return await load_room(store, loaded, *args)

    monkeypatch.setattr(Store, "load_room", loading)

    async def repair() -> None:
        monkeypatch.setattr(Store, "load_room", load_room)

    return repair


async def failing_resume(world: World, room_id: int, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Awaitable[None]]:
    """The room is loaded and opened in its channel, then fails as its backlog is set up; returns the repair."""
    resume_backlog = RoomRunner.resume_backlog

    def resuming(runner: RoomRunner, *args: Any, **kwargs: Any) -> None:
        if getattr(runner.journal, "room_id", None) == room_id:
            raise ValueError("a picture job the engine cannot read")
        resume_backlog(runner, *args, **kwargs)

    monkeypatch.setattr(RoomRunner, "resume_backlog", resuming)

    async def repair() -> None:
        monkeypatch.setattr(RoomRunner, "resume_backlog", resume_backlog)

    return repair


@pytest.mark.logs_errors
@pytest.mark.parametrize(
    "breaking", [corrupt_snapshot, failing_load, failing_resume], ids=["corrupt row", "load raises", "opened, then fails"]
)
async def test_a_room_that_cannot_be_read_is_told_and_kept_and_the_others_come_back(
    world: World, monkeypatch, caplog, breaking
) -> None:
    """One room's stored data cannot be read: the rooms around it come back all the same; its
    channel and its moderator are told, with an error id for the host's log; it stays stored
    as it was, so once the data is repaired the next start brings it back."""
    channels = [world.guild.create_text_channel(f"room-{i}") for i in range(3)]
    ids = [await stored_room(world, channel) for channel in channels]
    broken, fine = channels[1], (channels[0], channels[2])
    await stored_room(world, broken, ended=True)  # an older room, ended, still owes the channel its last notice
    repair = await breaking(world, ids[1], monkeypatch)

    await world.restart()

    for channel in fine:
        assert notices(channel) == [BACK] and world.session(channel).room.state == "running"
        assert len(by_persona(channel)) == 1  # and it speaks
    assert world.session(broken) is None  # nothing left bound to the channel
    told, ended = notices(broken)
    assert ended == "⏹️ The room has ended: the test ended it"  # the channel was not kept from the ended room
    error_id = re.search(r"error ([0-9a-f]{8})", told).group(1)
    assert told == NOT_BACK.format(error_id=error_id)
    assert f"could not bring back room {ids[1]} in channel {broken.id} (error {error_id})" in caplog.text
    [dm] = world.mod.user.dm_channel.history()
    assert dm.content == f"Your Séance room in <#{broken.id}>: {told}"
    assert (await world.bot.store.room(ids[1])).state == "running"  # kept as it was
    assert ids[1] not in await world.bot.store.leases()  # and free for whichever process starts next
    answer_ = answer(await world.start(broken))  # not "another process runs it": it is kept, and says why
    assert answer_ == NOT_BACK_HERE.format(error_id=error_id)

    await repair()
    await world.restart()

    assert world.session(broken).room.state == "running" and notices(broken)[-1] == BACK


@pytest.mark.logs_errors
async def test_a_moderator_whose_rooms_all_cannot_be_read_gets_one_message_and_each_channel_its_own(
    world: World, monkeypatch
) -> None:
    """A bad deploy can make every room unreadable: each channel says so, and the moderator is
    sent one direct message, not one per room."""
    channels = [world.guild.create_text_channel(f"room-{i}") for i in range(3)]
    for channel in channels:
        await corrupt_snapshot(world, await stored_room(world, channel), monkeypatch)

    await world.restart()

    for channel in channels:
        [told] = notices(channel)
        assert told.startswith("⚠️ Séance could not bring this channel's room back") and world.session(channel) is None
    [dm] = world.mod.user.dm_channel.history()
    assert any(dm.content.startswith(f"Your Séance room in <#{channel.id}>: ⚠️") for channel in channels)
