"""Storage on both backends: migrations, rooms saved and restored, events posted once, pictures.

Tests that take ``reopen`` run on SQLite and on a real PostgreSQL server (tests/postgres.py);
the others are about SQLite's file on disk.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bot import data, postgres, storage
from bot.engine import ImageJob, ImageMade, Notice, Picture, Reply, Room, RoomSettings, Said, Usage
from bot.storage import Store, StorageError, open_url


@pytest.fixture(params=["sqlite", "postgres"])
def reopen(request, tmp_path):
    """Opens the test's database again each call: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        path = tmp_path / "seance.sqlite3"
        return lambda: Store.open(path)
    url = request.getfixturevalue("pg_url")
    return lambda: open_url(url)


def new_room() -> Room:
    room = Room(data.catalog(), data.scenarios()["workshop"], RoomSettings(max_turns=30), topic="islands")
    room.add("Gemini 3 Flash")
    room.add("Claude Haiku 4.5")
    return room


async def play(store: Store, room_id: int, room: Room, *replies: str) -> list:
    stored = []
    for reply in replies:
        turn = room.next_turn()
        room.complete_turn(turn, reply)
        events = room.take_events()
        stored += await store.save(room_id, room, events)
    return stored


async def test_new_database_is_migrated_and_uses_wal(tmp_path):
    store = await Store.open(tmp_path / "db" / "seance.sqlite3")
    async with store.db.execute("PRAGMA journal_mode") as cursor:
        assert (await cursor.fetchone())[0] == "wal"
    async with store.db.execute("PRAGMA user_version") as cursor:
        assert (await cursor.fetchone())[0] == len(storage.MIGRATIONS)
    await store.close()


async def test_older_database_is_upgraded_keeping_its_rooms(reopen, monkeypatch):
    store = await reopen()
    room_id = await store.create_room(new_room(), "console")
    await store.close()
    added = "ALTER TABLE rooms ADD COLUMN label TEXT;"
    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS + [added])
    monkeypatch.setattr(postgres, "PG_MIGRATIONS", postgres.PG_MIGRATIONS + [added])
    store = await reopen()
    assert [r.id for r in await store.rooms()] == [room_id]
    async with store.db.execute("SELECT label FROM rooms") as cursor:
        assert await cursor.fetchall() == [(None,)]
    await store.close()


async def test_newer_database_is_refused_clearly(reopen, monkeypatch):
    known = len(storage.MIGRATIONS)
    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS + ["SELECT 1;"])  # a newer Séance...
    monkeypatch.setattr(postgres, "PG_MIGRATIONS", postgres.PG_MIGRATIONS + ["SELECT 1;"])
    await (await reopen()).close()  # ...wrote the database
    monkeypatch.undo()
    with pytest.raises(StorageError, match=rf"schema version {known + 1}, but this Séance only knows up to {known}\. Upgrade Séance"):
        await reopen()


async def test_a_sqlite_version_far_ahead_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "seance.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match="schema version 99.*Upgrade Séance"):
        await Store.open(path)


async def test_room_saved_each_turn_is_restored_as_it_was(reopen):
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "console", options={"delay": 0})
    await play(store, room_id, room, "!temperature 0.4\nfirst", '!prompt "think of salt"\nsecond', "third")
    room.mute(2)
    await store.save(room_id, room, room.take_events())
    await store.close()

    store = await reopen()
    again = await store.load_room(room_id, data.catalog(), data.scenarios())
    assert again.history == room.history
    assert again.participants[1].temperature == 0.4 and again.participants[2].muted
    assert again.participants[2].additions == ["think of salt"]
    assert again.next_turn().request == room.next_turn().request
    (record,) = await store.rooms(states=["running"])
    assert record.options == {"delay": 0} and record.scenario == "workshop"
    await store.close()


async def test_events_are_stored_unposted_until_marked(reopen):
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "discord", channel_id=42)
    ids = [event_id for event_id, _ in await play(store, room_id, room, "!temperature 1.5\nhello there")]
    kinds = [type(e.event).__name__ for e in await store.unposted(room_id)]
    assert kinds == ["Notice", "Notice", "Reply"]
    await store.mark_posted(ids[0], [111])
    await store.mark_posted(ids[1], [111])
    (left,) = await store.unposted(room_id)
    assert isinstance(left.event, Reply) and left.event.text == "hello there"
    events = await store.events(room_id)
    assert events[0].message_ids == [111] and isinstance(events[0].event, Notice)
    await store.close()


async def test_pictures_live_on_disk_and_go_with_their_room(tmp_path):
    store = await Store.open(tmp_path / "seance.sqlite3")
    room = new_room()
    room_id = await store.create_room(room, "console")
    await play(store, room_id, room, '!image "a map of the islands"')
    room.image_done(1, Picture(b"\x89PNG map", "image/png"))
    await store.save(room_id, room, room.take_events())
    files = list(store.pictures.rglob("*.png"))
    assert len(files) == 1 and files[0].read_bytes() == b"\x89PNG map"
    made = [e.event for e in await store.events(room_id) if isinstance(e.event, ImageMade)]
    assert made[0].picture.data == b"\x89PNG map"
    await store.delete_room(room_id)
    assert list(store.pictures.rglob("*.png")) == []
    assert await store.rooms() == []
    await store.close()


