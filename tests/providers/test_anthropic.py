"""The native Anthropic adapter against the fake Messages API: streaming, the request, every failure."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import pytest

from bot.engine import ChatRequest, Message, ModelInfo, Picture, Usage
from bot.providers import AnthropicProvider, ProviderError, ReasoningDelta, TextDelta, complete
from bot.settings import Settings
from tests.fakes import AnthropicReply, FakeAnthropicServer, Reply

KEY = "sk-ant-api03-test-secret-0123456789"
CLAUDE = ModelInfo(name="Claude Test", routes={"openrouter": "anthropic/claude-test", "anthropic": "claude-test-4-5"})


def make_provider(server: FakeAnthropicServer, sleeps, **options: object) -> AnthropicProvider:
    limits: dict[str, object] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "total_timeout": 5.0,
        "backoff_base": 0.01,
        "sleep": sleeps,
    }
    return AnthropicProvider(server.base_url, KEY, **(limits | options))  # type: ignore[arg-type]


@pytest.fixture
async def claude(fake_anthropic, sleeps) -> AsyncIterator[AnthropicProvider]:
    provider = make_provider(fake_anthropic, sleeps)
    yield provider
    await provider.aclose()


def ask(*messages: Message, **fields: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": CLAUDE,
        "system": "You are AI-1.",
        "messages": messages or (Message("user", "[AI-2 (Other)]: Hello there."),),
        "temperature": None,
        "max_tokens": 256,
    }
    return ChatRequest(**(values | fields))  # type: ignore[arg-type]


async def failure(provider: AnthropicProvider, request: ChatRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await complete(provider, request or ask())
    return caught.value


def history(turns: int) -> tuple[Message, ...]:
    """A room seen from one seat: the others' lines, then its own reply, and so on."""
    messages: list[Message] = []
    for n in range(turns):
        messages.append(Message("user", f"[AI-2 (Other)]: line {n} " + "of the tide " * 40))
        messages.append(Message("assistant", f"my answer {n} " + "about the moon " * 30))
    messages.append(Message("user", f"[AI-2 (Other)]: line {turns} " + "of the tide " * 40))
    return tuple(messages)


# --- streaming -------------------------------------------------------------------


async def test_text_arrives_in_order_past_pings_and_padding(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.text("The quick brown fox jumps.", chunks=5, padded=True))
    parts = [part async for part in claude.stream(ask())]
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == "The quick brown fox jumps."
    assert sum(isinstance(p, TextDelta) for p in parts) == 5
    assert isinstance(parts[-1], Usage)


async def test_thinking_is_reasoning_never_text(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.text("12,231", thinking="27 * 453, step by step", padded=True))
    result = await complete(claude, ask())
    assert result.text == "12,231"
    assert result.reasoning == "27 * 453, step by step"


async def test_usage_counts_cache_apart_and_takes_the_cumulative_total(fake_anthropic, claude):
    counts = {"input_tokens": 25, "cache_read_input_tokens": 2048, "cache_creation_input_tokens": 300, "output_tokens": 87}
    fake_anthropic.script(AnthropicReply.text("Hi", usage=counts))
    result = await complete(claude, ask())
    assert result.usage == Usage(input_tokens=25, cached_input_tokens=2048, cache_write_tokens=300, output_tokens=87)


async def test_unknown_events_and_blocks_are_ignored(fake_anthropic, claude):
    start = '{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}'
    tool = '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"x","input":{}}}'
    json_delta = '{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\""}}'
    text = '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ok"}}'
    delta = '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}'
    fake_anthropic.script(Reply.raw(
        f"event: message_start\ndata: {start}\n\n",
        f"event: content_block_start\ndata: {tool}\n\n",
        f"event: content_block_delta\ndata: {json_delta}\n\n",
        'event: brand_new_event\ndata: {"type": "brand_new_event"}\n\n',
        f"event: content_block_delta\ndata: {text}\n\n",
        f"event: message_delta\ndata: {delta}\n\n",
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ))
    result = await complete(claude, ask())
    assert result.text == "ok"
    assert result.usage == Usage(input_tokens=5, output_tokens=3)


# --- the request -----------------------------------------------------------------


async def test_headers_and_url(fake_anthropic, claude):
    await complete(claude, ask())
    sent = fake_anthropic.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert KEY not in sent.path


async def test_system_on_top_and_roles_alternating_from_the_user(fake_anthropic, claude):
    picture = Picture(b"\x89PNG fake", "image/png")
    request = ask(
        Message("assistant", "I spoke first."),
        Message("user", "[AI-2]: Look:", (picture,)),
        Message("user", "[AI-3]: And this."),
        Message("assistant", "Nice."),
        Message("user", "[AI-2]: More?"),
    )
    await complete(claude, request)
    body = fake_anthropic.requests[0].body
    assert body["system"][0]["text"] == "You are AI-1."
    assert body["model"] == "claude-test-4-5" and body["max_tokens"] == 256 and body["stream"] is True
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert body["messages"][0]["content"][0]["text"].startswith("[Séance]")
    merged = body["messages"][2]["content"]
    assert merged[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(picture.data).decode()},
    }
    assert merged[1]["text"] == "[AI-2]: Look:\n\n[AI-3]: And this."


