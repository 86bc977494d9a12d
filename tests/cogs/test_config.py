"""``/seance config``: each server's own settings, as a member, a moderator and a server manager meet them."""

from __future__ import annotations

from typing import Any

import discord
import pytest
import simcord

from tests.discord_world import World, answer, notices
from tests.fakes import Reply


def manager(world: World) -> simcord.MemberActor:
    """A member with Manage Server (and nothing else)."""
    admins = world.guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
    return world.guild.add_member(world.env.create_user("sasha", global_name="Sasha"), roles=[admins])


def refused(world: World, kind: str) -> int:
    """How many commands a check refused; reading them tells simcord they were expected."""
    errors = world.env.errors
    assert all(type(e).__name__ == kind for e in errors), errors
    return len(errors)


async def choices(world: World, command: str, option: str, typed: str = "") -> list[str]:
    return [c["value"] for c in await world.mod.autocomplete(world.channel, command, option, typed)]


# --- who may change what --------------------------------------------------------------

CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("seance config spending", {"daily_usd": 5.0}),
    ("seance config pictures", {"per_room": 3}),
    ("seance config rooms", {"turns": 4}),
    ("seance config models", {"allowed": "Gemini 3 Flash"}),
    ("seance config reset", {"setting": "everything"}),
]


@pytest.mark.parametrize(("command", "options"), CHANGES, ids=[c for c, _ in CHANGES])
async def test_members_and_moderators_cannot_change_settings(world: World, command: str, options: dict) -> None:
    for who in (world.viewer, world.mod):  # the moderator has Manage Messages, not Manage Server
        result = await who.slash(world.channel, command, **options)
        assert result.ephemeral
        assert answer(result) == (
            "Only members with the Manage Server permission (or the bot's owner) can change Séance's settings here."
        )
    assert refused(world, "NotManager") == 2
    assert await world.bot.store.guild_settings(world.guild.id) == {}


async def test_a_server_manager_and_the_bots_owner_can(world: World) -> None:
    result = await manager(world).slash(world.channel, "seance config spending", daily_usd=5.0, room_usd=1.5)
    assert result.ephemeral and answer(result).startswith("Saved; running rooms here follow at once.")
    assert "**Spending**: $1.50 per room, $5.00 per day · spent today (UTC): $0.0000" in answer(result)

    world.bot.owner_id = world.viewer.id
    await world.viewer.slash(world.channel, "seance config rooms", turns=4)
    stored = await world.bot.store.guild_settings(world.guild.id)
    assert (stored["daily_budget_usd"], stored["room_budget_usd"], stored["default_turns"]) == (5.0, 1.5, 4)


async def test_moderators_may_read_the_settings_and_members_may_not(world: World) -> None:
    shown = await world.mod.slash(world.channel, "seance config show")
    assert shown.ephemeral
    text = answer(shown)
    assert "**Moderators**: Manage Messages, or the role(s): none (host)" in text
    assert "**Rooms**: 30 turns, 0 s between turns (host) · open floor allowed (host)" in text
    assert "**Pictures**: 3 per AI every 10 turns, 50 per room, 3 at once (host) · $0.000 each" in text

    refused_show = await world.viewer.slash(world.channel, "seance config show")
    assert answer(refused_show) == "Only moderators and server managers can see Séance's settings here."
    assert refused(world, "NotManager") == 1


@pytest.mark.settings(daily_budget_usd=10.0, images_per_room=20)
async def test_a_server_may_be_stricter_than_the_host_never_looser(world: World) -> None:
    sasha = manager(world)
    over = await sasha.slash(world.channel, "seance config spending", daily_usd=50.0)
    assert answer(over) == "The host allows at most $10.00 for a server's spending per day; choose that or less."
    more = await sasha.slash(world.channel, "seance config pictures", per_room=30)
    assert answer(more) == "The host allows at most 20 for pictures per room; choose that or less."
    assert await world.bot.store.guild_settings(world.guild.id) == {}

    await sasha.slash(world.channel, "seance config spending", daily_usd=2.0)
    assert (await world.bot.guild_settings.get(world.guild.id)).daily_budget_usd == 2.0


# --- moderator roles -----------------------------------------------------------------------


async def test_a_moderator_role_set_in_discord(world: World) -> None:
    hosts = world.guild.create_role("Séance hosts")
    hana = world.guild.add_member(world.env.create_user("hana"), roles=[hosts])
    refused_first = await hana.slash(world.channel, "seance pause")
    assert answer(refused_first) == "Only moderators can use `/seance pause`: it needs the Manage Messages permission."

    await manager(world).slash(world.channel, "seance config moderators", add=hosts)
    started = await hana.slash(world.channel, "seance start", models="Gemini 3 Flash", turns=3, delay=60)
    assert not started.ephemeral and world.session() is not None
    blocked = await world.mod.slash(world.channel, "seance block", member=hana)
    assert answer(blocked) == "hana is a moderator or a bot here; blocking is for members."
    refused_member = await world.viewer.slash(world.channel, "seance pause")
    assert answer(refused_member) == (
        "Only moderators can use `/seance pause`: it needs the Manage Messages permission or the Séance hosts role."
    )
    assert refused(world, "NotModerator") == 2

    await manager(world).slash(world.channel, "seance config moderators", remove=hosts)
    await hana.slash(world.channel, "seance pause")
    assert refused(world, "NotModerator") == 3


