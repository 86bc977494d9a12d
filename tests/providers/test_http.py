"""What every streaming adapter shares (bot/providers/http.py), proven on all three wire formats:
a garbled chunk breaks the stream, a failed turn keeps its usage, unfixable errors pause."""

from __future__ import annotations

import asyncio
import gc
import gzip
import ssl
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

import httpx
import pytest

from bot.engine import ChatRequest, Message, ModelInfo, Usage
from bot.providers import AnthropicProvider, GeminiProvider, OpenAICompatProvider, ProviderError, complete
from bot.providers.base import TextDelta
from bot.providers.http import (
    StreamingProvider,
    after_attempts,
    limits_from,
    plural,
    pool_timeout,
    tls_context,
)
from bot.providers.images import OpenRouterImages
from bot.search import SearxngSearch
from bot.settings import Settings
from tests.fakes import AnthropicReply, FakeAnthropicServer, FakeGeminiServer, FakeLLMServer, GeminiReply, Reply
from tests.fakes.images import openrouter_image, tiny_png

MODEL = ModelInfo(
    name="Edge Test",
    routes={"openrouter": "test/edge", "anthropic": "claude-edge-4-5", "gemini": "gemini-edge"},
)
LIMITS: dict[str, object] = {"connect_timeout": 2.0, "read_timeout": 2.0, "total_timeout": 5.0, "backoff_base": 0.01}


@dataclass
class Wire:
    """One service's fake server and adapter, and its way of sending a corrupt chunk."""

    server: FakeLLMServer
    provider: StreamingProvider
    corrupted: Callable[[str], Reply]
    not_found: Reply
    text: Callable[..., Reply]


def _wire(name: str, sleeps: object) -> Wire:
    options = LIMITS | {"sleep": sleeps}
    if name == "anthropic":
        server: FakeLLMServer = FakeAnthropicServer().start()
        provider: StreamingProvider = AnthropicProvider(server.base_url, "sk-ant-test", **options)  # type: ignore[arg-type]
        return Wire(server, provider, AnthropicReply.corrupted, AnthropicReply.error(404), AnthropicReply.text)
    if name == "gemini":
        server = FakeGeminiServer().start()
        provider = GeminiProvider(server.base_url, "AIza-test", **options)  # type: ignore[arg-type]
        return Wire(server, provider, GeminiReply.corrupted, GeminiReply.error(404), GeminiReply.text)
    server = FakeLLMServer().start()
    provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", **options)  # type: ignore[arg-type]
    return Wire(server, provider, Reply.corrupted, Reply.error(404), Reply.text)


@pytest.fixture(params=["openrouter", "anthropic", "gemini"])
async def wire(request, sleeps) -> AsyncIterator[Wire]:
    wire = _wire(request.param, sleeps)
    yield wire
    await wire.provider.aclose()
    wire.server.stop()


def ask() -> ChatRequest:
    return ChatRequest(
        model=MODEL,
        system="You are AI-1.",
        messages=(Message("user", "[AI-2 (Other)]: Hello there."),),
        temperature=None,
        max_tokens=256,
    )


async def failure(provider: StreamingProvider) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await complete(provider, ask())
    return caught.value


# --- a data event that is not JSON -------------------------------------------------


async def test_a_garbled_chunk_before_any_text_is_asked_again(wire):
    wire.server.script(wire.corrupted(""))
    result = await complete(wire.provider, ask())
    assert result.text.startswith("I am ")  # the service's default reply, asked for again
    assert "and the rest" not in result.text
    assert len(wire.server.chat_requests) == 2


async def test_a_garbled_chunk_after_text_fails_the_turn_instead_of_dropping_words(wire):
    wire.server.script(wire.corrupted("The river"), Reply.text("must not be asked for"))
    error = await failure(wire.provider)
    assert error.reason == f"{wire.provider.name} sent a garbled chunk mid-reply"
    assert not error.pause
    assert len(wire.server.chat_requests) == 1


# --- what a streaming reply holds ---------------------------------------------------