@pytest.mark.parametrize(("asked", "sent"), [(1.5, 1.0), (2.0, 1.0), (0.7, 0.7), (None, None)])
async def test_temperature_is_clamped_to_one(fake_anthropic, claude, asked, sent):
    await complete(claude, ask(temperature=asked))
    assert fake_anthropic.requests[0].body.get("temperature") == sent  # the fake refuses above 1


async def test_stop_sequences(fake_anthropic, claude):
    await complete(claude, ask(stop=("\n[AI-2 (Other)]", "  ")))
    assert fake_anthropic.requests[0].body["stop_sequences"] == ["\n[AI-2 (Other)]"]


async def test_empty_messages_become_a_placeholder(fake_anthropic, claude):
    await complete(claude, ask(Message("user", "hi"), Message("assistant", ""), Message("user", "again")))
    assert fake_anthropic.requests[0].body["messages"][1]["content"] == [{"type": "text", "text": "…"}]


async def test_cache_breakpoints_on_system_and_the_stable_history(fake_anthropic, claude):
    await complete(claude, ask(*history(10)))
    body = fake_anthropic.requests[0].body
    messages = body["messages"]
    marked = [i for i, m in enumerate(messages) if any("cache_control" in b for b in m["content"])]
    assert "cache_control" in body["system"][-1]
    assert marked == [len(messages) - 3, len(messages) - 1]
    total = sum("cache_control" in b for m in messages for b in m["content"]) + 1
    assert total <= 4
    assert all(b["cache_control"] == {"type": "ephemeral"} for m in messages for b in m["content"] if "cache_control" in b)


async def test_no_breakpoints_when_caching_is_off(fake_anthropic, sleeps):
    provider = make_provider(fake_anthropic, sleeps, prompt_cache=False)
    await complete(provider, ask(*history(3)))
    await provider.aclose()
    assert "cache_control" not in str(fake_anthropic.requests[0].body)


async def test_a_growing_room_reads_what_its_last_turn_wrote(fake_anthropic, claude):
    system = "You are AI-1 in a long room. " * 300  # well above the 1024-token minimum
    first = await complete(claude, ask(*history(3), system=system))
    second = await complete(claude, ask(*history(4), system=system))
    third = await complete(claude, ask(*history(5), system=system))
    assert first.usage.cached_input_tokens == 0 and first.usage.cache_write_tokens > 2000
    assert second.usage.cached_input_tokens == first.usage.cache_write_tokens
    assert third.usage.cached_input_tokens > second.usage.cached_input_tokens
    assert third.usage.input_tokens == 0  # all of it was read from or written to the cache
    assert third.usage.cache_write_tokens < 300  # only the newest two messages are new


async def test_settings_build_the_provider(fake_anthropic, sleeps):
    settings = Settings(_env_file=None, anthropic_api_key=KEY, anthropic_base_url=fake_anthropic.base_url, anthropic_prompt_cache=False)
    provider = AnthropicProvider.from_settings(settings, sleep=sleeps)
    assert (await complete(provider, ask())).text == "I am claude-test-4-5, turn 1."
    await provider.aclose()
    assert "cache_control" not in str(fake_anthropic.requests[0].body)


async def test_a_model_without_an_anthropic_id_is_refused(claude):
    error = await failure(claude, ask(model=ModelInfo(name="Other", routes={"openrouter": "x/y"})))
    assert "no anthropic model id" in error.reason


# --- HTTP errors -----------------------------------------------------------------


async def test_rejected_key_pauses_without_retrying_and_never_shows_the_key(fake_anthropic, claude):
    fake_anthropic.require_key = "sk-ant-the-right-one"
    error = await failure(claude)
    assert error.pause and error.status == 401
    assert error.reason == "the API key was rejected (invalid x-api-key); check ANTHROPIC_API_KEY"
    assert len(fake_anthropic.requests) == 1 and KEY not in error.reason


async def test_missing_key(fake_anthropic, sleeps):
    provider = AnthropicProvider(fake_anthropic.base_url, None, sleep=sleeps)
    error = await failure(provider)
    await provider.aclose()
    assert error.pause and "x-api-key header is required" in error.reason


async def test_echoed_key_is_blanked(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.error(401, f"invalid x-api-key: {KEY}"))
    error = await failure(claude)
    assert KEY not in error.reason and "[the key]" in error.reason


async def test_no_credit_is_a_400_that_pauses(fake_anthropic, claude, sleeps):
    fake_anthropic.script(AnthropicReply.no_credit())
    error = await failure(claude)
    assert error.pause and error.reason.startswith("out of credit: Your credit balance is too low")
    assert len(fake_anthropic.requests) == 1 and sleeps.delays == []


