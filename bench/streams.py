"""CPU per streamed reply in the provider adapter, with each HTTP transport.

Many concurrent streams against the benches' OpenAI-compatible server
(bench/model_server.py: one thread in its own process): each reply is 12 pieces spread
over the reply time, as in ``bench/rooms.py``. It measures the process's CPU
time divided by the replies finished, which is what bounds how many rooms one
process can carry. ``aiohttp`` is the providers' transport
(``bot/providers/transport.py``); ``httpcore`` is httpx's own, for comparison.

    python bench/streams.py                        # 300 streams, 3 s replies, 20 s, both transports
    python bench/streams.py --streams 1000 --reply 6

It prints one row per transport and asserts nothing. It talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402

from bot import data  # noqa: E402
from bot.engine import ChatRequest, Message  # noqa: E402
from bot.providers import OpenAICompatProvider  # noqa: E402
from bot.providers.http import pool_timeout, tls_context  # noqa: E402
from model_server import serve  # noqa: E402  (bench/model_server.py)
from tests.fakes import Reply  # noqa: E402

PIECES = 12


def short_replies(seconds: float) -> Callable[[dict[str, Any]], Reply]:
    def reply(body: dict[str, Any]) -> Reply:
        return Reply.text("The corridor hums; " * random.randint(4, 30), chunks=6, delay=seconds / PIECES)

    return reply


def client_for(transport: str, connections: int) -> httpx.AsyncClient | None:
    """None: the adapter's own client (the aiohttp transport)."""
    if transport == "aiohttp":
        return None
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(timeout=pool_timeout(10, 60), limits=limits, verify=tls_context())


async def measure(base_url: str, transport: str, args: argparse.Namespace) -> str:
    client = client_for(transport, args.streams)
    provider = OpenAICompatProvider("openrouter", base_url, "bench", client=client)
    request = ChatRequest(
        model=data.catalog().get("Gemini 3 Flash"), system="You are AI-1.",
        messages=(Message("user", "Hello."),), temperature=1.0, max_tokens=300,
    )
    finished = 0
    until = time.monotonic() + args.seconds

    async def one_room() -> None:
        nonlocal finished
        while time.monotonic() < until:
            async for _ in provider.stream(request):
                pass
            finished += 1

    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(one_room() for _ in range(args.streams)))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    await provider.aclose()
    if client is not None:
        await client.aclose()
    ideal = args.streams / args.reply
    return (
        f"{transport:>9} {args.streams:>8} {finished:>8} {finished / wall:>10.1f} {ideal:>7.1f} "
        f"{cpu:>7.1f} {cpu / max(1, finished) * 1000:>13.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=300, help="concurrent streams (rooms speaking at once)")
    parser.add_argument("--reply", type=float, default=3.0, help="seconds each reply streams over")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each transport runs")
    parser.add_argument("--transport", choices=["aiohttp", "httpcore"], nargs="+", default=["aiohttp", "httpcore"])
    args = parser.parse_args()
    if not (1 <= args.streams <= 5000 and 0 < args.reply <= 60 and 0 < args.seconds <= 600):
        parser.error("--streams 1-5000, --reply up to 60 s, --seconds up to 600")
    port_in, port_out = multiprocessing.Pipe(duplex=False)
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port_out, stop, short_replies(args.reply)), daemon=True)
    server.start()
    base_url = port_in.recv()
    print(f"{'transport':>9} {'streams':>8} {'replies':>8} {'replies/s':>10} {'ideal':>7} {'CPU s':>7} {'CPU ms/reply':>13}")
    try:
        for transport in args.transport:
            print(asyncio.run(measure(base_url, transport, args)), flush=True)
    finally:
        stop.set()
        server.join(timeout=5)


if __name__ == "__main__":
    main()
