"""The bot-wide error handler: quiet about greetings, one line for refusals, an error id for the unexpected."""

from __future__ import annotations

import logging
import re

import pytest

from cogs.errors import OUT_OF_DATE
from tests.discord_world import World, answer

ERROR_ID = re.compile(r"as error ([0-9a-f]{8})\.$")


def logged_once(records: list[logging.LogRecord], error_id: str, kind: type[BaseException]) -> None:
    """Exactly one ERROR record, carrying the id the user was given and the traceback."""
    [record] = records
    assert error_id in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], kind)


# --- prefix commands ----------------------------------------------------------------


async def test_mentioning_the_bot_with_words_is_not_an_error(world: World) -> None:
    before = len(world.channel.history())
    await world.viewer.send(world.channel, f"<@{world.bot.user.id}> hello, who are you?")
    assert len(world.channel.history()) == before + 1  # only the greeting: no answer
    assert world.env.errors == []
    # and nothing at ERROR: the autouse error_logs fixture fails the test otherwise


async def test_a_refused_check_is_answered_in_one_line(world: World) -> None:
    world.bot.owner_id = world.mod.id
    await world.viewer.send(world.channel, f"<@{world.bot.user.id}> sync global")
    assert world.channel.last_message.content == "Only the bot's owner can sync its commands."
    assert [type(e).__name__ for e in world.env.errors] == ["NotOwner"]


async def test_a_check_no_cog_answers_is_answered_by_the_bot_wide_handler(world: World) -> None:
    world.bot.owner_id = world.mod.id
    await world.mod.send_dm(f"<@{world.bot.user.id}> sync")  # sync works only in a server
    assert world.mod.user.dm_channel.last_message.content == "That works only in a server."
    assert [type(e).__name__ for e in world.env.errors] == ["NoPrivateMessage"]


@pytest.mark.logs_errors
async def test_an_unexpected_prefix_failure_gets_an_error_id_logged_once(
    world: World, monkeypatch: pytest.MonkeyPatch, error_logs: list[logging.LogRecord]
) -> None:
    world.bot.owner_id = world.mod.id

    async def broken(*args: object, **kwargs: object) -> list:
        raise RuntimeError("the tree is on fire")

    monkeypatch.setattr(world.bot.tree, "sync", broken)
    await world.mod.send(world.channel, f"<@{world.bot.user.id}> sync")

    reply = world.channel.last_message.content
    assert reply.startswith("Something went wrong with `sync`; the bot's owner can find it in the log as error ")
    match = ERROR_ID.search(reply)
    assert match is not None, reply
    logged_once(error_logs, match.group(1), RuntimeError)
    assert [type(e).__name__ for e in world.env.errors] == ["CommandInvokeError"]


# --- slash commands -----------------------------------------------------------------


@pytest.mark.logs_errors
async def test_an_unexpected_slash_failure_is_answered_privately_with_an_error_id(
    world: World, monkeypatch: pytest.MonkeyPatch, error_logs: list[logging.LogRecord]
) -> None:
    def broken(channel_id: int | None) -> None:
        raise RuntimeError("sessions are unreadable")

    monkeypatch.setattr(world.coordinator, "session_for", broken)
    result = await world.viewer.slash(world.channel, "seance status")

    assert result.ephemeral
    said = answer(result)
    assert said.startswith("Something went wrong with /seance status; the bot's owner can find it in the log")
    match = ERROR_ID.search(said)
    assert match is not None, said
    logged_once(error_logs, match.group(1), RuntimeError)
    assert [type(e).__name__ for e in world.env.errors] == ["CommandInvokeError"]
    assert len(world.channel.history()) == 0  # nothing public


@pytest.mark.logs_errors
async def test_a_failure_after_deferring_is_answered_in_a_private_follow_up(
    world: World, monkeypatch: pytest.MonkeyPatch, error_logs: list[logging.LogRecord]
) -> None:
    await world.start(models="Gemini 3 Flash", turns=1, delay=0)

    async def broken(room_id: int) -> list:
        raise RuntimeError("events are unreadable")

    monkeypatch.setattr(world.bot.store, "events", broken)
    result = await world.mod.slash(world.channel, "seance export", format="txt")
    await world.env.settle()

    assert result.ephemeral
    said = answer(result)  # the follow-up takes the place of the deferred "thinking..." answer
    match = ERROR_ID.search(said)
    assert match is not None and said.startswith("Something went wrong with /seance export"), said
    logged_once(error_logs, match.group(1), RuntimeError)
    assert [type(e).__name__ for e in world.env.errors] == ["CommandInvokeError"]


async def test_a_command_the_bot_does_not_know_says_the_commands_are_out_of_date(world: World) -> None:
    backend = world.env.backend
    internal = ("id", "application_id", "guild_id")
    installed = [{k: v for k, v in c.items() if k not in internal} for c in backend.commands[world.guild.id].values()]
    ghost = {"name": "seance-old", "description": "a command from an older version", "type": 1}
    backend.register_commands(world.guild.id, [*installed, ghost])

    result = await world.viewer.slash(world.channel, "seance-old")

    assert result.ephemeral and answer(result) == OUT_OF_DATE
    assert [type(e).__name__ for e in world.env.errors] == ["CommandNotFound"]
