"""The Discord stage against simcord: personas, notices, pictures, mentions, drafts, refusals."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import discord
import pytest

from bot import data
from bot.engine import ImageMade, Notice, Picture, Reply, Room, Said, Turn
from bot.providers.images import draw
from bot.runner import NotShown
from bot.stage import DiscordStage
from bot.webhooks import WebhookPool
from tests.discord_world import AVATARS, World, by_persona, persona_sends, settings, simcord_bot, world  # noqa: F401

GEMINI = "AI-1 (Gemini 3 Flash)"
DEEPSEEK = "AI-2 (DeepSeek R1)"


@dataclass
class Rig:
    world: World
    stage: DiscordStage
    room: Room
    blocked: list[str] = field(default_factory=list)

    async def show(self, *events: object) -> None:
        await self.stage.show(list(events))  # type: ignore[arg-type]
        await self.world.env.settle()

    def turn(self, number: int) -> Turn:
        participant = self.room.participants[number]
        return Turn(number, participant.label, self.room.request_for(participant))


def rig_for(world: World, channel: discord.abc.Messageable, **options: object) -> Rig:
    room = Room(data.catalog(), data.scenarios()["open-room"])
    room.add("Gemini 3 Flash")
    room.add("DeepSeek R1")
    stage = DiscordStage(
        channel,  # type: ignore[arg-type]
        room,
        world.bot.webhooks,
        avatar_template=AVATARS,
        send_timeout=2,
        **options,  # type: ignore[arg-type]
    )
    rig = Rig(world, stage, room)

    async def blocked(reason: str) -> None:
        rig.blocked.append(reason)

    stage.on_blocked = blocked
    return rig


@pytest.fixture
def rig(world: World) -> Rig:
    return rig_for(world, world.bot.get_channel(world.channel.id))  # type: ignore[arg-type]


def reply(number: int, text: str) -> Reply:
    label, model = (GEMINI, "Gemini 3 Flash") if number == 1 else (DEEPSEEK, "DeepSeek R1")
    return Reply(number, label, model, text)


async def test_notices_of_one_show_go_out_as_one_small_text_message_before_the_reply(rig: Rig) -> None:
    await rig.show(
        Notice('🎨 [AI-1 (Gemini 3 Flash)]: !image "a lamp" (generating...)'),
        Notice("[AI-1 adjusted their temperature]", context=True),
        Notice("🌡️ [AI-1]: !temperature 1.5"),
        reply(1, "The lamp is lit."),
    )
    history = rig.world.channel.history()
    assert [m.content for m in history] == [
        '-# 🎨 [AI-1 (Gemini 3 Flash)]: !image "a lamp" (generating...)\n'
        "-# [AI-1 adjusted their temperature]\n"
        "-# 🌡️ [AI-1]: !temperature 1.5",
        "The lamp is lit.",
    ]
    assert history[0].webhook_id is None and history[0].author.id == rig.world.bot.user.id
    assert history[1].webhook_id is not None and history[1].author.name == GEMINI


async def test_show_returns_the_messages_it_posted_for_the_journal(rig: Rig) -> None:
    notices = await rig.stage.show([Notice("one"), Notice("two")])
    said = await rig.stage.show([reply(1, "\n\n".join("murmur " * 200 for _ in range(2)))])
    await rig.world.env.settle()
    history = rig.world.channel.history()
    assert notices == [history[0].id] and said == [m.id for m in history[1:]] and len(said) == 2


async def test_a_long_reply_is_split_and_every_part_counts_for_votes(rig: Rig) -> None:
    text = "\n\n".join(f"Part {i}: " + "murmur " * 120 for i in range(4))  # ~3400 characters
    await rig.show(reply(2, text))
    posts = by_persona(rig.world.channel)
    assert len(posts) == 2
    assert all(m.author.name == DEEPSEEK and len(m.content) <= 2000 for m in posts)
    assert [rig.stage.author_of(m.id) for m in posts] == [2, 2]
    sends = persona_sends(rig.world.env)
    assert {s["avatar_url"] for s in sends} == {AVATARS.replace("{seed}", "DeepSeek%20R1")}


async def test_a_picture_is_an_attachment_posted_by_the_ai_that_asked(rig: Rig) -> None:
    picture = Picture(draw("a lighthouse of glass"), offline=True)
    caption = '[AI-1 (Gemini 3 Flash)]: !image "a lighthouse of glass"'
    await rig.show(
        Notice("🎨 AI-1 (Gemini 3 Flash) created an image"),
        ImageMade(1, GEMINI, caption, "a lighthouse of glass", picture),
    )
    message = rig.world.channel.history()[-1]
    assert message.author.name == GEMINI and message.webhook_id is not None
    assert message.content == caption
    assert [a.filename for a in message.attachments] == ["ai1-picture.png"]
    assert rig.stage.author_of(message.id) == 1


async def test_a_moderator_speaks_under_their_own_name_and_avatar(rig: Rig) -> None:
    rig.stage.human_avatars["Morgan"] = "https://cdn.example/morgan.png"
    await rig.show(Said("Morgan", "Consider the moon."))
    message = rig.world.channel.history()[-1]
    assert (message.author.name, message.content) == ("Morgan", "Consider the moon.")
    assert persona_sends(rig.world.env)[-1]["avatar_url"] == "https://cdn.example/morgan.png"
    assert rig.stage.author_of(message.id) is None  # votes are for AIs only


async def test_nothing_the_bot_or_a_persona_posts_pings_anyone(rig: Rig) -> None:
    target = rig.world.viewer
    await rig.show(
        Notice(f"⚠️ [AI-1]: !prompt @everyone <@{target.id}> was not applied"),
        reply(1, f"@everyone @here <@{target.id}> listen"),
    )
    sends = [r.json for r in rig.world.env.http_requests if r.method == "POST" and isinstance(r.json, dict)]
    bodies = [body for body in sends if "content" in body]
    assert len(bodies) == 2
    assert all(body["allowed_mentions"] == {"parse": []} for body in bodies)
    backend = rig.world.env.backend  # simcord keeps who a message notified apart from who it names
    for message in rig.world.channel.history():
        stored = backend.get_message(message.channel.id, message.id)
        assert not message.mention_everyone
        assert stored.ping_user_ids == [] and stored.ping_role_ids == []


def typing_requests(world: World) -> list[str]:
    return [r.path for r in world.env.http_requests if r.path.endswith("/typing")]


async def test_the_channel_shows_typing_while_an_ai_writes(rig: Rig) -> None:
    async with rig.stage.writing(rig.turn(1)):
        await asyncio.sleep(0.05)  # the model at work
    assert typing_requests(rig.world) == [f"/channels/{rig.world.channel.id}/typing"]  # once, no 5 s loop


async def test_a_typing_request_discord_is_slow_to_answer_does_not_delay_the_model(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, answered = asyncio.Event(), asyncio.Event()

    async def send_typing(channel_id: int) -> None:
        started.set()
        await answered.wait()  # Discord sits on the request

    monkeypatch.setattr(rig.world.bot.http, "send_typing", send_typing)
    began = time.monotonic()
    async with rig.stage.writing(rig.turn(1)):
        entered = time.monotonic() - began  # where the runner asks the model
        await asyncio.wait_for(started.wait(), 1)  # typing is under way beside the turn
    assert entered < 0.5 and not answered.is_set()
    assert rig.stage._typing is None  # ended with the turn, not left to run


async def test_typing_beyond_the_bots_shared_budget_is_skipped(world: World) -> None:
    pool = WebhookPool(world.bot, typing_per_second=1)
    channel = world.bot.get_channel(world.channel.id)
    stages = [DiscordStage(channel, rig_for(world, channel).room, pool, avatar_template=AVATARS) for _ in range(3)]
    async with contextlib.AsyncExitStack() as writing:
        for stage in stages:
            await writing.enter_async_context(stage.writing(rig_for(world, channel).turn(1)))
        await asyncio.sleep(0.05)
    assert len(typing_requests(world)) == 1


async def test_a_room_that_streams_drafts_sends_no_typing(world: World) -> None:
    rig = rig_for(world, world.bot.get_channel(world.channel.id), stream=True)
    async with rig.stage.writing(rig.turn(1)):
        await asyncio.sleep(0.05)
    assert typing_requests(world) == []


async def test_a_streamed_reply_is_edited_in_place_and_never_pings(world: World) -> None:
    rig = rig_for(world, world.bot.get_channel(world.channel.id), stream=True)
    turn = rig.turn(1)
    async with rig.stage.writing(turn):
        await rig.stage.partial(turn, "The first words")
        await rig.stage.partial(turn, "The first words and more")  # within 1.5 s: no edit
    drafts = by_persona(world.channel)
    assert [m.content for m in drafts] == ["The first words ▌"]
    await rig.show(reply(1, "The first words and more, finished. @everyone"))
    posts = by_persona(world.channel)
    assert [m.content for m in posts] == ["The first words and more, finished. @everyone"]
    assert posts[0].id == drafts[0].id and rig.stage.author_of(posts[0].id) == 1
    edits = [r for r in world.env.http_requests if r.method == "PATCH" and "/webhooks/" in r.path]
    assert len(edits) == 1 and edits[0].json["allowed_mentions"] == {"parse": []}


async def test_a_draft_of_a_turn_that_failed_is_removed(world: World) -> None:
    rig = rig_for(world, world.bot.get_channel(world.channel.id), stream=True)
    turn = rig.turn(2)
    async with rig.stage.writing(turn):
        await rig.stage.partial(turn, "Half a thou")
    assert len(by_persona(world.channel)) == 1
    await rig.show(Notice("⚠️ AI-2 (DeepSeek R1) could not reply: the connection dropped"))
    assert by_persona(world.channel) == []
    assert world.channel.history()[-1].content.startswith("-# ⚠️ AI-2")


async def test_a_room_in_a_thread_posts_through_its_parents_webhook(world: World) -> None:
    parent = world.bot.get_channel(world.channel.id)
    thread = await parent.create_thread(name="Séance · test", type=discord.ChannelType.public_thread)
    rig = rig_for(world, thread)
    await rig.show(reply(1, "In the thread."))
    creates = [r for r in world.env.http_requests if r.method == "POST" and r.path.endswith("/webhooks")]
    assert [r.path for r in creates] == [f"/channels/{parent.id}/webhooks"]
    assert persona_sends(world.env)[-1]["thread_id"] == thread.id


async def test_a_missing_permission_is_reported_once_and_the_batch_is_not_shown(world: World) -> None:
    guild = world.bot.get_guild(world.guild.id)
    locked = world.guild.create_text_channel(
        "locked", overwrites={guild.me: discord.PermissionOverwrite(manage_webhooks=False)}
    )
    rig = rig_for(world, world.bot.get_channel(locked.id))
    await rig.show(Notice("before"))
    for text in ("This cannot be posted.", "Nor this."):
        with pytest.raises(NotShown):  # the runner keeps it stored for after /seance resume
            await rig.stage.show([reply(1, text)])
    assert len(rig.blocked) == 1
    assert "Manage Webhooks" in rig.blocked[0] and locked.mention in rig.blocked[0]
    assert [m.content for m in locked.history()] == ["-# before"]


async def test_a_draft_is_edited_again_once_the_interval_has_passed(world: World, monkeypatch) -> None:
    monkeypatch.setattr("bot.stage.STREAM_EVERY", 0.0)  # as if 1.5 s had passed between the chunks
    rig = rig_for(world, world.bot.get_channel(world.channel.id), stream=True)
    turn = rig.turn(1)
    async with rig.stage.writing(turn):
        await rig.stage.partial(turn, "One")
        await rig.stage.partial(turn, "One two")
    await world.env.settle()
    assert [m.content for m in by_persona(world.channel)] == ["One two ▌"]
    edits = [r for r in world.env.http_requests if r.method == "PATCH" and "/webhooks/" in r.path]
    assert [e.json["content"] for e in edits] == ["One two ▌"]


async def test_reasoning_stays_hidden_by_default(rig: Rig) -> None:
    await rig.show(Reply(2, DEEPSEEK, "DeepSeek R1", "The answer is four.", reasoning="two and two"))
    assert [m.content for m in by_persona(rig.world.channel)] == ["The answer is four."]


async def test_reasoning_as_spoiler_under_the_reply(world: World) -> None:
    rig = rig_for(world, world.bot.get_channel(world.channel.id), reasoning="spoiler")  # type: ignore[arg-type]
    await rig.show(Reply(2, DEEPSEEK, "DeepSeek R1", "The answer is four.", reasoning="two | and\ntwo"))
    posts = by_persona(rig.world.channel)
    assert [m.content for m in posts] == ["The answer is four.", "-# 🧠 ||two \\| and\n-# two||"]
    assert {m.author.name for m in posts} == {DEEPSEEK}


async def test_reasoning_as_text_file(world: World) -> None:
    rig = rig_for(world, world.bot.get_channel(world.channel.id), reasoning="file")  # type: ignore[arg-type]
    ids = await rig.stage.show([Reply(2, DEEPSEEK, "DeepSeek R1", "Four.", reasoning="x" * 5000)])
    await rig.world.env.settle()
    posts = by_persona(rig.world.channel)
    assert [m.content for m in posts] == ["Four.", "-# 🧠 thinking"]
    assert [a.filename for a in posts[1].attachments] == ["ai2-thinking.txt"]
    assert ids == [m.id for m in posts]


async def test_the_finished_reply_waits_out_the_edit_interval(world: World, monkeypatch) -> None:
    monkeypatch.setattr("bot.stage.STREAM_EVERY", 0.3)
    rig = rig_for(world, world.bot.get_channel(world.channel.id), stream=True)
    turn = rig.turn(1)
    async with rig.stage.writing(turn):
        await rig.stage.partial(turn, "The first words")
    drafted = time.monotonic()
    await rig.show(reply(1, "The first words and the last."))
    assert time.monotonic() - drafted >= 0.25  # not a second edit right behind the draft's (sent at 0)
    assert [m.content for m in by_persona(world.channel)] == ["The first words and the last."]


async def test_a_whisper_shows_only_that_it_happened(rig: Rig) -> None:
    await rig.show(Notice("🤫 AI-1 whispered to AI-2", private='AI-1 (Gemini 3 Flash) to AI-2 (DeepSeek R1): "psst"'))
    assert [m.content for m in rig.world.channel.history()] == ["-# 🤫 AI-1 whispered to AI-2"]
