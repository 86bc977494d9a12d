"""Per-server settings over the host's, and the host's bookkeeping (``python -m bot usage``)."""

from __future__ import annotations

import asyncio
import os

import pytest

from bot import data
from bot.__main__ import main
from bot.engine import Room, RoomSettings, Usage
from bot.guilds import GuildSettings, day_ends_in
from bot.settings import Settings
from bot.storage import Store


def host(**values) -> Settings:
    return Settings(_env_file=None, openrouter_api_key="k", **values)


async def test_a_server_value_counts_only_where_it_is_stricter(tmp_path):
    store = await Store.open(tmp_path / "seance.sqlite3")
    guilds = GuildSettings(host(daily_budget_usd=10, images_per_ai=3, image_window_turns=10, allowed_models="Gemini 3 Flash, DeepSeek R1"), store)
    await guilds.update(7, daily_budget_usd=50.0, images_per_ai=1, image_window=5, allowed_models=["DeepSeek R1", "GPT 5.2"], default_turns=99)
    config = await guilds.get(7)
    assert config.daily_budget_usd == 10  # the host's ceiling
    assert (config.images_per_ai, config.image_window) == (1, 10)  # fewer pictures, over the longer window
    assert config.allowed_models == ("DeepSeek R1",)  # only what the host allows too
    assert config.default_turns == 99  # not money: the server's own
    assert guilds.catalog(config).names == ["DeepSeek R1"]
    other = await guilds.get(8)
    assert other.allowed_models == ("Gemini 3 Flash", "DeepSeek R1") and other.own == frozenset()
    await store.close()


async def test_the_cache_is_dropped_on_every_write(tmp_path):
    store = await Store.open(tmp_path / "seance.sqlite3")
    guilds = GuildSettings(host(), store)
    assert (await guilds.get(7)).room_budget_usd is None
    reads = []
    original = store.guild_settings

    async def counting(guild_id):
        reads.append(guild_id)
        return await original(guild_id)

    store.guild_settings = counting
    await guilds.get(7)
    assert reads == []  # cached
    await guilds.update(7, room_budget_usd=2.0)
    assert (await guilds.get(7)).room_budget_usd == 2.0 and reads == [7]
    await store.close()


def test_the_days_end():
    assert day_ends_in(86400 * 3 + 60) == "23 h 59 min"
    assert day_ends_in(86400 * 4 - 600) == "10 min"


def test_usage_report_per_server_and_room(capsys):
    async def fill() -> None:
        store = await Store.open(os.environ["DATABASE_PATH"])
        for guild, day, cost in ((7, 1_780_000_000.0, 0.25), (7, 1_780_000_000.0 + 86400, 0.5), (None, 1_780_000_000.0, 0.125)):
            room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings())
            room.add("Gemini 3 Flash")
            room_id = await store.create_room(room, "discord" if guild else "console", guild_id=guild)
            store.clock = lambda day=day: day
            room.complete_turn(room.next_turn(), "hello", Usage(input_tokens=1000, output_tokens=200, cost_usd=cost))
            await store.save(room_id, room, room.take_events())
        await store.close()

    asyncio.run(fill())
    assert main(["usage"]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[0] == "Spending from the start to today (UTC days):"
    assert report[1].startswith("console") and "$    0.1250" in report[1] and "1,200 tokens" in report[1]
    assert report[2].startswith("  room 3")
    assert report[3].startswith("server 7") and "$    0.7500" in report[3] and "2 turns" in report[3]
    assert report[-1].startswith("total") and "$    0.8750" in report[-1]

    assert main(["usage", "--guild", "7", "--since", "2026-05-29"]) == 0
    only = capsys.readouterr().out.splitlines()
    assert only[1].startswith("server 7") and "$    0.5000" in only[1] and len(only) == 4
    assert main(["usage", "--until", "2020-01-01"]) == 0
    assert capsys.readouterr().out == "Nothing was spent from the start to 2020-01-01 (UTC days).\n"
    with pytest.raises(SystemExit):
        main(["usage", "--since", "yesterday"])
    assert "'yesterday' is not a date like 2026-12-01" in capsys.readouterr().err


def test_usage_report_counts_a_summarys_dollars_and_tokens_but_no_turn(capsys):
    async def fill() -> None:
        store = await Store.open(os.environ["DATABASE_PATH"])
        room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(summary_model="DeepSeek V3.2"))
        room.add("Gemini 3 Flash")
        room_id = await store.create_room(room, "discord", guild_id=9)
        room.complete_turn(room.next_turn(), "hello", Usage(input_tokens=1000, output_tokens=200, cost_usd=0.25))
        room.memory.pending = (1, 1)  # a summary the room asked for
        room.summary_done(1, "They said hello.", Usage(input_tokens=3000, output_tokens=100, cost_usd=0.125))
        await store.save(room_id, room, room.take_events())
        await store.close()

    asyncio.run(fill())
    assert main(["usage", "--guild", "9"]) == 0
    server = capsys.readouterr().out.splitlines()[1]
    assert "$    0.3750" in server and "4,300 tokens" in server and " 1 turns" in server
