"""The aiohttp transport under the providers' httpx clients: failures keep their httpx names
(so moderators read the right reason), pieces arrive as they are sent, and the pool keeps
to its size. Raw servers on 127.0.0.1 misbehave in ways the fake provider servers do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from bot.providers import OpenAICompatProvider, ProviderError, complete
from bot.providers.http import tls_context
from bot.providers.transport import AiohttpTransport
from tests.fakes import FakeLLMServer, Reply
from tests.providers.conftest import Sleeps
from tests.providers.test_openai_compat import KEY, ask

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/api/v1"


async def read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    await reader.readexactly(length)


async def failure_from(handler: Handler, sleeps: Sleeps) -> ProviderError:
    server, url = await serve(handler)
    provider = OpenAICompatProvider("openrouter", url, KEY, sleep=sleeps, backoff_base=0.01)
    try:
        with pytest.raises(ProviderError) as caught:
            await complete(provider, ask())
    finally:
        await provider.aclose()
        server.close()
    return caught.value


async def test_a_server_that_hangs_up_before_answering_is_a_failed_connection_not_a_timeout(sleeps: Sleeps):
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    error = await failure_from(hang_up, sleeps)
    assert error.reason == "the connection to openrouter failed (RemoteProtocolError) (tried 3 times)"


async def test_a_garbled_status_line_is_a_failed_connection(sleeps: Sleeps):
    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    error = await failure_from(garble, sleeps)
    assert error.reason == "the connection to openrouter failed (RemoteProtocolError) (tried 3 times)"


async def test_a_refused_connection_says_could_not_connect(sleeps: Sleeps):
    server, url = await serve(read_request)  # type: ignore[arg-type]
    server.close()
    await server.wait_closed()
    provider = OpenAICompatProvider("openrouter", url, KEY, sleep=sleeps, backoff_base=0.01, max_attempts=1)
    with pytest.raises(ProviderError) as caught:
        await complete(provider, ask())
    await provider.aclose()
    assert caught.value.reason == "could not connect to openrouter"


async def test_pieces_arrive_as_they_are_sent(sleeps: Sleeps):
    """A streamed reply is handed on piece by piece, not when the body ends: the stage draws it."""
    with FakeLLMServer() as server:
        server.script(Reply.text("one two three four", chunks=4, delay=0.15))
        provider = OpenAICompatProvider("openrouter", server.base_url, KEY, sleep=sleeps)
        arrivals: list[float] = []
        started = time.monotonic()
        await complete(provider, ask(), on_text=lambda parts: arrivals.append(time.monotonic() - started))
        await provider.aclose()
    assert len(arrivals) >= 4
    assert arrivals[-1] - arrivals[0] > 0.3  # spread over the reply, as sent


async def test_the_pool_never_opens_more_connections_than_its_size():
    open_now = peak = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, peak
        open_now += 1
        peak = max(peak, open_now)
        try:
            while True:
                await read_request(reader)
                await asyncio.sleep(0.05)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            open_now -= 1
            writer.close()

    server, url = await serve(slow)
    client = httpx.AsyncClient(transport=AiohttpTransport(connections=3, tls=tls_context()))
    answers = await asyncio.gather(*(client.post(url, content=b"{}") for _ in range(12)))
    await client.aclose()
    server.close()
    assert [a.text for a in answers] == ["ok"] * 12
    assert peak == 3


async def test_closing_the_client_closes_its_connections():
    served = asyncio.Event()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.read()  # until the client hangs up
        served.set()
        writer.close()

    server, url = await serve(once)
    transport = AiohttpTransport(connections=2, tls=tls_context())
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get(url)).text == "ok"
    await asyncio.wait_for(served.wait(), 2)  # the kept-alive connection was closed with the client
    server.close()


async def test_a_reply_left_half_read_never_leaks_into_the_next_request():
    """A stream abandoned mid-body (a turn cancelled, a deadline passed) closes its connection:
    kept in the pool, its unread rest would be read as the start of the next room's reply."""
    connections = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        if connections == 1:  # the first reply: one piece of a longer body, then nothing more
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhalf \r\n")
            await writer.drain()
            await reader.read()  # until the client hangs up
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nwhole")
            await writer.drain()
        writer.close()

    server, url = await serve(answer)
    async with httpx.AsyncClient(transport=AiohttpTransport(connections=1, tls=tls_context())) as client:
        async with client.stream("POST", url, content=b"{}") as response:
            async for piece in response.aiter_raw():
                assert piece == b"half "
                break
        second = await asyncio.wait_for(client.post(url, content=b"{}"), 2)
    server.close()
    assert second.text == "whole" and connections == 2
