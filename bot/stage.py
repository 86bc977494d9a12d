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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
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
TYPING_EVERY = 9.0  # seconds between "is typing" triggers; Discord shows one for about 10 s
REMEMBERED_MESSAGES = 2000  # message ids kept for votes, per room
RECONCILE_LOOKBACK = 50  # recent messages searched for a batch posted just before a crash
MAX_WEBHOOKS = 30007  # the channel holds 15 webhooks already
UNKNOWN_CHANNEL = 10003

Blocked = Callable[[str], Awaitable[None]]


class StageBlocked(Exception):
    """Discord refused for want of a permission; ``reason`` says what to give the bot."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Unavailable(Exception):
    """Discord failed in a way that passes by itself: 5xx, a timeout, a dropped
    connection, a rate limit longer than the send timeout. The message waits."""


@dataclass
class _Message:
    """One message a batch of events becomes, decided before anything is sent, so a
    retry after a failure part-way knows exactly which parts are still to post."""

    content: str
    persona: Persona | None = None  # None: the bot's own small text (notices)
    file: Callable[[], discord.File] | None = None
    author: int | None = None  # the AI it speaks for, so reactions on it are votes
    draft_of: int | None = None  # a reply's first part may replace that reply's streamed draft
    ballot: bool = False  # holds a removal proposal: ✅/❌ reactions on it are members' votes


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
        on_alert: Blocked | None = None,
    ):
        self.channel = channel
        self.room = room
        self.webhooks = webhooks
        self.avatar_template = avatar_template
        self.send_timeout = send_timeout
        self.streams = stream  # read by the runner: whether partial() wants the text as it arrives
        self.on_blocked = on_blocked
        self.on_alert = on_alert  # the host's side of a failure: the coordinator tells the moderator
        self.reasoning = reasoning  # SHOW_REASONING: off, spoiler or file
        self.human_avatars: dict[str, str] = {}
        self._authored: OrderedDict[int, int] = OrderedDict()
        self._ballot: set[int] = set()  # the latest removal proposal's message(s); one vote is open at a time
        self._draft: _Draft | None = None
        self._claimed: dict[int, _Draft] = {}  # drafts a reply took over, until its first part is out
        self._draft_lock = asyncio.Lock()
        self._typing: asyncio.Task[None] | None = None  # held here: the loop keeps only weak references
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

    def is_ballot(self, message_id: int) -> bool:
        """Whether ``message_id`` shows the latest removal proposal (reactions on it vote)."""
        return message_id in self._ballot

    # --- the Stage protocol -------------------------------------------------

    async def show(self, events: list[Event], done: Sequence[int] = ()) -> list[int]:
        """Post the batch's messages that ``done`` does not cover yet, in order.

        Each message's id is collected as it goes out (0 for one Discord rejected
        for good, say as malformed, so that counts stay exact); a failure part-way
        raises NotShown carrying the ids already posted, and the retry posts the rest.
        """
        posted: list[int] = []
        try:
            for message in self._render(events)[len(done):]:
                sent = await self._send(message)
                posted.append(sent.id if sent is not None else 0)
                if sent is not None and message.author is not None:
                    self._remember(sent.id, message.author)
                if sent is not None and message.ballot:
                    self._ballot = {sent.id}
            self._blocked = None
        except StageBlocked as exc:
            await self._report(exc.reason)
            raise NotShown(exc.reason, posted=posted) from exc
        except Unavailable as exc:
            raise NotShown(str(exc), retry=True, posted=posted) from exc
        finally:
            await self._drop_unused_draft()
        return posted

    async def find_posted(self, events: list[Event], done: Sequence[int] = ()) -> list[int] | None:
        """The messages of ``events`` (past ``done``) if they were posted before a crash cut the journal short.

        Only one batch can be posted but unrecorded (the runner records each before
        the next), so after the first batch not found, none of the later ones is looked for.
        A batch found in part is continued from there by ``show``.
        """
        expected = [(m.persona.name if m.persona else None, m.content) for m in self._render(events)][len(done):]
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
        except (discord.HTTPException, TimeoutError, OSError, aiohttp.ClientError) as exc:
            log.info("could not post a notice in %s: %s", self.channel.id, exc or "it timed out")
            return False
        return True

    async def alert(self, text: str) -> None:
        """A failure's details for the host: the log, and whoever ``on_alert`` tells; never the channel."""
        log.warning("room in channel %s: %s", self.channel.id, text)
        if self.on_alert is not None:
            await self.on_alert(text)

    @contextlib.asynccontextmanager
    async def writing(self, turn: Turn) -> AsyncIterator[None]:
        """While an AI writes: its streamed draft, or else "is typing" under the channel.

        Typing runs beside the turn, never before it: the model is asked at once,
        whatever Discord takes to answer the typing request.
        """
        if self.streams:
            self._draft = _Draft(turn.number)  # the draft shows the writing; no typing request
        else:
            self._typing = asyncio.create_task(self._show_typing())
        try:
            yield
        finally:
            if self._typing is not None:
                self._typing.cancel()
                self._typing = None
            if self._draft is not None and self._draft.number == turn.number:
                self._draft.done = True

    async def _show_typing(self) -> None:
        """Trigger "is typing" now and again every TYPING_EVERY seconds until cancelled.

        Each trigger is a request on the bot's global budget (50 a second for all
        rooms together), which the webhooks' posts need more: a trigger the shared
        typing budget cannot afford is skipped, since typing is only a courtesy.
        """
        while True:
            if self.webhooks.may_type():
                with contextlib.suppress(discord.HTTPException, TimeoutError, OSError, aiohttp.ClientError):
                    async with asyncio.timeout(self.send_timeout):
                        await self.channel.typing()  # awaited, not entered: one request, no 5 s loop
            await asyncio.sleep(TYPING_EVERY)

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
            except (StageBlocked, Unavailable) as exc:
                log.info("could not show %s's draft: %s", turn.label, exc)

    async def close(self) -> None:
        """Remove a half-written reply left behind when the room stopped mid-turn."""
        if self._typing is not None:
            self._typing.cancel()
        if self._draft is not None:
            self._draft.done = True
        await self._drop_unused_draft()
        for number in list(self._claimed):
            await self._delete_draft(self._claimed.pop(number))

    # --- rendering: what a batch becomes -------------------------------------------

    def _render(self, events: list[Event]) -> list[_Message]:
        messages: list[_Message] = []
        for item in _runs(events):
            if isinstance(item, list):
                ballot = any(n.ballot for n in item)
                messages += [_Message(content, ballot=ballot) for content in subtext_messages([n.text for n in item])]
            elif isinstance(item, Reply):
                messages += self._render_reply(item)
            elif isinstance(item, ImageMade):
                messages.append(self._render_picture(item))
            elif isinstance(item, Said) and item.echo:
                messages += self._render_said(item)
        return messages

    def _render_said(self, event: Said) -> list[_Message]:
        """A person's words under their name; a picture they attached goes with the last part."""
        persona = Persona(persona_name(event.name), self.human_avatars.get(event.name))
        messages = [_Message(chunk, persona) for chunk in split_message(event.text)]
        if event.picture is not None:
            picture = event.picture

            def attached() -> discord.File:
                return discord.File(io.BytesIO(picture.data), filename=f"picture.{picture.extension}")

            if not messages:
                messages.append(_Message("", persona))
            messages[-1].file = attached
        return messages

    def _render_reply(self, event: Reply) -> list[_Message]:
        persona = self.persona_for(event.number, event.label)
        messages = [_Message(chunk, persona, author=event.number) for chunk in split_message(event.text)]
        if messages:
            messages[0].draft_of = event.number
        return messages + self._render_reasoning(persona, event)

    def _render_reasoning(self, persona: Persona, event: Reply) -> list[_Message]:
        """The model's thinking under its reply, when SHOW_REASONING asks for it:
        behind spoiler bars, or as a text file that nobody has to scroll past."""
        if self.reasoning == "off" or not event.reasoning:
            return []
        if self.reasoning == "file":
            data = event.reasoning.encode("utf-8")

            def thinking() -> discord.File:
                return discord.File(io.BytesIO(data), filename=f"ai{event.number}-thinking.txt")

            return [_Message("-# 🧠 thinking", persona, thinking)]
        return [_Message(chunk, persona) for chunk in spoiler_messages(event.reasoning)]

    def _render_picture(self, event: ImageMade) -> _Message:
        persona = self.persona_for(event.number, event.label)
        name = f"ai{event.number}-picture.{event.picture.extension}"

        def picture() -> discord.File:
            return discord.File(io.BytesIO(event.picture.data), filename=name, description=clip(event.prompt, 1000))

        return _Message(clip(event.caption), persona, picture, author=event.number)

    def persona_for(self, number: int, label: str) -> Persona:
        participant = self.room.participants.get(number)
        avatar = avatar_url(participant.model, self.avatar_template) if participant else None
        return Persona(persona_name(label), avatar)

    def _remember(self, message_id: int, number: int) -> None:
        self._authored[message_id] = number
        while len(self._authored) > REMEMBERED_MESSAGES:
            self._authored.popitem(last=False)

    # --- sending ------------------------------------------------------------

    async def _send(self, message: _Message) -> discord.Message | None:
        if message.persona is None:
            await self.webhooks.pace(self.home.id, self.channel.id, webhook=False)
            return await self._guarded(self.channel.send(message.content, allowed_mentions=NO_MENTIONS), "a notice")
        if message.draft_of is not None:
            draft = await self._claim_draft(message.draft_of)
            if draft is not None:
                finished = await self._finish_draft(draft, message.content)
                self._claimed.pop(message.draft_of, None)
                if finished is not None:
                    return finished
        return await self._as_persona(message.persona, message.content, message.file)

    async def _as_persona(
        self, persona: Persona, content: str, file: Callable[[], discord.File] | None = None
    ) -> discord.WebhookMessage | None:
        """Send through the webhook; a deleted webhook is replaced and the send tried once more."""
        for attempt in (1, 2):
            hook = await self._webhook()
            options = self._persona_options(persona) | ({"file": file()} if file is not None else {})
            await self.webhooks.pace(self.home.id, self.channel.id)
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
        except discord.HTTPException as exc:
            if exc.code == MAX_WEBHOOKS:
                where = getattr(self.home, "mention", "this channel")
                raise StageBlocked(
                    f"{where} already has the 15 webhooks Discord allows, so the AIs cannot speak there; "
                    "delete one in the channel's settings (Integrations -> Webhooks)."
                ) from exc
            raise Unavailable(f"Discord could not give me the channel's webhook ({_status(exc)})") from exc
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            raise Unavailable(f"Discord did not answer about the channel's webhook ({_status(exc)})") from exc

    async def _guarded(self, sending: Awaitable[Any], what: str, retry: bool = False) -> Any:
        """Bound a send in time and sort its failures.

        A refusal for permissions blocks the stage (a moderator must act); a server
        error, a timeout, a dropped connection or a long rate limit is ``Unavailable``
        (the message waits and is retried); a request Discord rejects as such (400) is
        logged and skipped, since sending it again cannot succeed. With ``retry``, an
        unknown webhook (deleted by someone) is raised for the caller to replace.
        """
        try:
            async with asyncio.timeout(self.send_timeout):  # no helper task, unlike wait_for on 3.11
                return await sending
        except discord.Forbidden as exc:
            needed = "Send Messages in Threads" if self.thread is not None else "Send Messages"
            raise StageBlocked(self._missing(needed, exc)) from exc
        except discord.NotFound as exc:
            if retry and exc.code == UNKNOWN_WEBHOOK:
                raise
            if exc.code == UNKNOWN_CHANNEL:
                raise StageBlocked("The room's channel is gone or out of my reach.") from exc
            log.warning("could not post %s: %s", what, exc)
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise Unavailable(f"Discord failed to take {what} ({_status(exc)})") from exc
            log.warning("Discord rejected %s for good, so it is skipped: %s", what, exc)
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            raise Unavailable(f"Discord did not take {what} ({_status(exc)})") from exc
        return None

    def _missing(self, permission: str, exc: discord.Forbidden) -> str:
        where = getattr(self.home, "mention", "this channel")
        if exc.code == 50013:
            return f"I am missing the {permission} permission in {where}, so the room cannot be shown."
        log.warning("Discord refused a post in %s: %s", self.channel.id, exc.text or exc.status)
        return f"Discord refused my messages in {where}, so the room cannot be shown."

    async def _report(self, reason: str) -> None:
        if reason == self._blocked:
            return
        self._blocked = reason
        log.warning("stage blocked in %s: %s", self.channel.id, reason)
        if self.on_blocked is not None:
            await self.on_blocked(reason)

    # --- reconciling after a restart ------------------------------------------

    async def _recent_messages(self) -> list[discord.Message]:
        """The channel's latest messages, oldest first, newer than what the journal knows."""
        if self._recent is None:
            fetching = self._fetch_history()
            try:
                newest_first = await asyncio.wait_for(fetching, self.send_timeout)
            except (discord.HTTPException, TimeoutError, OSError, aiohttp.ClientError) as exc:
                log.warning("could not read %s's history to avoid double posts: %s", self.channel.id, exc)
                newest_first = []
            after = self.reconcile_after or 0
            self._recent = [m for m in reversed(newest_first) if m.id > after]
        return self._recent

    async def _fetch_history(self) -> list[discord.Message]:
        await self.webhooks.spend_bot()
        return [m async for m in self.channel.history(limit=RECONCILE_LOOKBACK)]

    def _me(self) -> int | None:
        user = self.webhooks.client.user
        return user.id if user is not None else None

    # --- streamed drafts ----------------------------------------------------

    async def _show_draft(self, draft: _Draft, persona: Persona) -> None:
        content = clip(draft.text.strip(), MESSAGE_LIMIT - len(STREAM_MARK)) + STREAM_MARK
        if draft.message is None:
            draft.hook = await self._webhook()
            await self.webhooks.pace(self.home.id, self.channel.id)
            draft.message = await self._guarded(
                draft.hook.send(content, **self._persona_options(persona)), "a draft"
            )
        elif draft.hook is not None:
            await self.webhooks.pace(self.home.id, self.channel.id, message=False)
            await self._guarded(
                draft.hook.edit_message(draft.message.id, content=content, **self._edit_options()), "a draft"
            )

    async def _claim_draft(self, number: int) -> _Draft | None:
        """The streamed draft of reply ``number``, which its first part replaces (kept until that succeeds)."""
        async with self._draft_lock:
            if number in self._claimed:
                return self._claimed[number]
            draft = self._draft
            if draft is None or draft.number != number or draft.message is None:
                return None
            self._draft = None
            self._claimed[number] = draft
            return draft

    async def _finish_draft(self, draft: _Draft, content: str) -> discord.WebhookMessage | None:
        """The draft becomes the reply, no sooner than STREAM_EVERY after its last edit: the
        final edit is an edit too, and edits in a quick pair spend the webhook's rate limit."""
        assert draft.hook is not None and draft.message is not None
        wait = STREAM_EVERY - (time.monotonic() - draft.shown_at)
        if wait > 0:
            await asyncio.sleep(wait)
        await self.webhooks.pace(self.home.id, self.channel.id, message=False)
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
            await self._delete_draft(draft)

    async def _delete_draft(self, draft: _Draft) -> None:
        if draft.message is not None and draft.hook is not None:
            with contextlib.suppress(StageBlocked, Unavailable):
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


def _status(exc: BaseException) -> str:
    if isinstance(exc, discord.HTTPException):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "it timed out"
    return type(exc).__name__


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
