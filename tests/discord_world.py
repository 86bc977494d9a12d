"""A simulated Discord (simcord) around the real bot, with the fake model server behind it.

Fixtures and readers shared by the Discord tests; a test module or conftest
imports the fixtures it uses (``from tests.discord_world import world``).

Rooms wait between turns through ``bot.room_wait``, which declares the wait to
simcord: a test moves time on with ``env.advance_time(seconds)`` and a turn
follows, so nothing here sleeps for real.

Each test's database is a file in its own tmp_path; ``World.restart`` starts a
new bot on the same database in the same simulated Discord, as a real restart would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import discord
import pytest
import simcord

from bot import create_bot
from bot.bot import SeanceBot
from bot.settings import Settings
from cogs.admin import sync_tree
from cogs.coordinator import Coordinator, Session
from tests.fakes import FakeLLMServer

AVATARS = "https://avatars.example/{seed}.png"
# simcord fails a settle or advance_time that takes longer than this many real seconds (its
# default is 5). That budget is for a bot that hangs; on a busy machine, with the suite's
# workers sharing the cores, a long advance_time of a working bot can need more than 5.
SETTLE_SECONDS = 30.0


@pytest.fixture
def settings(fake_llm: FakeLLMServer, request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Test settings; ``@pytest.mark.settings(name=value)`` overrides some for one test (or, as
    ``pytestmark``, for a module; a test's own marker wins over its module's)."""
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        overrides |= marker.kwargs
    values: dict[str, Any] = {
        "openrouter_api_key": "test",
        "openrouter_base_url": fake_llm.base_url,
        "avatar_url_template": AVATARS,
        "turn_delay": 0,
        "idle_pause_minutes": 0,
        "send_timeout": 2,
        "max_attempts": 1,
        "image_provider": "offline",
        "database_path": tmp_path / "seance.sqlite3",
        # Pacing waits on simcord's clock, which only moves when a test says so: off,
        # except in the tests about pacing (tests/cogs/test_failures.py).
        "webhook_requests_per_2s": 0,
        "channel_messages_per_minute": 0,
        "shard_count": 1,  # simcord needs a count; "auto" asks Discord, which these tests do not reach
        # simcord polls real time (0.05 s) at each lease heartbeat that advance_time steps
        # through: with the default 30 s lease (a beat every 10 s) ten virtual minutes took 3 s.
        # The tests about leases set their own (tests/cogs/test_shards.py).
        "room_lease_seconds": 3600,
    }
    return Settings(_env_file=None, **(values | overrides))


@pytest.fixture
def simcord_bot(settings: Settings) -> SeanceBot:
    return create_bot(settings)


@dataclass
class World:
    env: simcord.Env
    bot: SeanceBot
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    mod: simcord.MemberActor
    viewer: simcord.MemberActor

    @property
    def coordinator(self) -> Coordinator:
        # The extension is loaded afresh for every bot, so its class is not this module's.
        return cast(Coordinator, self.bot.get_cog("Coordinator"))

    def session(self, channel: simcord.ChannelHandle | None = None) -> Session | None:
        return self.coordinator.session_for((channel or self.channel).id)

    async def start(self, channel: simcord.ChannelHandle | None = None, **options: Any) -> simcord.InteractionResult:
        options.setdefault("models", "Gemini 3 Flash, DeepSeek R1")
        return await self.mod.slash(channel or self.channel, "seance start", **options)

    async def restart(self, crash: bool = False) -> SeanceBot:
        """A new bot on the same database and settings, as after a restart; ``crash`` skips the clean close."""
        old = self.bot
        if not crash:
            await old.close()
        else:
            await lapse_leases(old)
        self.bot = create_bot(old.settings, images=old.images)
        wait_here(self.env, self.bot)
        await self.env.restart_bot(self.bot)  # detaches the old bot: its tasks are cancelled where they are
        await old._close_store()  # a crashed process writes nothing more
        await old.pool.aclose()  # nor keeps its sockets
        await self.env.settle()
        return self.bot


async def lapse_leases(bot: SeanceBot) -> None:
    """What time does for a crashed process: its room leases run out (after ROOM_LEASE_SECONDS),
    so the next process takes its rooms. Written as expired, not deleted, as time would leave them."""
    coordinator = bot.get_cog("Coordinator")
    leases = getattr(coordinator, "leases", None)
    if leases is not None and bot.store is not None:
        await bot.store.db.execute("UPDATE room_leases SET expires_at = 0 WHERE owner = ?", (leases.owner,))
        await bot.store.db.commit()


def wait_here(env: simcord.Env, bot: SeanceBot) -> None:
    """Rooms' waits between turns are declared to simcord, so ``advance_time`` moves them on."""
    bot.room_wait = lambda waiting: env.external_wait(waiting, reason="a room waits between turns")


@pytest.fixture
async def world(simcord_env: simcord.Env) -> AsyncIterator[World]:
    env = simcord_env
    env.settle_timeout = SETTLE_SECONDS
    bot = env.bot
    assert isinstance(bot, SeanceBot)
    wait_here(env, bot)
    guild = env.create_guild("Salon")
    channel = guild.create_text_channel("seance")
    mods = guild.create_role("Mods", permissions=discord.Permissions(manage_messages=True))
    mod = guild.add_member(env.create_user("morgan", global_name="Morgan"), roles=[mods])
    viewer = guild.add_member(env.create_user("vera", global_name="Vera"))
    await sync_tree(bot, discord.Object(guild.id))
    world = World(env, bot, guild, channel, mod, viewer)
    yield world
    await world.bot._close_store()  # simcord detaches the bot without closing it
    await world.bot.pool.aclose()


# --- reading what the bot did ---------------------------------------------------


def persona_sends(env: simcord.Env) -> list[dict[str, Any]]:
    """The JSON of every webhook execution, in order (username, avatar_url, content, ...)."""
    return [
        dict(r.json, thread_id=r.params.get("thread_id"))
        for r in env.http_requests
        if r.method == "POST" and r.path.startswith("/webhooks/") and r.path.count("/") == 3
        and isinstance(r.json, dict) and "username" in r.json
    ]


def answer(result: simcord.InteractionResult) -> str:
    """What the member who ran a command was told (the reply, or its first follow-up)."""
    if result.response is not None and result.response.content:
        return result.response.content
    return result.followups[0].content if result.followups else ""


def contents(channel: simcord.ChannelHandle) -> list[str]:
    return [m.content for m in channel.history()]


def notices(channel: simcord.ChannelHandle) -> list[str]:
    """Every notice line the bot posted, without its ``-# `` prefix."""
    lines = [line for m in channel.history() if m.webhook_id is None for line in m.content.splitlines()]
    return [line.removeprefix("-# ") for line in lines if line.startswith("-# ")]


def by_persona(channel: simcord.ChannelHandle) -> list[discord.Message]:
    return [m for m in channel.history() if m.webhook_id is not None]
