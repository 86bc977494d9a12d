"""Many rooms in one bot process: the Discord layer against simcord and the fake model server.

Every room runs its real runner, stage and webhook persona sends against
simcord's in-memory Discord; the model server (bench/model_server.py, one thread
in another process) streams each reply in pieces spread over the chosen reply
time. Each size runs in a fresh process: a warm-up of one full turn cycle (the
rooms start in step, so their first turns are not steady state), then a
measuring window. Everything rated per second is counted in that window only:
turns finished, failed turns, Discord requests, event loop lag (a 20 ms
timer's lateness). ``ideal`` is what the rooms could do if the process added
nothing: rooms / (delay + mean reply time) turns per second. RSS is the
process's growth since before the rooms were made (it includes simcord's own
record of every message and request). ``gc %`` is the share of that CPU the cyclic garbage
collector took, ``gc max`` its longest collection; the bot process collects with the thresholds
the bot's entry point sets (``bot.process.tune_gc``; BENCH_GC_THRESHOLDS=A,B,C tries others).
Diagnostics on stderr: model call times beside the turn times, the collector per generation,
BENCH_STALLS=1 where every thread was while the loop stood still for 250 ms, BENCH_GCDUMP=1 what
the young generation holds at its first collection, BENCH_GARBAGE=1 what is left in reference
cycles over 2 s after the window, BENCH_ROUTES=1 the window's requests by route.

    python bench/rooms.py                                    # quick: 10/50 rooms, fast replies
    python bench/rooms.py --rooms 100 --reply 4-8 --delay 2  # the issue's goal table, one row
    python bench/rooms.py --rooms 100 --reply 4-8 --delay 2 --postgres local  # the same on PostgreSQL

It prints one table row per run (with the load average: other work on the machine slows it)
and asserts nothing. It talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Coroutine
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import simcord  # noqa: E402

from bot import create_bot  # noqa: E402
from bot.engine import Room  # noqa: E402
from bot.process import tune_gc  # noqa: E402
from bot.settings import Settings  # noqa: E402
from engine import WORDS  # noqa: E402  (bench/engine.py: the words fresh replies are made of)
from model_server import serve  # noqa: E402  (bench/model_server.py)
from tests.fakes import Reply  # noqa: E402
from tests.postgres import bench_databases  # noqa: E402

MODELS = ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5", "GPT 5.2", "Kimi K2", "Grok 4 Fast"]
PIECES = 12  # what Reply.text(chunks=6) sends: opening, six text chunks, finish, usage, [DONE]
TICK = 0.02
MAX_ROOMS = 2000  # bounds, so a typo cannot take the machine
MAX_SECONDS = 600.0


def parse_range(text: str) -> tuple[float, float]:
    """``"4-8"`` -> (4.0, 8.0); ``"0.05-0.3"`` too; one number is a fixed time."""
    low, _, high = text.partition("-")
    pair = (float(low), float(high or low))
    if not 0 <= pair[0] <= pair[1] <= 120:
        raise argparse.ArgumentTypeError(f"a reply time range is LOW-HIGH seconds within 0-120, not {text!r}")
    return pair


def realistic_reply(reply_time: tuple[float, float]) -> Callable[[dict[str, Any]], Reply]:
    """A few sentences per reply, spread over a time drawn from ``reply_time``."""

    def reply(body: dict[str, Any]) -> Reply:
        total = random.uniform(*reply_time)
        # Words drawn afresh for every reply: a reply repeating the last ones would be taken for a
        # loop (a notice, a nudge) in every room, which real conversations do not do every turn.
        text = " ".join(random.choices(WORDS, k=random.randint(12, 90))) + "."
        return Reply.text(text, chunks=6, delay=total / PIECES, model=str(body.get("model", "fake")))

    return reply


@dataclass
class Row:
    rooms: int
    held: int
    seconds: float
    turns: int
    failed: int
    ideal: float
    turn_p50: float
    messages: int
    bot_requests: int
    webhook_requests: int
    webhook_busiest: int
    lag_p50: float
    lag_p99: float
    lag_max: float
    rss_mb: float
    commits: int  # write transactions in the window (group commit: many rooms' saves in each)
    cpu: float  # the process's CPU seconds in the window (all threads; simcord's Discord included)
    gc_cpu: float  # of which the cyclic garbage collector's
    gc_pause: float  # its longest single collection, seconds (the loop stands still meanwhile)
    load: str  # the machine's load average at the end (1, 5, 15 min): other work shares the cores


class TurnClock:
    """Wraps the engine's turn calls to time each turn and count those finished in the window."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.window_open = False
        self.finished = 0
        self.failed = 0
        self.durations: list[float] = []
        self.spoken: set[int] = set()  # rooms with a finished turn, window or not

    def install(self) -> None:
        clock = self
        next_turn, complete, fail = Room.next_turn, Room.complete_turn, Room.fail_turn

        def timed_next(room: Room) -> Any:
            turn = next_turn(room)
            if turn is not None:
                clock.started[id(room)] = time.perf_counter()
            return turn

        def timed_complete(room: Room, *args: Any, **kwargs: Any) -> None:
            clock.done(room, failed=False)
            complete(room, *args, **kwargs)

        def timed_fail(room: Room, *args: Any, **kwargs: Any) -> None:
            clock.done(room, failed=True)
            fail(room, *args, **kwargs)

        Room.next_turn, Room.complete_turn, Room.fail_turn = timed_next, timed_complete, timed_fail  # type: ignore[method-assign]

    def done(self, room: Room, failed: bool) -> None:
        started = self.started.pop(id(room), None)
        self.spoken.add(id(room))
        if not self.window_open:
            return
        self.finished += 1
        self.failed += failed
        if started is not None:
            self.durations.append(time.perf_counter() - started)


