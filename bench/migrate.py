"""Migration of a 1,000-room SQLite installation into PostgreSQL (``python -m bot migrate``).

Builds the installation first: one room played for real through the store (turns,
notices, a picture, spending, posted messages, a vote), then copied row for row into
``--rooms`` rooms, each with its own channel, webhook and picture file of ``--picture-kb``.
Then times ``bot.transfer.migrate`` (which checks every table's count before it commits)
and compares a sample of rooms event by event, pictures included.

PostgreSQL: ``--postgres URL`` (an empty database), else a throwaway local server
(tests/postgres.py) with PostgreSQL's default durability.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import data  # noqa: E402
from bot.engine import ImageJob, Picture, Room, RoomSettings, Usage  # noqa: E402
from bot.storage import Store, open_url  # noqa: E402
from bot.transfer import migrate  # noqa: E402
from tests.postgres import Cluster, find_binaries  # noqa: E402

TURNS = 20
PROSE = ("the tide keeps a ledger of everything it touched and reads it back at night while gulls argue over"
         " salt lanterns harbours maps of glass and the slow arithmetic of moons rivers bells ropes and keels")
COPIED = {  # table: columns copied from the played room (room_id is replaced)
    "entries": "seq, data",
    "events": "kind, data, created_at, posted_at, message_ids",
    "spend": "guild_id, day, kind, count, tokens, usd",
    "votes": "voter, ai_number, turn, created_at",
}


async def played_room(store: Store) -> int:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=TURNS + 5), topic="bench")
    for name in ("Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5", "GPT 5.2"):
        room.add(name)
    room_id = await store.create_room(room, "discord", guild_id=1, channel_id=1)
    for turn_number in range(TURNS):
        turn = room.next_turn()
        extra = '\n!image "a ledger of tides"' if turn_number == 3 else "\n!temperature 1.1" if turn_number % 3 == 0 else ""
        prose = " ".join(random.Random(turn_number).sample(PROSE.split(), 30))  # no two alike: no loop nudges
        room.complete_turn(turn, f"{turn_number}: {prose}{extra}", Usage(input_tokens=3000, output_tokens=150))
        events = room.take_events()
        jobs = [event for event in events if isinstance(event, ImageJob)]
        stored = await store.save(room_id, room, events)
        for job in jobs:
            room.image_done(job.job_id, Picture(b"\x89PNG played", "image/png"))
        if jobs:
            stored += await store.save(room_id, room, room.take_events())
        await store.mark_posted([i for i, _ in stored], [10_000 + turn_number])
    await store.record_vote(room_id, "someone", 2, 3)
    return room_id


async def build(path: Path, rooms: int, picture_kb: int) -> None:
    """One played room, then its rows again for every other room, each with its own picture."""
    store = await Store.open(path)
    template = await played_room(store)
    rng = random.Random(7)
    db = store.db
    (picture_key,) = [key for (key,) in await db.execute_fetchall("SELECT key FROM pictures")]
    for n in range(2, rooms + 1):
        await db.execute(
            "INSERT INTO rooms (origin, guild_id, channel_id, thread_id, scenario, settings, options, state, snapshot,"
            " history_len, created_at, updated_at) SELECT origin, ?, ?, thread_id, scenario, settings, options,"
            " state, snapshot, history_len, created_at, updated_at FROM rooms WHERE id = ?",
            (n % 50, n, template),
        )
        for table, columns in COPIED.items():
            await db.execute(
                f"INSERT INTO {table} (room_id, {columns}) SELECT ?, {columns} FROM {table} WHERE room_id = ?",
                (n, template),
            )
        key = f"{n}/{picture_key.split('/')[1]}"
        folder = store.pictures / str(n)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / key.split("/")[1]).write_bytes(rng.randbytes(picture_kb * 1024))
        await db.execute("INSERT INTO pictures (key, room_id, mime) VALUES (?, ?, 'image/png')", (key, n))
        await db.execute("INSERT INTO messages (message_id, room_id, ai_number) VALUES (?, ?, 1)", (n * 1_000_000, n))
        await db.execute("INSERT INTO webhooks (channel_id, webhook_id, token) VALUES (?, ?, 'token')", (n, n))
    await db.commit()
    await store.close()


async def compare(path: Path, url: str, sample: list[int]) -> None:
    source, target = await Store.open(path), await open_url(url)
    for room_id in sample:
        before = [(s.id, s.event, s.message_ids) for s in await source.events(room_id)]
        after = [(s.id, s.event, s.message_ids) for s in await target.events(room_id)]
        assert before == after, f"room {room_id} differs after the migration"
        pictures = [s.event.picture.data for s in await target.events(room_id) if hasattr(s.event, "picture")]
        assert pictures and all(pictures), f"room {room_id} lost its picture"
    await source.close()
    await target.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--picture-kb", type=int, default=64)
    parser.add_argument("--postgres", metavar="URL", help="an empty PostgreSQL database (default: a throwaway server)")
    args = parser.parse_args()
    cluster = None
    if args.postgres is None:
        binaries = find_binaries()
        if binaries is None:
            sys.exit("PostgreSQL is not installed here (no initdb); pass --postgres URL")
        cluster = Cluster(binaries)
        cluster.start(durable=True)
    try:
        url = args.postgres or asyncio.run(cluster.new_database())
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "seance.sqlite3"
            began = time.perf_counter()
            asyncio.run(build(path, args.rooms, args.picture_kb))
            built = time.perf_counter() - began
            size = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
            copied = asyncio.run(migrate(f"sqlite:///{path}", url))
            asyncio.run(compare(path, url, [1, 2, args.rooms // 2, args.rooms]))
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"{'installation':<28} {args.rooms} rooms, {size / 1024 / 1024:.1f} MiB with pictures (built in {built:.1f} s)")
    print(f"{'migration':<28} {copied.seconds:.1f} s, every table's count checked before commit")
    for table, count in copied.rows.items():
        print(f"  {table:<26} {count:>9,}")
    print(f"{'sampled rooms compared':<28} 4, event by event with pictures: identical")
    print(f"{'cpu count':<28} {os.cpu_count()}")


if __name__ == "__main__":
    main()
