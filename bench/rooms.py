"""Many rooms in one bot process: the Discord layer against simcord and the fake model server.

Every room runs its real runner, stage and webhook persona sends against
simcord's in-memory Discord; the model server (another process, so its threads
do not share our GIL) streams each reply in pieces over 50-300 ms. Reported:
rooms held, turns and Discord messages per second, event loop lag (a 20 ms
timer's lateness) and memory (RSS growth of a fresh process per size, which
includes simcord's own record of every message and request). Run with ``python bench/rooms.py``; it prints a
table and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import random
import statistics
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simcord  # noqa: E402

from bot import create_bot  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes import FakeLLMServer, Reply  # noqa: E402

MODELS = ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5"]
PIECES = 12  # what Reply.text(chunks=6) sends: opening, six text chunks, finish, usage, [DONE]
TICK = 0.02


def realistic_reply(body: dict[str, Any]) -> Reply:
    """A reply of a few sentences whose pieces together take 50-300 ms."""
    total = random.uniform(0.05, 0.3)
    text = "The corridor hums; " * random.randint(4, 30) + "and we listen."
    return Reply.text(text, chunks=6, delay=total / PIECES, model=str(body.get("model", "fake")))


def serve(port_out: Any, stop: Any) -> None:
    """The model server's own process: serve until told to stop."""
    with FakeLLMServer() as server:
        server.default = realistic_reply
        port_out.send(server.base_url)
        stop.wait()


@dataclass
class Row:
    rooms: int
    held: int
    seconds: float
    turns: int
    messages: int
    lag_p50: float
    lag_p99: float
    lag_max: float
    rss_mb: float
    rss_per_room_kb: float


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def watch_lag(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(TICK)
        samples.append(max(0.0, loop.time() - start - TICK))


async def run_rooms(count: int, seconds: float, base_url: str, delay: float = 0.0) -> Row:
    from cogs.coordinator import RoomOptions

    folder = tempfile.mkdtemp(prefix="seance-bench-")
    settings = Settings(
        _env_file=None,
        database_path=Path(folder) / "bench.sqlite3",  # rooms are stored as in production
        openrouter_api_key="bench",
        openrouter_base_url=base_url,
        image_provider="offline",
        idle_pause_minutes=0,
        send_timeout=30,
    )
    bot = create_bot(settings)
    before = rss_kb()
    async with simcord.run(bot, check_errors=False) as env:
        guild = env.create_guild("Bench")
        host = guild.add_member(env.create_user("host"))
        moderator = await bot.fetch_user(host.id)
        coordinator: Any = bot.get_cog("Coordinator")
        sessions = []
        for i in range(count):
            channel = bot.get_channel(guild.create_text_channel(f"room-{i}").id)
            options = RoomOptions(models=random.sample(MODELS, 2), scenario="open-room", turns=100_000, delay=delay)
            session = coordinator.open(channel, coordinator.build_room(options), moderator, options)
            await coordinator.persist(session, options)
            coordinator.launch(session)
            sessions.append(session)
        samples: list[float] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_lag(samples, stop))
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - started
        turns = sum(s.room.turns_taken for s in sessions)
        held = sum(1 for s in sessions if s.room.state == "running" and s.task is not None and not s.task.done())
        messages = sum(len(env.backend.messages.get(s.channel.id, {})) for s in sessions)
        growth = rss_kb() - before
        stop.set()
        await watcher
        await coordinator.stop_all("the benchmark is over", timeout=10)
        await bot.close()
    shutil.rmtree(folder, ignore_errors=True)
    samples.sort()
    return Row(
        rooms=count,
        held=held,
        seconds=elapsed,
        turns=turns,
        messages=messages,
        lag_p50=statistics.median(samples) * 1000 if samples else 0.0,
        lag_p99=samples[int(len(samples) * 0.99) - 1] * 1000 if samples else 0.0,
        lag_max=samples[-1] * 1000 if samples else 0.0,
        rss_mb=growth / 1024,
        rss_per_room_kb=growth / count,
    )


def print_table(rows: list[Row]) -> None:
    header = (
        f"{'rooms':>6} {'held':>5} {'turns/s':>8} {'msgs/s':>7} {'turns/room/s':>12} "
        f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'RSS +MB':>8} {'KB/room':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.rooms:>6} {r.held:>5} {r.turns / r.seconds:>8.1f} {r.messages / r.seconds:>7.1f} "
            f"{r.turns / r.seconds / r.rooms:>12.2f} {r.lag_p50:>6.1f}ms {r.lag_p99:>6.1f}ms {r.lag_max:>6.1f}ms "
            f"{r.rss_mb:>8.1f} {r.rss_per_room_kb:>8.0f}"
        )


def in_fresh_process(count: int, seconds: float, base_url: str, delay: float) -> Row:
    """One size in its own process, so memory growth is this size's alone."""
    rows_in, rows_out = multiprocessing.Pipe(duplex=False)

    def measure() -> None:
        random.seed(count)
        rows_out.send(asyncio.run(run_rooms(count, seconds, base_url, delay)))

    worker = multiprocessing.Process(target=measure)
    worker.start()
    row = rows_in.recv()
    worker.join()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[10, 50, 150])
    parser.add_argument("--seconds", type=float, default=6.0, help="how long each size runs")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between turns (TURN_DELAY; default 0)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    random.seed(7)
    port_in, port_out = multiprocessing.Pipe(duplex=False)
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port_out, stop), daemon=True)
    server.start()
    try:
        base_url = port_in.recv()
        rows = [in_fresh_process(count, args.seconds, base_url, args.delay) for count in args.rooms]
    finally:
        stop.set()
        server.join(timeout=5)
        with contextlib.suppress(Exception):
            server.kill()
    pace = f"{args.delay:g} s between turns" if args.delay else "no delay between turns"
    print(f"Each room: 2 AIs, {pace}; replies stream over 50-300 ms; {args.seconds:g} s per size.")
    print_table(rows)


if __name__ == "__main__":
    main()
