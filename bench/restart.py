"""A restart of many stored rooms: how long until each is back and speaking, and what it asks of Discord.

Each size runs in a fresh process against simcord and the fake model server
(the same as ``bench/rooms.py``). The first bot stores ``--rooms`` rooms of 5
AIs, each with ``--history`` turns of history already posted (one room played
in the engine, copied in SQL to the others), and goes offline. A second bot on
the same database then starts, as after a restart, and brings them all back.

Measured from the new bot's start: when each room's "back" notice is sent to
Discord (back; a room never told shows as "N/rooms only") and when its first new
reply is shown (speaking), as p50 / p99 / max;
the process's RSS after; how many rooms lost their lease (stopped by this process
during the restart: its renewals came too late) and the most "back" notices any
channel was sent (1 unless a room was lost and taken over again); and every Discord REST request of the restart window
by bucket (method and route, ids as {id}), with the busiest second of all
bot-token requests (Discord's global limit is 50 a second; webhook executions
count against each webhook's own limit instead).

    python bench/restart.py --rooms 100 300 1000 --history 200

It prints one table row per size and asserts nothing. It talks to 127.0.0.1 only.
BENCH_LOG=WARNING shows the bot's warnings (default: errors only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import simcord  # noqa: E402

from bot import create_bot, data  # noqa: E402
from bot.engine import Reply, Room, RoomSettings  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.stage import DiscordStage  # noqa: E402
from bot.storage import Store  # noqa: E402
from rooms import (  # noqa: E402
    MODELS, beat_leases, in_fresh_process, parse_range, realistic_reply, rss_kb, run_on_the_real_loop, serve,
)

LIMIT_SECONDS = 600.0
BACK_WORDS = "is back after a restart"  # in the notice of a running room and of a paused one
ID = re.compile(r"/\d+")
TOKEN = re.compile(r"^/webhooks/\{id\}/[^/]+")


@dataclass
class Row:
    rooms: int
    history: int
    back: list[float]
    speaking: list[float]
    rss_mb: float
    buckets: Counter[str] = field(default_factory=Counter)
    bot_peak: int = 0  # bot-token requests in the busiest second
    hook_peak: float = 0.0  # the busiest webhook's requests in its busiest 2 s
    window: float = 0.0
    restored: float = 0.0  # seconds until every room was loaded and launched
    lost: int = 0  # rooms this process stopped because their lease ran out
    backs: int = 0  # the most "back" notices one channel was sent
    load: str = ""


def bucket(method: str, path: str) -> str:
    """A request's route with its ids left out: Discord limits each route (per channel or webhook)."""
    route = TOKEN.sub("/webhooks/{id}/{token}", ID.sub("/{id}", path))
    return f"{method} {route}"


class StampedLog(list):  # type: ignore[type-arg]
    """simcord's request log, each request stamped with the time it is made.

    Stamped as it is appended, not by a task polling the log: while a restore keeps the
    event loop busy, a polling task runs late and lumps several seconds' requests into one."""

    def __init__(self, entries: list[Any]) -> None:
        super().__init__(entries)
        self.stamps: list[tuple[float, Any]] = []

    def append(self, entry: Any) -> None:
        self.stamps.append((time.perf_counter(), entry))
        super().append(entry)


class RequestClock:
    """The requests made since it was set up, with the time each was made."""

    def __init__(self, backend: Any) -> None:
        backend.http_requests = StampedLog(backend.http_requests)
        self.log: StampedLog = backend.http_requests

    @property
    def stamps(self) -> list[tuple[float, Any]]:
        return self.log.stamps

    def bot_peak(self, until: float) -> int:
        """Bot-token requests (not webhook executions) in the busiest second."""
        times = [t for t, e in self.stamps if t <= until and not e.path.startswith("/webhooks/")]
        return _busiest(times, 1.0)

    def hook_peak(self, until: float) -> int:
        by_hook: dict[str, list[float]] = {}
        for t, e in self.stamps:
            if t <= until and e.path.startswith("/webhooks/"):
                by_hook.setdefault(e.path.split("/")[2], []).append(t)
        return max((_busiest(times, 2.0) for times in by_hook.values()), default=0)


