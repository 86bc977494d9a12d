"""The runner under partial failure: changes racing saves, a stage that fails part-way,
storage that refuses writes. Nothing lost, nothing doubled, nothing silent."""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3

import pytest

from bot import data
from bot.engine import Event, Notice, Reply, Room, RoomSettings
from bot.engine.snapshot import entry_to_dict, room_state
from bot.runner import NotShown, RoomRunner
from bot.storage import Journal, Store
from tests.test_runner import Recorder, Scripted, SlowImages


def room_of(ais: int = 3, turns: int = 30) -> Room:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=turns), topic="lanterns")
    for name in ("Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5")[:ais]:
        room.add(name)
    return room


def same_room(live: Room, restored: Room) -> None:
    """The restored room equals the live one: state, and the history the live one still holds
    (a live room lets go of old entries and of picture bytes no model can be sent any more)."""
    assert room_state(restored) == room_state(live)
    assert restored.history_length == live.history_length
    tail = restored.history_since(live.history_offset) if restored.history_offset <= live.history_offset else []
    assert [entry_to_dict(e) for _, e in tail] == [entry_to_dict(e) for e in live.history]
    for (_, kept), held in zip(tail, live.history):
        assert (kept.picture is None) == (held.picture is None)


async def same_pictures(store: Store, room_id: int, live: Room) -> None:
    """Every picture the live room still holds is stored, byte for byte."""
    async with store.db.execute("SELECT seq, data FROM entries WHERE room_id = ? ORDER BY seq", (room_id,)) as cursor:
        keys = {seq: json.loads(data).get("picture", {}).get("key") async for seq, data in cursor}
    pictures = [key for key in keys.values() if key]
    assert pictures and all(store._read_picture(key) for key in pictures)  # every picture is on disk
    # the bytes a live room still holds (it lets go of those no model of the room can be sent)
    held = [(i, e.picture.data) for i, e in enumerate(live.history, live.history_offset) if e.picture and e.picture.data]
    assert all(store._read_picture(keys[i]) == data for i, data in held)


async def test_changes_made_while_saves_are_in_flight_are_all_stored(tmp_path):
    """Every kind of change lands in the room while turns, pictures and saves run: the
    stored room, restored, equals the live one (the save captures one instant)."""
    store = await Store.open(tmp_path / "db.sqlite3")
    room = room_of(turns=24)
    room_id = await store.create_room(room, "discord")
    replies = [f'!image "a lantern number {i}"\nturn {i} speaks' if i % 3 == 0 else f"turn {i}" for i in range(40)]
    runner = RoomRunner(room, lambda m: Scripted(*replies), SlowImages(0.002), Recorder(), journal=Journal(store, room_id))
    rng = random.Random(11)

    async def meddle() -> None:
        step = 0
        while room.state != "stopped":
            step += 1
            choice = rng.randrange(7)
            present = [p.number for p in room.present]
            if choice == 0:
                room.inject("Vera", f"open floor {step}", echo=False)
            elif choice == 1:
                room.inject("Morgan", f"said {step}")
            elif choice == 2:
                room.vote(f"voter-{rng.randrange(5)}", rng.choice(present))
            elif choice == 3 and len(present) > 2:
                room.remove(rng.choice(present), by="Morgan")
            elif choice == 4 and len(present) < 5:
                room.add("GPT 5.2", by="Morgan")
            elif choice == 5 and (warm := [p.number for p in room.present if p.model.temperature]):
                room.set_temperature(rng.choice(warm), round(rng.uniform(0, 1), 2), by="Morgan")
            else:
                await runner.flush()  # a moderator's command shows what it changed at once
            await asyncio.sleep(0)

    await asyncio.gather(runner.run(), meddle())
    await runner.flush()
    assert room.state == "stopped" and room.turns_taken == 24
    assert any(e.picture for e in room.history)
    restored = await store.load_room(room_id, data.catalog(), data.scenarios())
    same_room(room, restored)
    await same_pictures(store, room_id, room)
    assert await store.unposted(room_id) == []
    await store.close()


async def test_an_ai_removed_while_it_writes_says_nothing_and_its_commands_do_nothing():
    room = room_of(ais=3)
    turn = room.next_turn()
    room.remove(turn.number, by="Morgan")
    room.take_events()
    room.complete_turn(turn, '!image "a quiet harbour at night"\n!add_ai "GPT 5.2" "join us"\nHello all')
    assert room.take_events() == []
    assert room.pending_images == 0
    assert len(room.participants) == 3 and not any(e.text.endswith("Hello all") for e in room.history)
    assert room.turns_taken == 1  # the tokens it spent still count


