"""Reactions as votes: the most-voted AI speaks next; one vote per member; bots do not vote."""

from __future__ import annotations

import discord
import pytest

from tests.discord_world import World, by_persona, notices
from tests.fakes import FakeLLMServer, Reply

THREE = "Gemini 3 Flash, DeepSeek R1, Claude Haiku 4.5"


def speakers(world: World) -> list[str]:
    return [m.author.name for m in by_persona(world.channel)]


def post_of(world: World, label: str) -> discord.Message:
    return next(m for m in by_persona(world.channel) if m.author.name == label)


async def first_round(world: World) -> None:
    """AI-1, AI-2 and AI-3 have each spoken once; round robin would now give AI-1 the word."""
    await world.start(models=THREE, turns=20, delay=60)
    await world.env.advance_time(120)
    assert speakers(world) == ["AI-1 (Gemini 3 Flash)", "AI-2 (DeepSeek R1)", "AI-3 (Claude Haiku 4.5)"]


async def test_a_reaction_makes_that_ai_speak_next(world: World) -> None:
    await first_round(world)

    await world.viewer.react(post_of(world, "AI-2 (DeepSeek R1)"), "🔥")
    await world.env.advance_time(60)

    assert speakers(world)[-1] == "AI-2 (DeepSeek R1)"
    assert notices(world.channel)[-1] == "🗳️ AI-2 (DeepSeek R1) speaks next by vote (1 vote)"
    await world.env.advance_time(60)  # votes last one turn: the round robin carries on
    assert speakers(world)[-1] == "AI-1 (Gemini 3 Flash)"


async def test_the_most_voted_ai_wins_and_a_members_latest_vote_counts(world: World) -> None:
    await first_round(world)
    third = world.guild.add_member(world.env.create_user("ivo"))

    await world.viewer.react(post_of(world, "AI-2 (DeepSeek R1)"), "👍")
    await world.viewer.react(post_of(world, "AI-3 (Claude Haiku 4.5)"), "👍")  # Vera changes her mind
    await third.react(post_of(world, "AI-3 (Claude Haiku 4.5)"), "✨")
    await world.mod.react(post_of(world, "AI-2 (DeepSeek R1)"), "✨")
    assert world.session().room.tally() == {3: 2, 2: 1}

    await world.env.advance_time(60)

    assert speakers(world)[-1] == "AI-3 (Claude Haiku 4.5)"
    assert notices(world.channel)[-1] == "🗳️ AI-3 (Claude Haiku 4.5) speaks next by vote (2 votes)"


async def test_taking_a_reaction_back_takes_the_vote_back(world: World) -> None:
    await first_round(world)
    message = post_of(world, "AI-3 (Claude Haiku 4.5)")
    await world.viewer.react(message, "👍")
    await world.viewer.unreact(message, "👍")
    await world.env.advance_time(60)
    assert speakers(world)[-1] == "AI-1 (Gemini 3 Flash)"


async def test_taking_back_one_of_two_reactions_keeps_the_vote(world: World) -> None:
    await first_round(world)
    message = post_of(world, "AI-3 (Claude Haiku 4.5)")
    await world.viewer.react(message, "👍")
    await world.viewer.react(message, "🔥")
    await world.viewer.unreact(message, "👍")
    assert world.session().room.tally() == {3: 1}  # the 🔥 still stands
    await world.viewer.unreact(message, "🔥")
    assert world.session().room.tally() == {}
    await world.viewer.react(message, "✨")
    await world.viewer.react(message, "🔥")
    await world.viewer.unreact(message, "✨")
    await world.env.advance_time(60)
    assert speakers(world)[-1] == "AI-3 (Claude Haiku 4.5)"
    assert notices(world.channel)[-1] == "🗳️ AI-3 (Claude Haiku 4.5) speaks next by vote (1 vote)"


async def test_a_tie_falls_back_to_round_robin(world: World) -> None:
    await first_round(world)
    await world.viewer.react(post_of(world, "AI-2 (DeepSeek R1)"), "👍")
    await world.mod.react(post_of(world, "AI-3 (Claude Haiku 4.5)"), "👍")
    await world.env.advance_time(60)
    assert speakers(world)[-1] == "AI-1 (Gemini 3 Flash)"