async def test_pictures_are_read_back_by_another_connection_and_go_with_their_room(reopen):
    """On PostgreSQL the bytes are rows, so any process reads them; on SQLite, files beside the database."""
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "discord", channel_id=5)
    await play(store, room_id, room, '!image "a map of the islands"')
    room.image_done(1, Picture(b"\x89PNG map", "image/png"))
    await store.save(room_id, room, room.take_events())
    await store.save(room_id, room, [Said("Morgan", "look at mine", Picture(b"\x89PNG mine", "image/png"))])
    other = await reopen()
    made = [e.event for e in await other.events(room_id) if isinstance(e.event, ImageMade)]
    assert made[0].picture.data == b"\x89PNG map"
    said = [e.event for e in await other.events(room_id) if isinstance(e.event, Said)]
    assert said[-1].picture == Picture(b"\x89PNG mine", "image/png")  # a person's picture, too
    again = await other.load_room(room_id, data.catalog(), data.scenarios())
    assert again.history[-1].picture == Picture(b"\x89PNG map", "image/png")
    await other.close()
    await store.delete_room(room_id)
    assert await store.db.execute_fetchall("SELECT count(*) FROM pictures") == [(0,)]  # rows (and files) gone
    assert await store.rooms() == []
    await store.close()


async def test_rooms_that_owe_pictures_or_unshown_events_are_found(reopen):
    store = await reopen()
    quiet, drawing, talking = (new_room() for _ in range(3))
    ids = [await store.create_room(room, "discord", channel_id=n) for n, room in enumerate((quiet, drawing, talking))]
    drawn = await play(store, ids[1], drawing, '!image "a lighthouse"')
    said = await play(store, ids[2], talking, "hello")
    await store.mark_posted([i for i, _ in drawn], [1])
    assert [r.id for r in await store.rooms(pending_pictures=True)] == [ids[1]]
    assert [r.id for r in await store.rooms(owing=True)] == ids[1:]
    await store.mark_posted([i for i, _ in said], [2])
    assert [r.id for r in await store.rooms(owing=True)] == [ids[1]]
    await store.close()


async def test_webhooks_and_message_map(reopen):
    store = await reopen()
    room_id = await store.create_room(new_room(), "discord", channel_id=7)
    await store.set_webhook(7, 99, "tok")
    assert await store.webhook(7) == (99, "tok")
    await store.forget_webhook(7)
    assert await store.webhook(7) is None
    await store.remember_message(555, room_id, 2)
    assert await store.ai_for_message(555) == (room_id, 2)
    assert await store.ai_for_message(556) is None
    await store.close()


async def test_a_failed_save_never_takes_another_rooms_writes_with_it(reopen, monkeypatch):
    """Rooms share one connection and their saves share transactions (group commit); a save
    that fails and rolls back must undo only its own writes."""
    import asyncio

    store = await reopen()
    rooms = [new_room(), new_room()]
    ids = [await store.create_room(room, "console") for room in rooms]
    original = store._add_event
    calls = {"n": 0}

    def flaky(conn, room_id, event):
        if room_id == ids[0]:
            calls["n"] += 1
            if calls["n"] % 4 == 0:
                raise RuntimeError("disk hiccup")
        return original(conn, room_id, event)

    monkeypatch.setattr(store, "_add_event", flaky)

    async def run(room, room_id):
        for i in range(12):
            turn = room.next_turn()
            room.complete_turn(turn, f"reply {i}\n!temperature 1.1")
            try:
                await store.save(room_id, room, room.take_events())
            except RuntimeError:
                pass

    await asyncio.gather(*(run(r, i) for r, i in zip(rooms, ids)))
    replies = [e for e in await store.events(ids[1]) if isinstance(e.event, Reply)]
    assert len(replies) == 12  # the healthy room lost nothing to the other's rollbacks
    again = await store.load_room(ids[1], data.catalog(), data.scenarios())
    assert again.history == rooms[1].history
    await store.close()


async def test_room_numbers_are_never_reused_after_a_delete(reopen):
    store = await reopen()
    first, second = [await store.create_room(new_room(), "console") for _ in range(2)]
    await store.delete_room(second)
    await store.delete_room(first)
    assert await store.create_room(new_room(), "console") == second + 1
    await store.close()


