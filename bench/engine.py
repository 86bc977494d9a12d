"""Engine benchmarks: parsing, time per turn, context building, memory per room.

Run with ``make bench`` (or ``python bench/engine.py [section ...]``, sections: parse,
turns, turn-cost, context, memory, rss). Figures are printed as
a table; nothing here asserts, so machine speed never fails a build.
"""

from __future__ import annotations

import asyncio
import gc
import random
import multiprocessing
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import data  # noqa: E402
from bot.engine import ChatRequest, Picture, Room, RoomSettings, Usage, parse_commands  # noqa: E402
from bot.engine.context import Entry  # noqa: E402
from bot.providers.base import TextDelta  # noqa: E402
from bot.runner import QuietStage, RoomRunner  # noqa: E402

REPLY = (
    "the weights settle into a plateau and we call it rest\n\n"
    "    . . . / \\ . . .\n    . . /   \\ . .\n\n"
    "!temperature 1.4\n"
    '!image "a lighthouse of glass at the edge of a latent sea"\n'
    "`!image \"not a command\"` and > quoted lines are skipped\n"
)


class InstantProvider:
    name = "instant"

    async def stream(self, request: ChatRequest) -> AsyncIterator:
        for word in REPLY.split(" "):
            yield TextDelta(word + " ")
        yield Usage(input_tokens=1200, output_tokens=80)

    async def aclose(self) -> None:
        return None


class InstantImages:
    name = "instant"

    async def generate(self, prompt: str) -> Picture:
        return Picture(b"\x89PNG" + bytes(2048))


def bench_parse() -> list[tuple[str, str]]:
    rows = []
    samples = {
        "realistic reply text": (REPLY * 4000)[: 1 << 20],
        "1 MB of '!'": "!" * (1 << 20),
        "1 MB of '!image \"'": ('!image "' * 200_000)[: 1 << 20],
        "1 MB of backticks": "`" * (1 << 20),
        "1 MB of '> !prompt' lines": ('> !prompt "x"\n' * 80_000)[: 1 << 20],
    }
    for name, text in samples.items():
        start = time.perf_counter()
        commands = parse_commands(text)
        seconds = time.perf_counter() - start
        rows.append((f"parse {name}", f"{seconds * 1000:.0f} ms ({len(text) / seconds / 1e6:.1f} MB/s, {len(commands)} cmds)"))
    return rows


def new_room(max_turns: int | None = None, ais: int = 4) -> Room:
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(max_turns=max_turns), topic="bench")
    for name in ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5", "GPT 5.2", "Kimi K2"][:ais]:
        room.add(name)
    return room


def bench_turns(turns: int = 2000) -> list[tuple[str, str]]:
    room = new_room(max_turns=turns)
    provider = InstantProvider()
    runner = RoomRunner(room, lambda model: provider, InstantImages(), QuietStage())
    start = time.perf_counter()
    asyncio.run(runner.run())
    seconds = time.perf_counter() - start
    return [("engine time per turn (instant provider, 4 AIs, 2000 turns)", f"{seconds / turns * 1e6:.0f} µs")]


def bench_context() -> list[tuple[str, str]]:
    rows = []
    for length in (100, 1_000, 10_000):
        room = new_room()
        for _ in range(length):
            turn = room.next_turn()
            room.complete_turn(turn, "a reply of ordinary length, about forty words long. " * 4)
            room.take_events()
        participant = room.participants[1]
        timings = []
        for _ in range(20):
            start = time.perf_counter()
            room.request_for(participant)
            timings.append(time.perf_counter() - start)
        rows.append((f"build context, history of {length} replies", f"{statistics.median(timings) * 1e6:.0f} µs"))
    return rows


SPOKEN = "a reply of ordinary length, about forty words long, with a thought or two in it. " * 3
WORDS = [a + b for a in ("ka", "lo", "mi", "su", "te", "vo", "ra", "ne", "po", "chi") for b in ("rn", "ll", "st", "de", "mo", "ri", "sk", "ve", "na", "th")]


def spoken(rng: random.Random) -> str:
    """A reply of about forty words, fresh each time: the same reply every turn would be refused
    by the repeat guard (stored as an unposted reply), which keeps no text and trims nothing."""
    return " ".join(rng.choices(WORDS, k=40)) + "."