async def test_refused_request_is_not_retried(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.error(400, "messages: text content blocks must be non-empty"))
    error = await failure(claude)
    assert error.reason == "the provider refused the request: messages: text content blocks must be non-empty"
    assert not error.pause and len(fake_anthropic.requests) == 1


async def test_rate_limit_honours_retry_after_then_succeeds(fake_anthropic, claude, sleeps):
    fake_anthropic.script(AnthropicReply.error(429, retry_after=3), AnthropicReply.text("Made it."))
    assert (await complete(claude, ask())).text == "Made it."
    assert sleeps.delays == [3.0] and len(fake_anthropic.requests) == 2


@pytest.mark.parametrize("status", [500, 529])
async def test_server_trouble_is_retried_then_succeeds(fake_anthropic, claude, status):
    fake_anthropic.script(AnthropicReply.error(status), AnthropicReply.text("Back."))
    assert (await complete(claude, ask())).text == "Back."
    assert len(fake_anthropic.requests) == 2


async def test_overloaded_three_times_fails(fake_anthropic, claude, sleeps):
    fake_anthropic.script(*[AnthropicReply.error(529)] * 3, AnthropicReply.text("never"))
    error = await failure(claude)
    assert error.reason == "the provider is having trouble (HTTP 529): Overloaded (tried 3 times)"
    assert len(fake_anthropic.requests) == 3 and len(sleeps.delays) == 2 and not error.pause


async def test_x_should_retry_false_is_obeyed(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.error(500, should_retry=False), AnthropicReply.text("never"))
    await failure(claude)
    assert len(fake_anthropic.requests) == 1


# --- failures mid-stream ---------------------------------------------------------


async def test_error_event_after_text_fails_the_turn_without_retry(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.midstream_error("Half a tho"), AnthropicReply.text("never"))
    seen: list[str] = []
    with pytest.raises(ProviderError) as caught:
        await complete(claude, ask(), lambda parts: seen.append("".join(parts)))
    assert seen[-1] == "Half a tho"
    assert caught.value.reason == "the provider is having trouble (HTTP 529): Overloaded"
    assert len(fake_anthropic.requests) == 1


async def test_error_event_before_text_is_retried(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.midstream_error(""), AnthropicReply.text("Second time lucky."))
    assert (await complete(claude, ask())).text == "Second time lucky."
    assert len(fake_anthropic.requests) == 2


async def test_inband_refusal_of_the_request_is_not_retried(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.midstream_error("", kind="invalid_request_error", message="prompt is too long"))
    error = await failure(claude)
    assert error.reason == "the provider refused the request: prompt is too long"
    assert len(fake_anthropic.requests) == 1


@pytest.mark.parametrize("graceful", [False, True])
async def test_dropped_after_text_is_an_error_without_retry(fake_anthropic, claude, graceful):
    fake_anthropic.script(AnthropicReply.drop("Half a sen", graceful=graceful), AnthropicReply.text("never"))
    error = await failure(claude)
    assert error.reason == "the connection dropped mid-reply"
    assert len(fake_anthropic.requests) == 1


async def test_dropped_before_text_is_retried(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.drop(""), AnthropicReply.text("Whole reply."))
    assert (await complete(claude, ask())).text == "Whole reply."
    assert len(fake_anthropic.requests) == 2


async def test_stall_after_text_is_a_read_timeout(fake_anthropic, sleeps):
    provider = make_provider(fake_anthropic, sleeps, read_timeout=0.3)
    fake_anthropic.script(AnthropicReply.stall("Hel", seconds=10))
    started = time.monotonic()
    error = await failure(provider)
    await provider.aclose()
    assert error.reason == "anthropic stopped answering for 0.3 seconds mid-reply"
    assert time.monotonic() - started < 2 and len(fake_anthropic.requests) == 1


async def test_refusal_stop_is_a_failed_turn(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.text("I was about to", stop_reason="refusal"))
    parts: list[object] = []
    with pytest.raises(ProviderError) as caught:
        async for part in claude.stream(ask()):
            parts.append(part)
    assert caught.value.reason == "Claude stopped the reply: Anthropic's safety filter refused it"
    assert not any(isinstance(p, Usage) for p in parts)  # the usage travels on the error instead
    assert caught.value.usage == Usage(input_tokens=10, output_tokens=4)  # still billed


async def test_cut_off_while_thinking(fake_anthropic, claude):
    fake_anthropic.script(AnthropicReply.text("", thinking="Let me consider every option...", stop_reason="max_tokens"))
    parts: list[object] = []
    with pytest.raises(ProviderError) as caught:
        async for part in claude.stream(ask()):
            parts.append(part)
    assert "cut off while the model was still thinking" in caught.value.reason
    assert any(isinstance(p, ReasoningDelta) for p in parts) and not any(isinstance(p, TextDelta) for p in parts)
