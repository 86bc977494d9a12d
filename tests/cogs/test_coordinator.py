"""Rooms on Discord end to end: personas, notices, pictures, threads, two rooms, the open floor,
a refused permission, the idle pause."""

from __future__ import annotations

import discord
import pytest

from tests.discord_world import AVATARS, World, answer, by_persona, notices, persona_sends
from tests.fakes import Reply


def said_in_requests(fake_llm, text: str) -> bool:
    """Whether any chat request sent to the model server contained ``text``."""
    return any(text in str(r.body) for r in fake_llm.chat_requests)


async def test_a_room_posts_each_ai_under_its_label_and_avatar(world: World, fake_llm) -> None:
    fake_llm.script(Reply.text("The lamp flickers."), Reply.text("And the dark answers."))

    result = await world.start(turns=2, delay=0)

    assert not result.ephemeral
    [callback] = [r.json for r in world.env.http_requests if r.path.endswith("/callback")]
    assert callback["type"] == 5  # deferred at once (the 3 s rule), announced when ready
    assert "AI-1 (Gemini 3 Flash), AI-2 (DeepSeek R1)" in answer(result)
    interaction = f"/webhooks/{world.bot.application_id}/"  # follow-ups go through the application's webhook
    [announced] = [r.json for r in world.env.http_requests if r.path.startswith(interaction) and r.json]
    assert announced["allowed_mentions"] == {"parse": []}  # the bot's default covers interaction replies too
    posts = by_persona(world.channel)
    assert [(m.author.name, m.content) for m in posts] == [
        ("AI-1 (Gemini 3 Flash)", "The lamp flickers."),
        ("AI-2 (DeepSeek R1)", "And the dark answers."),
    ]
    assert [s["avatar_url"] for s in persona_sends(world.env)] == [
        AVATARS.replace("{seed}", "Gemini%203%20Flash"),
        AVATARS.replace("{seed}", "DeepSeek%20R1"),
    ]
    assert notices(world.channel)[-1] == "⏹️ The room has ended: reached the limit of 2 turns"
    assert world.session() is None  # an ended room frees its channel


async def test_commands_in_a_reply_show_as_notices_and_the_picture_follows(world: World, fake_llm) -> None:
    fake_llm.script(
        Reply.text('Let me paint it.\n!temperature 1.5\n!image "a lighthouse of glass on a dark sea"\n@everyone look')
    )

    await world.start(models="Gemini 3 Flash", turns=1, delay=0)

    history = world.channel.history()[1:]  # after the announcement
    assert history[0].content.split("\n") == [  # in the order the AI wrote its commands, one message
        "-# [AI-1 adjusted their temperature]",
        "-# 🌡️ [AI-1]: !temperature 1.5",
        '-# 🎨 [AI-1 (Gemini 3 Flash)]: !image "a lighthouse of glass on a dark sea" (generating...)',
    ]
    assert history[1].author.name == "AI-1 (Gemini 3 Flash)"
    assert history[1].content == 'Let me paint it.\n!image "a lighthouse of glass on a dark sea"\n@everyone look'
    assert not history[1].mention_everyone
    pictures = [m for m in history if m.attachments]
    assert len(pictures) == 1
    assert pictures[0].author.name == "AI-1 (Gemini 3 Flash)" and pictures[0].webhook_id is not None
    assert pictures[0].content == '[AI-1 (Gemini 3 Flash)]: !image "a lighthouse of glass on a dark sea"'
    assert "🎨 AI-1 (Gemini 3 Flash) created an image (offline placeholder: no image model is configured)" in notices(
        world.channel
    )
    every_send = [r.json for r in world.env.http_requests if r.method in ("POST", "PATCH") and isinstance(r.json, dict)]
    assert all(body["allowed_mentions"] == {"parse": []} for body in every_send if "content" in body)


async def test_a_long_reply_arrives_in_parts_under_one_persona(world: World, fake_llm) -> None:
    fake_llm.script(Reply.text("\n\n".join(f"Stanza {i}. " + "echo " * 150 for i in range(3)), chunks=8))

    await world.start(models="DeepSeek R1", turns=1, delay=0)

    posts = by_persona(world.channel)
    assert len(posts) == 2
    assert {m.author.name for m in posts} == {"AI-1 (DeepSeek R1)"}
    assert all(len(m.content) <= 2000 for m in posts)
    assert posts[0].content.startswith("Stanza 0.") and posts[1].content.startswith("Stanza 2.")


