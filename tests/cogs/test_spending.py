"""Money on Discord: priced pictures, picture limits, a room's limit and a server's daily limit."""

from __future__ import annotations

import pytest

from tests.cogs.test_config import manager
from tests.discord_world import World, answer, by_persona, notices
from tests.fakes import Reply

SIX_PICTURES = "\n".join(f'!image "a lighthouse, study {n}"' for n in range(1, 7))
CHAT_COST = 0.003  # what OpenRouter reports for each turn


def looping_ai(fake_llm, turns: int = 50, cost: float = CHAT_COST) -> None:
    """An AI that asks for six pictures in every reply."""
    fake_llm.script(*[Reply.text(f"Turn {n}: more light.\n{SIX_PICTURES}", cost=cost) for n in range(turns)])


async def run_turns(world: World, turns: int, until_paused: bool = False) -> None:
    """Start a one-AI room and let it take up to ``turns`` turns, a minute apart."""
    await world.start(models="Gemini 3 Flash", turns=turns, delay=60)
    for _ in range(turns):
        if until_paused and world.session().room.state == "paused":
            return
        await world.env.advance_time(60)


def pictures_posted(world: World) -> int:
    return sum(1 for m in by_persona(world.channel) if m.attachments)


async def booked(world: World) -> dict[str, tuple[int, float]]:
    """What storage counted for the channel's room: kind -> (count, dollars)."""
    rows = await world.bot.store.spending(guild_id=world.guild.id)
    return {row.kind: (row.count, round(row.usd, 6)) for row in rows}


@pytest.mark.settings(image_price_usd=0.05, images_per_ai=3, image_window_turns=10, images_per_room=12, images_at_once=3)
async def test_an_ai_asking_for_six_pictures_every_turn_for_50_turns(world: World, fake_llm) -> None:
    looping_ai(fake_llm)
    await run_turns(world, 50)

    # Three pictures per AI every ten turns (turns 1, 11, 21 and 31), twelve in the room's life.
    assert pictures_posted(world) == 12
    assert await booked(world) == {"chat": (50, 0.15), "image": (12, 0.6)}
    assert notices(world.channel)[-1] == "⏹️ The room has ended: reached the limit of 50 turns"
    refusals = [n for n in notices(world.channel) if n.startswith("⚠️ [AI-1]: !image")]
    assert len(refusals) == 50 * 6 - 12
    assert refusals[0].endswith("was not applied: 3 pictures at a time, and that many are being made")
    assert any(r.endswith("try again in 9 turns") for r in refusals)
    assert refusals[-1].endswith("was not applied: this room may make 12 pictures, and it has")
    told = str(fake_llm.chat_requests[-1].body["messages"])
    assert "not applied: this room may make 12 pictures, and it has" in told  # the AI hears why


@pytest.mark.settings(image_price_usd=0.05, images_per_ai=3, image_window_turns=10)
async def test_the_same_ai_in_a_room_with_a_spending_limit(world: World, fake_llm) -> None:
    await manager(world).slash(world.channel, "seance config spending", room_usd=0.31)
    looping_ai(fake_llm, cost=0.012)
    await run_turns(world, 50, until_paused=True)

    # Three pictures at turn 1 ($0.15); at turn 11 ($0.282 spent) one more would pass $0.31;
    # then $0.012 a turn until $0.31: the room pauses after turn 14.
    assert pictures_posted(world) == 3
    assert await booked(world) == {"chat": (14, 0.168), "image": (3, 0.15)}
    assert any(n.endswith("a picture costs $0.05 and the room's spending limit of $0.31 is nearly reached") for n in notices(world.channel))
    assert notices(world.channel)[-1] == "⏸️ The room is paused: this room has reached its spending limit of $0.31 ($0.3180 spent)"
    assert world.session().room.state == "paused"
    assert len(fake_llm.chat_requests) == 14

    resumed = await world.mod.slash(world.channel, "seance resume")
    assert answer(resumed) == "This room has reached its spending limit of $0.31; raise the limit to resume it."
    await manager(world).slash(world.channel, "seance config spending", room_usd=0.34)
    await world.mod.slash(world.channel, "seance resume")
    for _ in range(3):
        await world.env.advance_time(60)
    assert (await booked(world))["chat"] == (16, 0.192)  # two more turns, to $0.342
    assert world.session().room.state == "paused"


async def test_a_server_at_its_daily_limit_cannot_start_or_resume_until_the_next_day(world: World, fake_llm) -> None:
    await manager(world).slash(world.channel, "seance config spending", daily_usd=0.01)
    fake_llm.script(*[Reply.text(f"Turn {n}.", cost=0.006) for n in range(3)])
    await world.start(models="Gemini 3 Flash, DeepSeek R1", turns=20, delay=60)
    await world.env.advance_time(60)  # a second turn: $0.012 today
    await world.env.advance_time(60)
    assert len(fake_llm.chat_requests) == 2
    assert notices(world.channel)[-1].startswith(
        "⏸️ The room is paused: this server has reached its daily spending limit of $0.01 ($0.0120 today); "
        "rooms can run again after 00:00 UTC, in "
    )

    status = await world.viewer.slash(world.channel, "seance status")
    fields = {f.name: f.value for f in status.response.embeds[0].fields}
    assert fields["Spent today (UTC)"] == "this room $0.0120 · this server $0.0120 of $0.01 a day"

    resumed = await world.mod.slash(world.channel, "seance resume")
    assert answer(resumed).startswith("The room cannot resume: this server has reached its daily spending limit")
    other = world.guild.create_text_channel("annex")
    started = await world.mod.slash(other, "seance start", models="Gemini 3 Flash")
    assert answer(started).startswith("No room can start: this server has reached its daily spending limit of $0.01")

    store = world.bot.store
    store.clock = lambda: (int(__import__("time").time()) // 86400 + 1) * 86400 + 60  # 00:01 UTC tomorrow
    resumed = await world.mod.slash(world.channel, "seance resume")
    assert answer(resumed) == "Resumed."
    await world.env.settle()
    assert len(fake_llm.chat_requests) == 3


async def test_pictures_made_while_the_server_is_at_its_limit_are_refused(world: World, fake_llm) -> None:
    await manager(world).slash(world.channel, "seance config spending", daily_usd=0.01)
    fake_llm.script(Reply.text('A costly thought.\n!image "a lamp in the fog"', cost=0.02))
    await world.start(models="Gemini 3 Flash", turns=5, delay=60)
    await world.env.settle()
    assert pictures_posted(world) == 0
    assert "🎨 AI-1 (Gemini 3 Flash) could not create an image: this server has reached its daily spending limit" in (
        "\n".join(notices(world.channel))
    )


async def test_spending_survives_a_restart(world: World, fake_llm) -> None:
    fake_llm.script(*[Reply.text(f"Turn {n}.", cost=0.01) for n in range(3)])
    await world.start(models="Gemini 3 Flash", turns=20, delay=60)
    await world.env.advance_time(60)
    assert await booked(world) == {"chat": (2, 0.02)}
    await world.restart(crash=True)  # the restored room takes its next turn at once
    assert world.session().room.turns_taken == 3
    status = await world.viewer.slash(world.channel, "seance status")
    fields = {f.name: f.value for f in status.response.embeds[0].fields}
    assert fields["Spent today (UTC)"] == "this room $0.0300 · this server $0.0300"
    assert await booked(world) == {"chat": (3, 0.03)}
