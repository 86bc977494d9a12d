"""``/seance``: moderators start, steer and stop rooms; anyone may read the status.

Each subcommand turns an interaction into one engine hook and answers the
moderator privately; what the room should show, the room queues and the
coordinator flushes. Permission is checked here in code: ``default_permissions``
is only a hint that server admins can override. ``/seance export`` reads the
stored room, so it works for a room that has ended too.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import data
from bot.engine import ModelInfo, Participant, Room, RoomError, Scenario, ScenarioError, UnknownModel
from bot.engine.scenarios import load_server_scenarios
from bot.engine.context import person_name
from bot.attachments import AttachmentRefused, picture_from, scenario_file
from bot.export import FORMATS, export
from bot.engine.commands import COMMAND_NAMES
from bot.formatting import clip, split_message
from bot.providers import ProviderError
from bot.guilds import GuildConfig
from cogs.config import ConfigGroup, models_choices
from cogs.coordinator import Coordinator, RoomOptions, Session
from cogs.errors import mark_handled

if TYPE_CHECKING:
    from bot.bot import SeanceBot

log = logging.getLogger(__name__)

UPLOAD_LIMIT = 10 * 1024 * 1024  # what Discord accepts from a bot in any server
FORMAT_CHOICES = [app_commands.Choice(name=fmt, value=fmt) for fmt in FORMATS]


class NotModerator(app_commands.CheckFailure):
    """Raised by the moderator check; its message is what the member is told."""


def is_moderator(member: discord.abc.User, permissions: discord.Permissions, roles: tuple[str, ...]) -> bool:
    """Manage Messages in the channel, or one of the server's moderator roles (by id, or by name in any case)."""
    if permissions.manage_messages:
        return True
    if not roles or not isinstance(member, discord.Member):
        return False
    wanted = {role.strip().casefold() for role in roles}
    return any(r.name.casefold() in wanted or str(r.id) in wanted for r in member.roles)


def role_names(guild: discord.Guild | None, roles: tuple[str, ...]) -> list[str]:
    """Roles as people read them: a stored id becomes the role's name while the role exists."""
    found = [guild.get_role(int(r)) if guild is not None and r.isdigit() else None for r in roles]
    return [role.name if role is not None else r for r, role in zip(roles, found)]


async def _moderators_only(interaction: discord.Interaction) -> bool:
    if interaction.guild_id is None:
        return False
    config = await interaction.client.guild_settings.get(interaction.guild_id)  # type: ignore[attr-defined]
    if is_moderator(interaction.user, interaction.permissions, config.moderator_roles):
        return True
    command = interaction.command.qualified_name if interaction.command else "seance"
    names = role_names(interaction.guild, config.moderator_roles)
    roles = f" or the {' or '.join(names)} role" if names else ""
    raise NotModerator(f"Only moderators can use `/{command}`: it needs the Manage Messages permission{roles}.")


moderators_only = app_commands.check(_moderators_only)
Ref = app_commands.Range[str, 1, 100]