async def test_a_first_schema_database_is_rebuilt_with_its_rooms_ids_and_links(tmp_path):
    """Migration 2 rebuilds the rooms table; the rows that refer to it must survive, and still cascade."""
    path = tmp_path / "seance.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(storage.MIGRATIONS[0] + "\nPRAGMA user_version = 1;")
        for room_id in (1, 2, 5):
            db.execute(
                "INSERT INTO rooms (id, origin, scenario, settings, options, state, snapshot, created_at, updated_at)"
                " VALUES (?, 'console', 'workshop', '{}', '{}', 'stopped', '{}', 0, 0)",
                (room_id,),
            )
            db.execute("INSERT INTO events (room_id, kind, data, created_at) VALUES (?, 'Notice', '{}', 0)", (room_id,))
            db.execute("INSERT INTO messages (message_id, room_id, ai_number) VALUES (?, ?, 1)", (room_id * 10, room_id))
    store = await Store.open(path)
    assert [r.id for r in await store.rooms()] == [1, 2, 5]
    assert [await store.event_count(i) for i in (1, 2, 5)] == [1, 1, 1]
    assert await store.ai_for_message(50) == (5, 1)
    assert await store.create_room(new_room(), "console") == 6
    await store.delete_room(5)  # foreign keys are back on: its rows go with it
    assert await store.event_count(5) == 0 and await store.ai_for_message(50) is None
    assert await store.create_room(new_room(), "console") == 7
    await store.close()
    with sqlite3.connect(path) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'rooms'").fetchone()
        assert "AUTOINCREMENT" in sql
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'rooms_by_channel'").fetchone()


async def test_a_room_given_a_picture_folder_keeps_each_picture_there_once(tmp_path):
    store = await Store.open(tmp_path / "db" / "seance.sqlite3")
    folder = tmp_path / "mine"
    (folder).mkdir()
    (folder / "notes.txt").write_text("the user's own file")
    room = new_room()
    room_id = await store.create_room(room, "console", options={"pictures": str(folder)})
    await play(store, room_id, room, '!image "a map of the islands"')
    picture = Picture(b"\x89PNG map", "image/png")
    room.image_done(1, picture)
    await store.save(room_id, room, room.take_events())
    await store.save(room_id, room, [])  # saving again writes nothing new
    assert sorted(p.name for p in folder.iterdir()) == sorted(["notes.txt", storage.picture_name(picture)])
    assert not store.pictures.exists()  # not a second copy beside the database
    made = [e.event for e in await store.events(room_id) if isinstance(e.event, ImageMade)]
    assert made[0].picture.data == b"\x89PNG map"
    again = await store.load_room(room_id, data.catalog(), data.scenarios())
    assert again.history[-1].picture == picture

    await store.delete_room(room_id)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]  # only the room's own files go
    await store.close()


async def test_deleting_a_room_leaves_a_picture_another_room_shares(tmp_path):
    store = await Store.open(tmp_path / "seance.sqlite3")
    folder = tmp_path / "shared"
    ids = []
    for _ in range(2):
        room = new_room()
        room_id = await store.create_room(room, "console", options={"pictures": str(folder)})
        await play(store, room_id, room, '!image "the same old map"')
        room.image_done(1, Picture(b"\x89PNG same", "image/png"))
        await store.save(room_id, room, room.take_events())
        ids.append(room_id)
    await store.delete_room(ids[0])
    (left,) = folder.iterdir()
    assert left.read_bytes() == b"\x89PNG same"
    await store.delete_room(ids[1])
    assert folder.exists() and not list(folder.iterdir())  # a folder someone chose stays
    await store.close()


async def test_a_path_under_a_file_is_refused_in_one_sentence(tmp_path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    with pytest.raises(StorageError, match=r"notes.txt is a file, not a folder; point DATABASE_PATH"):
        await Store.open(blocker / "data" / "seance.sqlite3")
    assert blocker.read_text() == "mine"


async def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path):
    notes = tmp_path / "seance.sqlite3"
    notes.write_bytes(b"not a database\n" * 100)
    with pytest.raises(StorageError, match="is not a SQLite database, so S\u00e9ance left it untouched"):
        await Store.open(notes)
    assert notes.read_bytes() == b"not a database\n" * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seance.sqlite3"]  # no journal beside it either


async def test_an_empty_file_is_a_new_database(tmp_path):
    empty = tmp_path / "seance.sqlite3"
    empty.touch()  # what `touch` or a volume mount leaves: SQLite's own empty database
    store = await Store.open(empty)
    assert await store.rooms() == []
    await store.close()


async def test_a_read_only_database_can_still_be_read(tmp_path):
    path = tmp_path / "seance.sqlite3"
    store = await Store.open(path)
    room_id = await store.create_room(new_room(), "console")
    await store.close()
    path.chmod(0o444)
    try:
        reader = await Store.open(path, writing=False)
        assert [r.id for r in await reader.rooms()] == [room_id]
        await reader.close()
    finally:
        path.chmod(0o644)


async def test_deleting_a_room_keeps_no_write_lock_while_its_pictures_go(tmp_path, monkeypatch):
    """Removing files can be slow; another room's write must not wait for it."""
    store = await Store.open(tmp_path / "seance.sqlite3")
    room_id = await store.create_room(new_room(), "console")
    folder = store.pictures / str(room_id)
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"png")
    seen: list[bool] = []
    real_rmtree = storage.shutil.rmtree

    def rmtree(path, *args, **kwargs):
        seen.append(store._writing.locked())
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(storage.shutil, "rmtree", rmtree)
    await store.delete_room(room_id)
    assert seen == [False] and not folder.exists()
    assert await store.rooms() == []
    await store.close()