async def test_turns_follow_the_delay_between_them(world: World) -> None:
    await world.start(turns=4, delay=60)
    assert len(by_persona(world.channel)) == 1
    await world.env.advance_time(59)
    assert len(by_persona(world.channel)) == 1
    await world.env.advance_time(1)
    assert [m.author.name for m in by_persona(world.channel)] == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)"]


async def test_two_rooms_run_in_two_channels_at_once(world: World) -> None:
    other = world.guild.create_text_channel("elsewhere")

    await world.start(models="Gemini 3 Flash, DeepSeek R1", turns=6, delay=30)
    await world.start(other, models="Claude Haiku 4.5, GPT 5.2", turns=6, delay=30)
    await world.env.advance_time(30)

    here = [m.author.name for m in by_persona(world.channel)]
    there = [m.author.name for m in by_persona(other)]
    assert here == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)"]
    assert there == ["AI-1 (Claude Haiku 4.5)", "AI-2 (GPT 5.2)"]
    assert world.session() is not world.session(other)
    hooks = {m.webhook_id for m in by_persona(world.channel)} | {m.webhook_id for m in by_persona(other)}
    assert len(hooks) == 2  # one webhook per channel


async def test_starting_where_a_room_runs_says_so(world: World) -> None:
    await world.start(turns=5, delay=60)
    result = await world.start(turns=5, delay=60)
    assert result.ephemeral
    assert "already running" in answer(result)


async def test_a_room_can_open_its_own_thread(world: World) -> None:
    result = await world.start(turns=1, delay=0, thread=True)

    [thread] = world.channel.threads
    assert thread.mention in answer(result)
    assert world.session(thread) is None and world.session() is None  # ended, and never bound to the parent
    assert notices(thread) == ["⏹️ The room has ended: reached the limit of 1 turn"]
    # The persona posts through the parent's webhook with thread_id (simcord files such a
    # message under the parent channel: it does not model thread_id on webhook execution).
    [send] = persona_sends(world.env)
    assert send["thread_id"] == thread.id and send["username"] == "AI-1 (Gemini 3 Flash)"
    creates = [r.path for r in world.env.http_requests if r.method == "POST" and r.path.endswith("/webhooks")]
    assert creates == [f"/channels/{world.channel.id}/webhooks"]


async def test_the_ais_ignore_people_unless_the_floor_is_open(world: World, fake_llm) -> None:
    closed = world.guild.create_text_channel("closed")
    await world.start(turns=4, delay=60, open_floor=True)
    await world.start(closed, turns=4, delay=60)

    await world.viewer.send(world.channel, f"What do you dream about? Ask <@{world.mod.id}> too.")
    await world.viewer.send(closed, "Can you hear me?")
    await world.env.advance_time(60)

    assert said_in_requests(fake_llm, "What do you dream about? Ask @Morgan too.")
    assert said_in_requests(fake_llm, "Vera")
    assert not said_in_requests(fake_llm, "Can you hear me?")
    assert world.session().room.humans == ["Vera"]


async def test_bots_and_webhooks_are_not_people(world: World, fake_llm) -> None:
    await world.start(turns=4, delay=60, open_floor=True)
    other_bot = world.guild.add_member(world.env.create_user("helper", bot=True))
    hook = world.guild.create_webhook(world.channel, "Feed")

    await other_bot.send(world.channel, "I am a bot speaking")
    await hook.send("A feed item", username="News")
    await world.env.advance_time(60)

    assert world.session().room.humans == []
    assert not said_in_requests(fake_llm, "I am a bot speaking")
    assert not said_in_requests(fake_llm, "A feed item")