class Flaky(Recorder):
    """A stage whose messages are the events' texts, one per event; it fails as scripted.

    ``fail`` maps an attempt number (1 = the first show call) to the count of
    messages posted before that attempt fails (transiently)."""

    def __init__(self, fail: dict[int, int]):
        super().__init__()
        self.fail = fail
        self.attempts = 0
        self.messages: list[str] = []
        self.next_id = 5000

    async def show(self, events: list[Event], done=()) -> list[int]:
        self.attempts += 1
        posted: list[int] = []
        texts = [getattr(e, "text", "") for e in events][len(done):]
        for index, text in enumerate(texts):
            if self.fail.get(self.attempts) == index:
                raise NotShown("HTTP 503", retry=True, posted=posted)
            self.next_id += 1
            self.messages.append(text)
            posted.append(self.next_id)
        return posted


async def test_a_failing_stage_loses_nothing_doubles_nothing_and_keeps_order(tmp_path):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = room_of(ais=2, turns=6)
    room_id = await store.create_room(room, "discord")
    stage = Flaky({2: 0, 3: 0, 5: 0})  # the 2nd, 3rd and 5th attempts fail before posting anything
    provider = Scripted(*[f"reply {n}" for n in range(6)])
    runner = RoomRunner(room, lambda m: provider, SlowImages(), stage, delay=0.01, journal=Journal(store, room_id))
    runner._retry_later = fast_retry(runner)
    await asyncio.wait_for(runner.run(), 60)
    stored = await store.events(room_id)
    assert stage.attempts > len(stage.messages) // 4  # it did fail, and was retried
    assert stage.messages == [getattr(s.event, "text", "") for s in stored]  # each once, in order
    assert all(s.posted_at is not None for s in stored)
    await store.close()


async def test_a_split_batch_cut_part_way_posts_only_the_rest(tmp_path):
    """A run of notices (one batch, several messages) fails after two messages: the retry
    posts the others, and the journal knew the first two were out."""
    store = await Store.open(tmp_path / "db.sqlite3")
    room = room_of(ais=2, turns=1)
    room_id = await store.create_room(room, "discord")
    for i in range(5):
        room.announce(f"notice {i}")
    stage = Flaky({1: 2})
    runner = RoomRunner(room, lambda m: Scripted(), SlowImages(), stage, delay=0, journal=Journal(store, room_id))
    runner._retry_later = fast_retry(runner)
    await runner.flush()
    assert stage.messages == ["notice 0", "notice 1"]
    [first, *_] = await store.unposted(room_id)
    assert len(first.message_ids) == 2  # the parts that went out are journaled
    await asyncio.wait_for(runner.run(), 30)
    notices = [m for m in stage.messages if m.startswith("notice")]
    assert notices == [f"notice {i}" for i in range(5)]
    assert await store.unposted(room_id) == []
    await store.close()


def fast_retry(runner: RoomRunner):
    """The runner's backoff, shortened a hundredfold for a test that runs on the real clock."""
    slow = runner._retry_later

    async def retry_later(reason: str) -> None:
        await slow(reason)
        now = asyncio.get_running_loop().time()
        runner._retry_at = now + (runner._retry_at - now) / 100

    return retry_later


class BrokenWrites:
    """Makes the store's writes fail (as a full disk or a locked file would) while ``broken``."""

    def __init__(self, store: Store, message: str = "database or disk is full"):
        self.broken = True
        self.message = message
        self.failures = 0
        original = store.write

        async def write(room_id, save):
            if self.broken:
                self.failures += 1
                raise sqlite3.OperationalError(self.message)
            return await original(room_id, save)

        store.write = write  # type: ignore[method-assign]