async def test_the_body_is_encoded_once_and_its_dict_let_go_while_the_reply_streams(wire, monkeypatch):
    """With pictures the body's dict holds each one's base64 text, as large as the encoded body:
    a thousand rooms streaming at once each kept both. Every attempt sends the same bytes."""
    made: list[weakref.ref[dict]] = []
    request_body = type(wire.provider).request_body

    class Body(dict):  # a dict that can be watched
        pass

    def watched(self, request):
        body = Body(request_body(self, request))
        made.append(weakref.ref(body))
        return body

    monkeypatch.setattr(type(wire.provider), "request_body", watched)
    wire.server.script(wire.corrupted(""))  # the first attempt fails before any text: asked again
    async with aclosing(wire.provider.stream(ask())) as parts:
        async for part in parts:
            if isinstance(part, TextDelta):
                break
        gc.collect()
        assert len(made) == 1 and made[0]() is None  # mid-reply, only the encoded bytes are kept
    first, second = wire.server.chat_requests
    assert first.body == second.body and first.body["messages" if "messages" in first.body else "contents"]
    assert first.headers["content-type"] == second.headers["content-type"] == "application/json"


async def test_a_streaming_reply_lets_go_of_its_body_once_its_first_words_are_in(wire, monkeypatch):
    """Only a retry sends the body again, and none comes after words are shown (above): a thousand
    rooms streaming at once each held theirs, 0.25-0.6 MiB, to the end of the reply. Counted while
    the reply waits on the wire, so every holder (adapter, httpx, aiohttp) is in its streaming state."""
    bodies: list[bytes] = []
    payload = type(wire.provider).payload

    def watched(self, request):
        bodies.append(payload(self, request))
        return bodies[-1]

    monkeypatch.setattr(type(wire.provider), "payload", watched)
    go_on = threading.Event()
    wire.server.script(wire.text("The river runs on, past the mill.", chunks=4).held(go_on.is_set))
    request = replace(ask(), system="You are AI-1. " + "Remember the river. " * 15_000)  # a large body
    async with aclosing(wire.provider.stream(request)) as parts:
        first = await anext(parts)
        rest = asyncio.create_task(_text_of(parts))
        try:
            await asyncio.sleep(0.05)  # reading on, waiting for the held words
            assert isinstance(first, TextDelta) and not rest.done()
            (body,) = bodies
            bodies.clear()
            gc.collect()
            holders = sys.getrefcount(body) - 2  # less this name and the call's own reference
            assert holders == 0, gc.get_referrers(body)
            assert len(body) > 300_000
        finally:
            go_on.set()
        assert first.text + await rest == "The river runs on, past the mill."
    assert len(wire.server.chat_requests) == 1


async def _text_of(parts: AsyncIterator[object]) -> str:
    return "".join([part.text async for part in parts if isinstance(part, TextDelta)])


# --- errors that do not go away by themselves --------------------------------------


async def test_an_unknown_model_pauses_without_retrying(wire):
    wire.server.script(wire.not_found)
    error = await failure(wire.provider)
    assert error.pause and error.status == 404
    assert error.reason.startswith("the provider does not know this model")
    assert len(wire.server.chat_requests) == 1


# --- wording ---------------------------------------------------------------------------


def test_counts_read_right():
    assert plural(1, "second") == "1 second"
    assert plural(2, "second") == "2 seconds"
    assert plural(0.5, "second") == "0.5 seconds"
    assert plural(30.0, "second") == "30 seconds"
    assert after_attempts(ProviderError("rate limited", status=429), 2).reason == "rate limited (tried 2 times)"
    assert after_attempts(ProviderError("rate limited"), 1).reason == "rate limited"


async def test_a_one_second_stall_is_told_in_the_singular(sleeps):
    with FakeLLMServer() as server:
        options = LIMITS | {"sleep": sleeps, "read_timeout": 1.0}
        provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", **options)  # type: ignore[arg-type]
        server.script(Reply.stall("Hel", seconds=5))
        error = await failure(provider)
        await provider.aclose()
    assert error.reason == "openrouter stopped answering for 1 second mid-reply"


async def test_a_stall_before_any_text_says_so_after_the_retries(sleeps):
    with FakeLLMServer() as server:
        options = LIMITS | {"sleep": sleeps, "read_timeout": 0.2, "max_attempts": 2}
        provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", **options)  # type: ignore[arg-type]
        server.script(Reply.stall("", seconds=5), Reply.stall("", seconds=5))
        error = await failure(provider)
        await provider.aclose()
    assert error.reason == "openrouter did not answer for 0.2 seconds (tried 2 times)"


# --- usage of failed turns -----------------------------------------------------------


