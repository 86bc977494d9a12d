"""``python -m bot migrate``: a SQLite installation copied into a real PostgreSQL server, whole."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot import data
from bot.__main__ import main
from bot.engine import Picture, Usage
from bot.storage import Store, open_url
from tests.postgres import free_port
from tests.test_storage import new_room, play


async def installation(path: Path) -> dict:
    """A SQLite installation with something in every table, and a deleted room (numbers go on after it)."""
    store = await Store.open(path)
    kept, gone = new_room(), new_room()
    room_id = await store.create_room(kept, "discord", guild_id=7, channel_id=5, options={"open_floor": True})
    gone_id = await store.create_room(gone, "console")
    turn = kept.next_turn()
    kept.complete_turn(turn, '!image "a harbour at dawn"\nLook.', Usage(input_tokens=100, output_tokens=20))
    posted = await store.save(room_id, kept, kept.take_events())
    kept.image_done(1, Picture(b"\x89PNG harbour", "image/png"))
    await play(store, room_id, kept, "and the gulls")
    await store.mark_posted([i for i, _ in posted], [9001])
    await store.record_vote(room_id, "someone", 2, 3)
    await store.set_webhook(5, 77, "webhook-token")
    await store.set_guild_settings(7, {"allowed_models": ["Gemini 3 Flash"], "daily_budget_usd": 2.5})
    await store.set_command_copy(7, True)
    await store.delete_room(gone_id)
    facts = {
        "room": room_id,
        "events": [(s.id, s.event, s.message_ids) for s in await store.events(room_id)],
        "history": kept.history_length,
        "spending": await store.spending(),
    }
    await store.close()
    return facts


def test_an_installation_is_copied_whole_and_checked(tmp_path, pg_url, capsys) -> None:
    path = tmp_path / "seance.sqlite3"
    facts = asyncio.run(installation(path))
    assert main(["migrate", "--from", f"sqlite:///{path}", "--to", pg_url]) == 0
    said = capsys.readouterr().out
    assert "every count checked" in said and "1 rooms" in said and "1 webhooks" in said and "1 votes" in said

    async def check() -> None:
        store = await open_url(pg_url)
        (record,) = await store.rooms()
        assert (record.id, record.guild_id, record.options) == (facts["room"], 7, {"open_floor": True})
        assert [(s.id, s.event, s.message_ids) for s in await store.events(record.id)] == facts["events"]
        room = await store.load_room(record.id, data.catalog(), data.scenarios())
        assert room.history_length == facts["history"]
        assert [e.picture.data for e in room.history if e.picture] == [b"\x89PNG harbour"]
        assert await store.ai_for_message(9001) == (record.id, 1)
        assert await store.webhook(5) == (77, "webhook-token")
        assert (await store.guild_settings(7))["allowed_models"] == ["Gemini 3 Flash"]
        assert await store.spending() == facts["spending"] and await store.command_copies() == [7]
        assert await store.create_room(new_room(), "console") == facts["room"] + 2  # the deleted room's number stays used
        await store.close()

    asyncio.run(check())

    assert main(["migrate", "--from", f"sqlite:///{path}", "--to", pg_url]) == 2  # a second time: the target is not empty
    assert "already holds data" in capsys.readouterr().err


def test_a_missing_picture_file_is_counted_and_its_row_kept(tmp_path, pg_url, capsys) -> None:
    path = tmp_path / "seance.sqlite3"
    asyncio.run(installation(path))
    for picture in (tmp_path / "seance-pictures").rglob("*.png"):
        picture.unlink()
    assert main(["migrate", "--from", f"sqlite:///{path}", "--to", pg_url]) == 0
    assert "1 picture file(s) were missing on disk" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("source", "target", "said"),
    [
        ("postgresql://h/db", "postgresql://h/db", "--from takes a SQLite database as sqlite:///"),
        ("sqlite:///{path}", "mysql://h/db", "--to takes a PostgreSQL database as postgresql://"),
        ("sqlite:///{missing}", "postgresql://h/db", "There is no SQLite database at"),
        ("sqlite:///{path}", "postgresql://seance:hunter2@127.0.0.1:{port}/seance", "cannot be reached"),
    ],
    ids=["source not sqlite", "target not postgresql", "no such file", "server unreachable"],
)
def test_what_cannot_be_migrated_is_said_in_one_line(tmp_path, capsys, source, target, said) -> None:
    path = tmp_path / "seance.sqlite3"
    asyncio.run(installation(path))
    values = {"path": path, "missing": tmp_path / "nothing.sqlite3", "port": free_port()}
    assert main(["migrate", "--from", source.format(**values), "--to", target.format(**values)]) == 2
    err = capsys.readouterr().err.strip()
    assert said in err and "\n" not in err and "hunter2" not in err


def test_a_database_from_a_newer_seance_is_not_copied(tmp_path, pg_url, capsys) -> None:
    path = tmp_path / "seance.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    assert main(["migrate", "--from", f"sqlite:///{path}", "--to", pg_url]) == 2
    assert "schema version 99" in capsys.readouterr().err