@pytest.mark.logs_errors
async def test_storage_that_fails_pauses_the_room_says_so_once_and_resume_loses_nothing(tmp_path, error_logs):
    store = await Store.open(tmp_path / "db.sqlite3")
    room = room_of(ais=2, turns=4)
    room_id = await store.create_room(room, "console")
    told: list[str] = []

    async def tell(sentence: str) -> None:
        told.append(sentence)

    stage = Recorder()
    provider = Scripted("one", "two", "three", "four")
    runner = RoomRunner(
        room, lambda m: provider, SlowImages(), stage,
        journal=Journal(store, room_id), on_problem=tell,
    )
    faults = BrokenWrites(store)
    await asyncio.wait_for(runner.run(return_on_pause=True), 10)
    assert room.state == "paused" and room.turns_taken == 1
    assert len(told) == 1 and "the disk is full" in told[0]
    assert stage.shown == []  # nothing is shown that is not stored
    await runner.flush()  # still broken: no second message
    assert len(told) == 1
    assert [r.getMessage() for r in error_logs] == ["could not record the room, so it pauses: database or disk is full"]

    faults.broken = False
    room.resume("Morgan")
    await asyncio.wait_for(runner.run(), 10)
    replies = [e.text for e in stage.shown if isinstance(e, Reply)]
    assert replies == ["one", "two", "three", "four"]
    pauses = [e.text for e in stage.shown if isinstance(e, Notice) and "paused" in e.text]
    assert len(pauses) == 1 and "cannot be recorded" in pauses[0]
    restored = await store.load_room(room_id, data.catalog(), data.scenarios())
    same_room(room, restored)
    assert [s.event for s in await store.events(room_id) if isinstance(s.event, Reply)] == [
        e for e in stage.shown if isinstance(e, Reply)
    ]
    await store.close()


class CountingImages(SlowImages):
    def __init__(self) -> None:
        super().__init__(0.001)
        self.prompts: list[str] = []

    async def generate(self, prompt: str):
        self.prompts.append(prompt)
        return await super().generate(prompt)


@pytest.mark.logs_errors
async def test_a_picture_is_made_only_once_its_reply_is_recorded(tmp_path):
    """A picture job begins after the reply that asked for it is stored: with storage
    failing, nothing is made (and nothing spent); once it works, the picture is made once."""
    store = await Store.open(tmp_path / "db.sqlite3")
    room = room_of(ais=1, turns=1)
    room_id = await store.create_room(room, "console")
    images = CountingImages()
    provider = Scripted('!image "a lantern over still water"\nLook.')
    runner = RoomRunner(room, lambda m: provider, images, Recorder(), journal=Journal(store, room_id))
    faults = BrokenWrites(store)
    await asyncio.wait_for(runner.run(return_on_pause=True), 10)
    assert room.state == "paused" and images.prompts == []

    faults.broken = False
    room.resume("Morgan")
    await asyncio.wait_for(runner.run(), 10)
    assert images.prompts == ["a lantern over still water"]
    assert any(e.picture for e in (await store.load_room(room_id, data.catalog(), data.scenarios())).history)
    await store.close()


@pytest.mark.logs_errors
async def test_rooms_sharing_transactions_one_rooms_bad_data_pauses_it_alone(tmp_path, error_logs, monkeypatch):
    """Saves of rooms running at once go in shared transactions (group commit); a write of one
    room that fails there pauses that room and tells its moderator, as a failed write of its own
    did, and the rooms it shared batches with carry on and lose nothing."""
    store = await Store.open(tmp_path / "db.sqlite3")
    rooms = [room_of(ais=2, turns=4) for _ in range(4)]
    ids = [await store.create_room(room, "console") for room in rooms]
    bad = ids[2]
    original_event, original_many = store._add_event, store.write_many
    shared: list[set[int]] = []

    def add_event(conn, room_id, event):
        if room_id == bad and isinstance(event, Reply):
            raise ValueError("this reply cannot be stored")
        return original_event(conn, room_id, event)

    async def write_many(writes):
        shared.append({w.room_id for w in writes if hasattr(w, "room_id")})
        return await original_many(writes)

    monkeypatch.setattr(store, "_add_event", add_event)
    monkeypatch.setattr(store, "write_many", write_many)
    store.group._write_many = write_many
    told: dict[int, list[str]] = {i: [] for i in ids}
    stages = [Recorder() for _ in rooms]
    runners = []
    for room, room_id, stage in zip(rooms, ids, stages):
        async def tell(sentence: str, room_id: int = room_id) -> None:
            told[room_id].append(sentence)

        provider = Scripted("one", "two", "three", "four")
        runners.append(RoomRunner(
            room, lambda m, p=provider: p, SlowImages(), stage, journal=Journal(store, room_id), on_problem=tell
        ))
    await asyncio.wait_for(asyncio.gather(*(r.run(return_on_pause=True) for r in runners)), 10)

    assert any(len(rooms_in) > 1 and bad in rooms_in for rooms_in in shared)  # the bad room shared batches
    assert rooms[2].state == "paused" and len(told[bad]) == 1 and "storage failed (ValueError)" in told[bad][0]
    assert [r.getMessage() for r in error_logs] == [
        "could not record the room, so it pauses: this reply cannot be stored"
    ]
    for n in (0, 1, 3):
        assert rooms[n].state == "stopped" and told[ids[n]] == []
        replies = [s.event.text for s in await store.events(ids[n]) if isinstance(s.event, Reply)]
        assert replies == ["one", "two", "three", "four"]
        assert [e.text for e in stages[n].shown if isinstance(e, Reply)] == replies
        assert all(s.posted_at is not None for s in await store.events(ids[n]))  # every mark stored too
        same_room(rooms[n], await store.load_room(ids[n], data.catalog(), data.scenarios()))
    assert not any(isinstance(e, Reply) for e in stages[2].shown)  # nothing shown that is not stored
    await store.close()