async def test_a_stream_that_dies_after_a_usage_report_keeps_its_usage(wire):
    """Anthropic reports input tokens in message_start, Gemini on every chunk, OpenRouter on an error frame."""
    if isinstance(wire.provider, OpenAICompatProvider):
        wire.server.script(Reply.midstream_error("Half a", code=502, usage=(40, 3)))
    elif isinstance(wire.provider, AnthropicProvider):
        wire.server.script(AnthropicReply.drop("Half a"))
    else:
        wire.server.script(GeminiReply.drop("Half a"))
    error = await failure(wire.provider)
    assert error.usage is not None and error.usage.input_tokens > 0
    assert len(wire.server.chat_requests) == 1


async def test_a_billed_attempt_that_was_retried_is_counted_once_with_the_failure(sleeps):
    """The first attempt fails before any text but reports usage (yielded as a part); the
    second is stopped by a content filter (usage on the error). The turn counts both, once."""
    with FakeLLMServer() as server:
        provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", **(LIMITS | {"sleep": sleeps}))  # type: ignore[arg-type]
        server.script(
            Reply.midstream_error("", code=503, shape="empty", usage=(100, 0)),
            Reply.text("Cut off", finish_reason="content_filter", usage=(100, 7), cost=0.002),
        )
        error = await failure(provider)
        await provider.aclose()
    assert error.reason == "FakeProvider's content filter stopped the reply"
    assert error.usage == Usage(input_tokens=200, output_tokens=7, cost_usd=0.002)
    assert len(server.chat_requests) == 2


# --- the connection pool --------------------------------------------------------------


async def test_waiting_for_a_free_connection_is_not_the_models_silence(sleeps):
    """One connection, two turns: the second waits for the first reply (about 1.2 s),
    far longer than the 0.3 s read timeout, and still gets its answer."""
    with FakeLLMServer() as server:
        options = LIMITS | {"sleep": sleeps, "read_timeout": 0.3, "max_attempts": 1, "max_connections": 1}
        provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", **options)  # type: ignore[arg-type]
        server.default = lambda body: Reply.text("One word at a time.", chunks=6, delay=0.1)
        first, second = await asyncio.gather(complete(provider, ask()), complete(provider, ask()))
        await provider.aclose()
    assert first.text == second.text == "One word at a time."


async def test_a_turn_that_waits_for_a_connection_past_the_total_deadline_says_so(sleeps):
    with FakeLLMServer() as server:
        options = LIMITS | {"sleep": sleeps, "read_timeout": 3.0, "total_timeout": 0.6, "max_connections": 1}
        provider = OpenAICompatProvider("openrouter", server.base_url, "sk-or-test", **options)  # type: ignore[arg-type]
        server.default = lambda body: Reply.text("Slow.", chunks=6, delay=0.2)
        results = await asyncio.gather(complete(provider, ask()), failure(provider), return_exceptions=True)
        await provider.aclose()
    assert isinstance(results[1], ProviderError)
    assert results[1].reason == "the reply was not finished within 0.6 seconds"


def test_the_pool_is_sized_by_the_setting():
    settings = Settings(_env_file=None, openrouter_api_key="sk-or-test", provider_connections=7)
    assert limits_from(settings)["max_connections"] == 7
    assert Settings(_env_file=None).provider_connections == 1000
    timeout = pool_timeout(10.0, 60.0)
    assert (timeout.read, timeout.connect, timeout.pool) == (60.0, 10.0, None)


async def test_every_http_client_shares_one_tls_context(fake_llm: FakeLLMServer, monkeypatch):
    """Building a TLS context loads the whole CA bundle (tens of milliseconds of CPU on the event
    loop), and a client is made per provider and per picture: the process builds one context."""
    given: list[object] = []
    real = httpx.AsyncClient

    def client(*args, **kwargs) -> httpx.AsyncClient:
        transport = kwargs.get("transport")
        given.append(kwargs.get("verify") if transport is None else transport._tls)
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "AsyncClient", client)
    chats = [OpenAICompatProvider("openrouter", fake_llm.base_url, "sk-or-test") for _ in range(2)]
    fake_llm.script_images(openrouter_image(tiny_png((1, 2, 3))))
    await OpenRouterImages(fake_llm.base_url, "sk-or-test", "google/gemini-2.5-flash-image", key_env="K").generate("x")
    search = SearxngSearch("http://127.0.0.1:9")
    search._client_now()
    for closing in [*chats, search]:
        await closing.aclose()
    assert len(given) == 4 and isinstance(tls_context(), ssl.SSLContext)
    assert all(verify is tls_context() for verify in given)