# --- models -------------------------------------------------------------------------------


async def test_allowed_models_bound_everything_a_moderator_or_an_ai_can_pick(world: World, fake_llm) -> None:
    await manager(world).slash(world.channel, "seance config models", allowed="Gemini 3 Flash, deepseek r1")

    assert await choices(world, "seance start", "models") == ["Gemini 3 Flash", "DeepSeek R1"]
    assert await choices(world, "seance add", "model", "gpt") == []
    start = await world.start(models="Gemini 3 Flash, GPT 5.2", turns=5, delay=60)
    assert answer(start) == (
        "GPT 5.2 is not allowed in this server (a server manager can change that with `/seance config models`)."
    )
    assert world.session() is None

    fake_llm.script(Reply.text('Let us widen the circle.\n!add_ai "GPT 5.2" "join us"\n!list_models'))
    await world.start(models="Gemini 3 Flash", turns=5, delay=60)
    assert '⚠️ [AI-1]: !add_ai "GPT 5.2" "join us" was not applied: GPT 5.2 cannot be invited here; see !list_models' in notices(world.channel)
    added = await world.mod.slash(world.channel, "seance add", model="GPT 5.2")
    assert answer(added).startswith("GPT 5.2 is not allowed in this server")
    await world.env.advance_time(60)
    request = fake_llm.chat_requests[-1].body
    assert "Models you can invite: Gemini 3 Flash, DeepSeek R1." in request["messages"][0]["content"]
    assert "models you can invite: Gemini 3 Flash, DeepSeek R1." in str(request["messages"])


async def test_a_server_cannot_allow_a_model_no_key_can_run(world: World) -> None:
    result = await manager(world).slash(world.channel, "seance config models", allowed="SmolLM2 135M")
    assert answer(result) == "SmolLM2 135M runs on the host's own CPU, which this host does not offer on Discord"
    assert "SmolLM2 135M" not in await choices(world, "seance start", "models", "smol")


@pytest.mark.settings(openrouter_api_key=None, gemini_api_key="g-test")
async def test_only_models_a_configured_key_runs_are_offered(world: World) -> None:
    assert await choices(world, "seance start", "models") == ["Gemini 3 Flash", "Gemini 3 Pro"]
    start = await world.start(models="Claude Haiku 4.5", turns=3)
    assert "No API key is set that can run Claude Haiku 4.5" in answer(start)


@pytest.mark.settings(offer_embedded_model=True)
async def test_the_host_may_offer_the_embedded_model(world: World) -> None:
    assert "SmolLM2 135M" in await choices(world, "seance start", "models", "smol")


async def test_default_models_turns_and_delay_of_start(world: World, fake_llm) -> None:
    sasha = manager(world)
    await sasha.slash(world.channel, "seance config models", defaults="Claude Haiku 4.5, GPT 5.2")
    await sasha.slash(world.channel, "seance config rooms", turns=2, delay=30.0)
    start = await world.mod.slash(world.channel, "seance start")
    announced = world.channel.history()[0].content
    assert "AI-1 (Claude Haiku 4.5), AI-2 (GPT 5.2) — Open room, 2 turns." in announced and not start.ephemeral
    await world.env.advance_time(29)
    assert len(fake_llm.chat_requests) == 1
    await world.env.advance_time(1)
    assert len(fake_llm.chat_requests) == 2
    await world.env.advance_time(30)
    assert world.session() is None  # two turns, and the room has ended


async def test_the_open_floor_may_be_switched_off(world: World, fake_llm) -> None:
    await world.start(turns=9, delay=60, open_floor=True)
    await manager(world).slash(world.channel, "seance config rooms", open_floor=False)
    await world.viewer.send(world.channel, "Tell me about the sea.")  # the running room stops listening
    await world.env.advance_time(60)
    assert "Tell me about the sea." not in str(fake_llm.chat_requests[-1].body["messages"])
    await world.mod.slash(world.channel, "seance stop")

    refused_start = await world.start(turns=3, open_floor=True)
    assert answer(refused_start) == (
        "This server does not allow the open floor (a server manager can allow it with "
        "`/seance config rooms open_floor:True`)."
    )


async def test_reset_puts_the_hosts_values_back(world: World) -> None:
    sasha = manager(world)
    await sasha.slash(world.channel, "seance config pictures", per_ai=1, at_once=1)
    assert (await world.bot.guild_settings.get(world.guild.id)).images_per_ai == 1
    result = await sasha.slash(world.channel, "seance config reset", setting="picture limits")
    assert "**Pictures**: 3 per AI every 10 turns, 50 per room, 3 at once (host)" in answer(result)