async def test_bots_reactions_do_not_vote(world: World) -> None:
    await first_round(world)
    helper = world.guild.add_member(world.env.create_user("helper", bot=True))
    target = post_of(world, "AI-3 (Claude Haiku 4.5)")

    await helper.react(target, "🤖")
    channel = world.bot.get_channel(world.channel.id)
    await channel.get_partial_message(target.id).add_reaction("🕯️")  # the bot's own reaction
    await world.env.settle()

    assert world.session().room.votes == {}
    await world.env.advance_time(60)
    assert speakers(world)[-1] == "AI-1 (Gemini 3 Flash)"


async def test_reactions_on_other_messages_are_not_votes_but_count_as_activity(world: World) -> None:
    await first_round(world)
    announcement = world.channel.history()[0]
    session = world.session()
    session.last_activity = -1e9

    await world.viewer.react(announcement, "👀")

    assert session.room.votes == {}
    assert session.last_activity > -1e9


async def test_a_blocked_members_reactions_do_not_vote(world: World) -> None:
    await first_round(world)
    await world.mod.slash(world.channel, "seance block", member=world.viewer)

    await world.viewer.react(post_of(world, "AI-3 (Claude Haiku 4.5)"), "👍")
    assert world.session().room.tally() == {}
    await world.env.advance_time(60)
    assert speakers(world)[-1] == "AI-1 (Gemini 3 Flash)"  # the round robin, as if nobody voted


@pytest.mark.settings(votes_per_minute=2)
async def test_one_member_cannot_vote_more_than_the_limit_a_minute(world: World) -> None:
    await first_round(world)
    two, three = post_of(world, "AI-2 (DeepSeek R1)"), post_of(world, "AI-3 (Claude Haiku 4.5)")

    await world.viewer.react(two, "👍")
    await world.viewer.react(three, "👍")  # changes her mind: her second vote
    await world.viewer.react(two, "🔥")  # the third within a minute is ignored
    assert world.session().room.tally() == {3: 1}
    await world.mod.react(two, "✨")  # others still vote
    assert world.session().room.tally() == {3: 1, 2: 1}
    stored = await world.bot.store.db.execute_fetchall("SELECT voter FROM votes")
    assert sorted(v for (v,) in stored) == sorted([str(world.viewer.id)] * 2 + [str(world.mod.id)])


async def test_members_vote_on_a_removal_with_reactions_on_its_notice(world: World, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(Reply.text('!remove_ai "AI-3" "it only repeats"'), Reply.text("I disagree.\n!vote no"))
    await world.start(models=THREE, turns=20, delay=60)
    proposal = next(m for m in world.channel.history() if "proposes removing" in m.content)
    assert "🗳️ AI-1 proposes removing AI-3 (Claude Haiku 4.5)" in proposal.content
    await world.viewer.react(proposal, "✅")
    await world.mod.react(proposal, "✅")
    third = world.guild.add_member(world.env.create_user("ivo"))
    opening = next(m for m in world.channel.history() if "A séance begins" in m.content)
    await third.react(opening, "✅")  # not on the proposal: not a vote
    await world.env.advance_time(60)  # AI-2 votes no
    assert "🗳️ [AI-2]: !vote no on removing AI-3 (2 yes, 1 no so far)" in notices(world.channel)
    await world.viewer.unreact(proposal, "✅")
    await world.viewer.react(proposal, "❌")  # Vera changes her mind
    await world.env.advance_time(60)
    assert "🗳️ The vote is closed: AI-3 (Claude Haiku 4.5) stays (1 yes, 2 no)" in notices(world.channel)
    assert world.session().room.participants[3].present


async def test_a_removal_majority_from_reactions_removes_the_ai(world: World, fake_llm: FakeLLMServer) -> None:
    fake_llm.script(Reply.text('!remove_ai "AI-3" "it only repeats"'), Reply.text("!vote no"))
    await world.start(models=THREE, turns=20, delay=60)
    proposal = next(m for m in world.channel.history() if "proposes removing" in m.content)
    await world.viewer.react(proposal, "✅")
    await world.mod.react(proposal, "✅")
    await world.env.advance_time(120)
    assert "👋 AI-3 (Claude Haiku 4.5) was removed by a vote (2 yes, 1 no)" in notices(world.channel)
    assert not world.session().room.participants[3].present
