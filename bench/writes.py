"""The store's write path alone: many rooms saving and marking turns as fast as it takes them.

Each room plays a turn in the engine (a fresh reply), records it through its ``Journal``
(one save, grouped with the other rooms' in one transaction) and marks its reply posted as
two Discord messages, over and over, with no model, no Discord and no delay. So the turns
per second are what the storage path (and the engine's share of the CPU) can carry, and
``bench/rooms.py``'s rooms need about rooms ÷ (delay + reply time) of them. Reported per
turn: commits (group commit), statements sent to PostgreSQL (round trips), and the process's
CPU time (the engine's turn included, about 1 ms).

    python bench/writes.py --rooms 100 1000                  # SQLite
    python bench/writes.py --rooms 100 1000 --postgres local # a throwaway PostgreSQL server

It asserts nothing and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bot.engine import Room, Usage  # noqa: E402
from bot.storage import Journal, Store, open_url  # noqa: E402
from engine import new_room, spoken  # noqa: E402  (bench/engine.py: a room, and replies of fresh words)
from tests.postgres import bench_databases, count_statements  # noqa: E402


def take_turn(room: Room, rng: random.Random) -> None:
    """One turn: the next AI replies at once, with fresh words and a cost (its events stay queued)."""
    room.complete_turn(room.next_turn(), spoken(rng), Usage(input_tokens=1200, output_tokens=80))


async def run(rooms: int, seconds: float, url: str | None) -> tuple[float, float, float, float]:
    """Turns per second, commits, statements and CPU milliseconds per turn, for ``rooms`` rooms."""
    sent = count_statements() if url else Counter()
    folder = tempfile.mkdtemp(prefix="seance-writes-")
    store: Store = await open_url(url) if url else await Store.open(Path(folder) / "db.sqlite3")
    made = [new_room(ais=5) for _ in range(rooms)]
    journals = [Journal(store, await store.create_room(room, "console")) for room in made]
    counting, warm = asyncio.Event(), asyncio.Event()
    turns, waiting = 0, rooms
    stop = False

    async def speak(room, journal: Journal, rng: random.Random) -> None:
        nonlocal turns, waiting
        message = rng.randrange(1 << 40)
        first = True
        while not stop:
            take_turn(room, rng)
            stored = await journal.record(room)
            ids = [event_id for event_id, _ in stored if event_id is not None]
            message += 2
            await journal.posted(ids, [message, message + 1])
            turns += counting.is_set()
            if first:
                first, waiting = False, waiting - 1
                if not waiting:
                    warm.set()

    tasks = [asyncio.create_task(speak(r, j, random.Random(n))) for n, (r, j) in enumerate(zip(made, journals))]
    await warm.wait()  # every room past its first turn (which reads how much history is stored)
    commits, statements = store.group.batches, sum(sent.values())
    cpu, started = time.process_time(), time.perf_counter()
    counting.set()
    await asyncio.sleep(seconds)
    counting.clear()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    commits, statements = store.group.batches - commits, sum(sent.values()) - statements
    stop = True
    await asyncio.gather(*tasks)
    await store.close()
    done = max(1, turns)
    return turns / elapsed, commits / done, statements / done, cpu / done * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", help="'local' (a throwaway server, durable as by default) or a scratch database URL")
    args = parser.parse_args()
    print(f"{'rooms':>6} {'turns/s':>8} {'commits/turn':>12} {'statements/turn':>15} {'CPU ms/turn':>11}  load 1/5/15 min")
    with bench_databases(args.postgres) as new_database:
        for rooms in args.rooms:
            url = new_database()
            rate, commits, statements, cpu = asyncio.run(run(rooms, args.seconds, url))
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            shown = f"{statements:>15.2f}" if url else f"{'-':>15}"
            print(f"{rooms:>6} {rate:>8.1f} {commits:>12.3f} {shown} {cpu:>11.2f}  {load}", flush=True)

if __name__ == "__main__":
    main()