# --- how a reply is read ------------------------------------------------------------


@pytest.fixture
async def openrouter(sleeps) -> AsyncIterator[Wire]:
    """The OpenAI-compatible wire alone, for what its fake server can send as raw bytes."""
    wire = _wire("openrouter", sleeps)
    yield wire
    await wire.provider.aclose()
    wire.server.stop()


async def test_a_character_split_between_reads_arrives_whole(openrouter):
    """The body is decoded as it arrives: a character whose bytes come in two reads is one character."""
    wire = openrouter
    wire_text = "".join(str(piece) for piece in Reply.text("Café crème ☕ for everyone", chunks=1).pieces)
    body = wire_text.replace("\\u00e9", "é").replace("\\u2615", "☕").encode()  # sent raw, as services do
    cuts = [body.index("é".encode()) + 1, body.index("☕".encode()) + 2]  # inside each character
    split = Reply.text("", chunks=1)
    split.pieces, split.delay = [body[: cuts[0]], body[cuts[0] : cuts[1]], body[cuts[1] :]], 0.05
    wire.server.script(split)
    assert (await complete(wire.provider, ask())).text == "Café crème ☕ for everyone"


async def test_a_compressed_event_stream_is_decompressed(openrouter):
    """A service may compress its stream (httpx asks for gzip); then httpx decodes the body."""
    plain = Reply.text("Squeezed, then let out again.")
    body = gzip.compress("".join(str(piece) for piece in plain.pieces).encode())
    openrouter.server.script(Reply(headers=plain.headers | {"Content-Encoding": "gzip"}, body=body))
    assert (await complete(openrouter.provider, ask())).text == "Squeezed, then let out again."


async def test_a_finished_reply_leaves_no_reference_cycle_for_the_collector(wire):
    """httpx binds a streamed body to its response, a cycle only the garbage collector can free,
    with the request, headers and aiohttp's response hanging from it; at a thousand rooms those
    were most of what the collector found. Closed replies are let go by reference counting."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept here instead of freed
    try:
        for _ in range(2):
            assert (await complete(wire.provider, ask())).text.startswith("I am ")
        gc.collect()
        left = [type(o).__qualname__ for o in gc.garbage if type(o).__module__.split(".")[0] in ("httpx", "aiohttp")]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


# --- how a finished reply ends ------------------------------------------------------


async def test_finished_replies_reuse_their_connection_and_leave_nothing_to_the_loops_finaliser(wire):
    """A reply ends with its last event and then the body's end. Reading to that end gives the
    connection back to the pool (a body left unread closes it, and the next turn connects again)
    and ends every generator of the stream; one left open is finalised by the event loop, a task
    and a wake-up of the loop each, a dozen for every reply at a thousand rooms."""
    loop = asyncio.get_running_loop()
    finalised = []
    original = loop._asyncgen_finalizer_hook  # type: ignore[attr-defined]

    def hook(agen: object) -> None:
        finalised.append(getattr(agen, "__qualname__", repr(agen)))
        original(agen)

    firstiter, _ = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter, hook)
    try:
        for _ in range(3):
            assert (await complete(wire.provider, ask())).text.startswith("I am ")
            gc.collect()
    finally:
        sys.set_asyncgen_hooks(firstiter, original)
    assert finalised == []
    assert wire.server.connections == 1


async def test_a_server_that_keeps_the_body_open_after_the_last_event_costs_the_reply_a_moment(wire, monkeypatch):
    """Reading to the body's end must not hold a finished reply hostage: a server that stays
    silent after its last event is given TAIL_SECONDS, then the reply stands as it is."""
    import dataclasses
    import time

    from bot.providers import http

    if isinstance(wire.provider, GeminiProvider):
        pytest.skip("Gemini's stream has no last event: the body's end is the reply's end")
    monkeypatch.setattr(http, "TAIL_SECONDS", 0.3)
    default = wire.server.default
    wire.server.default = lambda body: dataclasses.replace(default(body), ending="stall", stall_seconds=10)
    started = time.monotonic()
    result = await complete(wire.provider, ask())
    assert result.text.startswith("I am ")
    assert 0.25 < time.monotonic() - started < 2.0
    assert len(wire.server.chat_requests) == 1
