"""A console room in a real process, killed with SIGKILL mid-room and resumed: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot import data
from bot.engine import ImageMade
from bot.engine import Reply as ReplyEvent
from bot.storage import Store
from tests.fakes import FakeLLMServer, Reply
from tests.fakes.images import openrouter_image, tiny_png

# A picture request the fake server answers with headers, then silence: the picture is
# "still being made" for as long as the test wants.
SLOW_PICTURE = Reply(status=200, headers={"Content-Type": "application/json"}, ending="stall", stall_seconds=60)

ROOT = Path(__file__).resolve().parents[1]


def start_console(
    argv: list[str], server: FakeLLMServer, tmp_path: Path, name: str, images: str = "offline"
) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "OPENROUTER_API_KEY": "sk-or-test",
        "OPENROUTER_BASE_URL": server.base_url,
        "IMAGE_PROVIDER": images,  # "openrouter": the fake server's pictures, scripted per test
        "DATABASE_PATH": str(tmp_path / "seance.sqlite3"),
        "PICTURES_DIR": str(tmp_path / "pictures"),
    }
    out = tmp_path / f"{name}.txt"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "console", *argv], env=env, cwd=tmp_path,
        stdout=out.open("wb"), stderr=subprocess.STDOUT,
    )
    return process, out


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sigkill_mid_room_then_resume(fake_llm: FakeLLMServer, tmp_path):
    fake_llm.script(
        Reply.text("first words about salt", chunks=3),
        Reply.text('second words\n!temperature 0.7\n!image "a salt flat at noon, cracked and white"'),
        Reply.text("third words, still salt"),
        Reply.stall("fourth words that never finish", seconds=60),  # killed while this streams
    )
    args = ["--ai", "Gemini 3 Flash", "--ai", "Kimi K2", "--turns", "7", "--delay", "0"]
    process, first_out = start_console(args, fake_llm, tmp_path, "first")
    wait_for(lambda: len(fake_llm.chat_requests) == 4)
    time.sleep(0.3)  # the fourth reply is half-streamed now
    process.send_signal(signal.SIGKILL)
    process.wait(10)

    process, second_out = start_console(["--resume", "1", "--delay", "0"], fake_llm, tmp_path, "second")
    assert process.wait(60) == 0, second_out.read_text()

    shown = first_out.read_text("utf-8") + second_out.read_text("utf-8")
    replies = asyncio.run(_stored_replies(tmp_path / "seance.sqlite3"))
    assert len(replies) == 7  # every turn of the room, the killed one given again
    for reply in replies:
        assert shown.count(f"{reply.label}\n{reply.text}\n") == 1, reply
    assert "fourth words that never finish" not in shown
    assert shown.count("🌡️ [AI-2]: !temperature 0.7") == 1
    assert shown.count("created an image") == 1
    # The AI whose turn was cut off speaks first after the restart.
    assert fake_llm.chat_requests[4].body["model"] == fake_llm.chat_requests[3].body["model"]
    assert second_out.read_text("utf-8").startswith("Séance room 1:")


async def _stored_replies(path: Path) -> list[ReplyEvent]:
    store = await Store.open(path)
    try:
        events = await store.events(1)
        assert await store.unposted(1) == []
        return [e.event for e in events if isinstance(e.event, ReplyEvent)]
    finally:
        await store.close()


def printed_pictures(text: str) -> list[Path]:
    return [Path(p) for p in re.findall(r"\(picture saved to (.+)\)", text)]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["killed", "ctrl-c"])
def test_a_picture_still_being_made_when_an_ended_room_is_stopped_is_made_on_resume(fake_llm, tmp_path, how):
    fake_llm.script(Reply.text("first words"), Reply.text('last words\n!image "a lighthouse in the fog"'))
    fake_llm.script_images(SLOW_PICTURE, openrouter_image(tiny_png((10, 20, 30))))
    args = ["--turns", "2", "--delay", "0", "--pictures", str(tmp_path / "mine")]
    process, first_out = start_console(args, fake_llm, tmp_path, "first", images="openrouter")
    wait_for(lambda: "still being made" in first_out.read_text("utf-8"))
    process.send_signal(how)
    process.wait(10)
    first = first_out.read_text("utf-8")
    assert "⏹️ The room has ended: reached the limit of 2 turns\n🎨 Waiting for 1 picture still being made..." in first
    assert "(Ctrl+C leaves it for --resume 1)" in first and "created an image" not in first

    process, second_out = start_console(["--resume", "1"], fake_llm, tmp_path, "second", images="openrouter")
    assert process.wait(60) == 0, second_out.read_text("utf-8")
    second = second_out.read_text("utf-8")
    assert second.startswith("Séance room 1 has ended; finishing 1 picture still being made")
    assert second.count("🎨 AI-2 (DeepSeek R1) created an image") == 1
    (path,) = printed_pictures(second)
    assert path.parent == tmp_path / "mine"  # --pictures was remembered
    assert path.read_bytes() == tiny_png((10, 20, 30))
    assert len(fake_llm.chat_requests) == 2  # an ended room takes no turn

    made, pending = asyncio.run(_pictures_and_jobs(tmp_path / "seance.sqlite3"))
    assert [m.picture.data for m in made] == [tiny_png((10, 20, 30))] and pending == 0


def test_a_printed_picture_path_keeps_its_picture_after_a_resume(fake_llm, tmp_path):
    """The same AI draws the same prompt before and after a kill: two files, each its own picture."""
    same = '!image "the lighthouse again, from the sea"'
    fake_llm.script(
        Reply.text(f"one\n{same}"),
        Reply.text("two"),
        Reply.stall("three, cut off", seconds=60),  # killed while this streams
        Reply.text("three, again"),  # AI-1's turn, given again after the restart
        Reply.text("four"),
        Reply.text(f"five\n{same}"),
    )
    fake_llm.script_images(openrouter_image(tiny_png((1, 1, 1))), openrouter_image(tiny_png((2, 2, 2))))
    args = ["--turns", "5", "--delay", "0", "--pictures", str(tmp_path / "mine")]
    process, first_out = start_console(args, fake_llm, tmp_path, "first", images="openrouter")
    wait_for(lambda: len(fake_llm.chat_requests) == 3 and printed_pictures(first_out.read_text("utf-8")))
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    (before,) = printed_pictures(first_out.read_text("utf-8"))

    process, second_out = start_console(["--resume", "1", "--delay", "0"], fake_llm, tmp_path, "second", images="openrouter")
    assert process.wait(60) == 0, second_out.read_text("utf-8")
    (after,) = printed_pictures(second_out.read_text("utf-8"))
    assert before != after and after.parent == tmp_path / "mine"
    assert before.read_bytes() == tiny_png((1, 1, 1)) and after.read_bytes() == tiny_png((2, 2, 2))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == sorted([before.name, after.name])
    assert not (tmp_path / "seance-pictures").exists()  # each picture stored once, in the room's folder


async def _pictures_and_jobs(path: Path) -> tuple[list[ImageMade], int]:
    store = await Store.open(path)
    try:
        events = [e.event for e in await store.events(1) if isinstance(e.event, ImageMade)]
        assert await store.unposted(1) == []
        room = await store.load_room(1, data.catalog(), data.scenarios())
        return events, room.pending_images
    finally:
        await store.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_the_console_as_ctrl_c_does(fake_llm: FakeLLMServer, tmp_path, stop: signal.Signals):
    """Hosts and closed terminals stop a process with these: the room is stored, the database closed, nothing lost."""
    fake_llm.script(
        Reply.text("first words about tides", chunks=2),
        Reply.stall("second words that never finish", seconds=60),  # stopped while this streams
        Reply.text("second words, asked again"),
    )
    process, first_out = start_console(["--ai", "Gemini 3 Flash", "--turns", "2", "--delay", "0"], fake_llm, tmp_path, "first")
    wait_for(lambda: len(fake_llm.chat_requests) == 2)
    time.sleep(0.3)
    process.send_signal(stop)

    assert process.wait(15) == 128 + stop, first_out.read_text()
    said = first_out.read_text("utf-8")
    assert said.rstrip().endswith("Stopped.") and "Traceback" not in said
    assert not (tmp_path / "seance.sqlite3-wal").exists()  # closed cleanly: SQLite folds its log in on close

    process, second_out = start_console(["--resume", "1", "--delay", "0"], fake_llm, tmp_path, "second")
    assert process.wait(60) == 0, second_out.read_text()
    shown = said + second_out.read_text("utf-8")
    assert shown.count("first words about tides") == 1
    assert shown.count("second words, asked again") == 1 and "never finish" not in shown
