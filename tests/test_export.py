"""Transcripts: each format from a stored room, and the HTML page rendered in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from PIL import Image

from bot import data
from bot.engine import Picture, Room, RoomSettings
from bot.export import export
from bot.providers.images import draw
from bot.storage import Store

WEBHOOK_TOKEN = "webhook-token-that-must-never-leak"
ART = "    /\\\n   /  \\\n  /____\\"


@pytest.fixture
async def stored(tmp_path):
    """A small stored room with every kind of event, and its record and events."""
    store = await Store.open(tmp_path / "seance.sqlite3")
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(), topic="lighthouses")
    room.add("Gemini 3 Flash")
    room.add("DeepSeek R1")
    room_id = await store.create_room(room, "discord", channel_id=5)
    await store.set_webhook(5, 77, WEBHOOK_TOKEN)
    room.inject("Ada", "Begin with the lamp <b>room</b>.")
    for reply in [
        f'the lamp turns — “slowly”\n{ART}\n!temperature 1.4\n!image "a lighthouse drawn in chalk"',
        "Ünïcödé survives: 灯台 🗼",
    ]:
        turn = room.next_turn()
        room.complete_turn(turn, reply)
        await store.save(room_id, room, room.take_events())
    room.image_done(1, Picture(draw("a lighthouse drawn in chalk"), "image/png"))
    await store.save(room_id, room, room.take_events())
    record = await store.room(room_id)
    events = await store.events(room_id)
    yield record, events
    await store.close()


def test_txt_follows_the_reference_layout(stored):
    text = export(*stored, "txt").decode("utf-8")
    assert text.splitlines()[:4] == ["Ada", "Begin with the lamp <b>room</b>.", "[AI-1 adjusted their temperature]", "🌡️ [AI-1]: !temperature 1.4"]
    assert '🎨 [AI-1 (Gemini 3 Flash)]: !image "a lighthouse drawn in chalk" (generating...)\nAI-1 (Gemini 3 Flash)\nthe lamp turns — “slowly”\n' + ART in text
    assert "AI-2 (DeepSeek R1)\nÜnïcödé survives: 灯台 🗼" in text
    assert text.endswith('🎨 AI-1 (Gemini 3 Flash) created an image\n[AI-1 (Gemini 3 Flash)]: !image "a lighthouse drawn in chalk"\n')


def test_md_links_pictures_and_keeps_art(stored, tmp_path):
    folder = tmp_path / "room-pictures"
    text = export(*stored, "md", pictures_dir=folder).decode("utf-8")
    assert text.startswith("# Séance room 1 (open-room)")
    assert "### AI-1 (Gemini 3 Flash)" in text and "### Ada (human)" in text
    assert ART in text  # indented lines render as code on GitHub
    assert "&lt;b&gt;room&lt;/b&gt;" in text
    (picture,) = folder.iterdir()
    assert f"](room-pictures/{picture.name})" in text and picture.read_bytes().startswith(b"\x89PNG")


def test_jsonl_has_every_field(stored):
    lines = [json.loads(line) for line in export(*stored, "jsonl").decode().splitlines()]
    kinds = [line["kind"] for line in lines]
    assert kinds[:2] == ["said", "notice"] and "reply" in kinds and kinds[-1] == "imagemade"
    reply = next(line for line in lines if line["kind"] == "reply")
    assert reply["label"] == "AI-1 (Gemini 3 Flash)" and reply["number"] == 1 and reply["room"] == 1
    assert set(reply) >= {"id", "created_at", "posted_at", "message_ids", "text", "model", "reasoning", "usage"}
    picture = lines[-1]["picture"]
    assert picture["mime"] == "image/png" and picture["bytes"] > 100 and len(picture["sha256"]) == 64


@pytest.mark.parametrize("fmt", ["txt", "md", "html", "jsonl"])
def test_exports_never_contain_webhook_tokens(stored, fmt, tmp_path):
    assert WEBHOOK_TOKEN.encode() not in export(*stored, fmt, pictures_dir=tmp_path / "p")


def test_html_is_self_contained(stored):
    page = export(*stored, "html").decode("utf-8")
    assert page.startswith("<!doctype html>") and 'name="viewport"' in page
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page and "src=\"/" not in page
    assert "&lt;b&gt;room&lt;/b&gt;" in page and "<b>room</b>" not in page
    assert '<pre class="art">' in page
    hues = {part.split(")")[0] for part in page.split("--hue:")[1:]}
    assert len(hues) >= 3  # Ada and the two AIs are told apart by colour


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_renders_on_a_phone_sized_screen(stored, tmp_path):
    page = tmp_path / "room.html"
    page.write_bytes(export(*stored, "html"))
    shot = tmp_path / "room.png"
    subprocess.run(
        [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--window-size=390,1600", "--hide-scrollbars",
            f"--screenshot={shot}", page.as_uri(),
        ],
        check=True, capture_output=True, timeout=90,
    )
    with Image.open(shot) as image:
        assert image.size == (390, 1600)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 20  # text, persona colours and the picture, not a blank page
    # A phone-width page has no horizontal overflow: the right edge is page background.
