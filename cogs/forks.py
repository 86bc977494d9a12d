""""Fork from here": a moderator starts a new room from any AI message of a room.

The fork has the same AIs, with the temperatures and notes they had at that
message, and the conversation up to it (storage copies them: ``Store.fork_source``
and ``create_fork``); the original room goes on by itself.

Where it runs: a new thread, so two conversations never share one channel. From
the message itself when the message is in a text channel (its thread hangs under
it); a message in a thread cannot have a thread of its own, so then a new thread
of the parent channel, whose first line links to the message. When the bot may
not make threads there, the fork takes the message's own channel only if no room
runs in it; otherwise the moderator is told which permission to give.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot.engine import RoomError
from bot.formatting import clip
from bot.storage import ForkError, ForkSource
from cogs.coordinator import Coordinator, Place
from cogs.moderation import _and, _say, is_moderator, role_names

if TYPE_CHECKING:
    from bot.bot import SeanceBot

MENU = "Fork from here"
THREAD_EXISTS = 160004  # Discord: "A thread has already been created for this message"

NOT_AN_AI = "a fork starts from an AI's reply or picture"
NOTICE = f"That is one of Séance's own messages; {NOT_AN_AI}."
PERSON = f"That is a person's message; {NOT_AN_AI}."
NOT_OURS = f"That message was not posted by Séance; {NOT_AN_AI} in a Séance room."
GONE = "That message's room is no longer stored (it was deleted), so there is nothing to fork from."


class Forks(commands.Cog):
    def __init__(self, bot: SeanceBot):
        self.bot = bot
        # A context menu cannot be declared inside a cog: it is made here and added to the tree.
        self.menu = app_commands.ContextMenu(name=MENU, callback=self.fork_from_here)
        self.menu.guild_only = True

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    @property
    def coordinator(self) -> Coordinator:
        return cast(Coordinator, self.bot.get_cog("Coordinator"))

    async def fork_from_here(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Every refusal is a private sentence; the fork is made only once nothing stands in its way."""
        guild = interaction.guild
        if guild is None:
            return await _say(interaction, "Forks work only in a server.")
        config = await self.bot.guild_settings.get(guild.id)
        if not is_moderator(interaction.user, interaction.permissions, config.moderator_roles):
            names = role_names(guild, config.moderator_roles)
            roles = f" or the {' or '.join(names)} role" if names else ""
            return await _say(interaction, f"Only moderators can fork a room: it needs the Manage Messages permission{roles}.")
        try:
            source = await self._source(guild.id, message)
            self.coordinator.check_fork(source, config)
            home, in_thread = self._where(message)
            if limit := await self.bot.guild_settings.over_daily_limit(guild.id):
                raise RoomError(f"No room can start: {limit}.")
        except RoomError as exc:
            return await _say(interaction, str(exc))
        await interaction.response.defer(ephemeral=True, thinking=True)
        place = await self._new_thread(message, home, source) if in_thread else home
        link = message.jump_url if in_thread and place.id != message.id else ""
        try:
            session = await self.coordinator.open_fork(place, source, interaction.user, link)
        except BaseException:
            if in_thread:  # an empty thread would only puzzle people
                with contextlib.suppress(discord.HTTPException):
                    await place.delete()
            raise
        self.coordinator.launch(session)
        await _say(
            interaction,
            f"Room {session.room_id} goes on from {source.label}'s {source.kind} in {place.mention}, with the AIs "
            f"as they were then; room {source.room_id} goes on by itself.",
        )

    async def _source(self, guild_id: int, message: discord.Message) -> ForkSource:
        """The stored AI message ``message`` is, or RoomError saying what it is instead."""
        store = self.bot.store
        if self.bot.user is not None and message.author.id == self.bot.user.id:
            raise RoomError(NOTICE)  # a notice, or an answer to a command
        if message.webhook_id is None:
            raise RoomError(PERSON)
        if store is None:
            raise RoomError("Forks need the bot's database, which is not open.")
        found = await store.find_message(message.id, message.channel.id)
        record = await store.room(found[0]) if found is not None else None
        if found is None or record is None or record.guild_id != guild_id:
            raise RoomError(GONE if await self._our_webhook(message) else NOT_OURS)
        room_id, event_id = found
        try:
            if event_id is None:
                raise ForkError(f"That message is from before Séance recorded where forks start; {NOT_AN_AI} posted since.")
            return await store.fork_source(room_id, event_id)
        except ForkError as exc:
            raise RoomError(str(exc)) from None

    async def _our_webhook(self, message: discord.Message) -> bool:
        """Whether ``message`` came through the webhook Séance uses in its channel (remembered across restarts)."""
        if self.bot.webhooks.owns(message.webhook_id):
            return True
        channel = message.channel
        home = channel.parent_id if isinstance(channel, discord.Thread) else channel.id
        stored = await self.bot.store.webhook(home) if self.bot.store is not None and home else None
        return stored is not None and stored[0] == message.webhook_id

    def _where(self, message: discord.Message) -> tuple[Place, bool]:
        """Where the fork runs: (the text channel to make its thread in, True), or (the message's
        own channel, False) when no thread can be made and no room runs there; else RoomError."""
        channel = message.channel
        if not isinstance(channel, (discord.TextChannel, discord.Thread)):
            raise RoomError("Rooms run in text channels and their threads.")
        home = channel.parent if isinstance(channel, discord.Thread) else channel
        if not isinstance(home, discord.TextChannel):
            raise RoomError("Forks are made in text channels and their threads.")
        missing = self.coordinator.missing_permissions(home, thread=True)
        if not missing:
            return home, True
        if self.coordinator.session_for(channel.id) is not None:
            raise RoomError(
                f"I cannot make a thread for the fork: I need {_and(missing)} in {home.mention}. "
                f"It cannot run here instead, because {channel.mention} already has a running room."
            )
        if self.coordinator.missing_permissions(channel):
            raise RoomError(f"I cannot hold the fork here: I need {_and(missing)} in {home.mention}.")
        return channel, False

    async def _new_thread(self, message: discord.Message, home: discord.TextChannel, source: ForkSource) -> discord.Thread:
        """A thread under the message if it is in ``home`` and has none yet, else a new thread of ``home``."""
        name = clip(f"Séance · fork of room {source.room_id}", 100)
        if message.channel.id == home.id and message.thread is None:
            try:
                return await message.create_thread(name=name)
            except discord.HTTPException as exc:
                if exc.code != THREAD_EXISTS:  # forked from here before: the fork gets a thread of its own
                    raise
        return await home.create_thread(name=name, type=discord.ChannelType.public_thread)


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Forks(bot))
