"""One real bot process for tests/test_processes.py: ``python -m tests.bot_process TRACE``.

It runs the real bot (coordinator, runners, leases, storage) with its settings from
the environment (DATABASE_PATH shared with the other process, SHARD_COUNT, SHARD_IDS,
ROOM_LEASE_SECONDS, the fake model server), inside its own simcord world. simcord is
in-process, so each process has its own simulated Discord: the servers the stored
rooms name are made here with the same ids, and each stored channel gets a channel
of this world (``_find_place`` maps one to the other; simcord picks channel ids).

Every event the bot shows is appended to TRACE as one JSON line naming the stored
room's channel, so the test can tell which process drove which room, and when.
SIGTERM shuts the bot down as on a host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
from pathlib import Path
from typing import cast

import simcord

from bot import create_bot
from bot.process import setup_logging, stopped_by_signal, stopping_on_signals
from bot.settings import Settings
from bot.stage import DiscordStage
from cogs.coordinator import Coordinator


def stored_places(database: Path) -> list[tuple[int, int]]:
    """(guild id, channel id) of every stored Discord room."""
    with sqlite3.connect(database) as db:
        return db.execute("SELECT guild_id, channel_id FROM rooms WHERE origin = 'discord' ORDER BY id").fetchall()


def build_world(env: simcord.Env, places: list[tuple[int, int]]) -> dict[int, int]:
    """The stored rooms' servers (same ids) and a channel for each; stored channel id -> this world's."""
    guilds: dict[int, simcord.GuildHandle] = {}
    channels = {}
    for guild_id, channel_id in places:
        guild = guilds.get(guild_id) or guilds.setdefault(guild_id, env.create_guild(f"server {guild_id}", id=guild_id))
        channels[channel_id] = guild.create_text_channel(f"room-{channel_id}").id
    return channels


def trace_shows(trace: Path, stored_channel: dict[int, int]) -> None:
    """Append every event shown to TRACE, with the stored channel it belongs to."""
    show = DiscordStage.show

    async def traced(self: DiscordStage, events, done=()):
        posted = await show(self, events, done)
        with trace.open("a", encoding="utf-8") as out:
            for event in events:
                line = {"channel": stored_channel[self.channel.id], "kind": type(event).__name__}
                line |= {"number": getattr(event, "number", None), "text": getattr(event, "text", None)}
                out.write(json.dumps(line) + "\n")
        return posted

    DiscordStage.show = traced  # type: ignore[method-assign]


async def main(trace: Path) -> int:
    settings = Settings()
    setup_logging(settings)
    local = {}

    bot = create_bot(settings)

    async def find_place(record):
        channel_id = local.get(record.channel_id)
        return bot.get_channel(channel_id) if channel_id is not None else None

    setup = bot.setup_hook

    async def setup_hook() -> None:
        await setup()  # loads the cogs (each extension is a fresh module: patch the instance)
        coordinator = cast(Coordinator, bot.get_cog("Coordinator"))
        coordinator._find_place = find_place  # type: ignore[method-assign]
        # Rooms come back once simcord has started: its start waits for the bot to settle,
        # and rooms waiting in real time (there is no test here to move simcord's clock) never do.
        coordinator._restored = True

    bot.setup_hook = setup_hook  # type: ignore[method-assign]
    env = simcord.Env(bot, check_errors=False)
    local.update(build_world(env, stored_places(settings.database_path)))
    trace_shows(trace, {mine: stored for stored, mine in local.items()})
    with stopping_on_signals() as stop:
        try:
            await env.start()
            coordinator = cast(Coordinator, bot.get_cog("Coordinator"))
            await coordinator.restore()  # what on_ready does in a real process
            while True:  # until SIGTERM. The heartbeat's loop runs on simcord's clock, which only a
                # test moves: here it beats on the real one, as the loop would in a real process.
                await asyncio.sleep(settings.room_lease_seconds / 3)
                await coordinator.heartbeat()
        except asyncio.CancelledError:
            if not stopped_by_signal(stop):
                raise
        finally:
            await bot.close()  # rooms go offline, leases are given up, the database is closed
            with contextlib.suppress(Exception):  # simcord's own teardown; the bot is closed already
                await env.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]))))