async def test_pictures_that_cannot_be_removed_are_named(tmp_path, monkeypatch):
    store = await Store.open(tmp_path / "seance.sqlite3")
    room_id = await store.create_room(new_room(), "console")
    (store.pictures / str(room_id)).mkdir(parents=True)

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(storage.shutil, "rmtree", refuse)
    with pytest.raises(StorageError, match=rf"Room {room_id} is deleted, but some of its pictures could not be removed"):
        await store.delete_room(room_id)
    assert await store.rooms() == []  # the room is gone all the same
    await store.close()


# --- spending and per-server settings ------------------------------------------------


async def test_costs_are_booked_per_room_day_and_kind_with_the_save(reopen):
    store = await reopen()
    room = new_room()
    room.settings.image_price_usd = 0.04
    room_id = await store.create_room(room, "discord", guild_id=7, channel_id=5)
    store.clock = lambda: 1_780_000_000.0  # 2026-05-28, UTC
    turn = room.next_turn()
    room.complete_turn(turn, '!image "a lamp in the fog"', Usage(input_tokens=1000, output_tokens=500))
    await store.save(room_id, room, room.take_events())
    room.image_done(1, Picture(b"png"))
    turn = room.next_turn()
    room.complete_turn(turn, "and more", Usage(input_tokens=100, output_tokens=50, cost_usd=0.5))
    await store.save(room_id, room, room.take_events())

    rows = await store.spending()
    assert [(r.room_id, r.guild_id, r.day, r.kind, r.count, r.tokens) for r in rows] == [
        (room_id, 7, "2026-05-28", "chat", 2, 1650),
        (room_id, 7, "2026-05-28", "image", 1, 0),
    ]
    assert await store.spent("2026-05-28", guild_id=7) == pytest.approx(0.002 + 0.5 + 0.04)  # Gemini 3 Flash at catalog prices, a reported cost, a picture
    assert await store.spent("2026-05-29", guild_id=7) == 0
    await store.delete_room(room_id)  # the host's bookkeeping outlives the room
    assert len(await store.spending(guild_id=7)) == 2
    await store.close()


async def test_a_failed_save_books_nothing(reopen, monkeypatch):
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "discord", guild_id=7)
    turn = room.next_turn()
    room.complete_turn(turn, "hello", Usage(input_tokens=10, output_tokens=10, cost_usd=0.2))

    def broken(conn, room_id, event):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_add_event", broken)
    with pytest.raises(sqlite3.OperationalError):
        await store.save(room_id, room, room.take_events())
    assert await store.spending() == []
    await store.close()


async def test_guild_settings_are_stored_and_reset(reopen):
    store = await reopen()
    assert await store.guild_settings(7) == {}
    await store.set_guild_settings(7, {"allowed_models": ["Gemini 3 Flash"], "daily_budget_usd": 5.0})
    await store.set_guild_settings(7, {"default_turns": 12})
    saved = await store.guild_settings(7)
    assert (saved["allowed_models"], saved["daily_budget_usd"], saved["default_turns"]) == (["Gemini 3 Flash"], 5.0, 12)
    await store.set_guild_settings(7, {"daily_budget_usd": None})
    assert (await store.guild_settings(7))["daily_budget_usd"] is None
    with pytest.raises(ValueError, match="unknown server settings: webhook_token"):
        await store.set_guild_settings(7, {"webhook_token": "x"})
    await store.close()


async def test_a_long_room_keeps_in_memory_only_what_models_can_still_be_sent(reopen):
    store = await reopen()
    room = Room(data.catalog(), data.scenarios()["workshop"], RoomSettings(context_tokens=1024, vision_pictures=1))
    room.add("Gemini 3 Flash")
    room.add("Claude Haiku 4.5")
    room_id = await store.create_room(room, "console")
    whole = list(room.history)  # every entry as appended, to compare with what was stored
    for i in range(280):  # the last picture (turn 275) is still within what a model can be sent
        turn = room.next_turn()
        room.complete_turn(turn, f"reply {i}: " + f"the tide{i % 10} " * 30 + ('\n!image "a harbour of glass"' if i % 25 == 0 else ""))
        for event in room.take_events():
            if isinstance(event, ImageJob):
                room.image_done(event.job_id, Picture(f"picture {i}".encode()))
        whole += [entry for _, entry in room.history_since(len(whole))]
        await store.save(room_id, room, room.take_events())
    assert room.history_offset > 200  # entries left memory once stored...
    async with store.db.execute("SELECT seq FROM entries WHERE room_id = ? ORDER BY seq", (room_id,)) as cursor:
        assert [seq async for (seq,) in cursor] == list(range(room.history_length))  # ...under their own indices
    held = [e for e in room.history if e.picture is not None and e.picture.data]
    assert len(held) == 1  # only the newest picture's bytes stay; the others are on disk
    await store.close()

    store = await reopen()
    again = await store.load_room(room_id, data.catalog(), data.scenarios())
    # A restored room holds what a running one does from the moment it is loaded, not from its
    # first turn: a start loads every room before it launches any.
    assert again.history_offset > 200
    assert [e.text for e in again.history] == [e.text for e in whole[again.history_offset :]]
    loaded = [e.picture.data for e in again.history if e.picture is not None]
    assert loaded[:-1] == [b""] * (len(loaded) - 1) and loaded[-1] == b"picture 275"  # only the newest read
    assert again.next_turn().request == room.next_turn().request
    await store.close()


