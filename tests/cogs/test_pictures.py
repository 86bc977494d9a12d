"""People's pictures: from ``/seance say picture:`` and the open floor to the vision models only,
stored with the room (restart, export), and every refusal or failed download told."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
import discord
import pytest

from bot.attachments import PICTURE_MAX_BYTES
from tests.discord_world import World, answer, by_persona
from tests.fakes import FakeLLMServer
from tests.fakes.images import tiny_png

PNG = tiny_png((10, 200, 30))
DATA_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def requests_of(fake_llm: FakeLLMServer, model_id: str) -> list[dict[str, Any]]:
    return [r.body for r in fake_llm.chat_requests if r.body["model"] == model_id]


def image_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"] if p["type"] == "image_url"]


GEMINI, R1 = "google/gemini-3-flash-preview", "deepseek/deepseek-r1"


async def running(world: World, **options: Any) -> None:
    """AI-1 (Gemini 3 Flash, sees pictures) and AI-2 (DeepSeek R1, text only), after AI-1's first turn."""
    await world.start(turns=20, delay=60, **options)


async def test_a_moderators_picture_reaches_the_vision_model_and_not_the_text_only_one(
    world: World, fake_llm: FakeLLMServer
) -> None:
    await running(world)
    result = await world.mod.slash(world.channel, "seance say", text="What is this?", picture=("cat.png", PNG))
    assert answer(result) == "Said."

    said = world.channel.history()[-1]
    assert (said.author.name, said.content) == ("Morgan", "What is this?")
    assert [a.filename for a in said.attachments] == ["picture.png"]  # posted with the words, under the moderator's name
    await world.env.advance_time(60)  # AI-2 (DeepSeek R1)
    await world.env.advance_time(60)  # AI-1 (Gemini 3 Flash)

    (blind,) = requests_of(fake_llm, R1)
    assert not image_parts(blind) and "data:image" not in json.dumps(blind)
    assert "[person: Morgan]: What is this?\\n(Morgan attached a picture)" in json.dumps(blind)
    seeing = requests_of(fake_llm, GEMINI)[-1]
    assert image_parts(seeing) == [{"type": "image_url", "image_url": {"url": DATA_URL}}]


async def test_a_picture_alone_is_said_and_a_room_without_vision_says_so(world: World, fake_llm) -> None:
    await world.start(models="DeepSeek R1", turns=20, delay=60)
    result = await world.mod.slash(world.channel, "seance say", picture=("cat.png", PNG))
    assert answer(result) == "Said. None of the AIs here can see pictures: they read only that you attached one."
    assert world.channel.history()[-1].content == "" and world.channel.history()[-1].attachments
    await world.env.advance_time(60)
    assert "(Morgan attached a picture)" in json.dumps(fake_llm.chat_requests[-1].body)


async def test_say_needs_words_or_a_picture(world: World) -> None:
    await running(world)
    assert answer(await world.mod.slash(world.channel, "seance say")) == "Say something, attach a picture, or both."


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("huge.png", PNG + b"\0" * PICTURE_MAX_BYTES, "`huge.png` is 3.75 MB, over the 3.75 MB I can take; send a smaller one."),
        ("anim.gif", b"GIF89a" + b"\0" * 64, "`anim.gif` is a GIF, which not every model can read; send it as PNG or JPEG or WebP."),
        ("notes.txt", b"just words", "`notes.txt` is not a picture; the AIs can look at PNG or JPEG or WebP pictures."),
        ("fake.png", b"<svg></svg>", "`fake.png` is not a PNG or JPEG or WebP picture, which is what the AIs can look at."),
    ],
)
async def test_a_refused_picture_loses_none_of_the_words(
    world: World, fake_llm, name: str, data: bytes, reason: str
) -> None:
    await running(world)
    result = await world.mod.slash(world.channel, "seance say", text="Here you go", picture=(name, data))
    assert answer(result) == f"Said, without the picture: {reason}"
    said = world.channel.history()[-1]
    assert said.content == "Here you go" and not said.attachments
    await world.env.advance_time(60)
    assert "Here you go" in json.dumps(fake_llm.chat_requests[-1].body)
    assert "attached a picture" not in json.dumps(fake_llm.chat_requests[-1].body)


async def test_a_refused_picture_alone_says_nothing(world: World) -> None:
    await running(world)
    before = len(world.channel.history())
    result = await world.mod.slash(world.channel, "seance say", picture=("anim.gif", b"GIF89a" + b"\0" * 64))
    assert answer(result).startswith("Nothing was said: `anim.gif` is a GIF")
    assert len(world.channel.history()) == before


async def _gone(url: str) -> bytes:
    raise discord.NotFound(_Response(404), {"message": "Not Found", "code": 0})


async def _broken(url: str) -> bytes:
    raise discord.HTTPException(_Response(503), {"message": "Service Unavailable", "code": 0})


