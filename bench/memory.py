"""Memory of many long rooms in one process, as a running bot holds them.

One room is played through the engine for ``--turns`` turns (5 AIs, fresh
40-word replies, a ``--picture-kb`` picture every 10th turn) and its history
kept as the store keeps it: one JSON row per entry. ``--rooms`` rooms are then
brought back from those rows through the store's own restore path
(``bot.storage.room_from_rows``, which both backends' ``load_room`` use: a
restarted bot holds exactly this), each with its own copies of every string and
picture. RSS is read:

- after the restore, before any room has taken a turn (a start loads every room
  before it launches any);
- once every room has taken ``--settle`` to ``--settle`` + 4 turns (instant replies;
  the rooms' next speakers differ), as a running bot holds them between turns;
- with a request in flight in every room, twice: streaming after its first words,
  where the turn and the sent httpx request are kept but not the encoded body
  (no retry follows shown words, so ``StreamingProvider`` lets go of it); and
  waiting for its first words, where the OpenRouter adapter also keeps the
  encoded JSON body (context and base64 pictures) in case it must ask again.
  The lighter state is read first: memory given back is not always returned
  to the system, so the other order would hide the difference.

A few rooms played live for the same number of turns (``--live``, in a fresh
process) show that a restored room is as light as a live one.

    python bench/memory.py                          # 1,000 rooms x 2,000 turns (about 2-4 minutes)
    python bench/memory.py --rooms 100 --turns 500  # quick

Figures are printed; nothing is asserted. Nothing here touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bot import data  # noqa: E402
from bot.engine import Picture, Room, RoomSettings, Usage  # noqa: E402
from bot.engine.snapshot import entry_to_dict, room_state, settings_from_dict, settings_to_dict  # noqa: E402
from bot.providers.http import _sent  # noqa: E402  (what an attempt does to its request once sent)
from bot.providers.openai_compat import OpenAICompatProvider  # noqa: E402
from bot.storage import newest_pictures, room_from_rows  # noqa: E402
from engine import spoken  # noqa: E402  (bench/engine.py: fresh replies, so the repeat guard posts them)

MODELS = ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5", "GPT 5.2", "Kimi K2"]  # three see pictures
MiB = 1024 * 1024


def rss() -> int:
    """The process's resident memory in bytes, after a full collection."""
    gc.collect()
    return _status("VmRSS")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def new_room() -> Room:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(), topic="how machines remember")
    for name in MODELS:
        room.add(name)
    return room


def play(room: Room, turn_number: int, rng: random.Random, picture_bytes: int) -> None:
    """One turn through the engine with an instant reply (a picture asked for every 10th turn,
    made at once); then stored, as a running bot's journal marks it, so memory may let go."""
    turn = room.next_turn()
    if turn is None:
        raise RuntimeError(f"the room stopped: {room.take_events()}")
    answer(room, turn, turn_number, rng, picture_bytes)


def answer(room: Room, turn: Any, turn_number: int, rng: random.Random, picture_bytes: int) -> None:
    """``turn``'s reply, complete at once, and what it asked for (a picture every 10th turn)."""
    text = f"turn {turn_number}: {spoken(rng)}"
    if turn_number % 10 == 0:
        text += f'\n!image "a picture for turn {turn_number}"'
    room.complete_turn(turn, text, Usage(input_tokens=1200, output_tokens=80))
    for event in room.take_events():
        if type(event).__name__ == "ImageJob":
            room.image_done(event.job_id, Picture(os.urandom(picture_bytes)))
    room.take_events()
    room.stored_upto = room.history_length


class Stored:
    """One room as the store keeps it: a JSON row per history entry, its state and settings."""

    def __init__(self, turns: int, picture_bytes: int):
        room, rng = new_room(), random.Random(turns)
        self.rows: list[str] = []
        room.stored_upto = 0
        for number in range(turns):
            self._save(room)
            play(room, number, rng, picture_bytes)
        self._save(room)
        self.state = json.dumps(room_state(room))
        self.settings = json.dumps(settings_to_dict(room.settings))
        self.picture_bytes = picture_bytes

    def _save(self, room: Room) -> None:
        for index, entry in room.history_since(len(self.rows)):
            key = f"{index}.png" if entry.picture is not None else None
            self.rows.append(json.dumps(entry_to_dict(entry, key)))

    def load(self) -> Room:
        """The room as ``Store.load_room`` makes it, its picture files read afresh."""
        rows = [json.loads(row) for row in self.rows]
        settings = settings_from_dict(json.loads(self.settings))
        wanted = newest_pictures(rows, settings.vision_pictures)
        read = lambda key: os.urandom(self.picture_bytes)  # noqa: E731  (a file's bytes, each read its own)
        return room_from_rows(data.catalog(), data.scenarios()["open-room"], settings, json.loads(self.state), rows, wanted, read)