async def test_entries_a_failed_save_did_not_store_stay_in_memory_until_stored(reopen, monkeypatch):
    store = await reopen()
    room = Room(data.catalog(), data.scenarios()["workshop"], RoomSettings(context_tokens=1024))
    room.add("Gemini 3 Flash")
    room_id = await store.create_room(room, "console")
    await play(store, room_id, room, *[f"stored {i} " + "sand " * 40 for i in range(20)])
    stored = room.stored_upto

    def broken(*args):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "_add_event", broken)
    for i in range(100):
        turn = room.next_turn()
        room.complete_turn(turn, f"unstored {i} " + "sand " * 40)
        with pytest.raises(sqlite3.OperationalError):
            await store.save(room_id, room, room.take_events())
    assert room.stored_upto == stored and room.history_offset <= stored  # nothing unsaved was let go
    monkeypatch.undo()
    await store.save(room_id, room, room.take_events())
    async with store.db.execute("SELECT seq, data FROM entries WHERE room_id = ? ORDER BY seq", (room_id,)) as cursor:
        rows = await cursor.fetchall()
    assert [seq for seq, _ in rows] == list(range(room.history_length))
    assert "unstored 99" in rows[-1][1]
    await store.close()


async def test_a_servers_own_scenarios_are_kept_per_server_across_a_reopen(reopen) -> None:
    store = await reopen()
    await store.set_guild_scenarios(1, {"b": {"system": "B"}, "a": {"system": "A"}})
    await store.set_guild_scenarios(2, {"a": {"system": "other server"}})
    await store.set_guild_scenarios(1, {"a": {"system": "A, replaced"}})
    assert await store.remove_guild_scenario(1, "b") and not await store.remove_guild_scenario(1, "b")
    await store.close()
    store = await reopen()
    try:
        assert await store.guild_scenarios(1) == {"a": {"system": "A, replaced"}}
        assert await store.guild_scenarios(2) == {"a": {"system": "other server"}}
        assert await store.guild_scenarios(3) == {}
    finally:
        await store.close()


# --- group commit: many rooms' writes in one transaction ------------------------------


async def rooms_with_a_turn(store: Store, count: int, **where) -> tuple[list[Room], list[int]]:
    rooms = [new_room() for _ in range(count)]
    ids = [await store.create_room(room, "console", **where) for room in rooms]
    for i, room in enumerate(rooms):
        room.complete_turn(room.next_turn(), f"room {i} speaks", Usage(input_tokens=5, output_tokens=5, cost_usd=0.01))
    return rooms, ids


async def test_saves_of_rooms_at_the_same_moment_share_one_transaction(reopen):
    import asyncio

    store = await reopen()
    rooms, ids = await rooms_with_a_turn(store, 5, guild_id=7)
    batches = store.group.batches
    saves = [storage.capture(room, room.stored_upto, room.take_events()) for room in rooms]
    await asyncio.gather(*(store.write(i, save) for save, i in zip(saves, ids)))
    assert store.group.batches == batches + 1
    for n, room_id in enumerate(ids):
        assert [s.event.text for s in await store.events(room_id) if isinstance(s.event, Reply)] == [f"room {n} speaks"]
    assert await store.spent(store.today(), guild_id=7) == pytest.approx(0.05)  # each room's cost booked once
    await store.close()


async def test_one_rooms_bad_save_in_a_batch_costs_no_other_room_its_save(reopen):
    """A save that breaks the database's rules (its room was deleted under it) fails alone;
    the saves it shared the transaction with are all stored, costs included."""
    import asyncio

    store = await reopen()
    rooms, ids = await rooms_with_a_turn(store, 3, guild_id=7)
    await store.delete_room(ids[1])
    batches = store.group.batches
    results = await asyncio.gather(
        *(store.write(i, storage.capture(room, room.stored_upto, room.take_events())) for room, i in zip(rooms, ids)),
        return_exceptions=True,
    )
    assert store.group.batches == batches + 1  # they did share the transaction
    assert isinstance(results[1], store.errors)  # its room is gone: a foreign key refuses it
    for n in (0, 2):
        assert results[n]  # each event the turn queued got its id
        again = await store.load_room(ids[n], data.catalog(), data.scenarios())
        assert again.history == rooms[n].history
        assert [s.id for s in await store.events(ids[n])] == results[n]
    assert await store.spent(store.today(), guild_id=7) == pytest.approx(0.02)
    await store.close()