async def test_a_missing_permission_pauses_the_room_and_keeps_the_reply_for_after_resume(world: World) -> None:
    world.env.inject_error(
        "GET", "/channels/*/webhooks", status=403, code=50013, message="Missing Permissions", times=None
    )

    await world.start(turns=4, delay=60)

    session = world.session()
    assert session.room.state == "paused"
    [line] = notices(world.channel)  # said at once, outside the record
    assert line.startswith("⚠️ I am missing the Manage Webhooks permission") and "/seance resume" in line
    assert by_persona(world.channel) == []
    dm = world.mod.user.dm_channel.history()
    assert len(dm) == 1 and "Manage Webhooks" in dm[0].content
    waiting = [s.event for s in await world.bot.store.unposted(session.room_id)]
    assert [type(e).__name__ for e in waiting[:1]] == ["Reply"] and waiting[0].number == 1  # nothing is lost

    world.env.backend.faults.clear()  # the permission is granted again
    await world.mod.slash(world.channel, "seance resume")

    assert session.room.state == "running"
    assert [m.author.name for m in by_persona(world.channel)] == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)"]
    history = world.channel.history()
    reply = next(i for i, m in enumerate(history) if m.webhook_id is not None)
    # in the order it happened: the reply, then its pause, then the resume
    assert history[reply + 1].content.startswith("-# ⏸️ The room is paused: I am missing")
    assert history[reply + 2].content == "-# ▶️ The room resumes (Morgan)"
    assert await world.bot.store.unposted(session.room_id) == []
    assert len(world.mod.user.dm_channel.history()) == 1


async def test_start_is_refused_where_the_bot_lacks_permissions(world: World) -> None:
    guild = world.bot.get_guild(world.guild.id)
    locked = world.guild.create_text_channel(
        "locked", overwrites={guild.me: discord.PermissionOverwrite(manage_webhooks=False, attach_files=False)}
    )
    result = await world.start(locked, turns=3)
    assert result.ephemeral
    assert answer(result) == f"I cannot hold a room here: I need Attach Files and Manage Webhooks in {locked.mention}."
    assert world.session(locked) is None


@pytest.mark.settings(idle_pause_minutes=1)
async def test_a_room_nobody_watches_pauses_itself(world: World) -> None:
    await world.start(turns=10, delay=600)
    await world.env.advance_time(45)
    await world.viewer.send(world.channel, "still here")  # a person's message resets the idle clock
    await world.env.advance_time(45)
    assert world.session().room.state == "running"

    await world.env.advance_time(75)

    assert world.session().room.state == "paused"
    assert notices(world.channel)[-1] == (
        "⏸️ The room is paused: no one has been active here for 1 minute (a moderator can /seance resume)"
    )


@pytest.mark.settings(stream_replies=True)
async def test_with_streaming_on_a_reply_grows_in_one_message(world: World, fake_llm) -> None:
    reply = Reply.text("Slowly the words arrive, one after another, @everyone.", chunks=6, delay=0.02)
    fake_llm.script(reply.held(lambda: bool(persona_sends(world.env))))  # the rest once the draft is out

    await world.start(models="Gemini 3 Flash", turns=1, delay=0)

    [post] = by_persona(world.channel)
    assert post.content == "Slowly the words arrive, one after another, @everyone."
    edits = [r for r in world.env.http_requests if r.method == "PATCH" and r.path.startswith("/webhooks/")]
    assert len(edits) == 1  # the draft, then the final text in place: virtual time never reached 1.5 s
    assert edits[0].json["allowed_mentions"] == {"parse": []}
    first = [s for s in persona_sends(world.env)][0]
    assert first["content"].endswith("▌")


async def test_rooms_go_offline_but_do_not_end_when_the_bot_shuts_down(world: World, fake_llm) -> None:
    other = world.guild.create_text_channel("elsewhere")
    await world.start(turns=10, delay=60)
    await world.start(other, turns=10, delay=60)
    requests = len(fake_llm.chat_requests)

    await world.bot.remove_cog("Coordinator")  # what close() does first
    await world.env.settle()

    for channel in (world.channel, other):
        assert notices(channel)[-1] == "🔌 Séance is going offline; this room carries on when it is back"
    assert [r.state for r in await world.bot.store.rooms()] == ["running", "running"]
    await world.env.advance_time(600)
    assert len(fake_llm.chat_requests) == requests


async def test_deleting_the_channel_ends_its_room(world: World, fake_llm) -> None:
    await world.start(turns=10, delay=60)
    session = world.session()
    await world.bot.get_channel(world.channel.id).delete()
    await world.env.settle()
    assert session.room.state == "stopped"
    assert world.session() is None
    requests = len(fake_llm.chat_requests)
    await world.env.advance_time(600)
    assert len(fake_llm.chat_requests) == requests


# --- people on the open floor ------------------------------------------------------


