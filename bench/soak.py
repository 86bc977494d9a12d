"""A soak under partial failure: many rooms, Discord and the model providers both failing often.

Rooms run against simcord (Discord in memory) and the fake model server (its own
process). A seeded share of Discord requests fails in mixed ways (500/502/503,
429, a dropped connection, a request that never answers), and a share of model
requests fails too (503, 429, a stream that breaks, a corrupt chunk). At the end
every room is checked against its journal:

- lost: stored events never marked posted, or marked with a message the channel lacks;
- doubled: an AI's message in the channel that no event accounts for, or whose text appears
  twice (every reply of the fake model is numbered, so a repeated text is a repeated post);
- crashed: rooms whose task ended with an exception;
- failed turns, and Discord requests per AI turn (all requests, and the ones that succeeded).

Run ``python bench/soak.py`` (defaults: 20 rooms, 1,000 AI turns, 20 % and 20 %). Bounded in
time; loopback only; prints a table and asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp  # noqa: E402
import simcord  # noqa: E402
from simcord.backend.errors import BackendError  # noqa: E402
from simcord.http import router  # noqa: E402
from simcord.http.client import FakeWebhookAdapter  # noqa: E402

from bot import create_bot  # noqa: E402
from bot.engine import Notice  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.fakes import FakeLLMServer, Reply  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rooms import beat_leases  # noqa: E402

VERBOSE = "-v" in sys.argv
MODELS = ["Gemini 3 Flash", "DeepSeek R1", "Claude Haiku 4.5"]


def serve(port_out: Any, stop: Any, failure: float, seed: int) -> None:
    """The model server's process: short streamed replies, a share of them failing."""
    rng = random.Random(seed)
    counter = iter(range(10**9))

    def reply(body: dict[str, Any]) -> Reply:
        n = next(counter)
        if rng.random() < failure:
            kind = rng.choice(("503", "429", "drop", "corrupt"))
            if kind == "503":
                return Reply.error(503)
            if kind == "429":
                return Reply.error(429, retry_after=0)
            if kind == "drop":
                return Reply.drop(f"Reply {n} begins and")
            return Reply.corrupted(f"Reply {n} begins", " and ends.")
        return Reply.text(f"Reply {n}: the lantern hums. " * rng.randint(1, 12), chunks=4, delay=0.02)

    with FakeLLMServer() as server:
        server.default = reply
        port_out.send(server.base_url)
        stop.wait()


class DiscordFaults:
    """Fails a seeded share of the rooms' Discord requests, in mixed ways."""

    def __init__(self, share: float, seed: int, timeout: float):
        self.share = share
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.kinds: collections.Counter[str] = collections.Counter()
        self.requests = 0

    def room_traffic(self, method: str, path: str) -> bool:
        return (method == "POST" and (path.startswith("/webhooks/") or path.endswith("/messages") or path.endswith("/typing"))) or (
            method in ("PATCH", "DELETE") and path.startswith("/webhooks/")
        )

    def install(self, application_id: int) -> None:
        check = router._check_faults
        adapter_request = FakeWebhookAdapter.request
        faults = self
        interactions = f"/webhooks/{application_id}/"

        def check_faults(backend: Any, method: str, path: str) -> None:
            if faults.room_traffic(method, path) and not path.startswith(interactions):
                faults.requests += 1
                if faults.rng.random() < faults.share / 2:  # the other half fail in the transport below
                    status = faults.rng.choice((500, 502, 503, 429))
                    faults.kinds[f"HTTP {status}"] += 1
                    raise BackendError(status, 0, "injected by the soak")
            check(backend, method, path)

        async def request(self: Any, route: Any, *args: Any, **kwargs: Any) -> Any:
            if route.method == "POST" and "/webhooks/" in route.url and interactions not in route.url:
                if faults.rng.random() < faults.share / 2:
                    if faults.rng.random() < 0.5:
                        faults.kinds["dropped connection"] += 1
                        raise aiohttp.ServerDisconnectedError()
                    faults.kinds["no answer"] += 1
                    await asyncio.sleep(faults.timeout * 2)
            return await adapter_request(self, route, *args, **kwargs)

        router._check_faults = check_faults
        FakeWebhookAdapter.request = request  # type: ignore[method-assign]


