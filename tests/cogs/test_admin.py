"""Syncing slash commands is an explicit owner action, never done at start-up; a failed sync is told."""

from __future__ import annotations

from types import SimpleNamespace

import discord
import pytest

from cogs.admin import explain_sync_failure, sync_tree
from tests.discord_world import World


def command_puts(world: World) -> list[str]:
    return [r.path for r in world.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]


def shown(world: World) -> list[str]:
    """The slash commands the moderator sees in the room's channel, duplicates included."""
    return [c["name"] for c in world.env.backend.visible_commands(user_id=world.mod.id, channel_id=world.channel.id)]


async def test_the_bot_does_not_sync_by_itself(world: World) -> None:
    # the world fixture synced once, explicitly; starting the bot did not
    assert command_puts(world) == [f"/applications/{world.bot.application_id}/guilds/{world.guild.id}/commands"]


async def test_the_owner_syncs_with_a_mention(world: World) -> None:
    world.bot.owner_id = world.mod.id
    await world.mod.send(world.channel, f"<@{world.bot.user.id}> sync")
    assert world.channel.last_message.content == "Synced 2 slash command(s) in this server."  # /seance and "Fork from here"

    await world.mod.send(world.channel, f"<@{world.bot.user.id}> sync global")
    assert world.channel.last_message.content.startswith("Synced 2 slash command(s) globally")
    assert f"/applications/{world.bot.application_id}/commands" in command_puts(world)


async def test_a_global_sync_removes_the_server_copies_so_no_command_shows_twice(world: World) -> None:
    other = world.env.create_guild("Other")
    await sync_tree(world.bot, discord.Object(other.id))  # two servers got a copy while trying things out
    assert await world.bot.store.command_copies() == sorted([world.guild.id, other.id])
    assert shown(world) == ["seance"]

    await sync_tree(world.bot, None)

    assert shown(world) == ["seance"]  # the global command only, not the global one and the old copy
    assert world.env.backend.commands.get(world.guild.id) == {}
    assert world.env.backend.commands.get(other.id) == {}
    assert await world.bot.store.command_copies() == []


async def test_a_failed_sync_tells_the_owner_what_to_do(world: World) -> None:
    world.bot.owner_id = world.mod.id
    world.env.inject_error("PUT", "/applications/*/guilds/*/commands", status=403, code=50001, message="Missing Access")

    await world.mod.send(world.channel, f"<@{world.bot.user.id}> sync")

    reply = world.channel.last_message.content
    assert reply.startswith("Discord refused to install the slash commands there (Missing Access)")
    assert "applications.commands" in reply and "invite the bot again" in reply


async def test_nobody_else_may_sync(world: World) -> None:
    world.bot.owner_id = world.mod.id
    before = len(command_puts(world))
    await world.viewer.send(world.channel, f"<@{world.bot.user.id}> sync")
    assert world.channel.last_message.content == "Only the bot's owner can sync its commands."
    assert len(command_puts(world)) == before
    assert [type(e).__name__ for e in world.env.errors] == ["NotOwner"]


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (403, "Missing Access"),
        (429, "try again tomorrow"),
        (400, "please report this as a bug"),
        (503, "try again in a few minutes"),
    ],
)
def test_every_sync_failure_is_one_sentence_with_what_to_do(status: int, said: str) -> None:
    failure = discord.HTTPException(SimpleNamespace(status=status, reason="x"), {"message": "refused", "code": 0})
    text = explain_sync_failure(failure)
    assert said in text and "\n" not in text and text.endswith(".")
