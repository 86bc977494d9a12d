"""The bot as a program: what it owns, and start-up failures that say what to do."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import discord
import pytest
import simcord

from bot import bot as app
from bot import create_bot
from bot.__main__ import main
from bot.settings import Settings
from bot.storage import Store
from cogs.coordinator import OFFLINE
from tests.discord_world import World, by_persona, notices, settings, simcord_bot, world  # noqa: F401  (fixtures)
from tests.fakes import FakeLLMServer, Reply


def quiet_settings(**values: object) -> Settings:
    return Settings(_env_file=None, image_provider="offline", **values)  # type: ignore[arg-type]


def test_create_bot_owns_its_resources_and_asks_only_for_message_content() -> None:
    bot = create_bot(quiet_settings(openrouter_api_key="k"))
    assert bot.intents.message_content and bot.intents.guilds and bot.intents.guild_reactions
    assert not bot.intents.members and not bot.intents.presences
    assert bot.allowed_mentions is not None and bot.allowed_mentions.to_dict() == {"parse": []}
    assert bot.settings.openrouter_api_key is not None
    assert bot.pool is not None and bot.images.name == "offline" and bot.webhooks.client is bot


async def test_closing_the_bot_closes_its_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    bot = create_bot(quiet_settings())
    closed: list[bool] = []

    async def aclose() -> None:
        closed.append(True)

    monkeypatch.setattr(bot.pool, "aclose", aclose)
    await bot.close()
    assert closed == [True]


async def test_setup_hook_loads_the_cogs_and_their_commands(tmp_path) -> None:
    bot = create_bot(quiet_settings(database_path=tmp_path / "seance.sqlite3"))
    async with simcord.run(bot, shard_count=1):
        assert set(bot.cogs) == {"Errors", "Coordinator", "Moderation", "Votes", "Admin", "Forks"}
        [seance] = bot.tree.get_commands(type=discord.AppCommandType.chat_input)
        [fork] = bot.tree.get_commands(type=discord.AppCommandType.message)
        assert fork.name == "Fork from here" and fork.guild_only
        assert {c.name for c in seance.commands} == {
            "start", "stop", "pause", "resume", "say", "next", "add", "kick", "mute", "unmute",
            "temperature", "prompt", "block", "unblock", "status", "export", "scenarios", "config",
        }
        config = next(c for c in seance.commands if c.name == "config")
        assert {c.name for c in config.commands} == {
            "show", "moderators", "models", "rooms", "pictures", "spending", "reset",
        }
        assert bot.store is not None and bot.webhooks.store is bot.store and bot.guild_settings.store is bot.store
    await bot.close()
    assert bot.store is None


async def test_a_database_from_a_newer_seance_ends_the_start_with_what_to_do(tmp_path) -> None:
    import aiosqlite

    path = tmp_path / "seance.sqlite3"
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA user_version = 999")
        await db.commit()
    out = io.StringIO()

    async def refused(self: app.SeanceBot, token: str, *, reconnect: bool = True) -> None:
        await self.setup_hook()  # what login does first

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app.SeanceBot, "start", refused)
        code = await asyncio.to_thread(app.run, quiet_settings(discord_token="t", database_path=path), out)
    assert code == 2
    assert "schema version 999" in out.getvalue() and "DATABASE_PATH" in out.getvalue()
    assert "Traceback" not in out.getvalue()


async def test_the_bot_needs_the_message_content_intent() -> None:
    bot = create_bot(quiet_settings())
    without_content = discord.Intents.default()
    with pytest.raises(discord.PrivilegedIntentsRequired) as caught:
        async with simcord.run(bot, shard_count=1, approved_intents=without_content):
            pass
    assert app.explain_startup_error(caught.value) == app.NO_INTENT


def test_startup_errors_are_translated_into_what_to_do() -> None:
    bad_token = app.explain_startup_error(discord.LoginFailure("Improper token has been passed."))
    assert bad_token is not None and "Reset Token" in bad_token and "DISCORD_TOKEN" in bad_token
    no_intent = app.explain_startup_error(discord.PrivilegedIntentsRequired(shard_id=None))
    assert no_intent is not None and "MESSAGE CONTENT INTENT" in no_intent and "Privileged Gateway Intents" in no_intent
    assert app.explain_startup_error(RuntimeError("a bug")) is None


def test_running_without_a_token_says_how_to_get_one() -> None:
    out = io.StringIO()
    assert app.run(quiet_settings(), out=out) == 2
    assert out.getvalue().strip() == app.NO_TOKEN


def test_a_summary_model_no_key_can_run_ends_the_start_with_what_to_set() -> None:
    out = io.StringIO()
    values = {"discord_token": "a-token", "deepseek_api_key": "sk-test", "summary_model": "Claude Haiku 4.5"}
    assert app.run(quiet_settings(**values), out=out) == 2
    said = out.getvalue()
    assert said.startswith("SUMMARY_MODEL=Claude Haiku 4.5 cannot run here:") and "ANTHROPIC_API_KEY" in said


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (discord.LoginFailure("Improper token has been passed."), app.BAD_TOKEN),
        (discord.PrivilegedIntentsRequired(shard_id=None), app.NO_INTENT),
    ],
)
def test_a_refused_start_ends_with_the_fix_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, message: str
) -> None:
    async def refused(self: app.SeanceBot, token: str, *, reconnect: bool = True) -> None:
        raise failure

    monkeypatch.setattr(app.SeanceBot, "start", refused)
    out = io.StringIO()
    assert app.run(quiet_settings(discord_token="not-a-token"), out=out) == 2
    assert out.getvalue() == message + "\n"


def test_the_command_line_needs_a_token_to_sync(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["sync", "--guild", "123"]) == 2
    assert capsys.readouterr().err.strip() == app.NO_TOKEN


# --- SIGTERM and SIGHUP -----------------------------------------------------------------


@pytest.mark.settings(stream_replies=True)
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
async def test_a_stop_signal_closes_the_bot_as_ctrl_c_does(
    world: World, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch, signal_name: str
) -> None:
    """What hosts send to stop a worker: rooms say they go offline, the half-written draft goes, the database closes."""
    # the rest never comes, however slow the machine
    fake_llm.script(Reply.text("Half a thought, streamed, that never gets finished here.", chunks=30).held(lambda: False))

    async def connected(self: app.SeanceBot, token: str, *, reconnect: bool = True) -> None:
        await asyncio.Event().wait()  # standing in for the gateway connection, which runs until closed

    monkeypatch.setattr(app.SeanceBot, "start", connected)
    starting = asyncio.create_task(world.start(models="Gemini 3 Flash", turns=3, delay=0))
    serving = asyncio.create_task(app._serve(world.bot, "token"))
    for _ in range(200):  # until the draft is on screen
        if by_persona(world.channel):
            break
        await asyncio.sleep(0.02)
    [draft] = by_persona(world.channel)
    assert draft.content.endswith("▌")
    database, store = world.bot.settings.database_path, world.bot.store
    assert store is not None

    os.kill(os.getpid(), getattr(signal, signal_name))
    await asyncio.wait_for(serving, 10)  # ends normally: the shutdown is not an error
    await starting

    assert notices(world.channel)[-1] == OFFLINE
    assert by_persona(world.channel) == []  # the half-written draft was removed, not left with its cursor
    assert world.bot.store is None
    with pytest.raises(ValueError):  # "no active connection": the database connection itself was closed
        await store.db.execute("SELECT 1")
    store = await Store.open(database)
    assert [r.state for r in await store.rooms()] == ["running"]  # it comes back at the next start
    await store.close()


def test_a_start_that_cannot_reach_discord_says_so_in_one_line(monkeypatch) -> None:
    """No network (DNS fails, the gateway is down): one sentence and exit 1, for a supervisor to retry."""
    import aiohttp

    async def offline(bot, token):
        raise aiohttp.ClientConnectionError("Cannot connect to host discord.com:443")

    monkeypatch.setattr(app, "_serve", offline)
    out = io.StringIO()
    settings = Settings(_env_file=None, discord_token="token")
    assert app.run(settings, out) == 1
    [line] = out.getvalue().strip().splitlines()
    assert line.startswith("Could not reach Discord (Cannot connect to host discord.com:443)")


def test_the_bot_process_collects_garbage_less_often_than_python_by_default(monkeypatch) -> None:
    """A thousand rooms' objects made CPython's default collector take 39 % of the CPU (bench/rooms.py):
    the bot sets its own thresholds before it serves, and leaves them for the process."""
    import gc

    from bot.process import GC_THRESHOLDS

    seen = []

    async def serve(bot, token):
        seen.append(gc.get_threshold())

    before = gc.get_threshold()
    monkeypatch.setattr(app, "_serve", serve)
    try:
        gc.set_threshold(700, 10, 10)
        assert app.run(Settings(_env_file=None, discord_token="token"), io.StringIO()) == 0
    finally:
        gc.set_threshold(*before)
    assert seen == [GC_THRESHOLDS]
    assert GC_THRESHOLDS[0] > 700 * 10 and GC_THRESHOLDS[2] > 10
