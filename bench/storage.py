"""Storage cost: write time per turn and database size per thousand turns, SQLite and PostgreSQL.

A 4-AI room with replies of ordinary length (about 600 characters, a command
in every third) runs against an instant provider, once without storage and
once with each backend; the difference is what storage costs per turn.

PostgreSQL: ``--postgres URL`` (a scratch database), else a throwaway local server
(tests/postgres.py) with PostgreSQL's default durability, over its Unix socket; skipped
when PostgreSQL is not installed.
"""

from __future__ import annotations

import argparse
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
from bot.storage import Journal, Store, open_url  # noqa: E402
from tests.postgres import Cluster, find_binaries  # noqa: E402

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


async def run(stored: bool, folder: Path, url: str | None = None) -> tuple[float, int]:
    room = new_room()
    journal = None
    store = None
    if stored:
        store = await open_url(url) if url else await Store.open(folder / "bench.sqlite3")
        journal = Journal(store, await store.create_room(room, "console"))
    runner = RoomRunner(room, lambda model: InstantProvider.shared, NoImages(), QuietStage(), journal=journal)
    began = time.perf_counter()
    await runner.run()
    seconds = time.perf_counter() - began
    size = 0
    if url is not None and store is not None:
        size = await store.db.execute_fetchall(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        )
        size = int(size[0][0])
        await store.close()
    elif store is not None:
        await store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await store.close()
        size = sum(p.stat().st_size for p in folder.glob("bench.sqlite3*"))
    return seconds, size


def measure(url: str | None) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        InstantProvider.shared = InstantProvider()
        return asyncio.run(run(True, Path(tmp), url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", metavar="URL", help="a scratch PostgreSQL database (default: a throwaway local server)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        InstantProvider.shared = InstantProvider()
        plain, _ = asyncio.run(run(False, Path(tmp)))
    results = {"SQLite": measure(None)}
    cluster = None
    if args.postgres is None and (binaries := find_binaries()) is not None:
        cluster = Cluster(binaries)
        cluster.start(durable=True)
    try:
        url = args.postgres or (asyncio.run(cluster.new_database()) if cluster else None)
        if url:
            results["PostgreSQL"] = measure(url)
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{'turns':<36} {TURNS}")
    print(f"{'time per turn without storage':<36} {plain / TURNS * 1e3:.2f} ms")
    for name, (stored, size) in results.items():
        print(f"{name}")
        print(f"  {'time per turn with storage':<34} {stored / TURNS * 1e3:.2f} ms")
        print(f"  {'write cost per turn':<34} {(stored - plain) / TURNS * 1e3:.2f} ms")
        print(f"  {'database size per 1000 turns':<34} {size / 1024 / 1024 * 1000 / TURNS:.2f} MiB")
    if "PostgreSQL" not in results:
        print("PostgreSQL: not installed here (no initdb); pass --postgres URL to measure a server")


if __name__ == "__main__":
    main()
