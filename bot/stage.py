"""The Discord stage: a room's events as messages in one channel or thread.

AIs speak through the channel's webhook under their labels; people injected by
a moderator speak there under their own name; notices are the bot's own small
text. Every send is bounded in time and pings nobody. A missing permission does
not crash the room: the stage reports it once through ``on_blocked`` (the
coordinator pauses the room) and raises ``NotShown``, so the batch stays stored
and is posted first, in order, once a moderator resumes.

``show`` returns the ids of the messages it posted, which the journal records;
after a restart, ``find_posted`` looks in the channel's recent history for a
batch posted just before a crash, so it is not posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord

from bot.engine import Event, ImageMade, Notice, Reply, Room, Said, Turn
from bot.formatting import (
    MESSAGE_LIMIT,
    avatar_url,
    clip,
    persona_name,
    split_message,
    spoiler_messages,
    subtext_messages,
)
from bot.runner import NotShown
from bot.webhooks import UNKNOWN_WEBHOOK, WebhookPool

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
STREAM_EVERY = 1.5  # seconds between edits of a reply being written
STREAM_MARK = " ▌"
REMEMBERED_MESSAGES = 2000  # message ids kept for votes, per room
RECONCILE_LOOKBACK = 50  # recent messages searched for a batch posted just before a crash

Blocked = Callable[[str], Awaitable[None]]


class StageBlocked(Exception):
    """Discord refused for want of a permission; ``reason`` says what to give the bot."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Persona:
    name: str
    avatar: str | None = None


@dataclass
class _Draft:
    """A reply shown while it is written (``STREAM_REPLIES``)."""

    number: int
    message: discord.WebhookMessage | None = None
    hook: discord.Webhook | None = None
    text: str = ""
    shown_at: float = float("-inf")
    done: bool = False