@pytest.mark.logs_errors
async def test_a_shared_transaction_that_fails_pauses_each_of_its_rooms_and_resume_loses_nothing(
    tmp_path, error_logs, monkeypatch
):
    store = await Store.open(tmp_path / "db.sqlite3")
    rooms = [room_of(ais=2, turns=3) for _ in range(3)]
    ids = [await store.create_room(room, "console") for room in rooms]
    original = store._apply_all
    broken = {"on": False}

    def full_disk(conn, writes):
        results = original(conn, writes)
        if broken["on"]:
            raise sqlite3.OperationalError("database or disk is full")
        return results

    monkeypatch.setattr(store, "_apply_all", full_disk)
    told: list[str] = []
    stages = [Recorder() for _ in rooms]

    async def tell(sentence: str) -> None:
        told.append(sentence)

    providers = [Scripted("one", "two", "three") for _ in rooms]
    runners = [
        RoomRunner(room, lambda m, p=provider: p, SlowImages(), stage, journal=Journal(store, room_id), on_problem=tell)
        for room, room_id, stage, provider in zip(rooms, ids, stages, providers)
    ]
    broken["on"] = True
    await asyncio.wait_for(asyncio.gather(*(r.run(return_on_pause=True) for r in runners)), 10)
    assert [room.state for room in rooms] == ["paused"] * 3
    assert len(told) == 3 and all("the disk is full" in t for t in told)  # each room's moderator, once
    assert all(stage.shown == [] for stage in stages)

    broken["on"] = False
    for room in rooms:
        room.resume("Morgan")
    await asyncio.wait_for(asyncio.gather(*(r.run() for r in runners)), 10)
    for room, room_id, stage in zip(rooms, ids, stages):
        replies = [s.event.text for s in await store.events(room_id) if isinstance(s.event, Reply)]
        assert replies == ["one", "two", "three"] == [e.text for e in stage.shown if isinstance(e, Reply)]
        same_room(room, await store.load_room(room_id, data.catalog(), data.scenarios()))
    assert len(error_logs) == 3
    await store.close()


async def test_a_runner_whose_lease_is_lost_stops_writing_and_showing_at_once(tmp_path):
    """Another process may drive the room now: the next save is refused by the lease fence,
    nothing is shown from then on, no pause is recorded, and run() says why."""
    from bot.leases import LeaseLost, Leases

    store = await Store.open(tmp_path / "db.sqlite3")
    try:
        room = room_of(ais=2, turns=30)
        room_id = await store.create_room(room, "discord")
        now = [0.0]
        leases = Leases(store, 30, "this-process", monotonic=lambda: now[0])
        assert await leases.take(room_id) is None
        stage = Recorder()
        said: list[str] = []

        async def told(sentence: str) -> None:
            said.append(sentence)

        replies = [f"turn {i}" for i in range(40)]
        runner = RoomRunner(
            room, lambda m: Scripted(*replies), SlowImages(0.001), stage,
            journal=Journal(store, room_id, leases), on_problem=told,
        )

        async def pause_the_process() -> None:
            while sum(isinstance(e, Reply) for e in stage.shown) < 3:
                await asyncio.sleep(0.001)
            now[0] = 3600.0  # an hour on this process's clock: its lease is surely gone

        pausing = asyncio.create_task(pause_the_process())
        with pytest.raises(LeaseLost, match=f"room {room_id} is no longer this process's to drive"):
            await asyncio.wait_for(runner.run(), 10)
        await pausing
        shown = len(stage.shown)
        events = await store.event_count(room_id)
        assert shown >= 3 and said == []
        assert (await store.room(room_id)).state == "running"  # no pause written: it is the new holder's room
        await runner.flush()  # a moderator's command afterwards writes and shows nothing either
        assert len(stage.shown) == shown and await store.event_count(room_id) == events
    finally:
        await store.close()