def _busiest(times: list[float], span: float) -> int:
    best, low = 0, 0
    for high, t in enumerate(times):
        while times[low] < t - span:
            low += 1
        best = max(best, high - low + 1)
    return best


class Arrivals:
    """When each channel's room was first shown speaking after the restart."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.speaking: dict[int, float] = {}

    def install(self) -> None:
        arrivals, show = self, DiscordStage.show

        async def timed_show(stage: DiscordStage, events: list[Any], done: Any = ()) -> Any:
            shown = await show(stage, events, done)
            if any(isinstance(e, Reply) for e in events):
                arrivals.speaking.setdefault(stage.channel.id, time.perf_counter() - arrivals.start)
            return shown

        DiscordStage.show = timed_show  # type: ignore[method-assign]


async def template_room(store: Store, turns: int) -> int:
    """One stored room of 5 AIs that has spoken ``turns`` times (replies of a few sentences)."""
    room = Room(data.catalog(), data.scenarios()["open-room"], RoomSettings(), topic="the lighthouse")
    for name in MODELS[:5]:
        room.add(name)
    room_id = await store.create_room(room, "console")
    for i in range(turns):
        turn = room.next_turn()
        assert turn is not None
        room.complete_turn(turn, f"Turn {i}: " + "The corridor hums; " * random.randint(4, 30) + "and we listen.")
        await store.save(room_id, room, room.take_events())
    return room_id


def copy_history(path: Path, template_id: int, room_ids: list[int]) -> None:
    """Give every room the template's history, state and posted events (plain SQL: quick at any size)."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        snapshot, history_len = db.execute(
            "SELECT snapshot, history_len FROM rooms WHERE id = ?", (template_id,)
        ).fetchone()
        for room_id in room_ids:
            db.execute("UPDATE rooms SET snapshot = ?, history_len = ? WHERE id = ?", (snapshot, history_len, room_id))
            db.execute(
                "INSERT OR REPLACE INTO entries (room_id, seq, data) SELECT ?, seq, data FROM entries WHERE room_id = ?",
                (room_id, template_id),
            )
            db.execute(
                "INSERT INTO events (room_id, kind, data, created_at, posted_at, message_ids)"
                " SELECT ?, kind, data, created_at, created_at, ? FROM events WHERE room_id = ?",
                (room_id, json.dumps([1]), template_id),
            )
        db.execute("DELETE FROM rooms WHERE id = ?", (template_id,))


async def store_rooms(env: simcord.Env, bot: Any, count: int, args: argparse.Namespace) -> None:
    """The first bot's life: ``count`` rooms started and stored, then history added to each."""
    from cogs.coordinator import RoomOptions

    guild = env.create_guild("Bench")
    host = guild.add_member(env.create_user("host"))
    moderator = await bot.fetch_user(host.id)
    coordinator: Any = bot.get_cog("Coordinator")
    config = await bot.guild_settings.get(guild.id)
    ids = []
    bot.webhooks.bot_wide.rate.limit = 0  # setting up is not what is measured
    for i in range(count):
        channel = bot.get_channel(guild.create_text_channel(f"room-{i}").id)
        await bot.webhooks.get(channel)  # made and stored, as by a room that has spoken
        options = RoomOptions(models=MODELS[:5], scenario="open-room", turns=100_000, delay=args.delay)
        session = coordinator.open(channel, coordinator.build_room(options, config), moderator, options)
        await coordinator.persist(session, options)
        coordinator.discard(session)  # stored, never launched: its history comes next
        ids.append(session.room_id)
    store: Store = bot.store
    template_id = await template_room(store, args.history)
    path = store.path
    await bot.close()
    copy_history(path, template_id, ids)


