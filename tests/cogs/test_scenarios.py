"""``/seance scenarios add: remove:``: a server's own scenarios, from a TOML file to a room, in that server only."""

from __future__ import annotations

import json

import discord

from cogs.admin import sync_tree
from tests.discord_world import World, answer

NIGHT_SHIFT = b'''
[scenarios.night-shift]
title = "Night shift"
description = "Two radio hosts keep a town awake."
system = "You host a late-night radio show for insomniacs."
opening = "Tonight's call-in topic: {topic}"
personas = ["You are the calm host with the low voice.", "You take the calls and read them out."]
commands = ["mute_self"]
'''


async def add(world: World, data: bytes = NIGHT_SHIFT, name: str = "mine.toml") -> str:
    return answer(await world.mod.slash(world.channel, "seance scenarios", add=(name, data)))


async def listing(world: World) -> str:
    result = await world.viewer.slash(world.channel, "seance scenarios")
    return "\n".join(m.content for m in [result.response, *result.followups] if m is not None)


async def test_a_server_scenario_is_listed_offered_and_frames_the_room(world: World, fake_llm) -> None:
    assert await add(world) == "Added `night-shift`. Start a room with `/seance start scenario:night-shift`."
    shown = await listing(world)
    assert "This server's own" in shown
    assert "• `night-shift` **Night shift**: Two radio hosts keep a town awake. (!mute_self)" in shown
    choices = await world.mod.autocomplete(world.channel, "seance start", "scenario", "night")
    assert [c["value"] for c in choices] == ["night-shift"]

    await world.start(scenario="night-shift", topic="owls", turns=1, delay=0)
    request = fake_llm.chat_requests[0].body
    system = request["messages"][0]["content"]
    assert "You host a late-night radio show for insomniacs." in system
    assert "You are the calm host with the low voice." in system and "!image" not in system
    assert "Tonight's call-in topic: owls" in json.dumps(request)


async def test_a_server_scenario_is_not_offered_in_another_server(world: World) -> None:
    await add(world)
    other = world.env.create_guild("Elsewhere")
    channel = other.create_text_channel("seance")
    mods = other.create_role("Mods", permissions=discord.Permissions(manage_messages=True))
    mod = other.add_member(world.env.create_user("olga", global_name="Olga"), roles=[mods])
    await sync_tree(world.bot, discord.Object(other.id))

    assert await mod.autocomplete(channel, "seance start", "scenario", "night") == []
    refused = await mod.slash(channel, "seance start", models="Gemini 3 Flash", scenario="night-shift")
    assert answer(refused).startswith('There is no scenario "night-shift". Choose one of: open-room, salon,')


async def test_a_bad_file_is_refused_with_the_line_and_nothing_is_added(world: World) -> None:
    broken = b'[scenarios.x]\npersonas = ["a"]\nsystem = Be\n'
    assert await add(world, broken) == (
        "No scenario was added: The scenario file is not valid TOML: Invalid value (at line 3, column 10)."
    )
    no_personas = b'[scenarios.quiet]\nsystem = "Be."\n'
    assert (await add(world, no_personas)).startswith('No scenario was added: Scenario "quiet": personas is missing')
    clash = NIGHT_SHIFT.replace(b"night-shift", b"salon")
    assert (await add(world, clash)).startswith('No scenario was added: Scenario "salon": Séance has a scenario')
    assert (await add(world, b"x" * 40_000)) == (
        "No scenario was added: `mine.toml` is 39 KB, over the 32 KB I can take; send a smaller one."
    )
    assert (await add(world, NIGHT_SHIFT, name="mine.txt")).startswith("No scenario was added: `mine.txt` is not a .toml file")
    assert (await add(world, b"\xff\xfe[scenarios]")).startswith("No scenario was added: `mine.toml` is not UTF-8 text")
    assert "This server's own" not in await listing(world)


async def test_only_moderators_add_or_remove(world: World) -> None:
    result = await world.viewer.slash(world.channel, "seance scenarios", add=("mine.toml", NIGHT_SHIFT))
    assert answer(result).startswith("Only moderators can use `/seance scenarios`")
    assert [type(e).__name__ for e in world.env.errors] == ["NotModerator"]
    assert "night-shift" not in await listing(world)


async def test_a_removed_scenario_goes_but_a_room_started_from_it_keeps_it_across_a_restart(
    world: World, fake_llm
) -> None:
    await add(world)
    await world.start(scenario="night-shift", turns=3, delay=60)
    choices = await world.mod.autocomplete(world.channel, "seance scenarios", "remove", "")
    assert [c["value"] for c in choices] == ["night-shift"]
    removed = await world.mod.slash(world.channel, "seance scenarios", remove="night-shift")
    assert answer(removed) == "Removed `night-shift`. Rooms already started from it keep it until they end."
    assert "night-shift" not in await listing(world)
    again = await world.mod.slash(world.channel, "seance scenarios", remove="night-shift")
    assert answer(again) == "This server has no scenario called `night-shift` (its own: none yet)."
    built_in = await world.mod.slash(world.channel, "seance scenarios", remove="salon")
    assert answer(built_in).startswith("`salon` is one of Séance's own scenarios")

    before = len(fake_llm.chat_requests)
    await world.restart()
    await world.env.advance_time(60)
    assert len(fake_llm.chat_requests) > before
    system = fake_llm.chat_requests[-1].body["messages"][0]["content"]
    assert system.startswith("You host a late-night radio show for insomniacs.")  # the room's copy, after the restart


async def test_a_file_replaces_the_servers_own_scenario_of_the_same_name(world: World, fake_llm) -> None:
    await add(world)
    changed = NIGHT_SHIFT.replace(b"for insomniacs", b"for night owls")
    assert await add(world, changed) == (
        "Added `night-shift` (replaced). Start a room with `/seance start scenario:night-shift`."
    )
    await world.start(scenario="night-shift", turns=1, delay=0)
    assert "for night owls" in fake_llm.chat_requests[0].body["messages"][0]["content"]
