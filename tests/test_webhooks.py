"""One webhook per channel: reused, created once even under concurrency, recreated after deletion."""

from __future__ import annotations

import asyncio

import discord

from bot.engine import Reply
from bot.webhooks import BOT_REQUESTS_PER_SECOND, WEBHOOK_NAME, WebhookPool
from tests.discord_world import World, by_persona, settings, simcord_bot, world  # noqa: F401
from tests.test_stage import rig_for


def creates(world: World) -> list[str]:
    return [r.path for r in world.env.http_requests if r.method == "POST" and r.path.endswith("/webhooks")]


async def test_the_pool_creates_one_webhook_even_when_rooms_ask_at_once(world: World) -> None:
    channel = world.bot.get_channel(world.channel.id)
    pool = WebhookPool(world.bot)
    hooks = await asyncio.gather(*(pool.get(channel) for _ in range(5)))
    assert len({h.id for h in hooks}) == 1
    assert creates(world) == [f"/channels/{channel.id}/webhooks"]
    assert hooks[0].name == WEBHOOK_NAME


async def test_a_webhook_the_bot_made_earlier_is_reused_and_a_strangers_is_not(world: World) -> None:
    channel = world.bot.get_channel(world.channel.id)
    stranger = world.guild.create_webhook(world.channel, "Other bot")
    # simcord credits webhooks made in setup to the bot; make this one a stranger's.
    world.env.backend.webhooks[stranger.id].creator_id = world.viewer.id
    first = await WebhookPool(world.bot).get(channel)
    again = await WebhookPool(world.bot).get(channel)  # as after a restart: nothing cached
    assert first.id != stranger.id
    assert again.id == first.id
    assert len(creates(world)) == 1


async def test_two_rooms_in_one_channel_share_the_webhook(world: World) -> None:
    channel = world.bot.get_channel(world.channel.id)
    one, two = rig_for(world, channel), rig_for(world, channel)
    await asyncio.gather(
        one.stage.show([Reply(1, "AI-1 (Gemini 3 Flash)", "Gemini 3 Flash", "one")]),
        two.stage.show([Reply(2, "AI-2 (DeepSeek R1)", "DeepSeek R1", "two")]),
    )
    await world.env.settle()
    assert sorted(m.content for m in by_persona(world.channel)) == ["one", "two"]
    assert len(creates(world)) == 1


async def test_a_deleted_webhook_is_recreated_and_the_message_still_arrives(world: World) -> None:
    channel = world.bot.get_channel(world.channel.id)
    rig = rig_for(world, channel)
    await rig.show(Reply(1, "AI-1 (Gemini 3 Flash)", "Gemini 3 Flash", "before"))
    old = by_persona(world.channel)[0].webhook_id
    world.env.backend.delete_webhook(old)  # someone removed it in the server settings

    await rig.show(Reply(2, "AI-2 (DeepSeek R1)", "DeepSeek R1", "after"))

    posts = by_persona(world.channel)
    assert [m.content for m in posts] == ["before", "after"]
    assert posts[1].webhook_id != old
    assert len(creates(world)) == 2
    assert rig.stage.author_of(posts[1].id) == 2
    assert rig.blocked == []
    assert (await world.bot.store.webhook(world.channel.id))[0] == posts[1].webhook_id  # the store forgot the old one


async def test_a_stored_webhook_is_used_without_listing_the_channels(world: World) -> None:
    channel = world.bot.get_channel(world.channel.id)
    first = await world.bot.webhooks.get(channel)
    lists = [r for r in world.env.http_requests if r.method == "GET" and r.path.endswith("/webhooks")]

    again = await WebhookPool(world.bot, store=world.bot.store).get(channel)  # as after a restart

    assert again.id == first.id and again.token == first.token
    assert [r for r in world.env.http_requests if r.method == "GET" and r.path.endswith("/webhooks")] == lists


async def test_without_manage_webhooks_the_pool_raises_forbidden(world: World) -> None:
    guild = world.bot.get_guild(world.guild.id)
    locked = world.guild.create_text_channel(
        "locked", overwrites={guild.me: discord.PermissionOverwrite(manage_webhooks=False)}
    )
    try:
        await WebhookPool(world.bot).get(world.bot.get_channel(locked.id))
    except discord.Forbidden as exc:
        assert exc.code == 50013
    else:
        raise AssertionError("expected Forbidden")


async def test_the_rooms_bot_token_requests_stay_within_the_bot_wide_budget() -> None:
    """Notices, webhook lookups and history reads of many rooms at once wait for room under
    Discord's global limit (45 a second of its 50), counted over any second."""
    from types import SimpleNamespace

    pool = WebhookPool(SimpleNamespace(user=None))  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    spent: list[float] = []

    async def one() -> None:
        await pool.spend_bot()
        spent.append(loop.time())

    await asyncio.wait_for(asyncio.gather(*(one() for _ in range(60))), 10)
    spent.sort()
    assert max(sum(1 for t in spent if s <= t < s + 1.0) for s in spent) <= BOT_REQUESTS_PER_SECOND
    assert pool.bot_wide.waited > 0
    for _ in range(BOT_REQUESTS_PER_SECOND):
        pool.bot_wide.try_take(0)
    assert not pool.may_type()  # the budget is spent: typing, a courtesy, is skipped rather than waited for


async def test_typing_gives_way_to_any_bot_request_waiting_for_the_budget() -> None:
    """A notice or a new room's webhook lookup waiting for the bot-wide budget goes first: typing
    taking each slot as it frees would hold them back for as long as rooms keep typing."""
    from types import SimpleNamespace

    pool = WebhookPool(SimpleNamespace(user=None))  # type: ignore[arg-type]
    assert pool.may_type()  # the budget has room and nobody waits
    for _ in range(BOT_REQUESTS_PER_SECOND):
        pool.bot_wide.try_take(0)
    waiting = asyncio.create_task(pool.spend_bot())
    await asyncio.sleep(0.05)
    assert pool.bot_wide.waiting == 1
    pool.bot_wide.rate._times.clear()  # the second has passed: slots are free again
    assert not pool.may_type()  # but the notice waiting for one comes first
    await asyncio.wait_for(waiting, 2)
    assert pool.bot_wide.waiting == 0 and pool.may_type()