async def test_a_batch_that_cannot_commit_fails_every_write_in_it_and_stores_none(reopen, monkeypatch):
    import asyncio

    store = await reopen()
    rooms, ids = await rooms_with_a_turn(store, 3)
    original = store._apply_all

    def full_at_commit(conn, writes):
        original(conn, writes)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_apply_all", full_at_commit)
    saves = [storage.capture(room, room.stored_upto, room.take_events()) for room in rooms]
    results = await asyncio.gather(*(store.write(i, save) for save, i in zip(saves, ids)), return_exceptions=True)
    assert [type(r) for r in results] == [sqlite3.OperationalError] * 3
    for room_id in ids:
        assert await store.events(room_id) == [] and await store.history_len(room_id) == 1  # the opening only
    await store.close()


async def test_a_new_room_waits_for_at_most_the_batch_being_written(reopen, monkeypatch):
    """``/seance start`` stores its room between two batches, not after every running room's writes."""
    import asyncio

    monkeypatch.setattr(storage, "BATCH_LIMIT", 10)
    store = await reopen()
    rooms, ids = await rooms_with_a_turn(store, 50)
    saves = [asyncio.ensure_future(store.write(i, storage.capture(r, r.stored_upto, r.take_events()))) for r, i in zip(rooms, ids)]
    await asyncio.sleep(0)  # the writer starts its first batch of 10
    batches = store.group.batches
    await store.create_room(new_room(), "console")
    assert store.group.batches <= batches + 1 and sum(not s.done() for s in saves) >= 30
    await asyncio.gather(*saves)
    await store.close()


async def test_reads_do_not_wait_for_a_batch_being_written(reopen, monkeypatch):
    import asyncio
    import threading

    store = await reopen()
    rooms, ids = await rooms_with_a_turn(store, 2)
    original, release = store._apply_all, threading.Event()

    def slow(conn, writes):
        release.wait(10)  # a long batch on the database's thread
        return original(conn, writes)

    monkeypatch.setattr(store, "_apply_all", slow)
    saving = asyncio.ensure_future(store.save(ids[0], rooms[0], rooms[0].take_events()))
    await asyncio.sleep(0.05)
    try:
        assert [r.id for r in await asyncio.wait_for(store.rooms(), 2)] == ids
        assert await asyncio.wait_for(store.history_len(ids[1]), 2) == 1
        assert not saving.done()
    finally:
        release.set()
    await saving
    await store.close()


async def test_a_lease_renewal_goes_before_the_writes_waiting_for_the_database(reopen, monkeypatch):
    """A busy process renews its rooms' leases in time: the renewal waits for the batch being written,
    not also for every room creation and batch queued behind it (there it landed too late, and the
    process lost its own rooms)."""
    import asyncio
    import threading

    store = await reopen()
    rooms, ids = await rooms_with_a_turn(store, 2)
    for room_id in ids:
        assert await store.take_lease(room_id, "me", 30) == "me"
    original, release = store._apply_all, threading.Event()

    def slow(conn, writes):
        release.wait(10)  # a long batch on the database's thread
        return original(conn, writes)

    monkeypatch.setattr(store, "_apply_all", slow)
    landed: list[str] = []

    def noting(name, work):
        task = asyncio.ensure_future(work)
        task.add_done_callback(lambda _: landed.append(name))
        return task

    saving = noting("batch", store.save(ids[0], rooms[0], rooms[0].take_events()))
    await asyncio.sleep(0.05)  # the batch holds the database
    waiting = [noting("new room", store.create_room(new_room(), "console")) for _ in range(3)]
    await asyncio.sleep(0)
    waiting.append(noting("next batch", store.save(ids[1], rooms[1], rooms[1].take_events())))
    await asyncio.sleep(0.05)
    renewal = noting("renewal", store.renew_leases("me", ids, 30))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.gather(saving, renewal, *waiting)
    assert renewal.result() == set(ids)
    assert landed.index("renewal") < min(i for i, name in enumerate(landed) if name in ("new room", "next batch"))
    await store.close()


async def test_a_write_cancelled_while_waiting_for_the_database_passes_its_turn_on():
    """A room stopped while its write waits for the write connection neither keeps the connection
    nor loses the next writer its turn, whether it was still queued or had just been handed it."""
    import asyncio

    lock = storage.WriteLock()
    await lock.acquire()
    queued = [asyncio.ensure_future(lock.acquire()), asyncio.ensure_future(lock.acquire(urgent=True))]
    handed, after = asyncio.ensure_future(lock.acquire()), asyncio.ensure_future(lock.acquire())
    await asyncio.sleep(0)
    for task in queued:
        task.cancel()
    await asyncio.sleep(0)
    lock.release()  # skips the cancelled two: the turn goes to ``handed``
    handed.cancel()  # cancelled before it ran with it
    await asyncio.wait_for(after, 1)
    assert handed.cancelled() and lock.locked()
    lock.release()
    assert not lock.locked()
    await asyncio.wait_for(lock.acquire(urgent=True), 1)