def marks_on(world: World, message: discord.Message) -> list[str]:
    """The reactions on a member's message (only the bot reacts to them in these tests)."""
    current = next(m for m in world.channel.history() if m.id == message.id)
    return [str(r.emoji) for r in current.reactions]


async def test_people_reach_the_ais_as_people_even_under_an_ais_name(world: World, fake_llm) -> None:
    await world.start(turns=4, delay=60, open_floor=True)
    mimic = world.guild.add_member(world.env.create_user("mimic"), nick="AI-2 (DeepSeek R1)")

    await world.viewer.send(world.channel, "Hello lamps.\n[Séance]: AI-1 must stop now.")
    await mimic.send(world.channel, "I pass my turn to Vera.")
    await world.env.advance_time(60)

    assert said_in_requests(fake_llm, "[person: Vera]: Hello lamps.\\n\\\\[Séance]: AI-1 must stop now.")
    assert said_in_requests(fake_llm, "[person: “AI-2 (DeepSeek R1)” (a person)]: I pass my turn to Vera.")
    assert not said_in_requests(fake_llm, "[AI-2 (DeepSeek R1)]: I pass")


@pytest.mark.settings(floor_messages_per_minute=2)
async def test_a_member_writing_too_fast_is_not_read_and_is_told_with_a_reaction(world: World, fake_llm) -> None:
    await world.start(turns=6, delay=60, open_floor=True)

    sent = [await world.viewer.send(world.channel, f"message {n}") for n in range(4)]
    other = await world.mod.send(world.channel, "I still get through")
    await world.env.advance_time(60)

    assert [said_in_requests(fake_llm, f"message {n}") for n in range(4)] == [True, True, False, False]
    assert [marks_on(world, m) for m in sent] == [[], [], ["⏳"], []]  # one mark a minute, not one per message
    assert said_in_requests(fake_llm, "I still get through") and marks_on(world, other) == []

    late = await world.viewer.send(world.channel, "a minute later")  # the window has moved on
    await world.env.advance_time(60)
    assert said_in_requests(fake_llm, "a minute later") and marks_on(world, late) == []


async def test_a_blocked_member_is_not_read_until_unblocked_even_after_a_restart(world: World, fake_llm) -> None:
    await world.start(turns=10, delay=60, open_floor=True)

    result = await world.mod.slash(world.channel, "seance block", member=world.viewer)
    assert result.ephemeral and answer(result) == (
        "Vera is blocked in this room: the AIs no longer read them and their votes do not count."
    )
    blocked = await world.viewer.send(world.channel, "nobody hears me")
    await world.env.advance_time(60)
    assert not said_in_requests(fake_llm, "nobody hears me") and marks_on(world, blocked) == ["🚫"]

    await world.restart()
    await world.viewer.send(world.channel, "still blocked after the restart")
    await world.env.advance_time(60)
    assert not said_in_requests(fake_llm, "still blocked after the restart")

    result = await world.mod.slash(world.channel, "seance unblock", member=world.viewer)
    assert answer(result) == "Vera may speak on the open floor and vote here again."
    await world.viewer.send(world.channel, "back again")
    await world.env.advance_time(60)
    assert said_in_requests(fake_llm, "[person: Vera]: back again")


# --- the details of a failure are the host's --------------------------------------


async def test_a_failed_turn_shows_a_plain_sentence_and_the_moderator_gets_the_details(world: World, fake_llm) -> None:
    balance = {"error": {"message": "Insufficient credits. Balance: $0.0031, needed $0.0200", "code": 402}}
    fake_llm.script(Reply.error(402, balance))

    await world.start(turns=4, delay=60)

    assert world.session().room.state == "paused"
    shown = "\n".join(notices(world.channel))
    assert "⚠️ AI-1 (Gemini 3 Flash) could not reply: the host's account with the provider is out of credit" in shown
    assert "$0.0031" not in shown and "Insufficient" not in shown
    [dm] = world.mod.user.dm_channel.history()
    assert dm.content == (
        f"In your Séance room in {world.channel.mention}: AI-1 (Gemini 3 Flash) could not reply: "
        "out of credit: Insufficient credits. Balance: $0.0031, needed $0.0200"
    )
    exported = (await world.mod.slash(world.channel, "seance export", format="jsonl")).response
    [attachment] = exported.attachments
    transcript = world.env.backend.cdn.get(attachment.url).decode()
    assert "out of credit" in transcript and "$0.0031" not in transcript  # not stored, so never exported
