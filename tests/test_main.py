"""``python -m bot`` on bad ground: every command refuses a bad DATABASE_PATH in one line, touching nothing.

The grounds are real: a read-only folder, a missing folder inside one, a file
that is not SQLite, a folder, and a read-only database file. Root ignores file
modes, so under root the commands run in a child process whose capabilities
are cut with ``setpriv`` (no CAP_DAC_OVERRIDE): the kernel then enforces the
modes for it as for anyone. One child runs every command on every ground
through ``main()`` (tests/cli.py), so the whole table costs one interpreter start.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot import data
from bot.__main__ import main
from bot.engine import Room
from bot.settings import Settings
from bot.storage import Store
from tests.cli import Outcome, run_commands

DROP_ROOT_POWERS = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]

COMMANDS = {
    "rooms": ["rooms"],
    "export": ["export", "1"],
    "delete": ["delete", "2"],
    "console": ["console", "--ai", "Gemini 3 Flash", "--turns", "1", "--delay", "0"],
    "console --resume": ["console", "--resume", "1"],
    "bot": [],
}
# What each refusal must say (besides naming DATABASE_PATH).
GROUNDS = {
    "read-only folder": "read-only",
    "missing folder in a read-only one": "cannot be created",
    "not SQLite": "is not a SQLite database",
    "a folder": "is a folder",
    "read-only database file": "read-only",
}
NEEDS_MODES = {"read-only folder", "missing folder in a read-only one", "read-only database file"}
READS_ONLY = {"rooms", "export"}  # these may read a read-only database file


async def stored_rooms(path: Path) -> None:
    """A real database: room 1 paused in the console (resumable), room 2 ended (deletable)."""
    store = await Store.open(path)
    for state in ("paused", "stopped"):
        room = Room(data.catalog(), data.scenarios()["open-room"], Settings(_env_file=None).room_settings(4))
        room.add("Gemini 3 Flash")
        room.pause("by a test") if state == "paused" else room.stop("by a test")
        await store.create_room(room, "console")
    await store.close()


def make_grounds(base: Path) -> dict[str, Path]:
    ro = base / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    not_sqlite = base / "notes.sqlite3"
    not_sqlite.write_text("These are my notes, not a database.\n" * 40)
    folder = base / "a-folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    ro_file = base / "ro-db" / "seance.sqlite3"
    ro_file.parent.mkdir()
    asyncio.run(stored_rooms(ro_file))
    ro_file.chmod(0o444)
    return {
        "read-only folder": ro / "seance.sqlite3",
        "missing folder in a read-only one": ro / "missing" / "seance.sqlite3",
        "not SQLite": not_sqlite,
        "a folder": folder,
        "read-only database file": ro_file,
    }


def snapshot(base: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file under ``base`` with its bytes and mtime; folders as None."""
    return {
        str(p.relative_to(base)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(base.rglob("*"))
        if not p.name.endswith(("-shm", "-wal"))  # a reader of a WAL database may leave these beside it
    }


def modes_apply(base: Path, prefix: list[str]) -> bool:
    """Whether a child started with ``prefix`` is refused a write into a read-only folder."""
    probe = base / "probe"
    probe.mkdir(mode=0o555)
    try:
        code = subprocess.run(
            [*prefix, sys.executable, "-c", f"open({str(probe / 'x')!r}, 'w')"], capture_output=True, timeout=30
        ).returncode
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        probe.chmod(0o755)
        shutil.rmtree(probe)
    return code != 0


@pytest.fixture(scope="module")
def refusals(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[tuple[str, str], Outcome], dict, dict, set[str]]:
    base = tmp_path_factory.mktemp("bad-ground")  # owned by whoever runs the tests, like the child
    prefix = DROP_ROOT_POWERS if os.geteuid() == 0 and shutil.which("setpriv") else []
    usable = set(GROUNDS) if modes_apply(base, prefix) else set(GROUNDS) - NEEDS_MODES
    grounds = make_grounds(base)
    before = snapshot(base)
    cases = [(ground, command) for ground in GROUNDS if ground in usable for command in COMMANDS]
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL", "_TOKEN"))}
    env |= {
        "DISCORD_TOKEN": "not-a-real-token",  # the bot must refuse before it ever connects
        "OPENROUTER_API_KEY": "sk-or-test",
        "OPENROUTER_BASE_URL": "http://127.0.0.1:9/v1",  # nothing listens: no room may get that far
        "PICTURES_DIR": str(base / "pictures"),
    }
    commands = [(COMMANDS[c], {"DATABASE_PATH": str(grounds[g])}) for g, c in cases]
    outcomes = dict(zip(cases, run_commands(commands, env=env, cwd=base, prefix=prefix)))
    return outcomes, before, snapshot(base), usable


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("ground", list(GROUNDS))
def test_a_bad_database_path_is_refused_in_one_line(refusals, ground: str, command: str) -> None:
    outcomes, _, _, usable = refusals
    if ground not in usable:
        pytest.skip("running as root, and file modes could not be made to apply to a child process")
    outcome = outcomes[(ground, command)]
    if ground == "read-only database file" and command in READS_ONLY:
        assert outcome.code == 0, outcome.stderr  # reading needs no write access
        return
    said = outcome.stderr.strip()
    assert outcome.code == 2, said
    assert "\n" not in said and "Traceback" not in said, said
    assert GROUNDS[ground] in said and "DATABASE_PATH" in said, said


def test_a_bad_database_path_is_left_as_it_was(refusals) -> None:
    _, before, after, _ = refusals
    assert after == before


def test_settings_that_do_not_parse_are_named_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    assert main(["rooms"]) == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith("LOG_LEVEL is not valid (") and said.endswith("(see .env.example).") and "\n" not in said


@pytest.mark.parametrize(
    ("count", "ids", "told"),
    [
        ("", "1", "SHARD_IDS needs SHARD_COUNT (how many shards all processes run together)"),
        ("2", "0, 2", "SHARD_IDS must be different numbers from 0 to 1"),
        ("2", "1,1", "SHARD_IDS must be different numbers from 0 to 1"),
    ],
)
def test_shard_settings_that_do_not_fit_are_told_in_one_line(monkeypatch, capsys, count, ids, told) -> None:
    monkeypatch.setenv("SHARD_COUNT", count)
    monkeypatch.setenv("SHARD_IDS", ids)
    assert main(["rooms"]) == 2
    said = capsys.readouterr().err.strip()
    assert said == f"{told}; fix it in .env or the environment (see .env.example).", said


def test_a_newer_database_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "seance.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version = 99")
        db.commit()
    before = path.read_bytes()
    monkeypatch.setenv("DATABASE_PATH", str(path))
    assert main(["rooms"]) == 2
    assert "schema version 99" in capsys.readouterr().err
    assert path.read_bytes() == before and not (tmp_path / "seance.sqlite3-wal").exists()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL


def test_summary_model_is_a_catalog_model_the_embedded_one_or_off(monkeypatch, capsys) -> None:
    assert Settings(_env_file=None).summary_model is None  # off unless the host chooses one
    assert Settings(_env_file=None, summary_model="embedded").summary_model == "SmolLM2 135M"
    assert Settings(_env_file=None, summary_model="Off").summary_model is None
    assert Settings(_env_file=None, summary_model="deepseek v3.2").summary_model == "DeepSeek V3.2"
    monkeypatch.setenv("SUMMARY_MODEL", "Gemini Flesh")
    assert main(["rooms"]) == 2
    said = capsys.readouterr().err.strip()
    assert said.startswith("SUMMARY_MODEL is not valid (") and "Gemini 3 Flash" in said and "\n" not in said
