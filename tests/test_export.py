"""Transcripts: each format from a stored room, and the HTML page rendered in headless Chromium."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot import data
from bot.engine import Picture, Reply, Room, RoomSettings
from bot.export import export, list_rooms
from bot.providers.images import draw
from bot.storage import Store
from tests.cli import run_commands

WEBHOOK_TOKEN = "webhook-token-that-must-never-leak"
ART = "    /\\\n   /  \\\n  /____\\"


@pytest.fixture
async def stored(tmp_path):
    """A small stored room with every kind of event, and its record and events."""
    store = await Store.open(os.environ["DATABASE_PATH"])  # where the command line looks too
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


def _cli(*argv: str, cwd) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-m", "bot", *argv], env=env, cwd=cwd, capture_output=True, timeout=60)


def test_cli_rooms_export_and_delete(stored, tmp_path):
    """The fixture's room lives in the test's DATABASE_PATH, which the commands read too (all in one child)."""
    out = tmp_path / "room.md"
    listing, written, txt, refused, missing = run_commands(
        [
            (["rooms"], {}),
            (["export", "1", "--format", "md", "--out", str(out)], {}),
            (["export", "1"], {}),
            (["delete", "1"], {}),
            (["export", "9"], {}),
        ],
        env=dict(os.environ), cwd=tmp_path,
    )
    assert listing.code == 0 and "discord #5" in listing.stdout and "running" in listing.stdout
    assert written.code == 0, written.stderr
    assert out.read_text("utf-8").startswith("# Séance room 1") and (tmp_path / "room-pictures").is_dir()
    assert txt.code == 0 and txt.stdout == export(*stored, "txt").decode("utf-8")
    assert refused.code == 2 and "end it first" in refused.stderr
    assert missing.code == 2 and "There is no room 9" in missing.stderr and "Traceback" not in missing.stderr


async def test_deleting_an_ended_room_deletes_its_pictures(stored, tmp_path):
    store = await Store.open(os.environ["DATABASE_PATH"])
    room = await store.load_room(1, data.catalog(), data.scenarios())
    room.stop("done")
    await store.save(1, room, room.take_events())
    assert list(store.pictures.rglob("*.png"))
    await store.close()
    deleted = await asyncio.to_thread(_cli, "delete", "1", cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    store = await Store.open(os.environ["DATABASE_PATH"])
    assert await store.rooms() == [] and not list(store.pictures.rglob("*.png"))
    await store.close()


async def test_whispers_are_stored_and_exported_for_moderators(tmp_path):
    """The channel showed only that a whisper happened; the export (moderators only) has its words."""
    store = await Store.open(str(tmp_path / "whispers.sqlite3"))
    try:
        room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(), topic="tides")
        room.add("Gemini 3 Flash")
        room.add("DeepSeek R1")
        room_id = await store.create_room(room, "console")
        turn = room.next_turn()
        room.complete_turn(turn, 'Hello.\n!whisper "AI-2" "meet me at the lighthouse"')
        await store.save(room_id, room, room.take_events())
        record, events = await store.room(room_id), await store.events(room_id)
    finally:
        await store.close()
    whole = '🤫 AI-1 whispered to AI-2 (AI-1 (Gemini 3 Flash) to AI-2 (DeepSeek R1): "meet me at the lighthouse")'
    assert whole in export(record, events, "txt").decode()
    assert "meet me at the lighthouse" in export(record, events, "md", tmp_path / "pics").decode()
    assert "meet me at the lighthouse" in export(record, events, "html").decode()
    lines = [json.loads(line) for line in export(record, events, "jsonl").decode().splitlines()]
    assert any(line.get("private", "").endswith('"meet me at the lighthouse"') for line in lines)


async def test_search_results_addresses_are_in_the_export_not_their_extracts(tmp_path):
    """The channel showed how many results a search found; the export also lists them."""
    from bot.engine import SearchHit, SearchJob

    store = await Store.open(str(tmp_path / "search.sqlite3"))
    try:
        room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(), topic="tides")
        room.search_available = True
        room.add("Gemini 3 Flash")
        room_id = await store.create_room(room, "console")
        room.complete_turn(room.next_turn(), '!search "tallest lighthouse"')
        (job,) = [e for e in room.take_events() if isinstance(e, SearchJob)]
        room.search_done(job.job_id, [SearchHit("Tall lights", "https://harbour.example.net/t", "106 m")])
        await store.save(room_id, room, room.take_events())
        record, events = await store.room(room_id), await store.events(room_id)
    finally:
        await store.close()
    text = export(record, events, "txt").decode()
    assert '🔍 [AI-1]: !search "tallest lighthouse" (1 result) (Tall lights <https://harbour.example.net/t>)' in text
    assert "106 m" not in text


async def test_a_forks_transcript_names_its_parent_and_numbers_show_where_to_fork(stored, tmp_path):
    record, events = stored
    reply = next(e for e in events if isinstance(e.event, Reply))
    numbered = export(record, events, "txt", numbered=True).decode()
    assert f"#{reply.id} AI-1 (Gemini 3 Flash)\nthe lamp turns" in numbered
    assert f"### #{reply.id} AI-1 (Gemini 3 Flash)" in export(record, events, "md", tmp_path / "p", numbered=True).decode()
    assert f'id="event-{reply.id}"' in export(record, events, "html").decode()  # the page shows AI messages' numbers

    store = await Store.open(os.environ["DATABASE_PATH"])
    fork_id = await store.create_fork(await store.fork_source(record.id, reply.id), "console")
    fork = await store.room(fork_id)
    origin = f"A fork of room {record.id} from event {reply.id}"
    assert export(fork, [], "txt").decode().startswith(origin)
    assert origin in export(fork, [], "md", tmp_path / "p").decode()
    assert origin in export(fork, [], "html").decode()
    (line,) = [json.loads(line) for line in export(fork, [], "jsonl").decode().splitlines()]
    assert line == {"room": fork_id, "kind": "fork", "parent": record.id, "event": reply.id}
    listed = io.StringIO()
    await list_rooms(store, listed)
    assert f"room {record.id} at event {reply.id}" in listed.getvalue().splitlines()[2]
    assert "python -m bot export ROOM --numbered" in listed.getvalue()
    await store.close()
