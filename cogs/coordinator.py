"""Rooms bound to channels: one engine room per channel or thread, each driven by its own runner.

The coordinator owns the sessions and their lifecycles (start, idle pause,
shutdown, a deleted channel) and the channel's human side (activity, the open
floor). What a room does lives in the engine; how it looks lives in the stage.

Every room is stored when it starts and journaled as it goes. A shutdown does
not end rooms: they go offline as they are, and the next start brings back
each one that was running or paused (``restore``), posting what was stored but
never shown before anything new; an ended room comes back only to post the
pictures it was still making.

Several processes may share the database (a rolling deploy, shards split over
hosts). A process drives only rooms of the servers its shards hold, and only
while it holds the room's lease (``bot.leases``): a heartbeat renews the leases,
stops a room whose lease was lost, and takes over rooms nobody holds (their
process stopped or died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands, tasks

from bot import data
from bot.attachments import AttachmentRefused, picture_from
from bot.engine import Catalog, Room, RoomError, Scenario
from bot.engine.scenarios import scenario_from_table, scenario_table
from bot.engine.limits import RateLimit
from bot.formatting import subtext_messages
from bot.guilds import GuildConfig
from bot.leases import LeaseLost, Leases
from bot.providers import ProviderError
from bot.engine.events import forked
from bot.engine.snapshot import resumable_jobs
from bot.runner import RoomRunner
from bot.stage import NO_MENTIONS, DiscordStage
from bot.storage import ForkSource, Journal, RoomRecord, Store
from cogs.errors import new_error_id

if TYPE_CHECKING:
    from bot.bot import SeanceBot

log = logging.getLogger(__name__)

Place = discord.TextChannel | discord.Thread

# What the bot needs where a room runs; the README's invite link grants exactly these.
NEEDED = ("view_channel", "send_messages", "read_message_history", "attach_files", "manage_webhooks")
NEEDED_FOR_THREADS = ("create_public_threads", "send_messages_in_threads")

BACK = "▶️ Séance is back after a restart; the room carries on"
BACK_PAUSED = "⏸️ Séance is back after a restart; the room stays paused until a moderator runs /seance resume"
OFFLINE = "🔌 Séance is going offline; this room carries on when it is back"
# A stored room whose data could not be read at a start: its channel and moderator hear this.
NOT_BACK = (
    "⚠️ Séance could not bring this channel's room back after a restart: its stored data could not be read "
    "(the bot's host can find error {error_id} in the log). Nothing was deleted; the next start tries again."
)
NOT_BACK_HERE = (
    "This channel's room could not be brought back after the last restart: its stored data could not be read "
    "(the bot's host can find error {error_id} in the log). It is kept for the next start, and no other room "
    "can start here until then."
)
# Reactions on an open-floor message the AIs did not read (at most one per member a minute).
TOO_FAST = "⏳"
BLOCKED = "🚫"
RESTORE_AT_ONCE = 20  # rooms loaded side by side after a restart
ALERTS_TOLD = 50  # distinct failure details a moderator is told per room (the log has them all)
# /seance in a channel whose room another process drives (both are possible only while a deploy or
# shard change is under way: Discord sends a server's commands to the process that holds its shard).
OTHER_SHARD = (
    "This server's rooms are run by another Séance process (this one runs shards {shards} of {count}); "
    "the bot's host should check SHARD_IDS."
)
ELSEWHERE = (
    "This channel's room is run by another Séance process at the moment (a restart or deploy is under way); "
    "try again in a minute."
)


@dataclass
class RoomOptions:
    models: list[str]
    scenario: str
    topic: str | None = None
    turns: int = 30
    delay: float = 2.0
    open_floor: bool = False
    # A server's own scenario, as its table: the room keeps it even if the server removes it.
    own_scenario: dict[str, Any] | None = None


@dataclass(eq=False)
class Session:
    """A room at work in one channel, and who is responsible for it."""

    channel: Place
    room: Room
    runner: RoomRunner
    stage: DiscordStage
    moderator: discord.abc.User | None  # after a restart, None until a DM needs them (see _tell_moderator)
    open_floor: bool = False
    last_activity: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None
    room_id: int | None = None  # the room in storage, once stored
    floor_limit: RateLimit = field(default_factory=lambda: RateLimit(0))  # open-floor messages per member
    vote_limit: RateLimit = field(default_factory=lambda: RateLimit(0))  # votes per member
    marks: RateLimit = field(default_factory=lambda: RateLimit(1))  # ⏳/🚫 reactions per member
    told: set[str] = field(default_factory=set)  # failure details the moderator has had
    moderator_id: int | None = None  # who ``moderator`` is, known even before they are fetched

    def __post_init__(self) -> None:
        if self.moderator is not None and self.moderator_id is None:
            self.moderator_id = self.moderator.id

    def touch(self) -> None:
        """A person did something here: the idle clock starts again."""
        self.last_activity = time.monotonic()


class Coordinator(commands.Cog):
    def __init__(self, bot: SeanceBot):
        self.bot = bot
        self.sessions: dict[int, Session] = {}
        self._restored = False  # on_ready fires again after every reconnect; rooms come back once
        self._restoring = asyncio.Lock()
        self._users: dict[int, asyncio.Task[discord.User | None]] = {}  # fetched (or being fetched) by id
        self.leases: Leases | None = None  # with a store: the rooms this process may drive
        # Rooms this process ended, retired or failed to bring back: the heartbeat does not try them
        # again (a room owing a channel that is gone would be retried every beat); the next start does.
        self._settled: set[int] = set()
        self._taking_over: asyncio.Task[None] | None = None  # the heartbeat's latest look for rooms to take over
        self._unreadable: dict[int, str] = {}  # channel -> error id, of live rooms whose stored data could not be read
        self._told_unreadable: set[int] = set()  # moderators sent a DM about one: one each (a bad deploy breaks all)

    async def cog_load(self) -> None:
        limit = self.bot.settings.idle_pause_minutes * 60
        if limit > 0:
            self.idle_watch.change_interval(seconds=max(1.0, min(60.0, limit / 4)))
            self.idle_watch.start()
        if self.store is not None:
            seconds = self.bot.settings.room_lease_seconds
            self.leases = Leases(self.store, seconds)
            log.info("this process drives rooms as %s", self.leases.owner)

    async def cog_unload(self) -> None:
        self.idle_watch.cancel()
        self._beating.cancel()
        if self._taking_over is not None:  # no room may come back once the others are going offline
            await _cancel([self._taking_over], timeout=5.0)
        await self.go_offline()

    @property
    def store(self) -> Store | None:
        return self.bot.store

    # --- rooms --------------------------------------------------------------

    def session_for(self, channel_id: int | None) -> Session | None:
        return self.sessions.get(channel_id) if channel_id is not None else None

    def build_room(self, options: RoomOptions, config: GuildConfig) -> Room:
        """A room as the options describe, within what ``config`` (its server's settings)
        allows; RoomError says what is wrong with them."""
        settings = self.bot.settings
        scenarios = config.all_scenarios()
        if options.scenario not in scenarios:
            raise RoomError(f'There is no scenario "{options.scenario}". Choose one of: {", ".join(scenarios)}.')
        own = {s.name for s in config.scenarios}
        options.own_scenario = scenario_table(scenarios[options.scenario]) if options.scenario in own else None
        if not options.models:
            raise RoomError("Name at least one model.")
        if len(options.models) > settings.max_ais:
            raise RoomError(f"A room holds at most {settings.max_ais} AIs.")
        if options.open_floor and not config.open_floor:
            raise RoomError(
                "This server does not allow the open floor (a server manager can allow it with "
                "`/seance config rooms open_floor:True`)."
            )
        try:
            self.bot.guild_settings.check_models(config, options.models)
        except ValueError as exc:
            raise RoomError(str(exc)) from None
        room_settings = config.room_settings(settings, options.turns, self.bot.picture_price)
        room = Room(
            data.catalog(), scenarios[options.scenario], room_settings, topic=options.topic,
            invitable=self.bot.guild_settings.catalog(config),
        )
        for name in options.models:
            room.add(name)
        try:
            self.bot.pool.check(p.model for p in room.present)
        except ProviderError as exc:
            raise RoomError(exc.reason) from None
        return room

    def check_fork(self, source: ForkSource, config: GuildConfig) -> None:
        """RoomError if a fork of ``source`` could not run in this server today: a model it
        seats that the server no longer allows, or that no key here can run."""
        try:
            models = self.bot.guild_settings.check_models(config, source.models)
            self.bot.pool.check(models)
        except ValueError as exc:
            raise RoomError(f"Room {source.room_id} cannot be forked here: {exc}") from None
        except ProviderError as exc:
            raise RoomError(exc.reason) from None

    async def open_fork(
        self, place: Place, source: ForkSource, moderator: discord.abc.User, link: str = ""
    ) -> Session:
        """Store a room forked at ``source`` and bind it to ``place`` (not started yet). It keeps
        its parent's options (turns, delay, scenario) under this server's settings of today;
        what fails half-way leaves no stored room behind."""
        assert self.store is not None
        config = await self.bot.guild_settings.get(place.guild.id)
        parent = await self.store.room(source.room_id)
        options = replace(_options(parent.options), models=source.models)
        options.open_floor = options.open_floor and config.open_floor
        thread = place if isinstance(place, discord.Thread) else None
        started = self.leases.monotonic() if self.leases is not None else 0.0
        fork_id = await self.store.create_fork(
            source,
            "discord",
            guild_id=place.guild.id,
            channel_id=thread.parent_id if thread is not None else place.id,
            thread_id=thread.id if thread is not None else None,
            options=asdict(options) | {"moderator_id": moderator.id},
            lease=self.leases.terms if self.leases is not None else None,  # no other process may take it
        )
        if self.leases is not None:
            self.leases.hold(fork_id, started)  # so this process's heartbeat does not bring it back meanwhile
        try:
            room = await self.store.load_room(fork_id, data.catalog(), data.scenarios())
            room.settings = config.apply(room.settings)
            room.invitable = self.bot.guild_settings.catalog(config)
            room.announce(forked(source.room_id, source.label, source.kind, source.event_id, link))
            session = self.open(place, room, moderator, options)
        except BaseException:
            await self._let_go(fork_id)
            await self.store.delete_room(fork_id)
            raise
        self._bind(session, fork_id)
        return session

    def missing_permissions(self, channel: Place, thread: bool = False) -> list[str]:
        """Permissions the bot lacks to hold a room in ``channel`` (or a new thread of it), as Discord names them."""
        me = channel.guild.me
        granted = channel.permissions_for(me)
        needed = NEEDED + (NEEDED_FOR_THREADS if thread or isinstance(channel, discord.Thread) else ())
        if isinstance(channel, discord.Thread):
            needed = tuple(n for n in needed if n not in ("send_messages", "create_public_threads"))
        return [_permission_name(name) for name in needed if not getattr(granted, name)]

    def open(self, channel: Place, room: Room, moderator: discord.abc.User | None, options: RoomOptions) -> Session:
        """Bind ``room`` to ``channel`` (not started yet); RoomError if a room is already there."""
        if channel.id in self.sessions:
            raise RoomError("A room is already running in this channel. Stop it with /seance stop first.")
        stage = DiscordStage(
            channel,
            room,
            self.bot.webhooks,
            avatar_template=self.bot.settings.avatar_url_template,
            send_timeout=self.bot.settings.send_timeout,
            stream=self.bot.settings.stream_replies,
            reasoning=self.bot.settings.show_reasoning,
        )
        guild_id = channel.guild.id
        runner = RoomRunner(
            room,
            self.bot.pool.get,
            self.bot.images,
            stage,
            options.delay,
            idle=self.bot.room_wait,
            patience=self.bot.settings.channel_patience_minutes * 60,
            gate=lambda: self.bot.guild_settings.over_daily_limit(guild_id),
            search=self.bot.search,
        )
        settings = self.bot.settings
        session = Session(
            channel,
            room,
            runner,
            stage,
            moderator,
            options.open_floor,
            floor_limit=RateLimit(settings.floor_messages_per_minute),
            vote_limit=RateLimit(settings.votes_per_minute),
        )
        stage.on_blocked = lambda reason: self._blocked(session, reason)
        runner.on_problem = lambda sentence: self._tell(session, sentence)
        stage.on_alert = lambda text: self._alert(session, text)
        self.sessions[channel.id] = session
        return session

    async def persist(self, session: Session, options: RoomOptions) -> None:
        """Store a new room before its first turn, so from then on a restart brings it back."""
        if self.store is None:
            return
        channel = session.channel
        thread = channel if isinstance(channel, discord.Thread) else None
        stored = asdict(options) | {"moderator_id": session.moderator_id}
        if stored["own_scenario"] is None:  # kept only for a server's own scenario
            del stored["own_scenario"]
        started = self.leases.monotonic() if self.leases is not None else 0.0
        room_id = await self.store.create_room(
            session.room,
            "discord",
            guild_id=channel.guild.id,
            channel_id=thread.parent_id if thread is not None else channel.id,
            thread_id=thread.id if thread is not None else None,
            options=stored,
            lease=self.leases.terms if self.leases is not None else None,  # no other process may take it
        )
        self._bind(session, room_id)
        if self.leases is not None:
            self.leases.hold(room_id, started)

    def _bind(self, session: Session, room_id: int) -> None:
        assert self.store is not None
        session.room_id = room_id
        session.runner.journal = Journal(self.store, room_id, self.leases)

    def launch(self, session: Session) -> None:
        """Start taking turns."""
        session.task = asyncio.create_task(self._drive(session), name=f"seance-room-{session.channel.id}")

    def discard(self, session: Session) -> None:
        """Forget a session: its room ended, or its start failed half-way."""
        if self.sessions.get(session.channel.id) is session:
            del self.sessions[session.channel.id]

    async def abandon(self, session: Session) -> None:
        """A start that failed half-way: forget the session and the stored room, so no
        restart brings back a room that never began."""
        self.discard(session)
        if self.store is not None and session.room_id is not None:
            try:
                await self._let_go(session.room_id)
                await self.store.delete_room(session.room_id)
            except Exception:
                log.exception("could not forget room %s, whose start failed", session.room_id)

    async def after_change(self, session: Session, wake: bool = False) -> None:
        """Show what a moderator's action queued now, rather than after the turn in progress.

        ``wake`` ends the wait between turns (a resume); a stopped room always wakes, to finish.
        """
        await session.runner.flush()
        if wake or session.room.state == "stopped":
            session.runner.poke()

    def apply_config(self, config: GuildConfig) -> None:
        """A server changed its settings: its running rooms follow at once (limits, models,
        the open floor); what they already spent and who is seated stay as they are."""
        catalog = self.bot.guild_settings.catalog(config)
        for session in self.sessions.values():
            if session.channel.guild.id == config.guild_id:
                self._follow(session, config, catalog)

    @staticmethod
    def _follow(session: Session, config: GuildConfig, catalog: Catalog) -> None:
        session.room.settings = config.apply(session.room.settings)
        session.room.invitable = catalog
        session.open_floor = session.open_floor and config.open_floor

    async def go_offline(self, timeout: float = 5.0) -> None:
        """The bot is shutting down: rooms keep their stored state, and say they will be back.

        Their leases are given up last, so another process (the new one of a rolling
        deploy) takes them over at its next heartbeat rather than after they expire.
        """
        sessions = list(self.sessions.values())
        await _cancel([s.task for s in sessions if s.task is not None], timeout)
        # Not rooms never launched (a restore cut short by the shutdown): they had not said they were back.
        saying = (
            s.stage.say(OFFLINE, timeout)
            for s in sessions
            if s.task is not None and s.room.state != "stopped" and s.runner.lost is None
        )
        await asyncio.gather(*saying)  # at once: a shutdown should not wait on each channel in turn
        if self.leases is not None:
            try:
                await self.leases.release()
            except Exception as exc:  # they expire by themselves
                log.warning("could not give up this process's room leases (%s); they expire by themselves", exc)

    async def stop_all(self, reason: str, guild_id: int | None = None, timeout: float = 5.0) -> None:
        chosen = [s for s in self.sessions.values() if guild_id is None or s.channel.guild.id == guild_id]
        for session in chosen:
            session.runner.stop(reason)
        tasks_ = [s.task for s in chosen if s.task is not None]
        if tasks_:
            await asyncio.wait(tasks_, timeout=timeout)

    async def _drive(self, session: Session) -> None:
        try:
            await session.runner.run()
        except LeaseLost as lost:
            log.warning("%s; this process stops driving it (channel %s)", lost, session.channel.id)
            # Still ours in storage if only this process's own clock gave up on it: free it, so the
            # heartbeat (here or elsewhere) takes it again from what is stored, not from this copy.
            await self._let_go(lost.room_id)
        except Exception:
            log.exception("the room in channel %s failed", session.channel.id)
        finally:
            with contextlib.suppress(Exception):
                await session.stage.close()
            self.discard(session)
            if session.room_id is not None and session.runner.lost is None and not _cancelling():
                self._settled.add(session.room_id)
                await self._let_go(session.room_id)  # it ended: nobody needs to drive it

    async def _let_go(self, room_id: int) -> None:
        """Give up a room's lease (best effort: it expires by itself)."""
        if self.leases is None:
            return
        try:
            await self.leases.release([room_id])
        except Exception as exc:
            log.warning("could not give up the lease of room %s (%s); it expires by itself", room_id, exc)

    async def _blocked(self, session: Session, reason: str) -> None:
        """Discord refused the stage for want of a permission: pause, and tell the channel and the moderator.

        The refused message stays stored, and the pause notice is stored after it, so
        both wait for /seance resume; the channel hears of the pause now, outside the record.
        """
        if session.room.state == "stopped":
            return
        session.room.pause(f"{reason} Fix it, then use /seance resume.")
        session.runner.poke()
        await self._tell(session, f"⚠️ {reason} The room is paused until a moderator runs /seance resume.")

    async def _alert(self, session: Session, text: str) -> None:
        """A failure's details (a key to set, the provider's words), for the moderator only:
        each distinct one once. The channel saw a plain sentence; the stage has logged this."""
        if text in session.told or len(session.told) >= ALERTS_TOLD:
            return
        session.told.add(text)
        await self._tell_moderator(session, f"In your Séance room in {session.channel.mention}: {text}")

    async def _tell(self, session: Session, sentence: str) -> None:
        """Say ``sentence`` in the channel now (outside the record), and to the room's moderator in a DM."""
        await session.stage.say(sentence)
        await self._tell_moderator(session, f"Your Séance room in {session.channel.mention}: {sentence}")

    async def _tell_moderator(self, session: Session, text: str) -> None:
        """A direct message to the moderator who started the room, if they can be reached; best effort."""
        if session.moderator is None:
            session.moderator = await self._user(session.moderator_id)
        if session.moderator is None:
            return
        with contextlib.suppress(discord.HTTPException, TimeoutError, OSError):
            await asyncio.wait_for(
                session.moderator.send(text, allowed_mentions=NO_MENTIONS), self.bot.settings.send_timeout
            )

    # --- after a restart ------------------------------------------------------

    @commands.Cog.listener()
    async def on_ready(self) -> None:
        if self._restored:
            return
        self._restored = True
        # The heartbeat first: bringing back a thousand rooms takes minutes, longer than the
        # first rooms' leases would last without renewal (its takeovers wait for this restore).
        self.start_heartbeat()
        await self.restore()

    async def restore(self, taking_over: bool = False) -> None:
        """Bring back every stored Discord room that was running or paused when the bot went down,
        then ended rooms that still owe their channel something (last pictures still being made,
        messages Discord failed to take before the shutdown), to post those (after the live
        rooms, which keep their channels first).

        Only rooms of the servers this process's shards hold, and only those no process
        holds a lease on: a room another process drives is left to it, and taken over
        by the heartbeat once that process gives it up or dies (``taking_over``).
        """
        if self.store is None:
            return
        async with self._restoring:  # one at a time: a room found unleased twice is brought back once
            await self._restore_all(taking_over)

    async def _restore_all(self, taking_over: bool) -> None:
        assert self.store is not None
        now = self.leases.clock() if self.leases is not None else None
        live = await self.store.rooms(states=("running", "paused"), origin="discord", unleased_at=now)
        ended = await self.store.rooms(states=("stopped",), origin="discord", owing=True, unleased_at=now)
        driven = {s.room_id for s in self.sessions.values()}
        claimed: set[int] = set()  # channels a room is coming back to
        # All are loaded before any is launched: launched as they came, the first rooms' turns took
        # the CPU the rest needed to load, and a thousand rooms were back only after six minutes.
        ready: list[Session] = []
        for records in (live, ended):  # the live rooms first: they keep their channels
            mine = [
                r for r in records
                if r.id not in driven and r.id not in self._settled
                and r.guild_id is not None and self.bot.holds(r.guild_id)
            ]
            # A few at a time: each waits on the database between its steps, and the others use the wait.
            for start in range(0, len(mine), RESTORE_AT_ONCE):
                chunk = mine[start : start + RESTORE_AT_ONCE]
                loaded = await asyncio.gather(*(self._restore_or_log(record, claimed, taking_over) for record in chunk))
                ready += [session for session in loaded if session is not None]
        for session in ready:
            self.launch(session)

    async def _restore_or_log(
        self, record: RoomRecord, claimed: set[int], taking_over: bool = False
    ) -> Session | None:
        try:
            return await self._restore(record, claimed, taking_over)
        except Exception:
            log.exception("could not bring back room %s; it stays stored for the next start", record.id)
            self._settled.add(record.id)
            await self._let_go(record.id)
            return None

    async def _restore(self, record: RoomRecord, claimed: set[int], taking_over: bool = False) -> Session | None:
        """The room loaded and opened in its channel, ready to launch; None if it is not this process's."""
        assert self.store is not None
        if self.leases is not None and self.leases.holds(record.id):
            return None  # this process is starting it (a new room or fork) or drives it already
        if self.leases is not None and (holder := await self.leases.take(record.id)) is not None:
            log.info("room %s is driven by process %s; not here", record.id, holder)
            return None
        place = await self._find_place(record)
        if place is None or place.id in self.sessions or place.id in claimed:
            reason = "its channel is gone or out of reach" if place is None else "another room took its channel"
            await self._retire(record, reason)
            self._settled.add(record.id)
            await self._let_go(record.id)
            return None
        claimed.add(place.id)
        try:
            return await self._reopen(record, place, taking_over)
        except Exception as exc:
            claimed.discard(place.id)  # an ended room owing this channel its last pictures may still post them
            await self._not_back(record, place, exc)
            return None

    async def _reopen(self, record: RoomRecord, place: Place, taking_over: bool) -> Session:
        """The stored room loaded and opened in ``place``, ready to launch."""
        assert self.store is not None
        room = await self.store.load_room(record.id, data.catalog(), _scenarios(record.options))
        last_posted = await self.store.last_message_id(record.id)
        owed = await self.store.has_unposted(record.id)
        # The moderator is needed only for a DM: from the cache if there, else fetched when a DM is due,
        # so bringing back many rooms does not ask Discord for the same person once per room.
        moderator_id = record.options.get("moderator_id")
        moderator = self.bot.get_user(moderator_id) if moderator_id is not None else None
        config = await self.bot.guild_settings.get(place.guild.id)
        # Nothing awaited from here on: a failure cannot leave a session half bound.
        session = self.open(place, room, moderator, _options(record.options))
        try:
            session.moderator_id = moderator_id
            # The server's settings of today, not of the room's start (this room's alone: applied to
            # all the server's rooms each time, a thousand rooms' restore took a million copies).
            self._follow(session, config, self.bot.guild_settings.catalog(config))
            self._bind(session, record.id)
            session.stage.reconcile_after = last_posted
            # Only a room that left events unshown can have posted one without noting it: the others
            # skip reading their channel's history (a request on the bot's global budget, per room).
            session.runner.resume_backlog(resumable_jobs(room), reconcile=owed)
            if room.state != "stopped":  # an ended room only posts its last pictures, then goes
                room.announce(BACK if room.state == "running" else BACK_PAUSED)
        except BaseException:
            self.discard(session)  # its stored state is as it was; the channel is free of it
            raise
        how = "taken over (its process stopped or died)" if taking_over else "back"
        log.info("room %s is %s in channel %s (%s)", record.id, how, place.id, room.state)
        return session

    async def _not_back(self, record: RoomRecord, place: Place, error: Exception) -> None:
        """A room whose stored data could not be read: logged with an error id, and its channel and
        moderator told so. It stays stored as it was (a repair, or a fixed version, brings it back at
        the next start); this process does not try it again, nor start another room in its channel."""
        error_id = new_error_id()
        log.error(
            "could not bring back room %s in channel %s (error %s); it stays stored for the next start",
            record.id, place.id, error_id, exc_info=error,
        )
        self._settled.add(record.id)
        if record.state != "stopped":  # stored as live, it holds its channel
            self._unreadable[place.id] = error_id
        await self._let_go(record.id)
        sentence = NOT_BACK.format(error_id=error_id)
        timeout = self.bot.settings.send_timeout
        with contextlib.suppress(discord.HTTPException, TimeoutError, OSError):
            await asyncio.wait_for(place.send(subtext_messages([sentence])[0], allowed_mentions=NO_MENTIONS), timeout)
        moderator_id = record.options.get("moderator_id")
        if moderator_id is None or moderator_id in self._told_unreadable:
            return  # their other rooms' channels say it: a DM for each of a thousand rooms would be spam
        self._told_unreadable.add(moderator_id)
        moderator = await self._user(moderator_id)
        if moderator is not None:
            with contextlib.suppress(discord.HTTPException, TimeoutError, OSError):
                text = f"Your Séance room in {place.mention}: {sentence}"
                await asyncio.wait_for(moderator.send(text, allowed_mentions=NO_MENTIONS), timeout)

    # --- leases: which process drives which room -----------------------------------

    def start_heartbeat(self) -> None:
        """Beat every third of ROOM_LEASE_SECONDS until the cog unloads (on_ready starts it)."""
        if self.leases is not None and not self._beating.is_running():
            self._beating.change_interval(seconds=self.leases.seconds / 3)
            self._beating.start()

    @tasks.loop(seconds=10)
    async def _beating(self) -> None:
        await self.heartbeat()

    async def heartbeat(self) -> None:
        """Renew this process's leases, stop rooms whose lease is lost, and set about taking over
        rooms nobody holds (in a task of its own, which the next beats do not wait for)."""
        if self.leases is None or self.store is None:
            return
        try:
            lost = await self.leases.renew()
        except Exception as exc:  # storage unreachable: the leases stay trusted until they could expire
            log.warning("could not renew the room leases (%s); trying again in %.0f s", exc, self.leases.seconds / 3)
            lost = set()
        lost |= self.leases.lapsed()
        for session in [s for s in self.sessions.values() if s.room_id in lost]:
            assert session.room_id is not None
            session.runner.give_up(LeaseLost(session.room_id))
        if self._restoring.locked() or (self._taking_over is not None and not self._taking_over.done()):
            return  # rooms are being brought back (at start, or taken over): the next beat looks for the rest
        # Beside the beats, not in them: taking over many rooms (a rolling deploy's old process
        # gave up a thousand) takes minutes, and the leases held meanwhile must still be renewed.
        self._taking_over = asyncio.create_task(self._take_over(), name="seance-takeover")

    async def _take_over(self) -> None:
        try:
            await self.restore(taking_over=True)
        except Exception as exc:
            log.warning("could not look for rooms to take over (%s)", exc)

    def driven_elsewhere_reason(self, guild_id: int) -> str | None:
        """Why this process cannot act on the rooms of ``guild_id`` (another shard's), or None."""
        if self.bot.holds(guild_id):
            return None
        shards = ", ".join(str(i) for i in self.bot.settings.shard_ids or ())
        return OTHER_SHARD.format(shards=shards, count=self.bot.settings.shard_count)

    async def elsewhere(self, guild_id: int, place_id: int) -> str | None:
        """Why a /seance command in this channel is not this process's to answer, or None.

        Its server's shard is another process's, or a running or paused room is stored
        there that this process does not drive (another process holds it, or it waits
        to be taken over): a new room there would be a second one in the channel.
        """
        if (reason := self.driven_elsewhere_reason(guild_id)) is not None:
            return reason
        if self.store is None or place_id in self.sessions:
            return None
        if (error_id := self._unreadable.get(place_id)) is not None:
            return NOT_BACK_HERE.format(error_id=error_id)
        stored = await self.store.rooms(states=("running", "paused"), origin="discord", place=place_id)
        return ELSEWHERE if stored else None

    async def _find_place(self, record: RoomRecord) -> Place | None:
        """The room's channel or thread; None if Discord says it is gone or out of reach."""
        place_id = record.thread_id or record.channel_id
        if place_id is None:
            return None
        place = self.bot.get_channel(place_id)
        if place is None:
            try:
                place = await self.bot.fetch_channel(place_id)
            except (discord.NotFound, discord.Forbidden):
                return None  # other failures may pass: they raise, and the room waits for the next start
        return place if isinstance(place, (discord.TextChannel, discord.Thread)) else None

    async def _retire(self, record: RoomRecord, reason: str) -> None:
        """Mark a room that cannot come back as stopped, so it is not tried at every start."""
        assert self.store is not None
        room = await self.store.load_room(record.id, data.catalog(), _scenarios(record.options))
        room.stop(reason)
        for job in resumable_jobs(room):  # pictures with nowhere to go are not tried at every start
            room.image_failed(job.job_id, reason)
        for search in room.search_jobs():
            room.search_failed(search.job_id, reason)
        await self.store.save(record.id, room)  # no events: there is nowhere to show them
        log.warning("room %s cannot come back (%s); it is marked stopped", record.id, reason)

    async def _user(self, user_id: int | None) -> discord.abc.User | None:
        """A user by id, asked of Discord at most once per process: rooms asking at the same
        time share one request (discord.py does not cache users it fetches). None if not found."""
        if user_id is None:
            return None
        cached = self.bot.get_user(user_id)
        if cached is not None:
            return cached
        fetching = self._users.get(user_id)
        if fetching is None:
            fetching = self._users[user_id] = asyncio.create_task(self._fetch_user(user_id))
        return await asyncio.shield(fetching)  # one asker cancelled does not cancel the others' answer

    async def _fetch_user(self, user_id: int) -> discord.User | None:
        try:
            return await asyncio.wait_for(self.bot.fetch_user(user_id), self.bot.settings.send_timeout)
        except discord.NotFound:
            return None  # remembered: they are gone
        except (discord.HTTPException, TimeoutError, OSError):
            self._users.pop(user_id, None)  # may pass: asked again at the next need
            return None

    # --- idle rooms ---------------------------------------------------------

    @tasks.loop(seconds=60)
    async def idle_watch(self) -> None:
        """Pause rooms nobody watches, so they do not spend tokens for an empty channel."""
        minutes = self.bot.settings.idle_pause_minutes
        now = time.monotonic()
        for session in list(self.sessions.values()):
            if session.room.state == "running" and now - session.last_activity >= minutes * 60:
                span = f"{minutes:g} minute{'' if minutes == 1 else 's'}"
                reason = f"no one has been active here for {span} (a moderator can /seance resume)"
                session.room.pause(reason)
                try:
                    await session.runner.flush()
                except Exception:
                    log.exception("could not show the idle pause in %s", session.channel.id)

    # --- the channel's people -----------------------------------------------

    @commands.Cog.listener()
    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.bot.webhooks.owns(message.webhook_id):
            return
        session = self.session_for(message.channel.id)
        if session is None:
            return
        session.touch()
        speaks = message.content.strip() or any(_is_picture(a) for a in message.attachments)
        if session.open_floor and speaks and session.room.state != "stopped":
            await self._hear(session, message)

    async def _hear(self, session: Session, message: discord.Message) -> None:
        """An open-floor message reaches the AIs, unless its author is blocked here or writing too fast.

        A message that does not reach them gets a reaction saying why (🚫 blocked,
        ⏳ too fast), at most one a minute per member, so a flood costs few requests.
        """
        member, now = str(message.author.id), time.monotonic()
        if session.room.is_blocked(member):
            mark = BLOCKED
        elif not session.floor_limit.allow(member, now):
            mark = TOO_FAST
        else:
            await self._pass_on(session, message)
            return
        log.debug("open floor in %s: message of member %s not passed on (%s)", session.channel.id, member, mark)
        if session.marks.allow(member, now):
            with contextlib.suppress(discord.HTTPException, TimeoutError):
                await asyncio.wait_for(message.add_reaction(mark), self.bot.settings.send_timeout)

    async def _pass_on(self, session: Session, message: discord.Message) -> None:
        """The message to the AIs, with its first picture; a picture that cannot go is told
        in a reply to its author (at most one a minute each), and its words go anyway."""
        pictures = [a for a in message.attachments if _is_picture(a)]
        picture, refusal = None, ""
        if pictures:
            try:
                picture = await picture_from(pictures[0], self.bot.settings.send_timeout)
            except AttachmentRefused as exc:
                refusal = str(exc)
            if len(pictures) > 1:
                refusal = " ".join(part for part in (refusal, "Only the first picture of a message reaches the AIs.") if part)
        text = message.clean_content.strip()  # clean_content: the AIs read "@Vera", not "<@1234>"
        if (text or picture is not None) and session.room.state != "stopped":
            session.room.inject(message.author.display_name, text, echo=False, picture=picture)
        if refusal and session.marks.allow(str(message.author.id), time.monotonic()):
            went = " Your words reached the AIs." if text else ""
            with contextlib.suppress(discord.HTTPException, TimeoutError):
                reply = message.reply(f"-# 🖼️ {refusal}{went}", mention_author=False, allowed_mentions=NO_MENTIONS)
                await asyncio.wait_for(reply, self.bot.settings.send_timeout)

    @commands.Cog.listener()
    async def on_guild_channel_delete(self, channel: discord.abc.GuildChannel) -> None:
        if (session := self.session_for(channel.id)) is not None:
            session.runner.stop("its channel was deleted")

    @commands.Cog.listener()
    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        if (session := self.session_for(payload.thread_id)) is not None:
            session.runner.stop("its thread was deleted")

    @commands.Cog.listener()
    async def on_guild_remove(self, guild: discord.Guild) -> None:
        await self.stop_all("the bot left the server", guild_id=guild.id)


def _is_picture(attachment: discord.Attachment) -> bool:
    """An attachment meant as a picture: by its declared type, else by its name."""
    if attachment.content_type:
        return attachment.content_type.startswith("image/")
    return attachment.filename.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".gif"))


def _scenarios(stored: dict[str, Any]) -> dict[str, Scenario]:
    """The scenarios a stored room may name: the built-in ones, and its server's own that it started from."""
    scenarios = dict(data.scenarios())  # a copy: the built-in ones are cached for everyone
    if (table := stored.get("own_scenario")) is not None:
        scenarios[stored["scenario"]] = scenario_from_table(stored["scenario"], table)
    return scenarios


def _options(stored: dict[str, Any]) -> RoomOptions:
    """A stored room's options; keys this version does not know are left out."""
    known = {f.name for f in fields(RoomOptions)}
    return RoomOptions(**{k: v for k, v in stored.items() if k in known})


async def _cancel(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Cancel rooms' tasks and wait (bounded) for them to end."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=timeout)


def _cancelling() -> bool:
    """Whether the current task is being cancelled (a shutdown), rather than ending by itself."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _permission_name(flag: str) -> str:
    return flag.replace("_", " ").title().replace(" In ", " in ")


async def setup(bot: SeanceBot) -> None:
    await bot.add_cog(Coordinator(bot))
