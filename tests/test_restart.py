"""A console room in a real process, killed with SIGKILL mid-room and resumed: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bot.engine import Reply as ReplyEvent
from bot.storage import Store
from tests.fakes import FakeLLMServer, Reply

ROOT = Path(__file__).resolve().parents[1]


def start_console(argv: list[str], server: FakeLLMServer, tmp_path: Path, name: str) -> tuple[subprocess.Popen, Path]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "OPENROUTER_API_KEY": "sk-or-test",
        "OPENROUTER_BASE_URL": server.base_url,
        "IMAGE_PROVIDER": "offline",
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
