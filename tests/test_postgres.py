"""PostgreSQL as the store (bot/postgres.py): what only a server can do wrong, tried on a real one.

The shared storage behaviour runs on both backends in tests/test_storage.py; here: the
dialect bridge, a server that cannot be reached, several processes on one database, and a
connection killed in the middle of a room.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io

import asyncpg

import pytest

from bot import bot as app
from bot import data, postgres, storage
from bot.__main__ import main
from bot.engine import Picture, Reply
from bot.runner import RoomRunner
from bot.storage import Journal, StorageError, open_url
from tests.postgres import count_statements, free_port
from tests.test_bot import quiet_settings
from tests.test_runner import Recorder, Scripted, SlowImages
from tests.test_runner_failures import room_of, same_room
from tests.test_storage import rooms_with_a_turn


def test_every_sqlite_migration_has_its_postgresql_form_with_the_same_number() -> None:
    assert len(postgres.PG_MIGRATIONS) == len(storage.MIGRATIONS), (
        "a migration was added to bot/storage.py MIGRATIONS without its PostgreSQL form in bot/postgres.py "
        "PG_MIGRATIONS (append it there, with the same number)"
    )


def test_shared_sql_gets_numbered_placeholders_and_sqlite_only_syntax_is_refused() -> None:
    assert postgres.to_postgres("SELECT '?', x FROM t WHERE a = ? AND b IN (?, ?) AND c != 'it''s ?'") == (
        "SELECT '?', x FROM t WHERE a = $1 AND b IN ($2, $3) AND c != 'it''s ?'"
    )
    for sqlite_only in ("INSERT OR REPLACE INTO t VALUES (?)", "insert or ignore into t values (1)", "PRAGMA user_version"):
        with pytest.raises(ValueError, match="SQLite-only SQL"):
            postgres.to_postgres(sqlite_only)


async def test_an_unreachable_server_is_one_sentence_without_the_password() -> None:
    url = f"postgresql://seance:hunter2@127.0.0.1:{free_port()}/seance"
    with pytest.raises(StorageError) as refused:
        await open_url(url)
    said = str(refused.value)
    assert said.startswith("PostgreSQL at 127.0.0.1:") and "database seance cannot be reached" in said
    assert "check that the server runs and DATABASE_URL names it" in said
    assert "hunter2" not in said and "\n" not in said


async def test_a_database_that_does_not_exist_is_named(postgres_cluster) -> None:
    with pytest.raises(StorageError, match=r"database nowhere does not exist .*create it \(createdb\)"):
        await open_url(postgres_cluster.url("nowhere"))


async def test_a_url_of_another_kind_is_refused_with_an_example() -> None:
    with pytest.raises(StorageError, match="starts with postgresql:// or sqlite:///, not mysql://"):
        await open_url("mysql://localhost/seance")


def test_the_bot_start_ends_in_one_line_when_postgresql_cannot_be_reached() -> None:
    out = io.StringIO()
    url = f"postgresql://seance:hunter2@127.0.0.1:{free_port()}/seance"
    code = app.run(quiet_settings(discord_token="t", database_url=url), out)
    said = out.getvalue().strip()
    assert code == 2  # as for a DATABASE_PATH that cannot work: a person has to fix something
    assert "cannot be reached" in said and "\n" not in said and "hunter2" not in said and "Traceback" not in said


async def test_processes_starting_together_on_an_empty_database_migrate_it_once(pg_url) -> None:
    stores = await asyncio.gather(*(open_url(pg_url) for _ in range(3)))
    versions = await stores[0].db.execute_fetchall("SELECT version FROM seance_schema")
    assert versions == [(len(postgres.PG_MIGRATIONS),)]
    await asyncio.gather(*(store.close() for store in stores))


async def test_a_reading_command_does_not_upgrade_a_shared_database(pg_url, monkeypatch) -> None:
    await (await open_url(pg_url)).close()
    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS + ["SELECT 1;"])
    monkeypatch.setattr(postgres, "PG_MIGRATIONS", postgres.PG_MIGRATIONS + ["SELECT 1;"])
    with pytest.raises(StorageError, match="older than this Séance's .* this command only reads"):
        await open_url(pg_url, writing=False)


def test_the_command_line_reads_rooms_from_database_url(pg_url, monkeypatch, capsys, tmp_path) -> None:
    async def one_room() -> int:
        store = await open_url(pg_url)
        room = room_of(ais=2)
        room_id = await store.create_room(room, "console")
        room.complete_turn(room.next_turn(), "a lantern speaks")
        await store.save(room_id, room, room.take_events())
        await store.close()
        return room_id

    room_id = asyncio.run(one_room())
    monkeypatch.setenv("DATABASE_URL", pg_url)
    assert main(["rooms"]) == 0
    listed = capsys.readouterr().out
    assert "console" in listed and str(room_id) in listed
    assert main(["export", str(room_id), "--format", "jsonl", "--out", str(tmp_path / "room.jsonl")]) == 0
    assert "a lantern speaks" in (tmp_path / "room.jsonl").read_text()
    assert not (tmp_path / "data").exists()  # nothing went to a SQLite file


def test_a_database_url_of_another_kind_is_named_at_start(monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://seance:hunter2@db/seance")
    assert main(["rooms"]) == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith("DATABASE_URL is not valid (") and "postgresql://" in said and "hunter2" not in said


@pytest.mark.logs_errors
async def test_a_connection_killed_mid_save_pauses_the_room_and_resume_loses_nothing(
    pg_url, postgres_cluster, error_logs
) -> None:
    store = await open_url(pg_url)
    room = room_of(ais=2, turns=4)
    room_id = await store.create_room(room, "console")
    told: list[str] = []

    async def tell(sentence: str) -> None:
        told.append(sentence)

    original = store._add_event
    killed: list[int] = []
    loop = asyncio.get_running_loop()

    def killed_then_add(conn, room_id, event):  # on the write path's thread, inside the save's transaction
        if not killed:  # the server drops every connection of this database, this save's included
            killed.append(asyncio.run_coroutine_threadsafe(postgres_cluster.terminate(pg_url), loop).result())
        return original(conn, room_id, event)

    store._add_event = killed_then_add  # type: ignore[method-assign]
    stage = Recorder()
    provider = Scripted("one", "two", "three", "four")
    runner = RoomRunner(room, lambda m: provider, SlowImages(), stage, journal=Journal(store, room_id), on_problem=tell)
    await asyncio.wait_for(runner.run(return_on_pause=True), 20)
    assert killed and killed[0] >= 1
    assert room.state == "paused" and room.turns_taken == 1
    stored = [s.event for s in await store.events(room_id) if isinstance(s.event, Reply)]
    assert [e for e in stage.shown if isinstance(e, Reply)] == stored  # shown only once stored again
    assert len(told) == 1 and "the database server cannot be reached" in told[0]
    assert [r.getMessage().split(":")[0] for r in error_logs] == ["could not record the room, so it pauses"]

    room.resume("Morgan")  # the pool makes new connections: the room carries on
    await asyncio.wait_for(runner.run(), 20)
    assert [e.text for e in stage.shown if isinstance(e, Reply)] == ["one", "two", "three", "four"]
    assert [s.event for s in await store.events(room_id) if isinstance(s.event, Reply)] == [
        e for e in stage.shown if isinstance(e, Reply)
    ]
    same_room(room, await store.load_room(room_id, data.catalog(), data.scenarios()))
    await store.close()


# --- group commit on PostgreSQL: a batch's rows go per statement, not per row -----------------


async def turns_of(store, count: int) -> tuple[list, list[int], list[storage.SaveWrite]]:
    """``count`` stored rooms of one server, each with a reply (a cost, a fork point) to save."""
    rooms, ids = await rooms_with_a_turn(store, count, guild_id=7)
    saves = [storage.SaveWrite(i, storage.capture(r, r.stored_upto, r.take_events())) for r, i in zip(rooms, ids)]
    return rooms, ids, saves


async def test_a_batch_sends_each_statement_once_however_many_rooms_it_holds(pg_url, monkeypatch) -> None:
    """Group commit gathers many rooms' saves in one transaction; on PostgreSQL each statement
    must then go once with all the batch's rows, or the batch costs a round trip per row and
    1,000 rooms wait on the connection. Fails if any statement is sent once per room."""
    store = await open_url(pg_url)
    sent = count_statements(monkeypatch.setattr)
    per_batch = []
    for count in (3, 24):
        rooms, ids, saves = await turns_of(store, count)
        sent.clear()
        results = await store.write_many(saves)
        saving = sum(sent.values())
        marks = [storage.MarkWrite(event_ids, [9000 + n * 10, 9001 + n * 10]) for n, event_ids in enumerate(results)]
        sent.clear()
        assert await store.write_many(marks) == [None] * count
        per_batch.append((saving, sum(sent.values())))
        for n, (room, room_id) in enumerate(zip(rooms, ids)):  # and everything is stored as it was
            stored = await store.events(room_id)
            assert [s.id for s in stored] == results[n] and all(s.posted_at is not None for s in stored)
            assert await store.ai_for_message(9001 + n * 10) == (room_id, 1)
            same_room(room, await store.load_room(room_id, data.catalog(), data.scenarios()))
    assert per_batch[0] == per_batch[1], per_batch  # the same statements for 24 rooms as for 3
    saving, marking = per_batch[0]
    assert saving == 10, saving  # BEGIN, event ids, SAVEPOINT, entries, events, seats, spend, rooms, RELEASE, COMMIT
    assert marking == 7, marking  # BEGIN, authors, SAVEPOINT, events, messages, RELEASE, COMMIT
    assert await store.spent(store.today(), guild_id=7) == pytest.approx(0.01 * 27)
    await store.close()


async def test_a_row_the_server_refuses_fails_its_write_alone_and_the_batch_keeps_the_rest(pg_url, monkeypatch) -> None:
    """One room's save holds a row PostgreSQL refuses (a NUL character, which its text cannot
    hold; SQLite would keep it): that save fails alone, and every other room's save and mark in
    the same transaction is stored, costs included, with the ids each was given."""
    store = await open_url(pg_url)
    rooms, ids, saves = await turns_of(store, 5)
    earlier = await store.write_many(saves[:2])  # two rooms' replies, to be marked in the same batch
    rooms2, ids2, more = await turns_of(store, 3)
    bad = more[1].save
    refused = storage.Said("Morgan", "a picture", Picture(b"\x89PNG....", "image/png\x00"))
    more[1] = storage.SaveWrite(more[1].room_id, dataclasses.replace(bad, events=[*bad.events, refused]))
    marks = [storage.MarkWrite(event_ids, [7000 + n]) for n, event_ids in enumerate(earlier)]
    writes = [*saves[2:], marks[0], *more, marks[1]]
    batches = store.group.batches
    results = await asyncio.gather(*(store.group.submit(w) for w in writes), return_exceptions=True)
    assert store.group.batches == batches + 1  # all in one transaction
    by_write = dict(zip(map(id, writes), results))
    assert isinstance(by_write[id(more[1])], asyncpg.CharacterNotInRepertoireError)
    for write in writes:
        if write is more[1]:
            continue
        assert not isinstance(by_write[id(write)], BaseException), by_write[id(write)]
    for room, save in [*zip(rooms[2:], saves[2:]), (rooms2[0], more[0]), (rooms2[2], more[2])]:
        stored = await store.events(save.room_id)
        assert [s.id for s in stored] == by_write[id(save)] and len(stored) == 1
        same_room(room, await store.load_room(save.room_id, data.catalog(), data.scenarios()))
    assert await store.events(more[1].room_id) == [] and await store.history_len(more[1].room_id) == 1
    for n, room_id in enumerate(ids[:2]):  # the marks went in too
        assert all(s.posted_at is not None for s in await store.events(room_id))
        assert await store.ai_for_message(7000 + n) == (room_id, 1)
    assert await store.spent(store.today(), guild_id=7) == pytest.approx(0.01 * 7)  # all but the refused save's
    again = await store.write_many([storage.SaveWrite(more[1].room_id, bad)])  # the room itself carries on
    assert isinstance(again[0], list) and len(await store.events(more[1].room_id)) == 1
    await store.close()