async def _timed_out(url: str) -> bytes:
    raise aiohttp.ServerTimeoutError("Timeout on reading data from socket")


async def _dropped(url: str) -> bytes:
    raise aiohttp.ServerDisconnectedError()


class _Response:
    def __init__(self, status: int):
        self.status, self.reason, self.headers = status, "Error", {}


@pytest.mark.parametrize(
    ("cdn", "reason"),
    [
        (_gone, "Discord no longer has `cat.png` (it was deleted, or its link expired); attach it again."),
        (_broken, "Discord's file server could not give me `cat.png` (it answered 503); try again in a moment."),
        (_timed_out, "Downloading `cat.png` from Discord took longer than 2 seconds; try again in a moment."),
        (_dropped, "The connection to Discord's file server broke while downloading `cat.png`; try again in a moment."),
    ],
    ids=["404", "503", "timeout", "dropped"],
)
async def test_a_failed_download_is_told_and_the_words_still_go(
    world: World, fake_llm, monkeypatch: pytest.MonkeyPatch, cdn, reason: str
) -> None:
    await running(world)
    monkeypatch.setattr(world.bot.http, "get_from_cdn", cdn)
    result = await world.mod.slash(world.channel, "seance say", text="Look", picture=("cat.png", PNG))
    assert answer(result) == f"Said, without the picture: {reason}"
    assert world.channel.history()[-1].content == "Look"


# --- the open floor ---------------------------------------------------------------------


async def test_an_open_floor_picture_reaches_the_vision_model_survives_a_restart_and_is_exported(
    world: World, fake_llm: FakeLLMServer
) -> None:
    await running(world, open_floor=True)
    await world.viewer.send(world.channel, "my drawing", attachments=[("drawing.png", PNG)])
    await world.env.advance_time(60)  # AI-2 (text only)
    assert "[person: Vera]: my drawing\\n(Vera attached a picture)" in json.dumps(requests_of(fake_llm, R1)[-1])
    assert not image_parts(requests_of(fake_llm, R1)[-1])

    await world.restart()
    await world.env.advance_time(60)  # AI-1, after the restart: the picture came back from disk
    assert image_parts(requests_of(fake_llm, GEMINI)[-1]) == [{"type": "image_url", "image_url": {"url": DATA_URL}}]
    assert sum(1 for m in world.channel.history() if m.attachments) == 1  # Vera's own message; nothing re-posted

    page = await export_file(world, "html")
    assert base64.b64encode(PNG).decode() in page and "my drawing" in page
    lines = [json.loads(line) for line in (await export_file(world, "jsonl")).splitlines()]
    (said,) = [line for line in lines if line["kind"] == "said"]
    assert said["name"] == "Vera" and said["echo"] is False and said["picture"]["bytes"] == len(PNG)


async def export_file(world: World, fmt: str) -> str:
    result = await world.mod.slash(world.channel, "seance export", format=fmt)
    assert result.response is not None
    (attachment,) = result.response.attachments
    return world.env.backend.cdn.get(attachment.url).decode()


async def test_an_open_floor_picture_alone_is_heard(world: World, fake_llm) -> None:
    await running(world, open_floor=True)
    await world.viewer.send(world.channel, "", attachments=[("drawing.png", PNG)])
    await world.env.advance_time(60)
    assert "[person: Vera]: (Vera attached a picture)" in json.dumps(requests_of(fake_llm, R1)[-1])


async def test_an_open_floor_picture_refused_is_told_to_its_author_and_the_words_go(world: World, fake_llm) -> None:
    await running(world, open_floor=True)
    gif = b"GIF89a" + b"\0" * 64
    await world.viewer.send(world.channel, "a moving one", attachments=[("anim.gif", gif), ("b.png", PNG)])
    reply = world.channel.history()[-1]
    assert reply.author.bot and reply.reference is not None
    assert reply.content == (
        "-# 🖼️ `anim.gif` is a GIF, which not every model can read; send it as PNG or JPEG or WebP."
        " Only the first picture of a message reaches the AIs. Your words reached the AIs."
    )
    await world.env.advance_time(60)
    body = json.dumps(requests_of(fake_llm, R1)[-1])
    assert "[person: Vera]: a moving one" in body and "attached a picture" not in body


async def test_a_blocked_members_picture_is_not_downloaded(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    await running(world, open_floor=True)
    await world.mod.slash(world.channel, "seance block", member=world.viewer)
    fetched: list[str] = []

    async def watched(url: str) -> bytes:
        fetched.append(url)
        return PNG

    monkeypatch.setattr(world.bot.http, "get_from_cdn", watched)
    await world.viewer.send(world.channel, "let me in", attachments=[("d.png", PNG)])
    assert fetched == [] and world.session().room.humans == []
    assert by_persona(world.channel)  # the room goes on