def _size(thing: Any) -> int:
    try:
        return len(thing) if isinstance(thing, (list, dict, set, tuple, deque)) else 0
    except TypeError:
        return 0


class GcMeter:
    """The garbage collector's CPU time and longest pause while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.cpu = self.longest = self._began = 0.0
        self.by_generation = [[0, 0.0, 0.0, 0] for _ in range(3)]  # collections, CPU, longest, garbage found

    def __enter__(self) -> GcMeter:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            if os.environ.get("BENCH_GCDUMP") and info["generation"] == 0 and not getattr(self, "_dumped", False):
                self._dumped = True
                young = gc.get_objects(generation=0)
                kinds = Counter(type(o).__qualname__ for o in young)
                sizes = sorted((_size(o), type(o).__qualname__) for o in young)[-8:]
                print(f"(young: {len(young)} objects; {kinds.most_common(12)}; largest {sizes})", file=sys.stderr)
                del young
            self._began = time.process_time()
            return
        took = time.process_time() - self._began
        self.cpu += took
        self.longest = max(self.longest, took)
        seen = self.by_generation[info["generation"]]
        seen[0], seen[1], seen[2] = seen[0] + 1, seen[1] + took, max(seen[2], took)
        seen[3] += info["collected"]

    def describe(self) -> str:
        return ", ".join(
            f"generation {g}: {n} collections, {cpu:.2f} s, longest {longest * 1000:.0f} ms, {found} garbage objects"
            for g, (n, cpu, longest, found) in enumerate(self.by_generation)
        )


async def sample_garbage(seconds: float = 2.0) -> None:
    """BENCH_GARBAGE=1: what the bot leaves in reference cycles over ``seconds`` (only the
    collector frees those, so they set how often it runs), by type and, for coroutines and
    frames, by function."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        await asyncio.sleep(seconds)
        gc.collect()
        kinds = Counter(type(o).__qualname__ for o in gc.garbage)
        code = Counter(
            getattr(o, "__qualname__", None) or getattr(getattr(o, "f_code", None), "co_qualname", "?")
            for o in gc.garbage if type(o).__name__ in ("coroutine", "frame", "async_generator", "generator")
        )
        print(f"(cycles left in {seconds:g} s: {len(gc.garbage)} objects; {kinds.most_common(20)}; "
              f"by code {code.most_common(20)})", file=sys.stderr)
        if os.environ.get("BENCH_GARBAGE") == "2":
            detail = Counter()
            for o in gc.garbage:
                name = type(o).__qualname__
                if name in ("Task", "Handle", "_TaskRecord", "_CallbackRecord", "Request", "Response", "function", "method"):
                    detail[f"{name}: {repr(o)[:150]}"] += 1
            for line, n in detail.most_common(40):
                print(f"   {n:5d} {line}", file=sys.stderr)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@contextlib.contextmanager