def in_flight(rooms: list[Room], provider: OpenAICompatProvider, words_in: bool) -> list[Any]:
    """Every room's next request as the OpenRouter adapter holds it while the reply streams:
    the runner hands the turn's request over; the adapter keeps the attempt's httpx request,
    and its encoded body only until the first words are in (``StreamingProvider._with_retries``)."""
    held = []
    for room in rooms:
        turn = room.next_turn()
        assert turn is not None
        request = turn.take_request()
        body = provider.payload(request)
        sent = provider.build(request.model, body)
        if words_in:
            _sent(sent)  # as the attempt leaves it; the body itself goes with this loop's locals
            held.append((turn, sent))
        else:
            held.append((turn, sent, body))
    return held


def measure(rooms_count: int, turns: int, settle: int, picture_kb: int) -> list[tuple[str, str]]:
    started = time.perf_counter()
    stored = Stored(turns, picture_kb * 1000)
    rows_mib = sum(len(row) for row in stored.rows) / MiB
    made = time.perf_counter() - started
    base = rss()
    rooms = []
    for _ in range(rooms_count):
        rooms.append(stored.load())
    loaded = rss()
    peak = _status("VmHWM")
    rng = random.Random(1)
    for place, room in enumerate(rooms):  # a turn or four more in some, so each seat is next in some rooms
        for step in range(settle + place % len(MODELS)):
            play(room, turns + step, rng, picture_kb * 1000)
    running = rss()

    async def requests() -> tuple[int, int, list[int]]:
        provider = OpenAICompatProvider("openrouter", "http://127.0.0.1:9/api/v1", "sk-bench", route="openrouter")
        try:
            held = in_flight(rooms, provider, words_in=True)
            words_in = rss()
            for room, (turn, _) in zip(rooms, held):  # those replies end; each room asks again
                answer(room, turn, 10 * turns + 1, rng, picture_kb * 1000)  # (no picture: not a 10th turn)
            held = in_flight(rooms, provider, words_in=False)
            sizes = [len(body) for *_, body in held]
            return words_in, rss(), sizes
        finally:
            await provider.aclose()

    streaming, waiting, sizes = asyncio.run(requests())
    n = rooms_count
    return [
        ("one stored room", f"{len(stored.rows):,} entries ({rows_mib:.1f} MiB of JSON), played in {made:.0f} s"),
        ("RSS before the rooms (interpreter, imports, the stored room)", f"{base / MiB:.0f} MiB"),
        (f"{n} rooms restored, before any turn", f"{loaded / MiB:.0f} MiB ({(loaded - base) / n / 1024:.0f} KiB a room; peak {peak / MiB:.0f} MiB)"),
        (f"{n} rooms after {settle}-{settle + len(MODELS) - 1} turns each (between turns)", f"{running / MiB:.0f} MiB ({(running - base) / n / 1024:.0f} KiB a room)"),
        (f"{n} rooms, each waiting for its reply's first words", f"{waiting / MiB:.0f} MiB ({(waiting - base) / n / 1024:.0f} KiB a room)"),
        (f"{n} rooms, each streaming after its first words", f"{streaming / MiB:.0f} MiB ({(streaming - base) / n / 1024:.0f} KiB a room)"),
        ("request bodies (OpenRouter JSON)", f"mean {sum(sizes) / len(sizes) / 1024:.0f} KiB, largest {max(sizes) / 1024:.0f} KiB"),
        ("time", f"{time.perf_counter() - started:.0f} s"),
    ]


def live(count: int, turns: int, picture_kb: int) -> int:
    """RSS growth in bytes of ``count`` rooms played live through the engine (a fresh process)."""
    base = rss()
    rooms, rng = [new_room() for _ in range(count)], random.Random(2)
    for room in rooms:
        room.stored_upto = 0
    for number in range(turns):
        for room in rooms:
            play(room, number, rng, picture_kb * 1000)
    return rss() - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=2000, help="turns of history per room")
    parser.add_argument("--settle", type=int, default=5, help="turns each restored room takes before the second reading")
    parser.add_argument("--picture-kb", type=int, default=100, help="size of each picture (one every 10th turn)")
    parser.add_argument("--live", type=int, default=5, help="rooms played live for comparison (0: none)")
    args = parser.parse_args()
    if not 1 <= args.rooms <= 5000 or not 1 <= args.turns <= 20_000:
        parser.error("--rooms takes 1 to 5,000 and --turns 1 to 20,000")
    spawn = multiprocessing.get_context("spawn")
    rows = []
    with spawn.Pool(1) as pool:  # a clean heap for each measurement
        rows += pool.apply(measure, (args.rooms, args.turns, args.settle, args.picture_kb))
    if args.live:
        with spawn.Pool(1) as pool:
            growth = pool.apply(live, (args.live, args.turns, args.picture_kb))
        rows.append((f"{args.live} rooms played live for {args.turns} turns", f"{growth / args.live / 1024:.0f} KiB a room"))
    print(f"{args.rooms} rooms x {len(MODELS)} AIs, {args.turns} turns of history each, a {args.picture_kb} KB picture every 10th turn")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
