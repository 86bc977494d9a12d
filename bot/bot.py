"""The Discord bot: a ``commands.Bot`` that owns the providers, the webhooks and the rooms' cogs.

``python -m bot`` runs it; ``python -m bot sync`` installs its slash commands.
Start-up failures that need a person (no token, a rejected one, the message
content intent switched off, a DATABASE_PATH that cannot work) end with what
to do, not a traceback. SIGTERM and SIGHUP shut it down as Ctrl+C does.

The bot owns the database (``DATABASE_PATH``): rooms are stored as they go, so
a restart brings every running or paused room back where it was.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO

import aiohttp
import discord
from discord.ext import commands

from bot import data
from bot.guilds import GuildSettings
from bot.process import stopped_by_signal, stopping_on_signals, tune_gc
from bot.providers import ImageProvider, ProviderPool
from bot.providers.images import make_image_provider
from bot.search import SearchService, make_search
from bot.settings import Settings
from bot.storage import StorageError, Store, open_store
from bot.webhooks import WebhookPool
from cogs.errors import ErrorTree

log = logging.getLogger(__name__)

EXTENSIONS = ("cogs.errors", "cogs.coordinator", "cogs.moderation", "cogs.votes", "cogs.admin", "cogs.forks")
PORTAL = "https://discord.com/developers/applications"

NO_TOKEN = (
    "DISCORD_TOKEN is not set. Create an application at " + PORTAL + ", open Bot -> Reset Token, "
    "and put DISCORD_TOKEN=<the token> in .env (see the README, \"Run it on Discord\")."
)
BAD_TOKEN = (
    "Discord rejected DISCORD_TOKEN. Copy a fresh one from " + PORTAL + " -> your application -> "
    "Bot -> Reset Token into .env; the token is the long secret, not the application id or public key."
)
NO_INTENT = (
    "The Message Content intent is switched off for this bot. Open " + PORTAL + " -> your application "
    "-> Bot -> Privileged Gateway Intents, switch on MESSAGE CONTENT INTENT, save, and start the bot again."
)

RoomWait = Callable[[Awaitable[None]], Awaitable[None]]


class SeanceBot(commands.AutoShardedBot):
    """Owns what rooms share: settings, one provider pool, the image maker, web search, and the webhooks.

    Sharded always (discord.py runs the shards of one process on one connection pool):
    SHARD_COUNT and SHARD_IDS choose them, and with neither the process runs every
    shard Discord recommends. ``holds`` tells which servers' rooms are this process's.
    """

    def __init__(self, settings: Settings, *, images: ImageProvider | None = None):
        intents = discord.Intents.default()
        intents.message_content = True  # the open floor reads what people write
        super().__init__(
            command_prefix=commands.when_mentioned,
            shard_count=settings.shard_count,
            shard_ids=settings.shard_ids,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=ErrorTree,
        )
        self.settings = settings
        self.pool = ProviderPool(settings)
        self.images: ImageProvider = images or make_image_provider(settings)
        self.picture_price = data.picture_price(self.images)  # IMAGE_PRICE_USD overrides it per room
        self.search: SearchService | None = make_search(settings)  # None: no SEARCH_URL, no !search
        self.guild_settings = GuildSettings(settings, None)  # each server's /seance config; its store comes with open_store
        self.webhooks = WebhookPool(
            self,
            timeout=settings.send_timeout,
            webhook_requests_per_2s=settings.webhook_requests_per_2s,
            channel_messages_per_minute=settings.channel_messages_per_minute,
            typing_per_second=settings.typing_per_second,
        )
        self.store: Store | None = None  # opened in setup_hook, so a bot can be built without touching disk
        # Wraps each room's waits between turns; tests declare them to simcord (see RoomRunner.idle).
        self.room_wait: RoomWait | None = None

    def holds(self, guild_id: int) -> bool:
        """Whether this process runs the shard of ``guild_id`` (Discord's rule: (id >> 22) % count)."""
        return shard_holds(guild_id, self.settings.shard_count, self.settings.shard_ids)

    async def open_store(self) -> Store:
        """Open the database (once). ``python -m bot`` calls this before connecting to Discord,
        so a bad DATABASE_PATH (or an unreachable DATABASE_URL) ends the start at once, in one sentence."""
        if self.store is None:
            self.store = await open_store(self.settings)
            self.webhooks.store = self.store
            self.guild_settings.store = self.store
        return self.store

    async def setup_hook(self) -> None:
        await self.open_store()
        for name in EXTENSIONS:
            await self.load_extension(name)

    async def close(self) -> None:
        if not hasattr(self, "_AutoShardedClient__queue"):
            # discord.py 2.7 makes the shards' event queue in connect(), and close() puts into it:
            # a bot closed before connecting (a bad DATABASE_PATH, sync) would fail with AttributeError.
            self._AutoShardedClient__queue = asyncio.PriorityQueue()
        try:
            await super().close()  # unloads the cogs first: rooms go offline, stored as they are
        finally:
            await self.pool.aclose()
            if self.search is not None:
                await self.search.aclose()
            await self._close_store()

    async def _close_store(self) -> None:
        store, self.store = self.store, None
        self.webhooks.store = None
        self.guild_settings.store = None
        if store is not None:
            await store.close()

    async def on_ready(self) -> None:
        log.info("logged in as %s in %d servers", self.user, len(self.guilds))


def shard_holds(guild_id: int, shard_count: int | None, shard_ids: list[int] | None) -> bool:
    """Whether a process running ``shard_ids`` of ``shard_count`` holds the server ``guild_id``.

    Without SHARD_IDS a process runs every shard, so it holds every server.
    """
    if shard_ids is None or shard_count is None:
        return True
    return (guild_id >> 22) % shard_count in shard_ids


def create_bot(settings: Settings | None = None, *, images: ImageProvider | None = None) -> SeanceBot:
    """The configured bot, as ``python -m bot`` runs it and the tests drive it."""
    return SeanceBot(settings or Settings(), images=images)


NO_DISCORD = (
    "Could not reach Discord ({why}). Check this machine's network (and https://discordstatus.com); "
    "the bot exits with code 1 so that a process manager starts it again."
)


def unreachable(error: BaseException) -> str | None:
    """The sentence for a start that failed because Discord could not be reached, if it did."""
    if isinstance(error, (aiohttp.ClientConnectionError, discord.GatewayNotFound, TimeoutError)):
        return NO_DISCORD.format(why=str(error) or type(error).__name__)
    if isinstance(error, discord.DiscordServerError):
        return NO_DISCORD.format(why=f"Discord answered HTTP {error.status}")
    return None


def explain_startup_error(error: BaseException) -> str | None:
    """What a person must do about a start-up failure, or None if it is not theirs to fix."""
    if isinstance(error, discord.LoginFailure):
        return BAD_TOKEN
    if isinstance(error, discord.PrivilegedIntentsRequired):
        return NO_INTENT
    if isinstance(error, StorageError):
        return str(error)
    return None


def run(settings: Settings, out: TextIO | None = None) -> int:
    """Run the bot until it is stopped; 0 on a clean stop (Ctrl+C, SIGTERM, SIGHUP), 2 when a person has to fix something."""
    out = out or sys.stderr
    if settings.discord_token is None:
        print(NO_TOKEN, file=out)
        return 2
    from bot.console import summary_problem

    if problem := summary_problem(settings):
        print(problem, file=out)
        return 2
    tune_gc()
    bot = create_bot(settings)
    try:
        asyncio.run(_serve(bot, settings.discord_token.get_secret_value()))
    except KeyboardInterrupt:
        return 0
    except (discord.LoginFailure, discord.PrivilegedIntentsRequired, StorageError) as exc:
        print(explain_startup_error(exc), file=out)
        return 2
    except (aiohttp.ClientConnectionError, discord.GatewayNotFound, discord.DiscordServerError, TimeoutError) as exc:
        print(unreachable(exc), file=out)
        return 1
    return 0


async def _serve(bot: SeanceBot, token: str) -> None:
    """Open the database, then connect; SIGTERM and SIGHUP close the bot as Ctrl+C does.

    Closing unloads the cogs first (rooms say they go offline, drafts are
    finished or removed), then leaves Discord, then closes the database.
    """
    with stopping_on_signals() as stop:
        try:
            async with bot:
                await bot.open_store()
                await bot.start(token)
        except asyncio.CancelledError:
            if not stopped_by_signal(stop):
                raise


def sync(settings: Settings, guild_id: int | None, out: TextIO = sys.stdout) -> int:
    """Log in without connecting, install the slash commands, and leave."""
    if settings.discord_token is None:
        print(NO_TOKEN, file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_sync(create_bot(settings), settings.discord_token.get_secret_value(), guild_id))
    except (discord.LoginFailure, StorageError) as exc:
        print(explain_startup_error(exc), file=sys.stderr)
        return 2
    except discord.HTTPException as exc:
        from cogs.admin import explain_sync_failure

        print(explain_sync_failure(exc), file=sys.stderr)
        return 1
    where = f"in server {guild_id}" if guild_id else "globally (Discord may take up to an hour to show them)"
    print(f"Synced {count} slash command(s) {where}.", file=out)
    return 0


async def _sync(bot: SeanceBot, token: str, guild_id: int | None) -> int:
    from cogs.admin import sync_tree

    async with bot:
        await bot.open_store()  # before Discord: a bad DATABASE_PATH is told offline
        await bot.login(token)  # runs setup_hook, so the cogs' commands are in the tree
        return await sync_tree(bot, discord.Object(guild_id) if guild_id else None)


__all__ = ["SeanceBot", "create_bot", "explain_startup_error", "run", "sync"]