async def soak(rooms: int, turns: int, base_url: str, discord_failure: float, seed: int, limit: float) -> dict[str, Any]:
    from cogs.coordinator import RoomOptions

    folder = tempfile.mkdtemp(prefix="seance-soak-")
    settings = Settings(
        _env_file=None,
        database_path=Path(folder) / "soak.sqlite3",
        openrouter_api_key="soak",
        openrouter_base_url=base_url,
        image_provider="offline",
        idle_pause_minutes=0,
        send_timeout=1.0,
        max_attempts=3,
        channel_patience_minutes=30,
    )
    bot = create_bot(settings)
    crashed: list[str] = []

    class Crashes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("the room in channel"):
                crashed.append(record.getMessage())

    logging.getLogger("cogs.coordinator").addHandler(Crashes())
    random.seed(seed)
    per_room = turns // rooms
    async with simcord.run(bot, check_errors=False, shard_count=1) as env:
        faults = DiscordFaults(discord_failure, seed, settings.send_timeout)
        guild = env.create_guild("Soak")
        host = guild.add_member(env.create_user("host"))
        moderator = await bot.fetch_user(host.id)
        coordinator: Any = bot.get_cog("Coordinator")
        config = await bot.guild_settings.get(guild.id)
        sessions = []
        for i in range(rooms):
            channel = bot.get_channel(guild.create_text_channel(f"room-{i}").id)
            options = RoomOptions(models=random.sample(MODELS, 2), scenario="open-room", turns=per_room, delay=0.2)
            session = coordinator.open(channel, coordinator.build_room(options, config), moderator, options)
            await coordinator.persist(session, options)
            sessions.append(session)
        faults.install(bot.application_id)
        requests_before = len(env.http_requests)
        started = time.perf_counter()
        for session in sessions:
            coordinator.launch(session)
        beating = asyncio.create_task(beat_leases(coordinator))
        tasks = [s.task for s in sessions]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        beating.cancel()
        elapsed = time.perf_counter() - started
        crashed += [f"room task raised {t.exception()!r}" for t in done if not t.cancelled() and t.exception()]
        requests = env.http_requests[requests_before:]
        report = await check(bot, env, sessions)
        report.update(
            rooms=rooms,
            unfinished=len(pending),
            turns=sum(s.room.turns_taken for s in sessions),
            seconds=elapsed,
            crashed=len(crashed),
            discord_requests=len(requests),
            discord_failed=sum(faults.kinds.values()),
            fault_kinds=dict(faults.kinds),
        )
        for task in pending:
            task.cancel()
        await bot.close()
    shutil.rmtree(folder, ignore_errors=True)
    return report


async def check(bot: Any, env: simcord.Env, sessions: list[Any]) -> dict[str, Any]:
    lost = doubled = failed_turns = notices = 0
    for session in sessions:
        events = await bot.store.events(session.room_id)
        history = list(env.backend.messages.get(session.channel.id, {}).values())
        in_channel = collections.Counter(m.id for m in history)
        recorded = {m for e in events for m in e.message_ids if m}  # a run of notices shares its messages
        lost += sum(1 for e in events if e.posted_at is None)
        lost += sum(1 for m in recorded if m not in in_channel)
        persona = [m for m in history if m.webhook_id]
        strays = [m for m in persona if m.id not in recorded]
        texts = collections.Counter(m.content for m in persona)
        repeats = [t for t, c in texts.items() if c > 1]
        doubled += len(strays) + sum(texts[t] - 1 for t in repeats)
        if VERBOSE and (strays or repeats):
            print("room", session.room_id, "strays", [(m.id, m.content[:40]) for m in strays], "repeats", [t[:40] for t in repeats])
        failed_turns += sum(1 for e in events if isinstance(e.event, Notice) and "could not reply" in e.event.text)
        notices += sum(1 for e in events if isinstance(e.event, Notice))
    return {"lost": lost, "doubled": doubled, "failed_turns": failed_turns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument("--turns", type=int, default=1000, help="AI turns in all, shared by the rooms")
    parser.add_argument("--discord-failure", type=float, default=0.2)
    parser.add_argument("--provider-failure", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("-v", action="store_true", help="print each doubled message")
    parser.add_argument("--limit", type=float, default=600, help="seconds before the soak gives up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    port_in, port_out = multiprocessing.Pipe(duplex=False)
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port_out, stop, args.provider_failure, args.seed), daemon=True)
    server.start()
    try:
        base_url = port_in.recv()
        r = asyncio.run(soak(args.rooms, args.turns, base_url, args.discord_failure, args.seed, args.limit))
    finally:
        stop.set()
        server.join(timeout=5)
        with contextlib.suppress(Exception):
            server.kill()
    print(
        f"{r['rooms']} rooms, {r['turns']} AI turns in {r['seconds']:.0f} s; "
        f"{args.discord_failure:.0%} of Discord requests and {args.provider_failure:.0%} of model requests failing"
    )
    print(f"Discord faults injected: {r['discord_failed']} ({', '.join(f'{k} {v}' for k, v in sorted(r['fault_kinds'].items()))})")
    rows = [
        ("messages lost", r["lost"]),
        ("messages doubled", r["doubled"]),
        ("rooms crashed", r["crashed"]),
        ("rooms unfinished at the limit", r["unfinished"]),
        ("turns failed (after the providers' retries)", r["failed_turns"]),
        ("Discord requests per AI turn", f"{r['discord_requests'] / max(1, r['turns']):.2f}"),
        ("Discord requests per AI turn, failed ones left out", f"{(r['discord_requests'] - r['discord_failed']) / max(1, r['turns']):.2f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