def stall_report(threshold: float = 0.25) -> Any:
    """BENCH_STALLS=1: where the event loop's thread is while the loop has not turned for
    ``threshold`` seconds (a watchdog thread samples its stack every 20 ms), printed at the end."""
    if not os.environ.get("BENCH_STALLS"):
        yield
        return
    loop_thread, last_turn, stalls = threading.get_ident(), [time.monotonic()], Counter[str]()
    done = threading.Event()

    async def turning() -> None:
        while True:
            last_turn[0] = time.monotonic()
            await asyncio.sleep(0.01)

    native = threading.get_native_id()
    busy = [0.0, 0.0]  # the loop thread's CPU seconds and the wall seconds, while stalled

    def thread_cpu() -> float:
        fields = Path(f"/proc/self/task/{native}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def watch() -> None:
        was = None
        while not done.wait(0.02):
            stalled = time.monotonic() - last_turn[0] > threshold
            if stalled and was is None:
                was = (time.monotonic(), thread_cpu())
            elif not stalled and was is not None:
                busy[0] += thread_cpu() - was[1]
                busy[1] += time.monotonic() - was[0]
                was = None
            if stalled:  # sample where every thread is
                for thread, frame in sys._current_frames().items():
                    if thread == threading.get_ident():
                        continue
                    stack = traceback.extract_stack(frame)[-(8 if thread == loop_thread else 3):]
                    name = "loop" if thread == loop_thread else "other thread"
                    stalls[name + ": " + " <- ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(stack))] += 1

    ticker = asyncio.create_task(turning())
    threading.Thread(target=watch, daemon=True).start()
    try:
        yield
    finally:
        done.set()
        ticker.cancel()
        total = sum(stalls.values())
        print(f"  stalled {busy[1]:.1f} s in all; the loop's thread ran on a core {busy[0]:.1f} s of it", file=sys.stderr)
        print(f"  {total} samples (every 20 ms) while the loop stood still for over {threshold * 1000:.0f} ms:", file=sys.stderr)
        for where, times in stalls.most_common(20):
            print(f"  {times:>5} in {where}", file=sys.stderr)


def time_model_calls(durations: list[float]) -> None:
    """Record how long each model call (``bot.runner.complete``) took, to set against turn times."""
    import bot.runner

    original = bot.runner.complete

    async def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - began)

    bot.runner.complete = timed  # type: ignore[assignment]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def beat_leases(coordinator: Any) -> None:
    """The coordinator's lease heartbeat on the real clock.

    In production a ``discord.ext.tasks`` loop renews the rooms' leases; under simcord that
    loop follows simcord's virtual clock, which stands still in a benchmark, so without this
    every room's lease would lapse after ROOM_LEASE_SECONDS and the room would stop.
    Beats keep their schedule, as the tasks loop's do: a slow beat does not push the next
    one back (sleeping a full interval after each beat, the bench lost rooms the bot keeps).
    """
    loop = asyncio.get_running_loop()
    interval = coordinator.leases.seconds / 3
    due = loop.time()
    while True:
        due += interval
        await asyncio.sleep(max(0.0, due - loop.time()))
        began = time.perf_counter()
        await coordinator.heartbeat()
        if os.environ.get("BENCH_BEATS"):
            print(f"(heartbeat took {time.perf_counter() - began:.2f} s)", file=sys.stderr)


def run_on_the_real_loop(env: Any) -> None:
    """Take simcord's hands off the event loop and the clock, keeping its Discord.

    To settle tests and run them on virtual time, simcord wraps the loop's ``call_soon``,
    ``call_later``, ``call_at`` and ``create_task`` (a closure, a record and a reference cycle
    for every callback) and puts ``time.monotonic`` behind a lookup. At a thousand rooms
    that was a fifth of the main thread and most of what the garbage collector had to find,
    none of it the bot's: a deployed bot runs on the plain loop. The bench needs neither
    settling nor virtual time, so it lifts both once the world is built; simcord's HTTP
    routes and gateway, which stand for Discord, stay. BENCH_SIMCORD_LOOP=1 keeps them.
    """
    if os.environ.get("BENCH_SIMCORD_LOOP"):
        return
    from simcord import _dpy_internals

    loop = asyncio.get_running_loop()
    for name in ("create_task", "call_soon", "call_later", "call_at", "call_soon_threadsafe", "run_in_executor"):
        loop.__dict__.pop(name, None)  # the class's own methods show through again
    _dpy_internals.release_clocks(env)


async def watch_lag(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(TICK)
        samples.append(max(0.0, loop.time() - start - TICK))


def count_requests(log: list[Any], since: int) -> tuple[int, int, int]:
    """Bot-token requests, webhook requests and the busiest webhook's requests among ``log[since:]``."""
    hooks: Counter[str] = Counter()
    bot = 0
    for entry in log[since:]:
        parts = entry.path.strip("/").split("/")
        if parts[0] == "webhooks" and len(parts) >= 3:  # /webhooks/{id}/{token}/...: the webhook's own limits
            hooks[parts[1]] += 1
        else:
            bot += 1
    return bot, sum(hooks.values()), max(hooks.values(), default=0)


async def run_rooms(count: int, args: argparse.Namespace, base_url: str) -> Row:
    from cogs.coordinator import RoomOptions

    clock = TurnClock()
    clock.install()
    calls: list[float] = []
    time_model_calls(calls)
    folder = tempfile.mkdtemp(prefix="seance-bench-")
    settings = Settings(
        _env_file=None,
        database_path=Path(folder) / "bench.sqlite3",  # rooms are stored as in production
        openrouter_api_key="bench",
        openrouter_base_url=base_url,
        image_provider="offline",
        idle_pause_minutes=0,
        send_timeout=30,
        max_ais=max(5, args.ais),
        database_url=args.database_url,  # None: SQLite, as above
    )
    bot = create_bot(settings)
    before = rss_kb()
    async with simcord.run(bot, check_errors=False, shard_count=1) as env:
        guild = env.create_guild("Bench")
        host = guild.add_member(env.create_user("host"))
        moderator = await bot.fetch_user(host.id)
        coordinator: Any = bot.get_cog("Coordinator")
        config = await bot.guild_settings.get(guild.id)
        run_on_the_real_loop(env)
        beating = asyncio.create_task(beat_leases(coordinator))  # as the bot's on_ready starts it
        setup_started = time.perf_counter()
        sessions = []
        for i in range(count):
            channel = bot.get_channel(guild.create_text_channel(f"room-{i}").id)
            models = random.sample(MODELS, args.ais)
            options = RoomOptions(models=models, scenario="open-room", turns=100_000, delay=args.delay)
            sessions.append((coordinator.open(channel, coordinator.build_room(options, config), moderator, options), options))
        # Stored together (one group commit), then all launched: stored one by one while the
        # first rooms already ran, a thousand rooms took minutes to start.
        await asyncio.gather(*(coordinator.persist(session, options) for session, options in sessions))
        for session, _ in sessions:
            coordinator.launch(session)
        sessions = [session for session, _ in sessions]
        # Steady state: every room has made its webhook and posted a reply through it (a thousand
        # rooms starting at once share the bot's 45 requests a second for their webhooks and opening
        # notices; a turn alone says nothing: it may have failed, or its reply may wait to be posted).
        budget = bot.webhooks.bot_wide

        def posted() -> int:
            return sum(
                any(getattr(m, "webhook_id", None) for m in env.backend.messages.get(s.channel.id, {}).values())
                for s in sessions
            )

        while (posted() < count or budget.waiting) and time.perf_counter() - setup_started < MAX_SECONDS:
            await asyncio.sleep(1.0)
        print(
            f"({posted()} of {count} rooms had posted a reply, and no bot request waited for the budget, "
            f"{time.perf_counter() - setup_started:.1f} s after they were started)", file=sys.stderr, flush=True,
        )
        await asyncio.sleep(args.warmup)
        samples: list[float] = []
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_lag(samples, stop))
        requests_before = len(env.http_requests)
        commits_before = bot.store.group.batches
        messages_before = sum(len(env.backend.messages.get(s.channel.id, {})) for s in sessions)
        calls_before = len(calls)
        clock.window_open = True
        started, cpu_before = time.perf_counter(), time.process_time()
        with GcMeter() as collector, stall_report():
            await asyncio.sleep(args.seconds)
        clock.window_open = False
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
        stop.set()
        print(f"(garbage collector in the window: {collector.describe()})", file=sys.stderr)
        if os.environ.get("BENCH_GARBAGE"):
            await sample_garbage()
        window_calls = sorted(calls[calls_before:])
        if window_calls:
            print(f"(model calls in the window: p50 {statistics.median(window_calls):.2f} s, "
                  f"p90 {window_calls[int(len(window_calls) * 0.9)]:.2f} s)", file=sys.stderr)
        await watcher
        bot_requests, hook_requests, busiest = count_requests(env.http_requests, requests_before)
        if os.environ.get("BENCH_ROUTES"):  # which bot-token requests the window made, by route
            import re
            routes = Counter(f"{e.method} {re.sub(r'[0-9]{5,}', '{id}', e.path)}" for e in env.http_requests[requests_before:])
            print(routes.most_common(12), file=sys.stderr)
            notices = Counter(
                str((e.json or {}).get("content", ""))[:70] for e in env.http_requests[requests_before:]
                if e.method == "POST" and e.path.endswith("/messages") and not e.path.startswith("/webhooks")
            )
            print(notices.most_common(8), file=sys.stderr)
        messages = sum(len(env.backend.messages.get(s.channel.id, {})) for s in sessions) - messages_before
        commits = bot.store.group.batches - commits_before
        held = sum(1 for s in sessions if s.room.state == "running" and s.task is not None and not s.task.done())
        growth = rss_kb() - before
        await coordinator.stop_all("the benchmark is over", timeout=10)
        beating.cancel()  # after: leases lapsing during the stop would make every room say so
        await bot.close()
    shutil.rmtree(folder, ignore_errors=True)
    samples.sort()
    low, high = args.reply
    return Row(
        rooms=count,
        held=held,
        seconds=elapsed,
        turns=clock.finished,
        failed=clock.failed,
        ideal=count / (args.delay + (low + high) / 2),
        turn_p50=statistics.median(clock.durations) if clock.durations else 0.0,
        messages=messages,
        bot_requests=bot_requests,
        webhook_requests=hook_requests,
        webhook_busiest=busiest,
        lag_p50=statistics.median(samples) * 1000 if samples else 0.0,
        lag_p99=samples[max(0, int(len(samples) * 0.99) - 1)] * 1000 if samples else 0.0,
        lag_max=samples[-1] * 1000 if samples else 0.0,
        rss_mb=growth / 1024,
        commits=commits,
        cpu=cpu,
        gc_cpu=collector.cpu,
        gc_pause=collector.longest,
        load=" ".join(f"{x:.1f}" for x in os.getloadavg()),
    )


HEADER = (
    f"{'rooms':>6} {'reply':>7} {'held':>5} {'turns/s':>8} {'ideal':>7} {'ratio':>6} {'failed':>7} {'turn p50':>9} "
    f"{'msgs/s':>7} {'bot req/s':>9} {'hook req/s':>10} {'busiest/2s':>10} "
    f"{'lag p50':>8} {'lag p99':>8} {'lag max':>8} {'RSS +MB':>8} {'commits/turn':>12} {'CPU ms/turn':>11} {'gc %':>5} {'gc max':>7}  load 1/5/15 min"
)


def print_row(r: Row, reply: tuple[float, float]) -> None:
    """One run's row, printed as soon as it is measured (the lead re-runs single sizes)."""
    rate = r.turns / r.seconds
    print(
        f"{r.rooms:>6} {f'{reply[0]:g}-{reply[1]:g}':>7} {r.held:>5} {rate:>8.2f} {r.ideal:>7.2f} "
        f"{rate / r.ideal:>6.2f} {r.failed:>7} "
        f"{r.turn_p50:>8.2f}s {r.messages / r.seconds:>7.1f} {r.bot_requests / r.seconds:>9.1f} "
        f"{r.webhook_requests / r.seconds:>10.1f} {r.webhook_busiest / r.seconds * 2:>10.2f} "
        f"{r.lag_p50:>6.1f}ms {r.lag_p99:>6.1f}ms {r.lag_max:>6.1f}ms {r.rss_mb:>8.1f} "
        f"{r.commits / max(1, r.turns):>12.2f} {r.cpu / max(1, r.turns) * 1000:>11.1f} "
        f"{r.gc_cpu / max(r.cpu, 1e-9) * 100:>5.0f} {r.gc_pause * 1000:>5.0f}ms  {r.load}",
        flush=True,
    )


def in_fresh_process(run: Callable[..., Coroutine[Any, Any, Any]], count: int, *run_args: Any) -> Any:
    """``run(count, *run_args)`` in its own process, so memory growth and patched engine calls are
    this size's alone; returns its row. BENCH_PROFILE=FILE dumps a cProfile of the whole run."""
    rows_in, rows_out = multiprocessing.Pipe(duplex=False)

    def measure() -> None:
        random.seed(count)
        tune_gc()  # as the bot's entry point does (bot.bot.run)
        if os.environ.get("BENCH_GC_THRESHOLDS"):  # to try others: e.g. 10000,20,1000
            gc.set_threshold(*(int(n) for n in os.environ["BENCH_GC_THRESHOLDS"].split(",")))
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            with cProfile.Profile() as profile:
                row = asyncio.run(run(count, *run_args))
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        else:
            row = asyncio.run(run(count, *run_args))
        rows_out.send(row)

    worker = multiprocessing.Process(target=measure)
    worker.start()
    row = rows_in.recv()
    worker.join()
    return row


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, nargs="+", default=[10, 50], help="room counts, one run each")
    parser.add_argument("--ais", type=int, default=2, help="AIs per room (the issue's goal: 5)")
    parser.add_argument("--reply", type=parse_range, default=(0.05, 0.3), help="fake model reply time, LOW-HIGH s")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between turns (TURN_DELAY)")
    parser.add_argument("--seconds", type=float, default=20.0, help="the measuring window of each size")
    parser.add_argument("--warmup", type=float, help="seconds before the window (default: one turn cycle)")
    parser.add_argument("--no-header", action="store_true", help="rows only, to add to an earlier table")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="store the rooms in PostgreSQL: a scratch database's URL, or `local` for a throwaway server "
        "(tests/postgres.py, PostgreSQL's default durability; a fresh database per size)",
    )
    args = parser.parse_args()
    args.database_url = None
    if not all(1 <= n <= MAX_ROOMS for n in args.rooms):
        parser.error(f"--rooms takes counts from 1 to {MAX_ROOMS}")
    if not 1 <= args.ais <= len(MODELS):
        parser.error(f"--ais takes 1 to {len(MODELS)}")
    if args.warmup is None:
        args.warmup = args.delay + args.reply[1] + 1.0
    if not (0 < args.seconds <= MAX_SECONDS and 0 <= args.warmup <= MAX_SECONDS and 0 <= args.delay <= 60):
        parser.error(f"--seconds and --warmup must be within {MAX_SECONDS:g} s, --delay within 60 s")
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
        f"Each room: {args.ais} AIs, {args.delay:g} s between turns, replies stream over {low:g}-{high:g} s; "
        f"{args.warmup:g} s warm-up, then {args.seconds:g} s measured (every rate is from that window); "
        f"stored in {'PostgreSQL' if args.postgres else 'SQLite'}.",
        flush=True,
    )
    if not args.no_header:
        print(HEADER, flush=True)
    try:
        with bench_databases(args.postgres) as new_database:
            base_url = port_in.recv()
            for count in args.rooms:
                args.database_url = new_database()  # None: SQLite
                print_row(in_fresh_process(run_rooms, count, args, base_url), args.reply)
    finally:
        stop.set()
        server.join(timeout=5)
        with contextlib.suppress(Exception):
            server.kill()


if __name__ == "__main__":
    main()
