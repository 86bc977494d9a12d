"""The benches' model server: OpenAI-compatible streamed replies from one thread, in its own process.

The tests' ``FakeLLMServer`` gives every connection a thread, which suits a
test and starves a benchmark: the kernel shares the cores between threads,
not processes, so a thousand streaming threads left the bot's one event-loop
thread a thousandth of the machine whenever they woke to send a piece, and
the bot's loop stalled for seconds with its CPU half idle. Here one event
loop serves every connection, sends each piece at its time from the start
of the reply (a late wake-up does not push back the pieces after it) and
keeps nothing. It speaks only what the benches need: POST, Content-Length
bodies, keep-alive, chunked ``text/event-stream`` replies built by the
tests' ``Reply.text`` (the wire format of tests/fakes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Callable
from typing import Any

from tests.fakes import Reply

Replies = Callable[[dict[str, Any]], Reply]


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: Replies) -> None:
    """Requests on one keep-alive connection until the client closes it."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            reply = replies(body)
            lines = [f"HTTP/1.1 {reply.status} OK"] + [f"{k}: {v}" for k, v in reply.headers.items()]
            writer.write(("\r\n".join(lines + ["Transfer-Encoding: chunked", "", ""])).encode())
            started = loop.time()
            for number, piece in enumerate(reply.pieces, 1):
                await asyncio.sleep(max(0.0, started + number * reply.delay - loop.time()))
                if writer.is_closing() or reader.at_eof():  # the bot gave up on the reply (a room stopped)
                    break
                data = piece.encode()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    writer.close()


def serve(port_out: Any, stop: Any, replies: Replies) -> None:
    """Run in a process of its own: send the base URL through ``port_out``, serve until ``stop`` is set."""
    from bot.process import tune_gc

    tune_gc()

    async def main() -> None:
        listening = socket.create_server(("127.0.0.1", 0), backlog=4096)
        server = await asyncio.start_server(
            lambda r, w: _answer(r, w, replies), sock=listening, limit=1 << 24
        )
        port_out.send(f"http://127.0.0.1:{listening.getsockname()[1]}/api/v1")
        async with server:
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
            server.close()

    asyncio.run(main())
