"""Syncing slash commands is an explicit owner action, never done at start-up."""

from __future__ import annotations

from tests.discord_world import World


def command_puts(world: World) -> list[str]:
    return [r.path for r in world.env.http_requests if r.method == "PUT" and r.path.endswith("/commands")]


async def test_the_bot_does_not_sync_by_itself(world: World) -> None:
    # the world fixture synced once, explicitly; starting the bot did not
    assert command_puts(world) == [f"/applications/{world.bot.application_id}/guilds/{world.guild.id}/commands"]


async def test_the_owner_syncs_with_a_mention(world: World) -> None:
    world.bot.owner_id = world.mod.id
    await world.mod.send(world.channel, f"<@{world.bot.user.id}> sync")
    assert world.channel.last_message.content == "Synced 1 slash command(s) in this server."

    await world.mod.send(world.channel, f"<@{world.bot.user.id}> sync global")
    assert world.channel.last_message.content.startswith("Synced 1 slash command(s) globally")
    assert command_puts(world)[-1] == f"/applications/{world.bot.application_id}/commands"


async def test_nobody_else_may_sync(world: World) -> None:
    world.bot.owner_id = world.mod.id
    before = len(command_puts(world))
    await world.viewer.send(world.channel, f"<@{world.bot.user.id}> sync")
    assert world.channel.last_message.content == "Only the bot's owner can sync its commands."
    assert len(command_puts(world)) == before
    assert [type(e).__name__ for e in world.env.errors] == ["NotOwner"]
