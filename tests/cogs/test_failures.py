"""Rooms on a Discord that fails: 5xx bursts, 429s, timeouts, dropped connections, a webhook
deleted or a permission taken away in the middle of a split reply, several rooms at once.

The promise checked everywhere: every stored event appears in the channel exactly once,
in order, and a failure that lasts is told, not silent."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import simcord
from simcord.http.client import FakeWebhookAdapter

from tests.discord_world import World, by_persona, notices
from tests.fakes import Reply

LONG = "\n\n".join(f"Part {n}: " + "the lantern hums a long low note. " * 50 for n in range(1, 4))  # 3 messages


async def stored(world: World, room_id: int) -> list[Any]:
    return await world.bot.store.events(room_id)


async def assert_shown_once_in_order(world: World, room_id: int, channel: simcord.ChannelHandle | None = None) -> None:
    """Every stored event is marked posted with its messages; the channel holds each of those
    messages once, in the order of the events; no persona message is unaccounted for."""
    channel = channel or world.channel
    events = await stored(world, room_id)
    assert [s.id for s in events if s.posted_at is None] == []
    recorded = [m for s in events for m in s.message_ids]
    assert len(set(recorded)) == len(recorded)
    in_channel = [m.id for m in channel.history()]
    assert [m for m in in_channel if m in set(recorded)] == recorded
    assert {m.id for m in by_persona(channel)} <= set(recorded)
    contents = [m.content for m in by_persona(channel)]
    assert len(contents) == len(set(contents))  # nothing posted twice


def webhook_path(world: World, channel: simcord.ChannelHandle | None = None) -> str:
    hook = world.bot.webhooks._hooks[(channel or world.channel).id]
    return f"/webhooks/{hook.id}/*"


async def test_a_burst_of_webhook_errors_delays_messages_and_loses_none(world: World) -> None:
    await world.start(turns=4, delay=1)
    world.env.inject_error("POST", webhook_path(world), status=503, times=4)

    await world.env.advance_time(120)

    session_room = (await world.bot.store.rooms())[-1]
    assert session_room.state == "stopped"
    assert len(by_persona(world.channel)) == 4
    await assert_shown_once_in_order(world, session_room.id)


async def test_429s_are_waited_out_in_order(world: World) -> None:
    await world.start(turns=3, delay=1)
    world.env.inject_error("POST", webhook_path(world), status=429, code=0, message="You are being rate limited.", times=3)
    world.env.inject_error("POST", "/channels/*/messages", status=429, message="You are being rate limited.", times=2)

    await world.env.advance_time(120)

    [record] = await world.bot.store.rooms()
    assert record.state == "stopped"
    await assert_shown_once_in_order(world, record.id)


@pytest.mark.settings(send_timeout=0.2)
async def test_timeouts_and_dropped_connections_are_retried(world: World, monkeypatch) -> None:
    await world.start(turns=3, delay=1)
    original = FakeWebhookAdapter.request
    trouble = ["hang", "drop", "hang"]

    async def request(self, route, *args, **kwargs):
        if route.method == "POST" and trouble:
            kind = trouble.pop(0)
            if kind == "hang":
                # never answers; the send timeout cuts it
                await world.env.external_wait(asyncio.sleep(3600), reason="Discord does not answer")
            raise aiohttp.ServerDisconnectedError()
        return await original(self, route, *args, **kwargs)

    monkeypatch.setattr(FakeWebhookAdapter, "request", request)
    for _ in range(40):
        await world.env.advance_time(5)
        if not trouble and world.session() is None:  # ended, and done showing
            break

    [record] = await world.bot.store.rooms()
    assert record.state == "stopped" and trouble == []
    assert len(by_persona(world.channel)) == 3
    await assert_shown_once_in_order(world, record.id)


def fail_on_persona_send(number: int, fault: dict[str, Any]) -> Any:
    """Patch the webhook transport so that persona send ``number`` (1-based) and after meet ``fault``."""
    original = FakeWebhookAdapter.request
    seen = 0

    async def request(self, route, *args, **kwargs):
        nonlocal seen
        body = str(kwargs.get("payload") or kwargs.get("multipart") or "")
        if route.method == "POST" and "'username'" in body:
            seen += 1
            if seen == number:
                self.backend.faults.append(dict(fault))
        return await original(self, route, *args, **kwargs)

    return request


async def test_a_webhook_deleted_in_the_middle_of_a_split_reply_posts_each_part_once(
    world: World, fake_llm, monkeypatch
) -> None:
    fake_llm.script(Reply.text(LONG))
    gone = {"method": "POST", "path": "/webhooks/*", "status": 404, "code": 10015, "message": "Unknown Webhook", "times": 1}
    monkeypatch.setattr(FakeWebhookAdapter, "request", fail_on_persona_send(2, gone))

    await world.start(models="Gemini 3 Flash", turns=1, delay=0)
    await world.env.advance_time(5)

    assert [m.content[:7] for m in by_persona(world.channel)] == ["Part 1:", "Part 2:", "Part 3:"]
    lookups = [r for r in world.env.http_requests if r.method == "GET" and r.path.endswith("/webhooks")]
    assert len(lookups) == 2  # the unknown webhook was forgotten and looked up again
    [record] = await world.bot.store.rooms()
    await assert_shown_once_in_order(world, record.id)


async def test_a_permission_removed_in_the_middle_of_a_split_reply_resumes_with_the_rest(
    world: World, fake_llm, monkeypatch
) -> None:
    fake_llm.script(Reply.text(LONG), Reply.text("After the pause."))
    refused = {"method": "POST", "path": "/webhooks/*", "status": 403, "code": 50013, "message": "Missing Permissions", "times": None}
    monkeypatch.setattr(FakeWebhookAdapter, "request", fail_on_persona_send(2, refused))

    await world.start(models="Gemini 3 Flash", turns=2, delay=1)

    session = world.session()
    assert session.room.state == "paused"
    assert [m.content[:7] for m in by_persona(world.channel)] == ["Part 1:"]
    dm = world.mod.user.dm_channel.history()
    assert len(dm) == 1 and "Send Messages" in dm[0].content
    [waiting, *_] = await world.bot.store.unposted(session.room_id)
    assert len(waiting.message_ids) == 1  # the first part is journaled as out

    world.env.backend.faults.clear()  # the permission is given back
    await world.mod.slash(world.channel, "seance resume")
    await world.env.advance_time(30)

    assert [m.content[:7] for m in by_persona(world.channel)] == ["Part 1:", "Part 2:", "Part 3:", "After t"]
    await assert_shown_once_in_order(world, session.room_id)


@pytest.mark.settings(channel_patience_minutes=0.5)
async def test_a_channel_that_keeps_failing_pauses_its_room_once_and_tells_the_moderator(world: World) -> None:
    await world.start(turns=40, delay=2)
    world.env.inject_error("POST", webhook_path(world), status=502, message="Bad Gateway", times=None)
    world.env.inject_error("POST", f"/channels/{world.channel.id}/messages", status=502, message="Bad Gateway", times=None)

    await world.env.advance_time(90)

    session = world.session()
    assert session.room.state == "paused"
    dm = world.mod.user.dm_channel.history()
    assert len(dm) == 1 and "paused" in dm[0].content and "Nothing is lost" in dm[0].content
    turns_when_paused = session.room.turns_taken
    await world.env.advance_time(120)
    assert session.room.turns_taken == turns_when_paused  # a paused room spends nothing

    world.env.backend.faults.clear()  # Discord is back
    await world.env.advance_time(120)

    pauses = [n for n in notices(world.channel) if n.startswith("⏸️")]
    assert len(pauses) == 1 and "Discord has failed" in pauses[0]
    assert len(by_persona(world.channel)) == turns_when_paused
    await assert_shown_once_in_order(world, session.room_id)
    await world.mod.slash(world.channel, "seance resume")
    await world.env.advance_time(60)
    assert (await world.bot.store.rooms())[-1].state == "stopped"
    await assert_shown_once_in_order(world, session.room_id)


async def test_what_a_failing_channel_kept_back_is_posted_after_a_restart(world: World) -> None:
    await world.start(turns=2, delay=1)
    world.env.inject_error("POST", webhook_path(world), status=503, times=None)
    await world.env.advance_time(20)
    [record] = await world.bot.store.rooms()
    assert record.state == "stopped" and await world.bot.store.unposted(record.id) != []

    await world.restart()  # the host restarts the bot while Discord still fails
    world.env.backend.faults.clear()
    await world.env.advance_time(120)

    assert len(by_persona(world.channel)) == 2
    await assert_shown_once_in_order(world, record.id)
    assert world.session() is None  # an ended room only posts what it owed, then goes


async def test_several_rooms_fail_and_recover_independently(world: World) -> None:
    second = world.guild.create_text_channel("second")
    third = world.guild.create_text_channel("third")
    for channel in (world.channel, second, third):
        await world.start(channel, turns=4, delay=1)
    world.env.inject_error("POST", webhook_path(world, second), status=500, times=5)
    world.env.inject_error("POST", "/channels/*/messages", status=503, times=4)

    await world.env.advance_time(180)

    records = await world.bot.store.rooms()
    assert [r.state for r in records] == ["stopped"] * 3
    for record, channel in zip(records, (world.channel, second, third)):
        assert len(by_persona(channel)) == 4
        await assert_shown_once_in_order(world, record.id, channel)


@pytest.mark.settings(webhook_requests_per_2s=5, channel_messages_per_minute=30)
async def test_sends_are_paced_under_discords_webhook_and_channel_limits(world: World, fake_llm) -> None:
    fake_llm.script(*[Reply.text(f"Reply {n}.") for n in range(12)])
    calls: list[float] = []
    original = FakeWebhookAdapter.request
    loop = asyncio.get_running_loop()

    async def request(self, route, *args, **kwargs):
        if route.method == "POST" and "/webhooks/" in route.url and str(world.bot.application_id) not in route.url:
            calls.append(loop.time())
        return await original(self, route, *args, **kwargs)

    FakeWebhookAdapter.request = request  # type: ignore[method-assign]
    try:
        await world.start(turns=12, delay=0)
        await world.env.advance_time(120)
    finally:
        FakeWebhookAdapter.request = original  # type: ignore[method-assign]

    assert len(calls) >= 12
    assert world.bot.webhooks.per_webhook.waited > 0  # the limit was reached, and kept
    assert max(sum(1 for t in calls if start <= t < start + 2) for start in calls) <= 5
    assert max(sum(1 for t in calls if start <= t < start + 60) for start in calls) <= 30
    [record] = await world.bot.store.rooms()
    await assert_shown_once_in_order(world, record.id)


@pytest.mark.logs_errors
async def test_a_start_that_fails_after_storing_leaves_no_room_behind(world: World) -> None:
    application = world.bot.application_id
    world.env.inject_error("POST", f"/webhooks/{application}/*", status=500, times=1)

    await world.start(turns=3, delay=60)

    assert [type(e).__name__ for e in world.env.errors] == ["CommandInvokeError"]  # the failure is reported
    assert world.session() is None
    assert await world.bot.store.rooms() == []
    await world.restart()
    assert world.session() is None
