""""Fork from here" on Discord: a new room in a thread, as the room was at that message; every refusal said privately."""

from __future__ import annotations

import discord

from tests.discord_world import World, answer, by_persona, notices
from tests.fakes import Reply

MENU = "Fork from here"


async def three_turns(world: World, fake_llm, channel=None, **options) -> list[discord.Message]:
    """A room where AI-1 steers itself, AI-2 answers, then AI-1 changes its mind: its persona messages."""
    fake_llm.script(
        Reply.text('!temperature 1.5\n!prompt "You love lighthouses."\nThe lamp turns.'),
        Reply.text("The dark answers."),
        Reply.text("!temperature 0.2\nI forget the lamp."),
    )
    await world.start(channel, turns=20, delay=60, **options)
    await world.env.advance_time(60)
    await world.env.advance_time(60)
    posts = by_persona(channel or world.channel)
    assert [m.content for m in posts] == ["The lamp turns.", "The dark answers.", "I forget the lamp."]
    return posts


def expected_errors(world: World) -> None:
    """Refusals are answers, not errors: nothing reached the bot-wide error handler."""
    assert world.env.errors == []


async def test_a_fork_goes_on_in_a_thread_from_the_message_as_the_room_was_then(world: World, fake_llm) -> None:
    posts = await three_turns(world, fake_llm)
    await world.mod.slash(world.channel, "seance prompt", ai="AI-2", text="You are a grumpy keeper.")
    await world.mod.slash(world.channel, "seance add", model="GPT 5.2")
    fake_llm.script(Reply.text("The fork remembers the lamp."))

    result = await world.mod.context_menu(world.channel, MENU, posts[1])

    assert result.ephemeral
    [thread] = world.channel.threads
    assert thread.id == posts[1].id  # the thread hangs under the message it forked from
    assert answer(result) == (
        f"Room 2 goes on from AI-2 (DeepSeek R1)'s reply in {thread.mention}, with the AIs as they were then; "
        "room 1 goes on by itself."
    )
    fork = world.session(thread).room
    assert [p.label for p in fork.present] == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)"]
    assert fork.participants[1].temperature == 1.5 and fork.participants[1].additions == ["You love lighthouses."]
    assert fork.participants[2].persona != "You are a grumpy keeper."
    first = fake_llm.chat_requests[-1].body  # the fork's first turn: AI-1, right after AI-2's reply
    assert first["model"] == "google/gemini-3-flash-preview" and first["temperature"] == 1.5
    assert "You love lighthouses." in first["messages"][0]["content"]
    assert "The dark answers." in str(first["messages"]) and "I forget the lamp." not in str(first["messages"])
    assert notices(thread)[0].startswith("🍴 This room is a fork of room 1 from AI-2 (DeepSeek R1)'s reply, event ")

    parent = world.session().room  # the original goes on as it was
    assert [p.label for p in parent.present] == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)", "AI-3 (GPT 5.2)"]
    assert parent.participants[1].temperature == 0.2
    record = await world.bot.store.room(2)
    assert (record.parent_id, record.thread_id, record.channel_id) == (1, thread.id, world.channel.id)

    again = await world.mod.context_menu(world.channel, MENU, posts[1])  # the message has its thread already
    [second] = [t for t in world.channel.threads if t.id != thread.id]
    assert f"Room 3 goes on from AI-2 (DeepSeek R1)'s reply in {second.mention}" in answer(again)
    assert posts[1].jump_url in notices(second)[0]  # a thread of the channel, which links to the message
    expected_errors(world)


async def test_every_message_that_cannot_be_forked_is_refused_privately(world: World, fake_llm) -> None:
    posts = await three_turns(world, fake_llm)
    person = await world.viewer.send(world.channel, "Fork me!")
    notice = next(m for m in world.channel.history() if m.content.startswith("-# "))
    stranger = await world.guild.create_webhook(world.channel, "Feed").send("news", username="News")

    refusals = {
        "a member": await world.viewer.context_menu(world.channel, MENU, posts[1]),
        "a person": await world.mod.context_menu(world.channel, MENU, person),
        "a notice": await world.mod.context_menu(world.channel, MENU, notice),
        "a stranger": await world.mod.context_menu(world.channel, MENU, stranger),
    }

    assert {what: answer(r) for what, r in refusals.items()} == {
        "a member": "Only moderators can fork a room: it needs the Manage Messages permission.",
        "a person": "That is a person's message; a fork starts from an AI's reply or picture.",
        "a notice": "That is one of Séance's own messages; a fork starts from an AI's reply or picture.",
        "a stranger": "That message was not posted by Séance; a fork starts from an AI's reply or picture in a Séance room.",
    }
    assert all(r.ephemeral for r in refusals.values())
    assert world.channel.threads == [] and len(world.coordinator.sessions) == 1
    await world.mod.slash(world.channel, "seance stop")
    await world.env.settle()
    await world.bot.store.delete_room(1)
    gone = await world.mod.context_menu(world.channel, MENU, posts[0])
    assert answer(gone) == "That message's room is no longer stored (it was deleted), so there is nothing to fork from."
    expected_errors(world)


async def test_a_fork_is_refused_when_its_models_are_no_longer_allowed(world: World, fake_llm) -> None:
    posts = await three_turns(world, fake_llm)
    await world.bot.guild_settings.update(world.guild.id, allowed_models=["Gemini 3 Flash"])  # as /seance config models does
    result = await world.mod.context_menu(world.channel, MENU, posts[1])
    assert answer(result).startswith("Room 1 cannot be forked here: DeepSeek R1 is not allowed in this server")
    assert world.channel.threads == []


async def test_without_thread_permission_a_fork_takes_the_channel_only_if_it_is_free(world: World, fake_llm) -> None:
    guild = world.bot.get_guild(world.guild.id)
    closed = world.guild.create_text_channel(
        "no-threads", overwrites={guild.me: discord.PermissionOverwrite(create_public_threads=False)}
    )
    posts = await three_turns(world, fake_llm, closed)

    busy = await world.mod.context_menu(closed, MENU, posts[1])
    assert answer(busy) == (
        f"I cannot make a thread for the fork: I need Create Public Threads in {closed.mention}. "
        f"It cannot run here instead, because {closed.mention} already has a running room."
    )
    await world.mod.slash(closed, "seance stop")
    await world.env.settle()

    fake_llm.script(Reply.text("Back in the channel."))
    result = await world.mod.context_menu(closed, MENU, posts[1])
    assert answer(result).startswith(f"Room 2 goes on from AI-2 (DeepSeek R1)'s reply in {closed.mention}")
    assert world.session(closed).room_id == 2 and closed.threads == []
    assert by_persona(closed)[-1].content == "Back in the channel."
    expected_errors(world)