async def run_restart(count: int, args: argparse.Namespace, base_url: str) -> Row:
    folder = tempfile.mkdtemp(prefix="seance-restart-")
    settings = Settings(
        _env_file=None,
        database_path=Path(folder) / "bench.sqlite3",
        openrouter_api_key="bench",
        openrouter_base_url=base_url,
        image_provider="offline",
        idle_pause_minutes=0,
        send_timeout=30,
        max_ais=5,
    )
    first = create_bot(settings)
    async with simcord.run(first, check_errors=False, shard_count=1) as env:
        await store_rooms(env, first, count, args)
        second = create_bot(settings)
        arrivals = Arrivals()
        arrivals.install()
        # The rooms come back once the new bot is connected, called from here rather than by its
        # on_ready: simcord's attach waits for the bot to settle, which running rooms never do.
        add_cog = second.add_cog

        async def without_restore(cog: Any, **kwargs: Any) -> None:
            if type(cog).__name__ == "Coordinator":
                cog._restored = True
            await add_cog(cog, **kwargs)

        second.add_cog = without_restore
        await env.restart_bot(second)
        run_on_the_real_loop(env)  # as bench/rooms.py: the bot on the plain loop, simcord's Discord kept
        await first._close_store()
        coordinator: Any = second.get_cog("Coordinator")
        clock = RequestClock(env.backend)
        arrivals.start = time.perf_counter()
        sampler = asyncio.create_task(sample_waits()) if os.environ.get("BENCH_WAITS") else None
        lost = count_losses(coordinator)
        beating = asyncio.create_task(beat_leases(coordinator))  # as the bot's on_ready starts it
        await coordinator.restore()
        restored = time.perf_counter() - arrivals.start
        deadline = time.perf_counter() + args.limit
        while len(arrivals.speaking) < count and time.perf_counter() < deadline:
            await asyncio.sleep(0.1)
        until = time.perf_counter()
        beating.cancel()
        if sampler is not None:
            sampler.cancel()
        rss = rss_kb() / 1024
        back, told = told_back(clock.stamps, arrivals.start)
        row = Row(
            rooms=count,
            history=args.history,
            back=back,
            speaking=sorted(arrivals.speaking.values()),
            rss_mb=rss,
            buckets=Counter(bucket(e.method, e.path) for t, e in clock.stamps if t <= until),
            bot_peak=clock.bot_peak(until),
            hook_peak=clock.hook_peak(until),
            window=until - arrivals.start,
            restored=restored,
            lost=len(lost),
            backs=max(told.values(), default=0),
            load=load(),
        )
        await coordinator.stop_all("the benchmark is over", timeout=10)
        await second.close()
    shutil.rmtree(folder, ignore_errors=True)
    return row


def count_losses(coordinator: Any) -> set[int]:
    """The rooms whose runner stopped on a lost lease (filled in as they stop)."""
    lost: set[int] = set()
    drive = coordinator._drive

    async def counted_drive(session: Any) -> None:
        await drive(session)
        if session.runner.lost is not None:
            lost.add(session.room_id)

    coordinator._drive = counted_drive
    return lost


def told_back(stamps: list[tuple[float, Any]], start: float) -> tuple[list[float], Counter[str]]:
    """When each channel was first told its room is back, and how often each was told: read
    from the notices Discord was sent, so a notice stored but never posted counts as missing
    (a restart once showed 500 of 1,000, while the rooms had each been opened once)."""
    first: dict[str, float] = {}
    told: Counter[str] = Counter()
    for t, entry in stamps:
        if entry.method == "POST" and entry.path.endswith("/messages") and not entry.path.startswith("/webhooks/"):
            if times := str((entry.json or {}).get("content", "")).count(BACK_WORDS):
                told[entry.path] += times
                first.setdefault(entry.path, t - start)
    return sorted(first.values()), told


