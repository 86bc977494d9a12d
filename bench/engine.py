"""Engine benchmarks: parsing, time per turn, context building, memory per room.

Run with ``make bench`` (or ``python bench/engine.py``). Figures are printed as
a table; nothing here asserts, so machine speed never fails a build.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot import data  # noqa: E402
from bot.engine import ChatRequest, Picture, Room, RoomSettings, Usage, parse_commands  # noqa: E402
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
    for name in ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5", "GPT 5.2"][:ais]:
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


def main() -> None:
    rows = bench_parse() + bench_turns() + bench_context() + bench_memory()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