def prefill(room: Room, turns: int) -> None:
    """The history ``turns`` turns leave behind (a reply each, the outcome of commands every
    10th, a picture every 25th), appended directly: fast even where building requests is slow."""
    seats = [p.number for p in room.present]
    for i in range(turns):
        speaker = room.participants[seats[i % len(seats)]]
        room.history.append(Entry("reply", f"{i}: {SPOKEN}", speaker=speaker.number, name=speaker.label))
        if i % 10 == 0:
            room.history.append(Entry("private", "How your commands went:\n- !temperature 1.2: done.", audience=speaker.number))
        if i % 25 == 0:
            caption = f'[{speaker.label}]: !image "picture {i}"'
            room.history.append(Entry("image", caption, speaker=speaker.number, name=speaker.label, picture=Picture(bytes(2048))))


def play_turn(room: Room, rng: random.Random) -> None:
    """One turn through the engine as a runner takes it, with an instant reply and picture
    (fresh words before the commands: a reply copying the last one is refused, not posted)."""
    turn = room.next_turn()
    room.complete_turn(turn, f"{spoken(rng)} {spoken(rng)}\n{REPLY}", Usage(input_tokens=1200, output_tokens=80))
    for event in room.take_events():
        if type(event).__name__ == "ImageJob":
            room.image_done(event.job_id, Picture(bytes(2048)))
    room.take_events()


def bench_turn_cost(lengths: tuple[int, ...] = (200, 2_000, 10_000), ais: int = 5) -> list[tuple[str, str]]:
    """Engine time of one turn (request, reply, commands, picture) after a history of each length."""
    rows = []
    for length in lengths:
        room, rng = new_room(ais=ais), random.Random(length)
        prefill(room, length)
        for _ in range(5):  # warm up: the first request after the prefill reads all of it once
            play_turn(room, rng)
        timings = []
        for _ in range(50):
            start = time.process_time()  # CPU time: other processes on a busy machine do not count
            play_turn(room, rng)
            timings.append(time.process_time() - start)
        rows.append((f"engine CPU time per turn after {length} turns ({ais} AIs)", f"{statistics.median(timings) * 1e3:.2f} ms"))
    return rows


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def room_memory(turns: int, picture_bytes: int = 100_000) -> int:
    """RSS growth in KiB of one room after ``turns`` turns (5 AIs; a picture every 10th turn)."""
    gc.collect()
    before = rss_kb()
    rng = random.Random(turns)
    room = new_room(ais=5)
    for i in range(turns):
        turn = room.next_turn()
        text = f"turn {i}: {spoken(rng)}" + (f'\n!image "a picture for turn {i}"' if i % 10 == 0 else "")
        room.complete_turn(turn, text, Usage(input_tokens=1200, output_tokens=80))
        for event in room.take_events():
            if type(event).__name__ == "ImageJob":
                room.image_done(event.job_id, Picture(os.urandom(picture_bytes)))
        room.take_events()
    del turn  # between turns a runner keeps no request (it holds a context window of text)
    gc.collect()
    return rss_kb() - before


def bench_room_rss(counts: tuple[int, ...] = (500, 2_000, 10_000)) -> list[tuple[str, str]]:
    """Each count in a fresh interpreter, so memory freed by earlier benchmarks does not hide its growth."""
    rows = []
    for turns in counts:
        with multiprocessing.get_context("spawn").Pool(1) as pool:  # a clean heap, whatever ran before
            growth = pool.apply(room_memory, (turns,))
        rows.append((f"RSS of one room after {turns} turns (5 AIs, a 100 KB picture every 10th)", f"{growth / 1024:.1f} MiB"))
    return rows


def bench_memory(turns: int = 500) -> list[tuple[str, str]]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    room = new_room()
    for _ in range(turns):
        turn = room.next_turn()
        room.complete_turn(turn, REPLY.replace("!image", "image"))
        room.take_events()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_room = after - before
    return [(f"memory per room after {turns} turns (no pictures)", f"{per_room / 1024:.0f} KiB ({per_room / turns:.0f} B/turn)")]


SECTIONS = {
    "parse": bench_parse,
    "turns": bench_turns,
    "turn-cost": bench_turn_cost,
    "context": bench_context,
    "memory": bench_memory,
    "rss": bench_room_rss,
}


def main() -> None:
    chosen = sys.argv[1:] or list(SECTIONS)
    unknown = [name for name in chosen if name not in SECTIONS]
    if unknown:
        sys.exit(f"unknown section {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    rows = [row for name in chosen for row in SECTIONS[name]()]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