class DiscordStage:
    def __init__(
        self,
        channel: discord.TextChannel | discord.Thread,
        room: Room,
        webhooks: WebhookPool,
        *,
        avatar_template: str,
        send_timeout: float = 30.0,
        stream: bool = False,
        reasoning: str = "off",
        on_blocked: Blocked | None = None,
    ):
        self.channel = channel
        self.room = room
        self.webhooks = webhooks
        self.avatar_template = avatar_template
        self.send_timeout = send_timeout
        self.streams = stream  # read by the runner: whether partial() wants the text as it arrives
        self.on_blocked = on_blocked
        self.reasoning = reasoning  # SHOW_REASONING: off, spoiler or file
        self.human_avatars: dict[str, str] = {}
        self._authored: OrderedDict[int, int] = OrderedDict()
        self._draft: _Draft | None = None
        self._draft_lock = asyncio.Lock()
        self._blocked: str | None = None
        # Set after a restart: the newest message the journal knows; only newer ones can be unrecorded posts.
        self.reconcile_after: int | None = None
        self._recent: list[discord.Message] | None = None  # history fetched once per reconcile
        self._reconciled = False

    @property
    def thread(self) -> discord.Thread | None:
        return self.channel if isinstance(self.channel, discord.Thread) else None

    @property
    def home(self) -> Any:
        """Where the webhook lives: a thread posts through its parent's."""
        return self.channel.parent if self.thread is not None else self.channel

    def author_of(self, message_id: int) -> int | None:
        """The AI number that posted ``message_id``, for reaction votes."""
        return self._authored.get(message_id)

    # --- the Stage protocol -------------------------------------------------

    async def show(self, events: list[Event]) -> list[int]:
        posted: list[int] = []
        try:
            for item in _runs(events):
                if isinstance(item, list):
                    posted += await self._post_notices([n.text for n in item])
                else:
                    posted += await self._post_event(item)
            self._blocked = None
        except StageBlocked as exc:
            await self._report(exc.reason)
            raise NotShown(exc.reason) from exc
        finally:
            await self._drop_unused_draft()
        return posted

    async def find_posted(self, events: list[Event]) -> list[int] | None:
        """The messages of ``events`` if they were posted before a crash cut the journal short.

        Only one batch can be posted but unrecorded (the runner records each before
        the next), so after the first batch not found, none of the later ones is looked for.
        """
        expected = self._expected(events)
        if self._reconciled or not expected:
            return None
        recent = await self._recent_messages()
        found = _find_run(recent, expected, self._me())
        if not found:
            self._reconciled = True
            return None
        self._recent = [m for m in recent if m.id not in found]  # a message answers for one batch only
        return found

    async def say(self, text: str, timeout: float | None = None) -> bool:
        """Post a notice now, outside the room's record (going offline, a refusal): best effort."""
        try:
            sending = self.channel.send(subtext_messages([text])[0], allowed_mentions=NO_MENTIONS)
            await asyncio.wait_for(sending, timeout or self.send_timeout)
        except (discord.HTTPException, TimeoutError) as exc:
            log.info("could not post a notice in %s: %s", self.channel.id, exc or "it timed out")
            return False
        return True

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        if self.streams:
            self._draft = _Draft(turn.number)
        async with contextlib.AsyncExitStack() as stack:
            with contextlib.suppress(discord.HTTPException, TimeoutError):
                await asyncio.wait_for(stack.enter_async_context(self.channel.typing()), self.send_timeout)
            try:
                yield
            finally:
                if self._draft is not None and self._draft.number == turn.number:
                    self._draft.done = True

    async def partial(self, turn: Turn, text: str) -> None:
        draft = self._draft
        if draft is None or draft.number != turn.number or draft.done:
            return
        draft.text = text
        if self._draft_lock.locked() or time.monotonic() - draft.shown_at < STREAM_EVERY:
            return
        async with self._draft_lock:
            draft.shown_at = time.monotonic()
            try:
                await self._show_draft(draft, self.persona_for(turn.number, turn.label))
            except (discord.HTTPException, TimeoutError, StageBlocked) as exc:
                log.info("could not show %s's draft: %s", turn.label, exc)

    async def close(self) -> None:
        """Remove a half-written reply left behind when the room stopped mid-turn."""
        if self._draft is not None:
            self._draft.done = True
        await self._drop_unused_draft()

    # --- rendering ----------------------------------------------------------

    async def _post_event(self, event: Event) -> list[int]:
        if isinstance(event, Reply):
            return await self._post_reply(event)
        if isinstance(event, ImageMade):
            return await self._post_picture(event)
        if isinstance(event, Said):
            persona = Persona(persona_name(event.name), self.human_avatars.get(event.name))
            messages = [await self._as_persona(persona, chunk) for chunk in split_message(event.text)]
            return [m.id for m in messages if m is not None]
        return []

    async def _post_reply(self, event: Reply) -> list[int]:
        persona = self.persona_for(event.number, event.label)
        chunks = split_message(event.text)
        draft = await self._claim_draft(event.number)
        posted: list[int] = []
        for index, chunk in enumerate(chunks):
            message = None
            if index == 0 and draft is not None:
                message = await self._finish_draft(draft, chunk)
            if message is None:
                message = await self._as_persona(persona, chunk)
            if message is not None:
                self._remember(message.id, event.number)
                posted.append(message.id)
        return posted + await self._post_reasoning(persona, event)

    async def _post_reasoning(self, persona: Persona, event: Reply) -> list[int]:
        """The model's thinking under its reply, when SHOW_REASONING asks for it:
        behind spoiler bars, or as a text file that nobody has to scroll past."""
        if self.reasoning == "off" or not event.reasoning:
            return []
        if self.reasoning == "file":
            data = event.reasoning.encode("utf-8")

            def thinking() -> discord.File:
                return discord.File(io.BytesIO(data), filename=f"ai{event.number}-thinking.txt")

            sent = [await self._as_persona(persona, "-# 🧠 thinking", thinking)]
        else:
            sent = [await self._as_persona(persona, chunk) for chunk in spoiler_messages(event.reasoning)]
        return [message.id for message in sent if message is not None]

    async def _post_picture(self, event: ImageMade) -> list[int]:
        persona = self.persona_for(event.number, event.label)
        name = f"ai{event.number}-picture.{event.picture.extension}"

        def picture() -> discord.File:
            return discord.File(io.BytesIO(event.picture.data), filename=name, description=clip(event.prompt, 1000))

        message = await self._as_persona(persona, clip(event.caption), picture)
        if message is None:
            return []
        self._remember(message.id, event.number)
        return [message.id]

    async def _post_notices(self, texts: list[str]) -> list[int]:
        posted: list[int] = []
        for content in subtext_messages(texts):
            message = await self._guarded(self.channel.send(content, allowed_mentions=NO_MENTIONS), "a notice")
            if message is not None:
                posted.append(message.id)
        return posted

    def persona_for(self, number: int, label: str) -> Persona:
        participant = self.room.participants.get(number)
        avatar = avatar_url(participant.model, self.avatar_template) if participant else None
        return Persona(persona_name(label), avatar)

    def _remember(self, message_id: int, number: int) -> None:
        self._authored[message_id] = number
        while len(self._authored) > REMEMBERED_MESSAGES:
            self._authored.popitem(last=False)

    # --- sending ------------------------------------------------------------

    async def _as_persona(
        self, persona: Persona, content: str, file: Callable[[], discord.File] | None = None
    ) -> discord.WebhookMessage | None:
        """Send through the webhook; a deleted webhook is replaced and the send tried once more."""
        for attempt in (1, 2):
            hook = await self._webhook()
            options = self._persona_options(persona) | ({"file": file()} if file is not None else {})
            try:
                return await self._guarded(hook.send(content, **options), f"{persona.name}'s message", retry=True)
            except discord.NotFound as exc:
                if attempt == 2:
                    log.warning("could not post %s's message: %s", persona.name, exc)
                    return None
                await self.webhooks.forget(self.home.id, hook)
        return None

    async def _webhook(self) -> discord.Webhook:
        try:
            return await self.webhooks.get(self.home)
        except discord.Forbidden as exc:
            raise StageBlocked(self._missing("Manage Webhooks", exc)) from exc

    async def _guarded(self, sending: Awaitable[Any], what: str, retry: bool = False) -> Any:
        """Bound a send in time; a refusal for permissions blocks the stage, other failures lose one message.

        With ``retry``, an unknown webhook (deleted by someone) is raised for the caller to replace.
        """
        try:
            return await asyncio.wait_for(sending, self.send_timeout)
        except discord.Forbidden as exc:
            needed = "Send Messages in Threads" if self.thread is not None else "Send Messages"
            raise StageBlocked(self._missing(needed, exc)) from exc
        except discord.NotFound as exc:
            if retry and exc.code == UNKNOWN_WEBHOOK:
                raise
            log.warning("could not post %s: %s", what, exc)
        except (discord.HTTPException, TimeoutError) as exc:
            log.warning("could not post %s: %s", what, exc or "it timed out")
        return None

    def _missing(self, permission: str, exc: discord.Forbidden) -> str:
        where = getattr(self.home, "mention", "this channel")
        if exc.code == 50013:
            return f"I am missing the {permission} permission in {where}, so the room cannot be shown."
        return f"Discord refused me in {where} ({exc.text or exc.status}), so the room cannot be shown."

    async def _report(self, reason: str) -> None:
        if reason == self._blocked:
            return
        self._blocked = reason
        log.warning("stage blocked in %s: %s", self.channel.id, reason)
        if self.on_blocked is not None:
            await self.on_blocked(reason)

    # --- reconciling after a restart ------------------------------------------

    def _expected(self, events: list[Event]) -> list[tuple[str | None, str]]:
        """What showing ``events`` posts: (persona name, or None for the bot's own text; content)."""
        notices = [e.text for e in events if isinstance(e, Notice)]
        if events and len(notices) == len(events):
            return [(None, content) for content in subtext_messages(notices)]
        if len(events) != 1:
            return []
        event = events[0]
        if isinstance(event, Reply):
            name = self.persona_for(event.number, event.label).name
            return [(name, chunk) for chunk in split_message(event.text)]
        if isinstance(event, ImageMade):
            return [(self.persona_for(event.number, event.label).name, clip(event.caption))]
        if isinstance(event, Said):
            return [(persona_name(event.name), chunk) for chunk in split_message(event.text)]
        return []

    async def _recent_messages(self) -> list[discord.Message]:
        """The channel's latest messages, oldest first, newer than what the journal knows."""
        if self._recent is None:
            fetching = self._fetch_history()
            try:
                newest_first = await asyncio.wait_for(fetching, self.send_timeout)
            except (discord.HTTPException, TimeoutError) as exc:
                log.warning("could not read %s's history to avoid double posts: %s", self.channel.id, exc)
                newest_first = []
            after = self.reconcile_after or 0
            self._recent = [m for m in reversed(newest_first) if m.id > after]
        return self._recent

    async def _fetch_history(self) -> list[discord.Message]:
        return [m async for m in self.channel.history(limit=RECONCILE_LOOKBACK)]

    def _me(self) -> int | None:
        user = self.webhooks.client.user
        return user.id if user is not None else None

    # --- streamed drafts ----------------------------------------------------

    async def _show_draft(self, draft: _Draft, persona: Persona) -> None:
        content = clip(draft.text.strip(), MESSAGE_LIMIT - len(STREAM_MARK)) + STREAM_MARK
        if draft.message is None:
            draft.hook = await self._webhook()
            draft.message = await self._guarded(
                draft.hook.send(content, **self._persona_options(persona)), "a draft"
            )
        elif draft.hook is not None:
            await self._guarded(
                draft.hook.edit_message(draft.message.id, content=content, **self._edit_options()), "a draft"
            )

    async def _claim_draft(self, number: int) -> _Draft | None:
        async with self._draft_lock:
            draft = self._draft
            if draft is None or draft.number != number or draft.message is None:
                return None
            self._draft = None
            return draft

    async def _finish_draft(self, draft: _Draft, content: str) -> discord.WebhookMessage | None:
        """The draft becomes the reply, no sooner than STREAM_EVERY after its last edit: the
        final edit is an edit too, and edits in a quick pair spend the webhook's rate limit."""
        assert draft.hook is not None and draft.message is not None
        wait = STREAM_EVERY - (time.monotonic() - draft.shown_at)
        if wait > 0:
            await asyncio.sleep(wait)
        return await self._guarded(
            draft.hook.edit_message(draft.message.id, content=content, **self._edit_options()), "a reply"
        )

    async def _drop_unused_draft(self) -> None:
        """A turn that ended without a reply (failed, empty, stopped) leaves no half message behind."""
        draft = self._draft
        if draft is None or not draft.done:
            return
        async with self._draft_lock:
            self._draft = None
            if draft.message is not None and draft.hook is not None:
                await self._guarded(draft.hook.delete_message(draft.message.id, **self._thread_option()), "a draft")

    def _persona_options(self, persona: Persona) -> dict[str, Any]:
        options: dict[str, Any] = {"username": persona.name, "allowed_mentions": NO_MENTIONS, "wait": True}
        if persona.avatar:
            options["avatar_url"] = persona.avatar
        return options | self._thread_option()

    def _edit_options(self) -> dict[str, Any]:
        return {"allowed_mentions": NO_MENTIONS} | self._thread_option()

    def _thread_option(self) -> dict[str, Any]:
        return {"thread": self.thread} if self.thread is not None else {}


def _find_run(recent: list[discord.Message], expected: list[tuple[str | None, str]], me: int | None) -> list[int]:
    """Ids of messages matching ``expected`` in order (others may fall between), from the first match on."""
    found: list[int] = []
    position = 0
    for who, content in expected:
        match = next(
            (i for i in range(position, len(recent)) if _is_post(recent[i], who, content, me)), None
        )
        if match is None:
            break  # a crash between two parts: the first ones are there, the rest never will be
        found.append(recent[match].id)
        position = match + 1
    return found


def _is_post(message: discord.Message, who: str | None, content: str, me: int | None) -> bool:
    if message.content != content:
        return False
    if who is None:
        return message.webhook_id is None and message.author.id == me
    return message.webhook_id is not None and message.author.name == who


def _runs(events: list[Event]) -> list[list[Notice] | Event]:
    """Consecutive notices gathered into one list, so they go out as one message."""
    items: list[list[Notice] | Event] = []
    for event in events:
        if isinstance(event, Notice):
            if items and isinstance(items[-1], list):
                items[-1].append(event)
            else:
                items.append([event])
        else:
            items.append(event)
    return items