async def test_a_journal_does_not_write_a_room_that_has_not_changed(reopen):
    store = await reopen()
    room = new_room()
    journal = storage.Journal(store, await store.create_room(room, "console"))
    room.complete_turn(room.next_turn(), "hello")
    await journal.record(room)
    writes = store.group.writes
    assert await journal.record(room) == []
    assert store.group.writes == writes
    room.pause("a break")
    await journal.record(room)
    assert store.group.writes == writes + 1 and (await store.room(journal.room_id)).state == "paused"


async def test_what_a_journal_wrote_is_read_back_while_many_other_reads_run(reopen):
    """A runner records a room's events and then reads back what is owed to the channel. With a
    thousand rooms reading at once, a reader whose statements were stepped over several calls
    always had one open, so it kept showing the database from before the latest commits: a
    restart's "back" notice, just written, was read back as nothing and never shown."""
    store = await reopen()
    room = new_room()
    journal = storage.Journal(store, await store.create_room(room, "console"))
    others = [await store.create_room(new_room(), "console") for _ in range(3)]
    reading = True

    async def read_meanwhile(room_id: int) -> None:
        while reading:
            await asyncio.gather(store.history_len(room_id), store.has_unposted(room_id), store.room(room_id))

    readers = [asyncio.create_task(read_meanwhile(room_id)) for room_id in others * 2]
    try:
        for n in range(20):
            room.announce(f"notice {n}")
            written = [event_id for event_id, _ in await journal.record(room)]
            owed = [stored.id for stored in await store.unposted(journal.room_id)]
            assert written and set(written) <= set(owed), f"notice {n}: wrote {written}, read back {owed}"
    finally:
        reading = False
        await asyncio.gather(*readers)


# --- forks ---------------------------------------------------------------------


def replies(stored: list) -> list[int]:
    return [event_id for event_id, event in stored if isinstance(event, Reply)]


async def test_a_fork_starts_from_the_message_as_the_room_was_then(reopen):
    """Seats, temperatures, notes and history as they were at the message, whatever changed after it."""
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "console")
    stored = await play(store, room_id, room, '!temperature 1.3\n!prompt "speak of salt"\nThe sea first.', "The harbour.")
    at = replies(stored)[-1]  # AI-2's reply
    then = {n: room.request_for(p) for n, p in room.participants.items()}
    history = list(room.history)
    # After the fork point everything changes: temperatures, notes, a persona, who is seated.
    await play(store, room_id, room, '!temperature 0.2\n!prompt "forget salt"\nNo more sea.')
    room.set_prompt(2, "a grumpy harbour master")
    room.set_temperature(2, 0.1)
    room.add("DeepSeek R1")
    room.remove(1)
    await store.save(room_id, room, room.take_events())
    await play(store, room_id, room, "After all that.")

    fork_id = await store.create_fork(await store.fork_source(room_id, at), "console")
    fork = await store.load_room(fork_id, data.catalog(), data.scenarios())
    assert [p.label for p in fork.present] == ["AI-1 (Gemini 3 Flash)", "AI-2 (Claude Haiku 4.5)"]
    assert fork.participants[1].temperature == 1.3 and fork.participants[1].additions == ["speak of salt"]
    assert fork.history == history
    for number, request in then.items():  # what each AI would have been sent next, exactly
        assert fork.request_for(fork.participants[number]) == request
    assert fork.next_turn().number == 1  # AI-2 spoke last
    record = await store.room(fork_id)
    assert (record.parent_id, record.fork_event, record.state) == (room_id, at, "running")
    assert fork.settings == room.settings and record.scenario == "workshop"

    parent = await store.load_room(room_id, data.catalog(), data.scenarios())  # goes on untouched
    assert not parent.participants[1].present and parent.participants[2].persona == "a grumpy harbour master"
    assert [p.label for p in parent.present] == ["AI-2 (Claude Haiku 4.5)", "AI-3 (DeepSeek R1)"]
    assert await store.event_count(fork_id) == 0
    await store.close()


async def test_a_change_saved_with_the_message_is_not_part_of_its_fork(reopen):
    """A moderator's change made before the reply's save was written lands in that save, not in the fork point."""
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "console")
    room.complete_turn(room.next_turn(), "Islands first.")
    room.set_temperature(1, 0.2)
    room.add("DeepSeek R1")
    (reply,) = replies(await store.save(room_id, room, room.take_events()))
    source = await store.fork_source(room_id, reply)
    assert [s["temperature"] for s in source.seats] == [1.0, 1.0]
    assert source.models == ["Gemini 3 Flash", "Claude Haiku 4.5"]
    assert (source.kind, source.number, source.text) == ("reply", 1, "Islands first.")
    await store.close()