async def sample_waits() -> None:
    """Where the rooms' tasks wait, counted over the run (BENCH_WAITS=1): the innermost
    line of Séance's own code in each task's stack, printed every 5 s."""
    seen: Counter[str] = Counter()
    tick = 0
    while True:
        await asyncio.sleep(0.5)
        tick += 1
        for task in asyncio.all_tasks():
            frames = [f for f in task.get_stack(limit=40) if "/bot/" in f.f_code.co_filename or "/cogs/" in f.f_code.co_filename]
            if frames:
                inner = frames[-1]
                seen[f"{Path(inner.f_code.co_filename).name}:{inner.f_lineno} {inner.f_code.co_name}"] += 1
        if tick % 10 == 0:
            print("waits:", "; ".join(f"{n} {where}" for where, n in seen.most_common(6)), file=sys.stderr)
            seen.clear()


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def quantiles(values: list[float], count: int) -> str:
    """p50 / p99 / max of a room's arrival times; '-' for rooms that never arrived."""
    if len(values) < count:
        return f"{len(values)}/{count} only"
    return f"{statistics.median(values):.1f} / {values[max(0, int(len(values) * 0.99) - 1)]:.1f} / {values[-1]:.1f}"


def print_row(row: Row, header: bool) -> None:
    if header:
        print(
            f"{'rooms':>6} {'history':>7} {'back p50/p99/max s':>20} {'speaking p50/p99/max s':>24} "
            f"{'restored s':>10} {'lost':>5} {'backs':>5} {'bot req':>8} {'bot peak/s':>10} {'hook peak/2s':>12} {'RSS MB':>7}  load (1/5/15 min)"
        )
    bot_total = sum(n for b, n in row.buckets.items() if "/webhooks/" not in b)
    print(
        f"{row.rooms:>6} {row.history:>7} {quantiles(row.back, row.rooms):>20} {quantiles(row.speaking, row.rooms):>24} "
        f"{row.restored:>10.1f} {row.lost:>5} {row.backs:>5} {bot_total:>8} {row.bot_peak:>10} {row.hook_peak:>12} {row.rss_mb:>7.0f}  {row.load}"
    )
    for name, n in row.buckets.most_common():
        print(f"{'':>8}{n:>7}  {name}")
    sys.stdout.flush()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[100], help="room counts, one run each")
    parser.add_argument("--history", type=int, default=200, help="turns of history each room has")
    parser.add_argument("--reply", type=parse_range, default=(0.5, 1.0), help="fake model reply time, LOW-HIGH s")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds between turns (TURN_DELAY)")
    parser.add_argument("--limit", type=float, default=180.0, help="give up waiting for rooms after this long")
    args = parser.parse_args()
    if not all(1 <= n <= 2000 for n in args.rooms) or not 0 <= args.history <= 10_000:
        parser.error("--rooms takes counts from 1 to 2000, --history 0 to 10000")
    if not 0 < args.limit <= LIMIT_SECONDS:
        parser.error(f"--limit must be within {LIMIT_SECONDS:g} s")
    return args


def main() -> None:
    args = arguments()
    logging.basicConfig(level=getattr(logging, os.environ.get("BENCH_LOG", "ERROR")))
    random.seed(7)
    port_in, port_out = multiprocessing.Pipe(duplex=False)
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port_out, stop, realistic_reply(args.reply)), daemon=True)
    server.start()
    low, high = args.reply
    print(
        f"Each room: 5 AIs, {args.history} turns of history, replies of {low:g}-{high:g} s; times are from the new "
        f"bot's start; requests are those of that window, by bucket."
    )
    try:
        base_url = port_in.recv()
        for n, count in enumerate(args.rooms):
            print_row(in_fresh_process(run_restart, count, args, base_url), header=n == 0)
    finally:
        stop.set()
        server.join(timeout=5)
        with contextlib.suppress(Exception):
            server.kill()


if __name__ == "__main__":
    main()
