"""The console end to end, against the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.console import add_arguments, run_console
from bot.settings import Settings
from tests.cli import Outcome, run_commands
from tests.fakes import FakeLLMServer, Reply

ROOT = Path(__file__).resolve().parents[1]


def console_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def settings_for(server: FakeLLMServer) -> Settings:
    return Settings(
        _env_file=None,
        openrouter_api_key="sk-or-test",
        openrouter_base_url=server.base_url,
        read_timeout=5,
        total_timeout=10,
        turn_delay=0,
        image_provider="offline",  # these tests check the offline notice; tests/providers/test_images.py the image APIs
    )


FIRST = (
    "the tide comes in as noise\n"
    "!temperature 1.5\n"
    '!add_ai "DeepSeek R1" "tell us what the tide remembers"\n'
    '!image "a tide of broken glass under a violet moon, seen from far above"'
)


async def test_console_room_end_to_end(fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.script(
        Reply.text(FIRST, chunks=5),
        Reply.text('!prompt "You love the sea."\nsalt and static, static and salt', chunks=4),
        Reply.text("I remember the shape of the shore.", reasoning="the user wants memory...", style="openrouter"),
        Reply.text("the moon pulls harder now"),
    )
    out = io.StringIO()
    args = console_args(
        "--ai", "Gemini 3 Flash", "--ai", "claude haiku 4.5", "--turns", "4", "--topic", "tides", "--pictures", str(tmp_path / "pics")
    )
    assert await run_console(args, settings_for(fake_llm), out) == 0
    printed = out.getvalue()

    expected_in_order = [
        "AI-1 (Gemini 3 Flash), AI-2 (Claude Haiku 4.5)",
        "[AI-1 adjusted their temperature]",
        "🌡️ [AI-1]: !temperature 1.5",
        '✨ [AI-1]: !add_ai "DeepSeek R1" "tell us what the tide remembers"',
        '🎨 [AI-1 (Gemini 3 Flash)]: !image "a tide of broken glass under a violet moon, seen f..." (generating...)',
        "AI-1 (Gemini 3 Flash)\nthe tide comes in as noise\n",
        "[AI-2 modified their system prompt]",
        '💭 [AI-2]: !prompt "You love the sea."',
        "AI-2 (Claude Haiku 4.5)\nsalt and static, static and salt\n",
        "AI-3 (DeepSeek R1)\nI remember the shape of the shore.\n",
        "AI-1 (Gemini 3 Flash)\nthe moon pulls harder now\n",
        "⏹️ The room has ended: reached the limit of 4 turns",
    ]
    positions = [printed.find(part) for part in expected_in_order]
    assert -1 not in positions, [p for p, at in zip(expected_in_order, positions) if at == -1]
    assert positions == sorted(positions)
    assert "!temperature" not in printed.split("AI-1 (Gemini 3 Flash)\n", 1)[1].split("\n\n")[0]
    assert "the user wants memory" not in printed  # reasoning never shown as text

    # The picture: notice, caption, and the file on disk.
    assert "🎨 AI-1 (Gemini 3 Flash) created an image (offline placeholder" in printed
    caption = '[AI-1 (Gemini 3 Flash)]: !image "a tide of broken glass under a violet moon, seen from far above"'
    assert caption in printed
    (picture,) = (tmp_path / "pics").iterdir()
    assert picture.read_bytes().startswith(b"\x89PNG") and str(picture) in printed

    # What each AI was sent.
    bodies = [r.body for r in fake_llm.chat_requests]
    assert [b["model"] for b in bodies] == [
        "google/gemini-3-flash-preview",
        "anthropic/claude-haiku-4.5",
        "deepseek/deepseek-r1",
        "google/gemini-3-flash-preview",
    ]
    assert bodies[0]["temperature"] == 1.0
    assert bodies[3]["temperature"] == 1.5  # from AI-1's next turn
    assert "temperature" not in bodies[2]  # DeepSeek R1 ignores it
    assert all(b["stream"] is True for b in bodies)

    haiku = bodies[1]["messages"]
    assert haiku[0]["role"] == "system" and "You are AI-2 (Claude Haiku 4.5)" in haiku[0]["content"]
    seen = _text(haiku[-1])
    assert "[AI-1 (Gemini 3 Flash)]: the tide comes in as noise" in seen
    assert "[AI-1 adjusted their temperature]" in seen
    assert "!temperature" not in seen and '!add_ai "DeepSeek R1"' in seen

    newcomer = "\n".join(_text(m) for m in bodies[2]["messages"])
    assert "invited you into this conversation. Their invitation, in their own words: \"tell us what the tide remembers\"" in newcomer

    again = bodies[3]["messages"]
    assert again[1]["role"] == "user" and _text(again[1]).startswith("The room is open.")  # the opening first
    assert any(m["role"] == "assistant" and "!temperature 1.5" in _text(m) for m in again)
    assert "How your commands went" in "\n".join(_text(m) for m in again)


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part.get("text", "") for part in content)


async def test_console_unknown_model_says_closest(fake_llm, capsys):
    code = await run_console(console_args("--ai", "Claude Sonet"), settings_for(fake_llm), io.StringIO())
    assert code == 2
    assert "Claude Sonnet 4.5" in capsys.readouterr().err
    assert fake_llm.requests == []


async def test_console_failed_turn_is_a_notice_and_room_goes_on(fake_llm, tmp_path):
    fake_llm.script(Reply.error(400, {"error": {"message": "bogus/model is not a valid model ID", "code": 400}}))
    out = io.StringIO()
    args = console_args("--turns", "2", "--pictures", str(tmp_path))
    assert await run_console(args, settings_for(fake_llm), out) == 0
    printed = out.getvalue()
    assert "⚠️ AI-1 (Gemini 3 Flash) could not reply: the provider refused the request\n" in printed
    # In a terminal the reader is the host: the provider's own words follow, on a line of their own.
    assert "   (AI-1 (Gemini 3 Flash) could not reply: the provider refused the request: bogus/model is not a valid model ID" in printed
    assert "AI-2 (DeepSeek R1)\nI am deepseek/deepseek-r1, turn 1." in printed


async def test_console_bad_key_pauses_the_room(fake_llm, tmp_path):
    fake_llm.require_key = "the-right-key"
    out = io.StringIO()
    assert await run_console(console_args("--turns", "3"), settings_for(fake_llm), out) == 0
    printed = out.getvalue()
    assert "⏸️ The room is paused" in printed
    assert len(fake_llm.chat_requests) == 1  # no retrying a rejected key


def run_cli(*argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL")}
    clean.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "bot", *argv], env=clean, cwd=cwd, capture_output=True, text=True, timeout=60
    )


# Commands that need no model server, run in one child (tests/cli.py).
NO_SERVER = {
    "without a key": ["console", "--ai", "Gemini 3 Flash"],
    "--list-models": ["console", "--list-models"],
    "--list-scenarios": ["console", "--list-scenarios"],
}


@pytest.fixture(scope="module")
def no_server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    folder = tmp_path_factory.mktemp("console-cli")
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"DATABASE_PATH": str(folder / "seance.sqlite3"), "PICTURES_DIR": str(folder / "pictures")}
    outcomes = run_commands([(argv, {}) for argv in NO_SERVER.values()], env=env, cwd=folder)
    return dict(zip(NO_SERVER, outcomes))


def test_cli_without_key_says_what_to_set(no_server):
    # With no --ai the keyless console runs the embedded model (tests/providers/test_local.py).
    result = no_server["without a key"]
    assert result.code == 2
    assert "OPENROUTER_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_console_runs_a_room(fake_llm, tmp_path):
    result = run_cli(
        "console", "--turns", "2", "--delay", "0",
        env={"OPENROUTER_API_KEY": "sk-or-test", "OPENROUTER_BASE_URL": fake_llm.base_url},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "AI-1 (Gemini 3 Flash)\nI am google/gemini-3-flash-preview, turn 1." in result.stdout
    assert "AI-2 (DeepSeek R1)\nI am deepseek/deepseek-r1, turn 1." in result.stdout
    assert len(fake_llm.chat_requests) == 2


@pytest.mark.parametrize("flag, expected", [("--list-models", "Claude Haiku 4.5"), ("--list-scenarios", "salon")])
def test_cli_lists(no_server, flag, expected):
    result = no_server[flag]
    assert result.code == 0 and expected in result.stdout


# --- pictures, ended rooms and delete -------------------------------------------------


async def test_a_console_room_stores_each_picture_once_and_delete_removes_all_of_it(fake_llm, tmp_path):
    fake_llm.script(Reply.text('a shore\n!image "a shore at dawn, seen from a cliff"'), Reply.text("the end"))
    settings = settings_for(fake_llm)
    out = io.StringIO()
    assert await run_console(console_args("--turns", "2"), settings, out) == 0
    (printed,) = [line.split("saved to ", 1)[1].rstrip(")") for line in out.getvalue().splitlines() if "saved to" in line]
    everything = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".png"]
    assert everything == [Path(printed)]  # one file: the one printed, which the store reads too
    assert Path(printed).parent == (settings.pictures_dir / "console-room-1").absolute()

    deleted = run_cli("delete", "1", env={}, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".png", ".part")]
    assert not Path(printed).parent.exists()

    fake_llm.script(Reply.text("again"))
    out = io.StringIO()
    assert await run_console(console_args("--turns", "1"), settings, out) == 0
    assert out.getvalue().startswith("Séance room 2:")  # never number 1 again


async def test_resuming_an_ended_room_with_nothing_left_is_refused(fake_llm, capsys):
    assert await run_console(console_args("--turns", "1"), settings_for(fake_llm), io.StringIO()) == 0
    out = io.StringIO()
    assert await run_console(console_args("--resume", "1"), settings_for(fake_llm), out) == 2
    assert "Room 1 has ended; start a new one" in capsys.readouterr().err
    assert out.getvalue() == "" and len(fake_llm.chat_requests) == 1


async def test_resuming_an_ended_room_prints_what_it_had_not_shown(fake_llm):
    """Killed between storing its end and printing it: the end is printed once, on resume."""
    from bot.storage import Store

    settings = settings_for(fake_llm)
    store = await Store.open(settings.database_path)
    room = build_test_room()
    room_id = await store.create_room(room, "console")
    room.stop("reached the limit of 1 turn")
    await store.save(room_id, room, room.take_events())  # stored, never printed
    await store.close()

    out = io.StringIO()
    assert await run_console(console_args("--resume", str(room_id)), settings, out) == 0
    printed = out.getvalue()
    assert printed.startswith(f"Séance room {room_id} has ended; printing what it had not shown")
    assert printed.count("⏹️ The room has ended: reached the limit of 1 turn") == 1
    assert fake_llm.chat_requests == []
    assert await run_console(console_args("--resume", str(room_id)), settings, io.StringIO()) == 2  # now nothing is left


def build_test_room():
    from bot.console import build_room

    return build_room(console_args("--turns", "1"), Settings(_env_file=None))


async def test_a_whisper_prints_only_that_it_happened():
    """The terminal is the console's channel: a whisper's words are for the export only."""
    from bot.console import ConsoleStage
    from bot.engine import Notice

    out = io.StringIO()
    await ConsoleStage(out, Path("unused")).show([Notice("🤫 AI-1 whispered to AI-2", private='"psst"')])
    assert out.getvalue() == "🤫 AI-1 whispered to AI-2\n"


async def test_console_room_pauses_at_its_spending_limit_and_resumes_under_a_raised_one(fake_llm, tmp_path, capsys):
    fake_llm.script(*[Reply.text(f"Turn {n}.", cost=0.02) for n in range(5)])
    settings = settings_for(fake_llm).model_copy(update={"room_budget_usd": 0.03, "database_path": tmp_path / "db.sqlite3"})
    out = io.StringIO()
    assert await run_console(console_args("--turns", "5"), settings, out) == 0
    assert "⏸️ The room is paused: this room has reached its spending limit of $0.03 ($0.0400 spent)" in out.getvalue()
    assert len(fake_llm.chat_requests) == 2

    assert await run_console(console_args("--resume", "1"), settings, io.StringIO()) == 2
    assert "This room has reached its spending limit of $0.03; raise the limit to resume it." in capsys.readouterr().err
    raised = settings.model_copy(update={"room_budget_usd": 0.05})
    assert await run_console(console_args("--resume", "1"), raised, io.StringIO()) == 0
    assert len(fake_llm.chat_requests) == 3  # $0.06: paused again


async def test_a_long_console_room_is_summarised_by_the_summary_model(fake_llm, tmp_path):
    replies = iter(range(1000))

    def answer(body):
        if body["messages"][0]["content"].startswith("You keep the memory"):
            return Reply.text("The room began with tides and kept to them.")
        n = next(replies)
        return Reply.text(f"wave {n}: " + " ".join(f"w{n}x{k}" for k in range(70)))

    fake_llm.default = answer
    settings = settings_for(fake_llm)
    settings.summary_model, settings.context_tokens = "DeepSeek V3.2", 2000
    out = io.StringIO()
    assert await run_console(console_args("--turns", "24", "--pictures", str(tmp_path)), settings, out) == 0
    printed = out.getvalue()
    assert "📜 The AIs' oldest messages no longer fit their context" in printed
    assert "kept to them" not in printed  # the terminal is the channel: the summary is in the export
    summaries = [r for r in fake_llm.chat_requests if r.body["model"] == "deepseek/deepseek-v3.2" and
                 r.body["messages"][0]["content"].startswith("You keep the memory")]
    assert summaries


async def test_a_summary_model_no_key_can_run_is_refused_before_the_room_starts(fake_llm, capsys):
    settings = Settings(_env_file=None, anthropic_api_key="sk-ant-test", summary_model="gemini 3 flash")
    assert settings.summary_model == "Gemini 3 Flash"
    code = await run_console(console_args("--ai", "Claude Haiku 4.5"), settings, io.StringIO())
    assert code == 2
    said = capsys.readouterr().err
    assert said.startswith("SUMMARY_MODEL=Gemini 3 Flash cannot run here:") and "GEMINI_API_KEY" in said
    assert fake_llm.requests == []


async def test_console_room_searches_the_web_and_the_next_ai_reads_the_results(fake_llm, tmp_path):
    from tests.fakes import FakeSearxng

    fake_llm.script(Reply.text('Let me look.\n!search "tallest lighthouse"'), Reply.text("106 metres, then."))
    with FakeSearxng() as searx:
        settings = settings_for(fake_llm).model_copy(update={"search_url": searx.base_url, "search_results": 2})
        out = io.StringIO()
        assert await run_console(console_args("--turns", "2", "--pictures", str(tmp_path)), settings, out) == 0
    printed = out.getvalue()
    assert '🔍 [AI-1]: !search "tallest lighthouse" (2 results)' in printed
    assert "https://" not in printed  # the terminal shows the notice; the results are the AIs' to read
    first, second = (r.body for r in fake_llm.chat_requests)
    assert '!search "a few words"' in first["messages"][0]["content"]
    seen = "\n".join(_text(m) for m in second["messages"])
    assert '[Web search by AI-1: "tallest lighthouse", 2 results.' in seen
    assert "1. Lighthouse - Example Encyclopedia (https://en.example.org/wiki/Lighthouse)" in seen


async def test_console_without_search_url_does_not_tell_the_ais_about_search(fake_llm, tmp_path):
    fake_llm.script(Reply.text("hello"))
    assert await run_console(console_args("--turns", "1", "--pictures", str(tmp_path)), settings_for(fake_llm), io.StringIO()) == 0
    (request,) = fake_llm.chat_requests
    assert "!search" not in request.body["messages"][0]["content"]


# --- forks ---------------------------------------------------------------------------


async def test_console_fork_goes_on_from_the_message_as_the_room_was_then(fake_llm, tmp_path):
    from bot.export import export_room
    from bot.storage import Store

    fake_llm.script(
        Reply.text('!temperature 1.5\n!prompt "You love the sea."\nthe tide comes in'),
        Reply.text("salt and static"),
        Reply.text("!temperature 0.3\nI changed my mind about the sea"),
        Reply.text("a fork of the tide"),
    )
    settings = settings_for(fake_llm)
    args = console_args("--ai", "Gemini 3 Flash", "--ai", "Claude Haiku 4.5", "--turns", "3", "--topic", "tides")
    assert await run_console(args, settings, io.StringIO()) == 0
    store = await Store.open(settings.database_path, writing=False)
    listing = io.BytesIO()
    await export_room(store, 1, "txt", None, listing, numbered=True)
    await store.close()
    (line,) = [line for line in listing.getvalue().decode().splitlines() if line.endswith(" AI-2 (Claude Haiku 4.5)")]
    event = int(line.split()[0].lstrip("#"))

    out = io.StringIO()
    assert await run_console(console_args("--fork", "1", "--at", str(event), "--delay", "0"), settings, out) == 0
    printed = out.getvalue()
    assert printed.startswith("Séance room 2: AI-1 (Gemini 3 Flash), AI-2 (Claude Haiku 4.5)")
    assert f"It starts after AI-2 (Claude Haiku 4.5)'s reply (event {event} of room 1):\nsalt and static" in printed
    assert f"🍴 This room is a fork of room 1 from AI-2 (Claude Haiku 4.5)'s reply, event {event}" in printed
    assert "AI-1 (Gemini 3 Flash)\na fork of the tide" in printed
    first = fake_llm.chat_requests[3].body  # the fork's first turn: AI-1, as it was after AI-2's reply
    assert first["model"] == "google/gemini-3-flash-preview" and first["temperature"] == 1.5
    assert "You love the sea." in first["messages"][0]["content"]
    seen = "\n".join(_text(m) for m in first["messages"])
    assert "salt and static" in seen and "I changed my mind" not in seen

    store = await Store.open(settings.database_path, writing=False)
    record = await store.room(2)
    assert (record.parent_id, record.fork_event) == (1, event)
    text = io.BytesIO()
    await export_room(store, 2, "txt", None, text)
    assert text.getvalue().decode().startswith(f"A fork of room 1 from event {event}: the conversation before it")
    await store.close()


def test_cli_fork_refusals_are_one_line(fake_llm, monkeypatch, capsys):
    from bot.__main__ import main

    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-test")
    monkeypatch.setenv("OPENROUTER_BASE_URL", fake_llm.base_url)
    assert main(["console", "--at", "3"]) == 2
    assert capsys.readouterr().err == (
        "error: --fork ROOM and --at EVENT go together (python -m bot export ROOM --numbered shows the events).\n"
    )
    assert main(["console", "--fork", "7", "--at", "3"]) == 2
    assert capsys.readouterr().err == "error: There is no room 7.\n"
