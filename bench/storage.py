"""Storage cost: write time per turn and database size per thousand turns.

A 4-AI room with replies of ordinary length (about 600 characters, a command
in every third) runs against an instant provider, once without storage and
once with it; the difference is what storage costs per turn.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import data  # noqa: E402
from bot.engine import ChatRequest, Picture, Room, RoomSettings, Usage  # noqa: E402
from bot.providers.base import TextDelta  # noqa: E402
from bot.runner import QuietStage, RoomRunner  # noqa: E402
from bot.storage import Journal, Store  # noqa: E402

TURNS = 1000
PROSE = "the tide keeps a ledger of everything it touched and reads it back at night, line by line. " * 6


class InstantProvider:
    name = "instant"

    def __init__(self) -> None:
        self.turn = 0

    async def stream(self, request: ChatRequest) -> AsyncIterator:
        self.turn += 1
        extra = "\n!temperature 1.1" if self.turn % 3 == 0 else ""
        yield TextDelta(f"{self.turn}: {PROSE}{extra}")
        yield Usage(input_tokens=3000, output_tokens=150)

    async def aclose(self) -> None:
        return None


class NoImages:
    name = "none"

    async def generate(self, prompt: str) -> Picture:
        return Picture(b"")


def new_room() -> Room:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=TURNS), topic="bench")
    for name in ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5", "GPT 5.2"]:
        room.add(name)
    return room


async def run(stored: bool, folder: Path) -> tuple[float, int]:
    room = new_room()
    journal = None
    store = None
    if stored:
        store = await Store.open(folder / "bench.sqlite3")
        journal = Journal(store, await store.create_room(room, "console"))
    runner = RoomRunner(room, lambda model: InstantProvider.shared, NoImages(), QuietStage(), journal=journal)
    began = time.perf_counter()
    await runner.run()
    seconds = time.perf_counter() - began
    size = 0
    if store is not None:
        await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await store.close()
        size = sum(p.stat().st_size for p in folder.glob("bench.sqlite3*"))
    return seconds, size


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        InstantProvider.shared = InstantProvider()
        plain, _ = asyncio.run(run(False, Path(tmp)))
        InstantProvider.shared = InstantProvider()
        stored, size = asyncio.run(run(True, Path(tmp)))
    per_turn = (stored - plain) / TURNS
    print(f"{'turns':<36} {TURNS}")
    print(f"{'time per turn without storage':<36} {plain / TURNS * 1e3:.2f} ms")
    print(f"{'time per turn with storage':<36} {stored / TURNS * 1e3:.2f} ms")
    print(f"{'write cost per turn':<36} {per_turn * 1e3:.2f} ms")
    print(f"{'database size per 1000 turns':<36} {size / 1024 / 1024 * 1000 / TURNS:.2f} MiB")


if __name__ == "__main__":
    main()
