"""One webhook per channel, shared by every AI persona in it.

A webhook can post under any name and avatar, so one per channel serves all
personas; channels hold at most 15, and other bots need some. The pool reuses
a webhook the bot made earlier, creates at most one (rooms starting at once
share the creation), and forgets one that someone deleted so it is made anew.

With a store, the webhook of each channel outlives the process: after a
restart it is used straight from storage, without listing the channel's
webhooks (which needs Manage Webhooks and a request per channel). The token
is a secret: it is stored, never logged, and exports never read this table.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Protocol

import discord

from bot.engine.limits import RateLimit

log = logging.getLogger(__name__)

WEBHOOK_NAME = "Séance"
UNKNOWN_WEBHOOK = 10015

Postable = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.ForumChannel


class WebhookStore(Protocol):
    """The part of ``bot.storage.Store`` the pool uses."""

    async def webhook(self, channel_id: int) -> tuple[int, str] | None: ...

    async def set_webhook(self, channel_id: int, webhook_id: int, token: str) -> None: ...

    async def forget_webhook(self, channel_id: int) -> None: ...


# Discord allows a bot 50 requests a second in all; the rooms keep 5 of them free for slash
# commands' answers and direct messages.
BOT_REQUESTS_PER_SECOND = 45


class Window:
    """At most ``limit`` requests in any ``per`` seconds for each key: a limit Discord
    enforces without announcing it in headers, so it is kept here by design rather
    than learnt from 429s. ``limit`` 0 switches it off. The counting is the engine's
    sliding window (``RateLimit``); this adds waiting for room, one request at a time per key."""

    def __init__(self, limit: int, per: float):
        self.rate = RateLimit(limit, per)
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.waited = 0  # how many requests had to wait, for benchmarks
        self.waiting = 0  # requests waiting for room now

    async def take(self, key: int, wait: Callable[[float], Awaitable[None]]) -> None:
        """Wait until one more request fits under the limit for ``key``, and count it."""
        if self.rate.limit <= 0:
            return
        self.waiting += 1
        try:
            async with self._locks[key]:
                loop = asyncio.get_running_loop()
                while (delay := self.rate.take(key, loop.time())) > 0:
                    self.waited += 1
                    await wait(delay)
        finally:
            self.waiting -= 1

    def try_take(self, key: int) -> bool:
        """Count one request for ``key`` if it fits under the limit now; False (uncounted) if not."""
        return self.rate.allow(key, asyncio.get_running_loop().time())


class WebhookPool:
    def __init__(
        self,
        client: discord.Client,
        timeout: float = 30.0,
        store: WebhookStore | None = None,
        *,
        webhook_requests_per_2s: int = 5,
        channel_messages_per_minute: int = 30,
        typing_per_second: int = 20,
    ):
        self.client = client
        self.timeout = timeout
        self.store = store  # set by the bot once its database is open
        self._hooks: dict[int, discord.Webhook] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Rooms in threads post through their parent's webhook, so they share its budget.
        self.per_webhook = Window(webhook_requests_per_2s, 2.0)
        self.per_channel = Window(channel_messages_per_minute, 60.0)
        self.typing_per_second = typing_per_second
        self._typing = Window(typing_per_second, 1.0)  # one key: all rooms share the bot's global budget
        # Every bot-token request the rooms make (notices, typing, finding webhooks, reading history)
        # counts here, so that many rooms at once (a restart of a thousand) stay under Discord's
        # global limit; webhook executions have their own limits and do not count.
        self.bot_wide = Window(BOT_REQUESTS_PER_SECOND, 1.0)

    def may_type(self) -> bool:
        """Whether one more "is typing" request fits the bot-wide typing budget now (0: never).

        Never while another bot request waits for the budget: a notice, or finding a new room's
        webhook, shows something; typing is a courtesy, and taking the slots as they free would
        hold those back (a thousand rooms starting at once waited a minute for their webhooks)."""
        if self.typing_per_second <= 0 or self.bot_wide.waiting:
            return False
        return self._typing.try_take(0) and self.bot_wide.try_take(0)

    async def spend_bot(self) -> None:
        """Wait for room for one bot-token request under the bot-wide budget."""
        await self.bot_wide.take(0, self._sleep)

    async def pace(self, home_id: int, channel_id: int, *, webhook: bool = True, message: bool = True) -> None:
        """Wait for room under Discord's per-webhook and per-channel limits before a request.

        ``webhook``: it goes through the webhook of ``home_id`` (the channel, or a
        thread's parent); ``message``: it makes a new message in ``channel_id``.
        """
        if webhook:
            await self.per_webhook.take(home_id, self._sleep)
        if message:
            await self.per_channel.take(channel_id, self._sleep)
        if not webhook:  # a notice, the bot's own message: its global slot last, just before it is sent
            await self.spend_bot()

    async def _sleep(self, seconds: float) -> None:
        # A host that accounts for deliberate waits (the tests' simulated clock) wraps them.
        wrap = getattr(self.client, "room_wait", None)
        await (wrap(asyncio.sleep(seconds)) if wrap is not None else asyncio.sleep(seconds))

    async def get(self, channel: Postable) -> discord.Webhook:
        """The bot's webhook in ``channel``; raises discord.Forbidden without Manage Webhooks."""
        hook = self._hooks.get(channel.id)
        if hook is not None:
            return hook
        async with self._locks[channel.id]:
            hook = self._hooks.get(channel.id)
            if hook is None:
                hook = await self._stored(channel.id)
            if hook is None:
                hook = await self._find(channel) or await self._create(channel)
                await self._remember(channel.id, hook)
            self._hooks[channel.id] = hook
            return hook

    async def forget(self, channel_id: int, hook: discord.Webhook) -> None:
        """Drop a webhook that Discord no longer knows (error 10015), so ``get`` makes a new one."""
        if self._hooks.get(channel_id) is hook:
            del self._hooks[channel_id]
        if self.store is not None:
            stored = await self.store.webhook(channel_id)
            if stored is not None and stored[0] == hook.id:
                await self.store.forget_webhook(channel_id)

    def owns(self, webhook_id: int | None) -> bool:
        return webhook_id is not None and any(h.id == webhook_id for h in self._hooks.values())

    async def _stored(self, channel_id: int) -> discord.Webhook | None:
        """The webhook remembered from an earlier run; whether it still exists shows at the first send."""
        found = await self.store.webhook(channel_id) if self.store is not None else None
        if found is None:
            return None
        webhook_id, token = found
        return discord.Webhook.partial(webhook_id, token, client=self.client)

    async def _remember(self, channel_id: int, hook: discord.Webhook) -> None:
        if self.store is not None and hook.token:
            await self.store.set_webhook(channel_id, hook.id, hook.token)

    async def _find(self, channel: Postable) -> discord.Webhook | None:
        me = self.client.user
        await self.spend_bot()
        hooks = await asyncio.wait_for(channel.webhooks(), self.timeout)
        ours = [
            h for h in hooks
            if h.type is discord.WebhookType.incoming and h.token and me is not None and h.user is not None
            and h.user.id == me.id
        ]
        ours.sort(key=lambda h: h.name != WEBHOOK_NAME)  # our name first, if someone made a second one
        return ours[0] if ours else None

    async def _create(self, channel: Postable) -> discord.Webhook:
        reason = "Séance posts each AI of a room through this webhook"
        await self.spend_bot()
        hook = await asyncio.wait_for(channel.create_webhook(name=WEBHOOK_NAME, reason=reason), self.timeout)
        log.info("created a webhook in channel %s", channel.id)  # its id only: the token is a secret
        return hook