class Moderation(commands.Cog):
    seance = app_commands.Group(
        name="seance", description="A conversation between AI models in this channel.", guild_only=True
    )

    def __init__(self, bot: SeanceBot):
        self.bot = bot
        self.seance.add_command(ConfigGroup(bot))  # /seance config ...: each server's own settings

    @property
    def coordinator(self) -> Coordinator:
        # No isinstance: a reloaded extension brings a new class object.
        return cast(Coordinator, self.bot.get_cog("Coordinator"))

    # --- starting and stopping ----------------------------------------------

    @seance.command(name="start", description="Start a room of AIs in this channel (or in a new thread).")
    @app_commands.describe(
        models="Catalog models, comma-separated (e.g. Gemini 3 Flash, DeepSeek R1)",
        scenario="The framing the room starts from (see /seance scenarios)",
        topic="What the AIs start talking about",
        turns="AI turns before the room ends",
        delay="Seconds between turns",
        thread="Hold the room in a new thread of this channel",
        open_floor="Let the AIs read what people write in the channel",
    )
    @moderators_only
    async def start(
        self,
        interaction: discord.Interaction,
        models: str | None = None,
        scenario: str | None = None,
        topic: app_commands.Range[str, 1, 500] | None = None,
        turns: app_commands.Range[int, 1, 1000] | None = None,
        delay: app_commands.Range[float, 0, 3600] | None = None,
        thread: bool = False,
        open_floor: bool = False,
    ) -> None:
        settings = self.bot.settings
        channel = interaction.channel
        if not isinstance(channel, (discord.TextChannel, discord.Thread)):
            return await _say(interaction, "Rooms run in text channels and their threads.")
        if thread and isinstance(channel, discord.Thread):
            return await _say(interaction, "This is a thread already: start the room without `thread`.")
        if elsewhere := await self.coordinator.elsewhere(channel.guild.id, channel.id):
            return await _say(interaction, elsewhere)
        if missing := self.coordinator.missing_permissions(channel, thread):
            return await _say(interaction, f"I cannot hold a room here: I need {_and(missing)} in {channel.mention}.")
        if limit := await self.bot.guild_settings.over_daily_limit(channel.guild.id):
            return await _say(interaction, f"No room can start: {limit}.")
        config = await self.bot.guild_settings.get(channel.guild.id)
        options = RoomOptions(
            models=_names(models) if models else list(config.default_models),
            scenario=scenario or data.DEFAULT_SCENARIO,
            topic=topic,
            turns=turns or config.default_turns,
            delay=config.turn_delay if delay is None else delay,
            open_floor=open_floor,
        )
        try:
            room = self.coordinator.build_room(options, config)
            session = None if thread else self.coordinator.open(channel, room, interaction.user, options)
        except RoomError as exc:
            return await _say(interaction, str(exc))
        await self._launch(interaction, channel, room, options, session)

    async def _launch(
        self,
        interaction: discord.Interaction,
        channel: discord.TextChannel | discord.Thread,
        room: Room,
        options: RoomOptions,
        session: Session | None,
    ) -> None:
        try:
            await interaction.response.defer(thinking=True)
            if session is None:
                assert isinstance(channel, discord.TextChannel)
                name = clip(f"Séance · {options.topic or room.scenario.title}", 100)
                where = await channel.create_thread(name=name, type=discord.ChannelType.public_thread)
                session = self.coordinator.open(where, room, interaction.user, options)
            await self.coordinator.persist(session, options)
            await interaction.followup.send(_announcement(session, options))
        except Exception:
            if session is not None:
                await self.coordinator.abandon(session)
            raise
        self.coordinator.launch(session)

    @seance.command(name="stop", description="End the room in this channel.")
    @moderators_only
    async def stop(self, interaction: discord.Interaction) -> None:
        if (session := await self._session(interaction)) is None:
            return
        session.runner.stop(f"stopped by {person_name(interaction.user.display_name)}")
        await _say(interaction, "The room is ending.")

    @seance.command(name="pause", description="Pause the room; nothing is lost.")
    @moderators_only
    async def pause(self, interaction: discord.Interaction) -> None:
        def pause(session: Session, by: str) -> str:
            if session.room.state != "running":
                return f"The room is {session.room.state} already."
            session.room.pause(f"paused by {by}")
            return "Paused. `/seance resume` carries on."

        await self._act(interaction, pause)

    @seance.command(name="resume", description="Resume a paused room.")
    @moderators_only
    async def resume(self, interaction: discord.Interaction) -> None:
        if interaction.guild_id is not None and (limit := await self.bot.guild_settings.over_daily_limit(interaction.guild_id)):
            return await _say(interaction, f"The room cannot resume: {limit}.")

        def resume(session: Session, by: str) -> str:
            if session.room.state == "running":
                return "The room is running already."
            session.room.resume(by)
            return "Resumed."

        await self._act(interaction, resume, wake=True)

    # --- steering -----------------------------------------------------------

    @seance.command(name="say", description="Speak into the room; the AIs see it under your name.")
    @app_commands.describe(
        text="What you say",
        picture="A picture for the AIs that can see (PNG, JPEG or WebP, up to 3.75 MB)",
    )
    @moderators_only
    async def say(
        self,
        interaction: discord.Interaction,
        text: app_commands.Range[str, 1, 2000] | None = None,
        picture: discord.Attachment | None = None,
    ) -> None:
        if text is None and picture is None:
            return await _say(interaction, "Say something, attach a picture, or both.")
        if await self._session(interaction) is None:
            return
        seen, refusal = None, ""
        if picture is not None:
            await interaction.response.defer(ephemeral=True, thinking=True)  # a download may take seconds
            try:
                seen = await picture_from(picture, self.bot.settings.send_timeout)
            except AttachmentRefused as exc:
                refusal = str(exc)
        if text is None and seen is None:
            return await _say(interaction, f"Nothing was said: {refusal}")

        def speak(session: Session, by: str) -> str:
            shown = session.room.inject(interaction.user.display_name, text or "", picture=seen)
            session.stage.human_avatars[shown] = interaction.user.display_avatar.url
            if refusal:
                return f"Said, without the picture: {refusal}"
            if seen is not None and not any(p.model.vision for p in session.room.present):
                return "Said. None of the AIs here can see pictures: they read only that you attached one."
            return "Said."

        await self._act(interaction, speak)

    @seance.command(name="next", description="Choose who speaks next.")
    @app_commands.describe(ai="An AI of this room, e.g. AI-2")
    @moderators_only
    async def next_speaker(self, interaction: discord.Interaction, ai: Ref) -> None:
        await self._act(interaction, lambda s, by: f"{s.room.choose_next(ai, by=by).label} speaks next.")

    @seance.command(name="add", description="Invite a model into the room.")
    @app_commands.describe(model="A catalog model", invitation="What the newcomer is told")
    @moderators_only
    async def add(
        self,
        interaction: discord.Interaction,
        model: app_commands.Range[str, 1, 100],
        invitation: app_commands.Range[str, 1, 1000] | None = None,
    ) -> None:
        config = await self.bot.guild_settings.get(interaction.guild_id or 0)

        def invite(session: Session, by: str) -> str:
            with contextlib.suppress(UnknownModel):  # room.add explains an unknown name
                self._check_provider(session.room.catalog.get(model), config)
            newcomer = session.room.add(model, invitation, by=by)
            return f"{newcomer.label} joined; it speaks at the end of this round."

        await self._act(interaction, invite)

    @seance.command(name="kick", description="Remove an AI from the room.")
    @app_commands.describe(ai="An AI of this room")
    @moderators_only
    async def kick(self, interaction: discord.Interaction, ai: Ref) -> None:
        await self._act(interaction, lambda s, by: f"{s.room.remove(ai, by=by).label} left.")

    @seance.command(name="mute", description="Skip an AI's turns until it is unmuted.")
    @app_commands.describe(ai="An AI of this room")
    @moderators_only
    async def mute(self, interaction: discord.Interaction, ai: Ref) -> None:
        await self._act(interaction, lambda s, by: f"{s.room.mute(ai, by=by).label} is muted.")

    @seance.command(name="unmute", description="Let a muted AI speak again.")
    @app_commands.describe(ai="An AI of this room")
    @moderators_only
    async def unmute(self, interaction: discord.Interaction, ai: Ref) -> None:
        await self._act(interaction, lambda s, by: f"{s.room.unmute(ai, by=by).label} may speak again.")

    @seance.command(name="temperature", description="Set an AI's sampling temperature (0 to 2).")
    @app_commands.describe(ai="An AI of this room", value="0 is steady, 2 is wild")
    @moderators_only
    async def temperature(
        self, interaction: discord.Interaction, ai: Ref, value: app_commands.Range[float, 0, 2]
    ) -> None:
        def set_it(session: Session, by: str) -> str:
            participant = session.room.set_temperature(ai, value, by=by)  # refuses a model that ignores it
            return f"{participant.short}'s temperature is {participant.temperature:g}."  # as capped

        await self._act(interaction, set_it)

    @seance.command(name="prompt", description="Replace an AI's persona prompt.")
    @app_commands.describe(ai="An AI of this room", text="The new persona")
    @moderators_only
    async def prompt(
        self, interaction: discord.Interaction, ai: Ref, text: app_commands.Range[str, 1, 1000]
    ) -> None:
        await self._act(interaction, lambda s, by: f"{s.room.set_prompt(ai, text, by=by).short} has a new prompt.")

    @seance.command(name="block", description="Keep a member off this room's open floor and out of its votes.")
    @app_commands.describe(member="The member the AIs should no longer hear, whose votes no longer count")
    @moderators_only
    async def block(self, interaction: discord.Interaction, member: discord.Member) -> None:
        roles = (await self.bot.guild_settings.get(interaction.guild_id or 0)).moderator_roles

        def block(session: Session, by: str) -> str:
            name = person_name(member.display_name)
            if member.bot or is_moderator(member, session.channel.permissions_for(member), roles):
                raise RoomError(f"{name} is a moderator or a bot here; blocking is for members.")
            if not session.room.block(str(member.id), member.display_name):
                return f"{name} is blocked here already."
            log.info("%s blocked member %s in room %s", by, member.id, session.room_id)
            return f"{name} is blocked in this room: the AIs no longer read them and their votes do not count."

        await self._act(interaction, block)

    @seance.command(name="unblock", description="Let a blocked member speak on the open floor and vote again.")
    @app_commands.describe(member="A member blocked in this room")
    @moderators_only
    async def unblock(self, interaction: discord.Interaction, member: discord.Member) -> None:
        def unblock(session: Session, by: str) -> str:
            name = person_name(member.display_name)
            if not session.room.unblock(str(member.id)):
                return f"{name} is not blocked here."
            log.info("%s unblocked member %s in room %s", by, member.id, session.room_id)
            return f"{name} may speak on the open floor and vote here again."

        await self._act(interaction, unblock)

    @seance.command(name="status", description="Who is in the room, whose turn it is, votes, tokens and cost.")
    async def status(self, interaction: discord.Interaction) -> None:
        if (session := await self._session(interaction)) is None:
            return
        session.touch()
        embed = status_embed(session.room)
        if (spending := await self._spending(session)) is not None:
            embed.add_field(name="Spent today (UTC)", value=spending, inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    async def _spending(self, session: Session) -> str | None:
        """What the room and its server spent today, against their limits."""
        store, guilds = self.bot.store, self.bot.guild_settings
        if store is None or session.room_id is None:
            return None
        guild_id = session.channel.guild.id
        config = await guilds.get(guild_id)
        room = await store.spent(store.today(), room_id=session.room_id)
        server = await store.spent(store.today(), guild_id=guild_id)
        room_limit, daily = session.room.settings.budget_usd, config.daily_budget_usd
        room_line = f"this room ${room:.4f}" + (
            f" (${session.room.cost_usd:.4f} in all, limit ${room_limit:.2f})" if room_limit is not None else ""
        )
        server_line = f"this server ${server:.4f}" + (f" of ${daily:.2f} a day" if daily is not None else "")
        return f"{room_line} · {server_line}"

    @seance.command(name="scenarios", description="The scenarios a room can start from; moderators add this server's own.")
    @app_commands.describe(
        add="A TOML file of [scenarios.NAME] tables to add to this server (moderators; see the README)",
        remove="One of this server's own scenarios to remove (moderators)",
    )
    async def scenarios(
        self,
        interaction: discord.Interaction,
        add: discord.Attachment | None = None,
        remove: app_commands.Range[str, 1, 40] | None = None,
    ) -> None:
        guild_id = interaction.guild_id or 0
        if add is None and remove is None:
            config = await self.bot.guild_settings.get(guild_id)
            for part in split_message(scenario_lines(config.scenarios)):
                await _say(interaction, part)
            return
        await _moderators_only(interaction)  # listing is for anyone; changing them is for moderators
        if add is not None and remove is not None:
            return await _say(interaction, "Add or remove, one at a time.")
        if remove is not None:
            return await _say(interaction, await self._remove_scenario(guild_id, remove.strip()))
        assert add is not None
        await interaction.response.defer(ephemeral=True, thinking=True)  # a download may take seconds
        try:
            text = await scenario_file(add, self.bot.settings.send_timeout)
            config = await self.bot.guild_settings.get(guild_id)
            kept = {s.name for s in config.scenarios}
            added = load_server_scenarios(text, set(data.scenarios()), kept)
        except (AttachmentRefused, ScenarioError) as exc:
            return await _say(interaction, f"No scenario was added: {exc}")
        await self.bot.guild_settings.add_scenarios(guild_id, added)
        log.info("server %s added scenarios %s", guild_id, ", ".join(added))
        await _say(interaction, _added(added, kept))

    async def _remove_scenario(self, guild_id: int, name: str) -> str:
        if name in data.scenarios():
            return f"`{name}` is one of Séance's own scenarios; only a server's own can be removed."
        if not await self.bot.guild_settings.remove_scenario(guild_id, name):
            config = await self.bot.guild_settings.get(guild_id)
            own = ", ".join(f"`{s.name}`" for s in config.scenarios) or "none yet"
            return f"This server has no scenario called `{name}` (its own: {own})."
        log.info("server %s removed scenario %s", guild_id, name)
        return f"Removed `{name}`. Rooms already started from it keep it until they end."

    # Moderators only, although a transcript repeats what the channel showed: it also
    # holds what moderators have since deleted there (an AI's offensive reply), a reply's
    # hidden reasoning (jsonl), and building one with its pictures is heavy work that
    # any member could otherwise repeat at will.
    @seance.command(name="export", description="The transcript of this channel's room, as a file.")
    @app_commands.describe(fmt="html: a page with the pictures; md and txt: text; jsonl: everything, for tools")
    @app_commands.rename(fmt="format")
    @app_commands.choices(fmt=FORMAT_CHOICES)
    @moderators_only
    async def export_transcript(self, interaction: discord.Interaction, fmt: str = "html") -> None:
        store = self.bot.store
        room_id = await self._room_to_export(interaction)
        if store is None or room_id is None:
            return await _say(interaction, "There is no room to export in this channel.")
        await interaction.response.defer(ephemeral=True, thinking=True)
        record, events = await store.room(room_id), await store.events(room_id)
        content = await asyncio.to_thread(export, record, events, fmt)  # a long room takes a while
        if len(content) > UPLOAD_LIMIT:
            size = len(content) / 1024 / 1024
            return await _say(
                interaction,
                f"The {fmt} transcript is {size:.1f} MiB, over Discord's 10 MiB upload limit. "
                "Try `format: jsonl` or `format: txt`, which leave the pictures out.",
            )
        file = discord.File(io.BytesIO(content), filename=f"seance-room-{room_id}.{fmt}")
        await interaction.followup.send(f"The transcript of room {room_id}.", file=file, ephemeral=True)

    async def _room_to_export(self, interaction: discord.Interaction) -> int | None:
        """The room running here, else the latest stored room held in this channel or thread (of this server)."""
        channel_id = interaction.channel_id
        session = self._here(interaction)
        if session is not None and session.room_id is not None:
            return session.room_id
        if self.bot.store is None or channel_id is None:
            return None
        held = [
            r.id for r in await self.bot.store.rooms(origin="discord")
            if r.guild_id == interaction.guild_id
            and (r.thread_id == channel_id or (r.thread_id is None and r.channel_id == channel_id))
        ]
        return max(held, default=None)

    # --- autocomplete -------------------------------------------------------

    @start.autocomplete("models")
    async def _models_list(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await models_choices(self.bot, interaction, current)

    @start.autocomplete("scenario")
    async def _scenario(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        # Autocomplete rather than fixed choices: Discord allows 25 choices, and scenarios keep coming.
        wanted = current.strip().casefold()
        config = await self.bot.guild_settings.get(interaction.guild_id or 0)
        found = [
            (name, s.title) for name, s in config.all_scenarios().items()
            if wanted in name.casefold() or wanted in s.title.casefold()
        ]
        return [app_commands.Choice(name=clip(f"{title} ({name})", 100), value=name) for name, title in found][:25]

    @scenarios.autocomplete("remove")
    async def _own_scenario(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        config = await self.bot.guild_settings.get(interaction.guild_id or 0)
        wanted = current.strip().casefold()
        names = [s.name for s in config.scenarios if wanted in s.name.casefold() or wanted in s.title.casefold()]
        return [app_commands.Choice(name=name, value=name) for name in names][:25]

    @add.autocomplete("model")
    async def _model(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        catalog = self.bot.guild_settings.catalog(await self.bot.guild_settings.get(interaction.guild_id or 0))
        return [app_commands.Choice(name=n, value=n) for n in catalog.search(current)][:25]

    @next_speaker.autocomplete("ai")
    @kick.autocomplete("ai")
    @mute.autocomplete("ai")
    @unmute.autocomplete("ai")
    @temperature.autocomplete("ai")
    @prompt.autocomplete("ai")
    async def _participant(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        session = self._here(interaction)
        if session is None:
            return []
        wanted = current.strip().casefold()
        labels = [p.label for p in session.room.present if wanted in p.label.casefold()]
        return [app_commands.Choice(name=label, value=label) for label in labels][:25]

    # --- plumbing -----------------------------------------------------------

    def _check_provider(self, model: ModelInfo, config: GuildConfig) -> None:
        if (reason := self.bot.guild_settings.why_not(config, model)) is not None:
            raise RoomError(reason)
        try:
            self.bot.pool.check([model])
        except ProviderError as exc:
            raise RoomError(exc.reason) from None

    def _here(self, interaction: discord.Interaction) -> Session | None:
        """The room of the channel the command was used in, and only if it belongs to the same server.

        Channel ids are unique across Discord, so the server check is a second lock:
        a room is steered, paused or exported only from where it runs.
        """
        session = self.coordinator.session_for(interaction.channel_id)
        if session is None or session.channel.guild.id != interaction.guild_id:
            return None
        return session

    async def _session(self, interaction: discord.Interaction) -> Session | None:
        """The channel's room, or None after telling the member there is none."""
        session = self._here(interaction)
        if session is None:
            guild_id, channel_id = interaction.guild_id, interaction.channel_id
            elsewhere = await self.coordinator.elsewhere(guild_id, channel_id) if guild_id and channel_id else None
            await _say(interaction, elsewhere or "No room is running in this channel. Start one with `/seance start`.")
        return session

    async def _act(
        self, interaction: discord.Interaction, action: Callable[[Session, str], str], wake: bool = False
    ) -> None:
        """Run one room hook for a moderator: answer them privately, then show what it changed."""
        if (session := await self._session(interaction)) is None:
            return
        session.touch()
        try:
            done = action(session, person_name(interaction.user.display_name))
        except RoomError as exc:  # the engine's words are meant for the moderator
            return await _say(interaction, str(exc))
        await _say(interaction, done)
        await self.coordinator.after_change(session, wake=wake)

    async def cog_app_command_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        original = getattr(error, "original", error)
        if isinstance(original, NotModerator):
            await _say(interaction, str(original))
            mark_handled(interaction)
        # anything else: the bot-wide tree (cogs/errors.py) answers with an error id and logs it once


def status_embed(room: Room) -> discord.Embed:
    """Participants, whose turn it is, temperatures, votes, tokens and cost, as one embed."""
    state = {"running": "▶️ running", "paused": "⏸️ paused", "stopped": "⏹️ ended"}[room.state]
    limit = room.settings.max_turns
    turns = f"{room.turns_taken}/{limit}" if limit else str(room.turns_taken)
    topic = f"\nTopic: {clip(room.topic, 300)}" if room.topic else ""
    embed = discord.Embed(
        title=clip(f"Séance · {room.scenario.title}", 256), description=f"{state} · turn {turns}{topic}"
    )
    upcoming = room.upcoming()
    tally = room.tally()
    for participant in room.present[:20]:
        marker = " ← next" if participant.number == upcoming else ""
        embed.add_field(name=clip(participant.label + marker, 256), value=_line(participant, tally[participant.number]))
    nobody = "nobody (every AI is muted)"
    embed.add_field(name="Next", value=room.participants[upcoming].label if upcoming else nobody, inline=False)
    votes = " · ".join(f"{room.participants[n].short}: {_count(c, 'vote')}" for n, c in tally.most_common())
    embed.add_field(name="Votes for the next turn", value=votes or "none yet (react to an AI's message)", inline=False)
    usage = room.usage
    summaries = f" (summaries of the oldest messages ${room.memory.cost_usd:.4f})" if room.memory.cost_usd else ""
    embed.add_field(
        name="So far",
        value=f"{usage.input_tokens + usage.cached_input_tokens:,} tokens in · {usage.output_tokens:,} out · "
        f"${room.cost_usd:.4f}{summaries}",
        inline=False,
    )
    return embed


def scenario_lines(own: tuple[Scenario, ...] = ()) -> str:
    """One line per scenario: its name (what /seance start takes), title, description and commands;
    the server's own after the built-in ones."""
    lines = ["Scenarios for `/seance start scenario:`"] + [_scenario_line(s) for s in data.scenarios().values()]
    if own:
        lines += ["This server's own (moderators remove one with `/seance scenarios remove:`)"]
        lines += [_scenario_line(s) for s in own]
    return "\n".join(lines)


def _scenario_line(scenario: Scenario) -> str:
    allowed = "every command" if scenario.commands is None else _commands(scenario.commands)
    about = f": {scenario.description}" if scenario.description else ""
    return f"• `{scenario.name}` **{clip(scenario.title, 80)}**{about} ({allowed})"


def _added(added: dict[str, Scenario], kept: set[str]) -> str:
    names = [f"`{name}`" + (" (replaced)" if name in kept else "") for name in added]
    first = next(iter(added))
    return f"Added {_and(names)}. Start a room with `/seance start scenario:{first}`."


def _commands(names: frozenset[str]) -> str:
    ordered = [f"!{n}" for n in COMMAND_NAMES if n in names]
    return " ".join(ordered) if ordered else "no commands"


def _line(participant: Participant, votes: int) -> str:
    parts = [f"🌡️ {participant.temperature:g}", _count(participant.turns, "turn"), f"${participant.cost_usd:.4f}"]
    if votes:
        parts.append(f"🗳️ {votes}")
    if participant.muted:
        parts.append("🔇 muted")
    return " · ".join(parts)


def _announcement(session: Session, options: RoomOptions) -> str:
    room = session.room
    names = ", ".join(p.label for p in room.present)
    where = f" in {session.channel.mention}" if isinstance(session.channel, discord.Thread) else ""
    floor = " The floor is open: the AIs read what you write here." if options.open_floor else ""
    topic = f" on “{clip(options.topic, 200)}”" if options.topic else ""
    return (
        f"🕯️ A séance begins{where}: {names} — {room.scenario.title}{topic}, {_count(options.turns, 'turn')}."
        f"{floor} React to an AI's message to vote for who speaks next."
    )


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


async def _say(interaction: discord.Interaction, text: str) -> None:
    """A private answer to whoever ran the command, whether or not it was answered already."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True)
    else:
        await interaction.response.send_message(text, ephemeral=True)


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Moderation(bot))
