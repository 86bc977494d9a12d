"""httpx's interface over aiohttp's connections, for the model streams.

Why: a streamed reply arrives as a dozen or more small reads, and with
hundreds of rooms the process spends its time in the per-read path. httpx's
own transport (httpcore, anyio) costs 10.3 ms of CPU per streamed reply at
300 concurrent streams, and its pool scans every connection on each request
and release; aiohttp (already here: discord.py talks to Discord with it) has
a C HTTP parser and a pool that does not scan, and the same replies cost
5.4 ms through this transport (``bench/streams.py``). Everything above the
socket stays httpx: requests, responses, headers, decoding, and the exception
classes the adapters tell failures apart by.

The small library ``httpx-aiohttp`` does the same, but maps a refused
connection and a server that hung up to ``ConnectTimeout``, which would tell a
moderator "could not connect within 10 seconds" for a service that is down
or dropped the line; these few lines say the right thing.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx


@contextlib.contextmanager
def _as_httpx() -> Iterator[None]:
    """aiohttp's failures as the httpx exceptions the adapters already understand."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as error:  # no TCP/TLS connection in time
        raise httpx.ConnectTimeout(str(error)) from error
    except aiohttp.ServerTimeoutError as error:  # silence between reads longer than the read timeout
        raise httpx.ReadTimeout(str(error)) from error
    except aiohttp.ClientConnectorError as error:  # refused, unreachable, unknown host, TLS failure
        raise httpx.ConnectError(str(error)) from error
    except aiohttp.ServerDisconnectedError as error:  # hung up before or while answering
        raise httpx.RemoteProtocolError(str(error) or "the server disconnected") from error
    except aiohttp.ClientPayloadError as error:  # the body ended short or was malformed
        raise httpx.RemoteProtocolError(str(error)) from error
    except aiohttp.ClientOSError as error:  # reset by peer and the like
        raise httpx.ReadError(str(error)) from error
    except aiohttp.InvalidURL as error:
        raise httpx.UnsupportedProtocol(str(error)) from error
    except aiohttp.ClientError as error:  # anything else on the wire: a malformed status line, …
        raise httpx.RemoteProtocolError(str(error) or type(error).__name__) from error


_READER = "seance.aiohttp_response"  # where a response made here keeps aiohttp's, for text_of


async def text_of(response: httpx.Response) -> AsyncIterator[str]:
    """A streamed response's text, each piece as it arrives.

    Read straight from aiohttp when this transport made the response and nothing is
    compressed: httpx's ``aiter_text`` stacks four generators over the body
    (raw, bytes, text, and the stream bound to the response), each a resumption per
    read, which a thousand streaming rooms paid for every piece of every reply.
    Otherwise (another transport, a compressed body) httpx decodes it.
    """
    reader = response.extensions.get(_READER)
    if reader is None or response.headers.get("content-encoding", "identity") != "identity":
        async for text in response.aiter_text():
            yield text
        return
    decoder = codecs.getincrementaldecoder(response.encoding or "utf-8")("replace")
    with _as_httpx():
        async for piece in reader.content.iter_any():
            text = decoder.decode(piece)
            if text:
                yield text
    tail = decoder.decode(b"", True)
    if tail:
        yield tail


class _Body(httpx.AsyncByteStream):
    """A response body as aiohttp reads it: each piece as soon as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse):
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx():
            async for piece in self._response.content.iter_any():
                yield piece

    async def aclose(self) -> None:
        self._response.release()  # back to the pool when read to the end, else closed


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp connection pool behind an ``httpx.AsyncClient``.

    Timeouts keep httpx's meaning: ``connect`` bounds making a connection,
    ``read`` each wait for the next piece (the model's silence); waiting for a
    free connection in the pool has no limit of its own, as in
    ``pool_timeout``. The session is made on first use, inside the running loop.
    """

    def __init__(self, *, connections: int, tls: ssl.SSLContext, keepalive: float = 60.0):
        self._connections = connections
        self._tls = tls
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._connections, limit_per_host=0, ssl=self._tls, keepalive_timeout=self._keepalive
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        session = self._open()
        with _as_httpx():
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=await request.aread() or None,
                allow_redirects=False,
                compress=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
                _READER: response,
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            # aiohttp closes its sockets on the next loop turn; give it that turn before
            # the loop may end, or asyncio warns of unclosed transports.
            await asyncio.sleep(0)
