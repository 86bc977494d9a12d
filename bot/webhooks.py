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
from typing import Protocol

import discord

log = logging.getLogger(__name__)

WEBHOOK_NAME = "Séance"
UNKNOWN_WEBHOOK = 10015

Postable = discord.TextChannel | discord.VoiceChannel | discord.StageChannel | discord.ForumChannel


class WebhookStore(Protocol):
    """The part of ``bot.storage.Store`` the pool uses."""

    async def webhook(self, channel_id: int) -> tuple[int, str] | None: ...

    async def set_webhook(self, channel_id: int, webhook_id: int, token: str) -> None: ...

    async def forget_webhook(self, channel_id: int) -> None: ...


class WebhookPool:
    def __init__(self, client: discord.Client, timeout: float = 30.0, store: WebhookStore | None = None):
        self.client = client
        self.timeout = timeout
        self.store = store  # set by the bot once its database is open
        self._hooks: dict[int, discord.Webhook] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

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
        hook = await asyncio.wait_for(channel.create_webhook(name=WEBHOOK_NAME, reason=reason), self.timeout)
        log.info("created a webhook in channel %s", channel.id)  # its id only: the token is a secret
        return hook
