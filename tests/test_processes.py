"""Two real bot processes on one database: each room is driven by exactly one of them, and a
room whose process is killed (SIGKILL) is taken over once its lease expires.

The rolling deploy of a new shard layout: the old process runs shard 0 of 2, the new one
both shards. Rooms of shard-1 servers are the new process's alone; rooms of shard-0
servers are held by the old process, which the new one must leave alone until it dies.
Each process runs the real bot in its own simulated Discord (tests/bot_process.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from bot import data
from bot.engine import Reply, Room, RoomSettings
from bot.storage import Store
from tests.fakes import FakeLLMServer

ROOT = Path(__file__).resolve().parents[1]
LEASE = 5.0  # seconds: short, so the takeover comes quickly, yet renewed in time on a busy machine
BASE = 1300000000000000000  # a snowflake; guild ids BASE + (k << 22) fall on shard k % 2 of 2


async def store_rooms(path: Path, count: int) -> dict[int, int]:
    """``count`` running rooms of two AIs, alternately on shard-0 and shard-1 servers; room id -> shard."""
    store = await Store.open(path)
    rooms = {}
    try:
        for k in range(count):
            room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=1000))
            room.add("Gemini 3 Flash")
            room.add("DeepSeek R1")
            guild_id = BASE + (k << 22)
            options = {"models": ["Gemini 3 Flash", "DeepSeek R1"], "scenario": "open-room", "turns": 1000, "delay": 0.2}
            room_id = await store.create_room(room, "discord", guild_id=guild_id, channel_id=guild_id + 7, options=options)
            rooms[room_id] = (guild_id >> 22) % 2
    finally:
        await store.close()
    return rooms


def start(name: str, tmp_path: Path, server: FakeLLMServer, shard_ids: str) -> tuple[subprocess.Popen, Path, Path]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": "simulated",
        "OPENROUTER_API_KEY": "sk-or-test",
        "OPENROUTER_BASE_URL": server.base_url,
        "IMAGE_PROVIDER": "offline",
        "DATABASE_PATH": str(tmp_path / "seance.sqlite3"),
        "SHARD_COUNT": "2",
        "SHARD_IDS": shard_ids,
        "ROOM_LEASE_SECONDS": str(LEASE),
        "IDLE_PAUSE_MINUTES": "0",
        "MAX_ATTEMPTS": "1",
        "WEBHOOK_REQUESTS_PER_2S": "0",
        "CHANNEL_MESSAGES_PER_MINUTE": "0",
    }
    trace, log = tmp_path / f"{name}.trace", tmp_path / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bot_process", str(trace)],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )
    return process, trace, log


def replies(trace: Path) -> list[dict]:
    if not trace.exists():
        return []
    lines = [json.loads(line) for line in trace.read_text("utf-8").splitlines() if line.strip()]
    return [line for line in lines if line["kind"] == "Reply"]


def by_channel(lines: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for line in lines:
        counts[line["channel"]] += 1
    return counts


def wait_for(condition, what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


async def stored_speakers(path: Path) -> dict[int, list[int]]:
    store = await Store.open(path)
    try:
        return {
            record.id: [e.event.number for e in await store.events(record.id) if isinstance(e.event, Reply)]
            for record in await store.rooms()
        }
    finally:
        await store.close()


def test_two_processes_drive_each_room_once_and_a_killed_ones_rooms_are_taken_over(fake_llm, tmp_path):
    path = tmp_path / "seance.sqlite3"
    rooms = asyncio.run(store_rooms(path, 4))
    channel = {room_id: BASE + ((room_id - 1) << 22) + 7 for room_id in rooms}
    shard0 = {channel[r] for r, shard in rooms.items() if shard == 0}
    shard1 = {channel[r] for r, shard in rooms.items() if shard == 1}

    old, old_trace, old_log = start("old", tmp_path, fake_llm, "0")
    new = None
    try:
        wait_for(lambda: set(by_channel(replies(old_trace))) == shard0, "the old process to drive shard 0's rooms")
        new, new_trace, new_log = start("new", tmp_path, fake_llm, "0,1")
        wait_for(lambda: all(by_channel(replies(new_trace)).get(c, 0) >= 3 for c in shard1), "the new process")
        time.sleep(LEASE)  # a lease's length of heartbeats of both: the old process keeps its rooms

        assert set(by_channel(replies(old_trace))) == shard0  # the old one runs only shard 0
        assert set(by_channel(replies(new_trace))) == shard1  # the new one leaves shard 0's rooms alone
        old_counts = by_channel(replies(old_trace))

        old.send_signal(signal.SIGKILL)
        old.wait(10)
        killed = time.monotonic()
        wait_for(lambda: set(by_channel(replies(new_trace))) == shard0 | shard1, "the takeover")
        took = time.monotonic() - killed
        assert took >= LEASE * 0.5  # it waited for the dead process's leases to expire
        assert by_channel(replies(old_trace)) == old_counts  # a dead process shows nothing, of course
        new_counts = by_channel(replies(new_trace))
        wait_for(lambda: all(by_channel(replies(new_trace))[c] >= new_counts[c] + 2 for c in shard0), "turns")

        new.send_signal(signal.SIGTERM)
        assert new.wait(30) == 0, new_log.read_text()
    finally:
        for process in (old, new):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)

    log = new_log.read_text("utf-8")
    for room_id, shard in rooms.items():
        if shard == 0:
            assert f"room {room_id} is taken over" in log, log
    # Each room's stored replies alternate between its two AIs: two processes driving one room
    # from the same stored state would have recorded the same AI's turn twice in a row.
    speakers = asyncio.run(stored_speakers(path))
    for room_id, numbers in speakers.items():
        assert len(numbers) >= 5, (room_id, numbers)
        assert all(a != b for a, b in zip(numbers, numbers[1:])), (room_id, numbers)
    asyncio.run(check_released(path))
    print(f"takeover after SIGKILL: {took:.1f} s with a {LEASE:g} s lease; replies stored: "
          f"{ {r: len(n) for r, n in speakers.items()} }")


async def check_released(path: Path) -> None:
    store = await Store.open(path)
    try:
        assert await store.leases() == {}  # the new process gave its leases up at SIGTERM
    finally:
        await store.close()