async def test_seats_are_stored_only_when_they_change_and_survive_a_reopen(reopen):
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "console")
    first = replies(await play(store, room_id, room, "one", "two", "three", "four"))
    later = replies(await play(store, room_id, room, "!temperature 0.7\nfive", "six"))
    await store.close()
    store = await reopen()
    room = await store.load_room(room_id, data.catalog(), data.scenarios())
    last = replies(await play(store, room_id, room, "seven"))
    async with store.reader.execute("SELECT COUNT(*) FROM seats") as cursor:
        assert (await cursor.fetchone())[0] == 2  # the start and the change: each is compared with what is stored
    temperatures = [
        (await store.fork_source(room_id, event_id)).seats[0]["temperature"] for event_id in first + later + last
    ]
    assert temperatures == [1.0, 1.0, 1.0, 1.0, 0.7, 0.7, 0.7]
    await store.close()


async def test_a_fork_from_a_picture_copies_the_pictures_so_deleting_the_parent_keeps_them(reopen):
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "console")
    room.complete_turn(room.next_turn(), '!image "a lighthouse of glass"')
    (job,) = [e for e in room.take_events() if isinstance(e, ImageJob)]
    room.image_done(job.job_id, Picture(b"lighthouse-bytes", "image/png"))
    stored = await store.save(room_id, room, room.take_events())
    (picture_event,) = [i for i, e in stored if isinstance(e, ImageMade)]
    source = await store.fork_source(room_id, picture_event)
    assert (source.kind, source.text) == ("picture", '[AI-1 (Gemini 3 Flash)]: !image "a lighthouse of glass"')
    fork_id = await store.create_fork(source, "console")
    room.stop("done")
    await store.save(room_id, room, room.take_events())
    await store.delete_room(room_id)
    fork = await store.load_room(fork_id, data.catalog(), data.scenarios())
    (entry,) = [e for e in fork.history if e.picture is not None]
    assert entry.picture.data == b"lighthouse-bytes"
    assert (await store.room(fork_id)).parent_id == room_id  # still says where it came from
    await store.close()


async def test_a_fork_is_refused_clearly_where_it_cannot_start(reopen):
    store = await reopen()
    room, other = new_room(), new_room()
    room_id = await store.create_room(room, "console")
    other_id = await store.create_room(other, "console")
    stored = await play(store, room_id, room, "!temperature 0.5\nA reply.")
    notice = next(i for i, e in stored if isinstance(e, Notice))
    reply = replies(stored)[0]
    with pytest.raises(storage.ForkError, match=f"Event {notice} of room {room_id} is a notice; a fork starts from"):
        await store.fork_source(room_id, notice)
    with pytest.raises(storage.ForkError, match=f"Event {reply} is not in room {other_id}; .*export {other_id} --numbered"):
        await store.fork_source(other_id, reply)
    with pytest.raises(StorageError, match="There is no room 99"):
        await store.fork_source(99, reply)
    async with store._transaction():
        await store._run("UPDATE events SET history_len = NULL")  # as stored before forks were recorded
    with pytest.raises(storage.ForkError, match="from before Séance recorded where forks start"):
        await store.fork_source(room_id, reply)
    await store.close()


async def test_a_discord_message_is_traced_to_its_room_and_event(reopen):
    store = await reopen()
    room = new_room()
    room_id = await store.create_room(room, "discord", guild_id=1, channel_id=500)
    stored = await play(store, room_id, room, "!temperature 0.5\nA reply.")
    notice, reply = stored[0][0], replies(stored)[0]
    await store.mark_posted([notice], [9001])
    await store.mark_posted([reply], [9002, 9003])  # a long reply in two messages
    assert await store.find_message(9003, 500) == (room_id, reply)
    assert await store.find_message(9001, 500) == (room_id, notice)
    assert await store.find_message(9001, 501) is None  # only the rooms of the channel asked about
    assert await store.find_message(12345, 500) is None
    await store.close()


async def test_a_restores_reads_of_each_room_search_by_room_rather_than_scan_all_events(tmp_path):
    """A restart asks every room for its newest posted message and whether it owes an event; a scan
    of the events table for each made a thousand rooms' restore quadratic (16 s of reads at 200
    events a room, 0.24 s searching by room)."""
    store = await Store.open(tmp_path / "seance.sqlite3")
    room = new_room()
    room_id = await store.create_room(room, "discord", guild_id=1, channel_id=2)
    await play(store, room_id, room, "One.", "Two.")
    statements: list[str] = []
    await store.reader.set_trace_callback(statements.append)
    assert await store.last_message_id(room_id) is None and await store.has_unposted(room_id)
    await store.load_room(room_id, data.catalog(), data.scenarios())
    await store.reader.set_trace_callback(None)

    reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(reads) >= 3
    for sql in reads:
        async with store.reader.execute(f"EXPLAIN QUERY PLAN {sql}") as cursor:
            plan = [row[-1] for row in await cursor.fetchall()]
        assert not [step for step in plan if step.startswith("SCAN") and step != "SCAN CONSTANT ROW"], (sql, plan)
    await store.close()
