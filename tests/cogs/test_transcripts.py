"""``/seance export``: the channel's room as a file, in each format, for moderators."""

from __future__ import annotations

import json
import sys

import pytest

from tests.discord_world import World, answer
from tests.fakes import Reply

FILES = {
    "txt": "The lamp flickers.",
    "md": "### AI-1 (Gemini 3 Flash)",
    "html": "<!doctype html>",
    "jsonl": '"kind": "reply"',
}


async def transcript(world: World, **options: str) -> tuple[str, str, str]:
    """(what the moderator was told, the file's name, its text)."""
    result = await world.mod.slash(world.channel, "seance export", **options)
    message = result.response  # the deferred answer, filled in by the first follow-up
    assert message is not None and message.ephemeral
    [attachment] = message.attachments
    data = world.env.backend.cdn.get(attachment.url)
    return message.content, attachment.filename, data.decode()


@pytest.mark.parametrize("fmt", list(FILES))
async def test_each_format_attaches_the_transcript(world: World, fake_llm, fmt: str) -> None:
    fake_llm.script(Reply.text("The lamp flickers."), Reply.text('!image "a lamp"'))
    await world.start(turns=2, delay=0)  # ended: the latest stored room of the channel is exported

    told, name, text = await transcript(world, format=fmt)

    [record] = await world.bot.store.rooms()
    assert told == f"The transcript of room {record.id}." and name == f"seance-room-{record.id}.{fmt}"
    assert FILES[fmt] in text and "The lamp flickers." in text
    assert "⏹️ The room has ended: reached the limit of 2 turns" in text
    hook, token = await world.bot.store.webhook(world.channel.id)
    assert token not in text


async def test_html_is_the_default_and_a_running_room_exports_what_it_has_said(world: World, fake_llm) -> None:
    fake_llm.script(Reply.text("Only this, so far."))
    await world.start(turns=10, delay=60)

    _, name, text = await transcript(world)

    assert name.endswith(".html") and "Only this, so far." in text


async def test_md_leaves_pictures_out_on_discord(world: World, fake_llm) -> None:
    fake_llm.script(Reply.text('!image "a lighthouse"'))
    await world.start(models="Gemini 3 Flash", turns=1, delay=0)

    _, _, text = await transcript(world, format="md")

    assert '*[AI-1 (Gemini 3 Flash)]: !image "a lighthouse"*' in text and "![" not in text


async def test_export_refuses_where_there_is_no_room(world: World) -> None:
    other = world.guild.create_text_channel("elsewhere")
    await world.start(other, turns=1, delay=0)

    result = await world.mod.slash(world.channel, "seance export")

    assert result.ephemeral and answer(result) == "There is no room to export in this channel."


async def test_a_transcript_too_big_for_discord_suggests_a_smaller_format(world: World, monkeypatch) -> None:
    module = sys.modules[type(world.bot.get_cog("Moderation")).__module__]  # the bot loads its own copy
    monkeypatch.setattr(module, "UPLOAD_LIMIT", 100)
    await world.start(turns=1, delay=0)

    result = await world.mod.slash(world.channel, "seance export", format="html")

    assert answer(result).startswith("The html transcript is 0.0 MiB, over Discord's 10 MiB upload limit.")
    assert "`format: jsonl`" in answer(result) and not result.response.attachments


async def test_jsonl_holds_every_event_with_its_message_ids(world: World) -> None:
    await world.start(models="Gemini 3 Flash", turns=1, delay=0)
    _, _, text = await transcript(world, format="jsonl")
    lines = [json.loads(line) for line in text.splitlines()]
    reply = next(line for line in lines if line["kind"] == "reply")
    post = next(m for m in world.channel.history() if m.webhook_id is not None)
    assert reply["message_ids"] == [str(post.id)]
