"""The OpenAI-compatible provider against the fake server: streaming, wire format, every failure."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import pytest

from bot.engine import ChatRequest, Message, ModelInfo, Picture, Usage
from bot.providers import (
    OpenAICompatProvider,
    ProviderError,
    ProviderPool,
    ReasoningDelta,
    TextDelta,
    complete,
    make_chat_provider,
)
from bot.providers.http import error_reason, is_retryable, retry_delay
from bot.providers.openai_compat import parse_usage
from bot.settings import Settings
from tests.fakes import FakeLLMServer, Reply
from tests.providers.conftest import Sleeps  # the fixture `sleeps` lives there too

KEY = "sk-or-v1-test-secret-0123456789"
MODEL = ModelInfo(name="Test Model", routes={"openrouter": "test/model", "ollama": "llama3.2:1b"})
THINKER = ModelInfo(name="Thinker", routes={"openrouter": "test/r1"}, reasoning=True)


@pytest.fixture
async def provider(fake_llm: FakeLLMServer, sleeps: Sleeps) -> AsyncIterator[OpenAICompatProvider]:
    provider = make_provider(fake_llm, sleeps)
    yield provider
    await provider.aclose()


def make_provider(server: FakeLLMServer, sleeps: Sleeps, **options: object) -> OpenAICompatProvider:
    limits: dict[str, object] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "total_timeout": 5.0,
        "max_attempts": 3,
        "backoff_base": 0.01,
        "sleep": sleeps,
        "key_env": "OPENROUTER_API_KEY",
    }
    return OpenAICompatProvider("openrouter", server.base_url, KEY, **(limits | options))  # type: ignore[arg-type]


def ask(model: ModelInfo = MODEL, **fields: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": model,
        "system": "You are AI-1.",
        "messages": (Message("user", "[AI-2 (Other)]: Hello there."),),
        "temperature": None,
        "max_tokens": 256,
    }
    return ChatRequest(**(values | fields))  # type: ignore[arg-type]


async def parts_of(provider: OpenAICompatProvider, request: ChatRequest | None = None) -> list[object]:
    return [part async for part in provider.stream(request or ask())]


async def failure(provider: OpenAICompatProvider, request: ChatRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await complete(provider, request or ask())
    return caught.value


# --- streaming -------------------------------------------------------------------


async def test_text_arrives_in_order(fake_llm, provider):
    fake_llm.script(Reply.text("The quick brown fox jumps.", chunks=5))
    parts = await parts_of(provider)
    texts = [p.text for p in parts if isinstance(p, TextDelta)]
    assert len(texts) == 5
    assert "".join(texts) == "The quick brown fox jumps."
    assert isinstance(parts[-1], Usage)


async def test_default_reply_names_the_model_and_turn(fake_llm, provider):
    request = ask(messages=(Message("user", "hi"), Message("assistant", "yo"), Message("user", "again")))
    result = await complete(provider, request)
    assert result.text == "I am test/model, turn 2."


@pytest.mark.parametrize("style", ["openrouter", "deepseek", "ollama"])
async def test_reasoning_never_becomes_text(fake_llm, provider, style):
    fake_llm.script(Reply.text("Four.", reasoning="Two plus two is four.", chunks=3, style=style))
    result = await complete(provider, ask())
    assert result.text == "Four."
    assert result.reasoning == "Two plus two is four."  # OpenRouter's duplicate reasoning_details not doubled


async def test_reasoning_details_alone_count_as_reasoning(fake_llm, provider):
    chunk = '{"choices":[{"index":0,"delta":{"content":null,"reasoning_details":[{"type":"reasoning.text","text":"hm"}]}}]}'
    done = '{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}'
    fake_llm.script(Reply.raw(f"data: {chunk}\n\n", f"data: {done}\n\n"))
    result = await complete(provider, ask())
    assert (result.text, result.reasoning) == ("ok", "hm")


async def test_crlf_compact_data_and_no_done(fake_llm, provider):
    fake_llm.script(Reply.text("Hello world", crlf=True, compact=True, done=False, style="deepseek"))
    result = await complete(provider, ask())
    assert result.text == "Hello world"


async def test_done_split_across_reads_and_missing_final_blank_line(fake_llm, provider):
    chunk = '{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}'
    fake_llm.script(Reply.raw(": OPENROUTER PROCESSING\r", "\n\r\n", f"data: {chunk}\r", "\n\r\n", "data: [DONE]"))
    result = await complete(provider, ask())
    assert result.text == "Hi"


async def test_openrouter_usage_with_cost_and_cache(fake_llm, provider):
    fake_llm.script(Reply.text("Hi", usage=(100, 20), cached=40, cache_write=10, reasoning_tokens=7, cost=0.00123))
    result = await complete(provider, ask())
    assert result.usage == Usage(  # prompt_tokens counts the cache reads and writes too
        input_tokens=50, cached_input_tokens=40, cache_write_tokens=10, output_tokens=20, reasoning_tokens=7, cost_usd=0.00123
    )


async def test_deepseek_usage_on_the_finish_chunk(fake_llm, provider):
    fake_llm.script(Reply.text("Hi", reasoning="hmm", usage=(12, 21), cached=8, reasoning_tokens=14, style="deepseek"))
    result = await complete(provider, ask())
    assert result.usage == Usage(input_tokens=4, cached_input_tokens=8, output_tokens=21, reasoning_tokens=14)
    assert result.usage.cost_usd is None


async def test_ollama_usage_in_an_empty_choices_chunk(fake_llm, provider):
    fake_llm.script(Reply.text("Hi", usage=(68, 12), style="ollama"))
    result = await complete(provider, ask())
    assert result.usage == Usage(input_tokens=68, output_tokens=12)


def test_usage_from_deepseek_cache_hit_fields_alone():
    usage = parse_usage({"prompt_tokens": 30, "completion_tokens": 5, "prompt_cache_hit_tokens": 25})
    assert (usage.input_tokens, usage.cached_input_tokens) == (5, 25)


async def test_non_streamed_json_body_is_accepted(fake_llm, provider):
    body = '{"choices":[{"index":0,"message":{"role":"assistant","content":"Whole."},"finish_reason":"stop"}]}'
    fake_llm.script(Reply.raw(body, content_type="application/json"))
    assert (await complete(provider, ask())).text == "Whole."


# --- the request -----------------------------------------------------------------


async def test_request_body_and_headers(fake_llm, sleeps):
    settings = Settings(_env_file=None, openrouter_api_key=KEY, openrouter_base_url=fake_llm.base_url, app_title="Séance")
    provider = OpenAICompatProvider.for_openrouter(settings, sleep=sleeps)
    picture = Picture(b"\x89PNG fake", "image/png")
    request = ask(
        messages=(Message("user", "Look:", (picture,)), Message("assistant", "Nice."), Message("user", "More?")),
        temperature=0.7,
        stop=("\n[AI-2]",),
    )
    await complete(provider, request)
    await provider.aclose()
    sent = fake_llm.requests[0]
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["http-referer"] == settings.app_url
    assert sent.headers["x-title"] == "Seance"
    body = sent.body
    assert body["model"] == "test/model"
    assert body["stream"] is True and body["max_tokens"] == 256
    assert body["temperature"] == 0.7
    assert body["stop"] == ["\n[AI-2]"]
    assert "usage" not in body and "stream_options" not in body
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert body["messages"][0]["content"] == "You are AI-1."
    data_url = "data:image/png;base64," + base64.b64encode(picture.data).decode()
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "Look:"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    assert body["messages"][2] == {"role": "assistant", "content": "Nice."}


async def test_reasoning_models_get_no_stop_and_no_temperature_when_unset(fake_llm, provider):
    await complete(provider, ask(THINKER, stop=("\n[AI-2]",), temperature=None))
    body = fake_llm.requests[0].body
    assert "stop" not in body and "temperature" not in body
    assert body["model"] == "test/r1"


async def test_other_routes_ask_for_usage(fake_llm, sleeps):
    provider = make_provider(fake_llm, sleeps, route="ollama")
    await complete(provider, ask())
    await provider.aclose()
    body = fake_llm.requests[0].body
    assert body["model"] == "llama3.2:1b"
    assert body["stream_options"] == {"include_usage": True}


async def test_a_model_without_this_route_is_refused(provider):
    error = await failure(provider, ask(ModelInfo(name="Local", routes={"ollama": "x"})))
    assert "no openrouter model id" in error.reason


# --- HTTP errors -----------------------------------------------------------------


async def test_missing_key_gets_a_401_that_pauses(fake_llm, sleeps):
    provider = OpenAICompatProvider("openrouter", fake_llm.base_url, None, key_env="OPENROUTER_API_KEY", sleep=sleeps)
    error = await failure(provider)
    await provider.aclose()
    assert error.pause and error.status == 401
    assert error.reason == "the API key was rejected (No auth credentials found); check OPENROUTER_API_KEY"
    assert len(fake_llm.requests) == 1


async def test_wrong_key_pauses_and_the_key_never_shows(fake_llm, provider):
    fake_llm.require_key = "sk-or-v1-the-right-one"
    error = await failure(provider)
    assert error.pause and "User not found." in error.reason and KEY not in error.reason


async def test_an_echoed_key_is_blanked(fake_llm, provider):
    fake_llm.script(Reply.error(401, {"error": {"message": f"Incorrect API key provided: {KEY}", "code": 401}}))
    error = await failure(provider)
    assert KEY not in error.reason and "[the key]" in error.reason and error.pause


async def test_no_credit_pauses_without_retrying(fake_llm, provider, sleeps):
    fake_llm.script(Reply.error(402))
    error = await failure(provider)
    assert error.pause and error.reason.startswith("out of credit: This request requires more credits")
    assert len(fake_llm.requests) == 1 and sleeps.delays == []


async def test_refused_request_reason(fake_llm, provider):
    fake_llm.script(Reply.error(400))
    error = await failure(provider)
    assert error.reason == "the provider refused the request: bogus/model is not a valid model ID"
    assert not error.pause and len(fake_llm.requests) == 1
    assert error.refused  # the room counts refusals in a row and pauses on the third alike


async def test_free_models_daily_limit_pauses_without_retrying(fake_llm, provider, sleeps):
    fake_llm.script(Reply.quota(daily=True), Reply.text("must not be asked for"))
    error = await failure(provider)
    assert error.pause and not error.refused
    assert error.reason.startswith("the daily quota is used up: Rate limit exceeded: free-models-per-day.")
    assert len(fake_llm.requests) == 1 and sleeps.delays == []


async def test_insufficient_quota_pauses_without_retrying(fake_llm, provider, sleeps):
    fake_llm.script(Reply.quota(daily=False), Reply.text("must not be asked for"))
    error = await failure(provider)
    assert error.pause
    assert error.reason == (
        "the quota of the account behind OPENROUTER_API_KEY is used up: "
        "You exceeded your current quota, please check your plan and billing details."
    )
    assert len(fake_llm.requests) == 1 and sleeps.delays == []


async def test_unknown_model(fake_llm, provider):
    fake_llm.script(Reply.error(404, style="ollama"))
    error = await failure(provider)
    assert error.reason == 'the provider does not know this model: model "fake:1b" not found, try pulling it first'
    assert error.pause and len(fake_llm.requests) == 1  # a model id does not come back by itself


async def test_rate_limit_honours_retry_after_then_succeeds(fake_llm, provider, sleeps):
    fake_llm.script(Reply.error(429, retry_after=3), Reply.text("Made it."))
    result = await complete(provider, ask())
    assert result.text == "Made it."
    assert len(fake_llm.requests) == 2
    assert sleeps.delays == [3.0]


async def test_retry_after_is_capped(fake_llm, sleeps):
    provider = make_provider(fake_llm, sleeps, total_timeout=100.0)
    fake_llm.script(Reply.error(503, retry_after=3600), Reply.text("ok"))
    await complete(provider, ask())
    await provider.aclose()
    assert sleeps.delays == [60.0]


async def test_server_errors_are_retried_up_to_max_attempts(fake_llm, provider, sleeps):
    fake_llm.script(*[Reply.error(502)] * 3, Reply.text("never reached"))
    error = await failure(provider)
    assert len(fake_llm.requests) == 3 and len(sleeps.delays) == 2
    assert all(0 <= d <= 0.04 for d in sleeps.delays)  # full jitter under base * 2**n
    assert error.reason.startswith("the provider is having trouble (HTTP 502): FakeProvider: upstream connect error")
    assert error.reason.endswith("(tried 3 times)") and not error.pause


async def test_rate_limit_exhausted_reason(fake_llm, provider):
    fake_llm.script(*[Reply.error(429)] * 3)
    error = await failure(provider)
    assert error.reason.startswith("rate limited: Fake AI Studio: fake/model:free is temporarily rate-limited")
    assert not error.pause  # a passing rate limit: the next turn may well get through


# --- failures mid-stream ---------------------------------------------------------


@pytest.mark.parametrize("shape", ["finish", "empty"])
async def test_midstream_error_event(fake_llm, provider, shape):
    fake_llm.script(Reply.midstream_error("Half a tho", code=502, shape=shape, done=shape == "finish"))
    seen: list[str] = []
    with pytest.raises(ProviderError) as caught:
        await complete(provider, ask(), lambda parts: seen.append("".join(parts)))
    assert seen[-1] == "Half a tho"
    assert "Provider disconnected unexpectedly" in caught.value.reason
    assert len(fake_llm.requests) == 1


async def test_midstream_error_with_a_word_code(fake_llm, provider):
    fake_llm.script(Reply.midstream_error("Hi", code="server_error", message="Provider disconnected unexpectedly"))
    error = await failure(provider)
    assert error.reason == "the provider reported an error: Provider disconnected unexpectedly"


async def test_inband_error_before_any_text_is_retried(fake_llm, provider):
    fake_llm.script(Reply.midstream_error("", code=503, shape="empty"), Reply.text("Second time lucky."))
    assert (await complete(provider, ask())).text == "Second time lucky."
    assert len(fake_llm.requests) == 2


async def test_inband_refusal_is_not_retried(fake_llm, provider):
    fake_llm.script(Reply.midstream_error("", code=400, message="prompt is too long: 1284668 tokens", shape="empty"))
    error = await failure(provider)
    assert error.reason == "the provider refused the request: prompt is too long: 1284668 tokens"
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("graceful", [False, True])
async def test_dropped_after_text_is_an_error_without_retry(fake_llm, provider, graceful):
    fake_llm.script(Reply.drop("Half a sen", graceful=graceful), Reply.text("must not be asked for"))
    error = await failure(provider)
    assert error.reason == "the connection dropped mid-reply"
    assert len(fake_llm.requests) == 1


@pytest.mark.parametrize("graceful", [False, True])
async def test_dropped_before_text_is_retried(fake_llm, provider, graceful):
    fake_llm.script(Reply.drop("", graceful=graceful), Reply.text("Whole reply."))
    assert (await complete(provider, ask())).text == "Whole reply."
    assert len(fake_llm.requests) == 2


async def test_stall_after_text_is_a_read_timeout(fake_llm, sleeps):
    provider = make_provider(fake_llm, sleeps, read_timeout=0.3)
    fake_llm.script(Reply.stall("Hel", seconds=10))
    started = time.monotonic()
    error = await failure(provider)
    await provider.aclose()
    assert error.reason == "openrouter stopped answering for 0.3 seconds mid-reply"
    assert time.monotonic() - started < 2
    assert len(fake_llm.requests) == 1


async def test_stall_before_text_is_retried(fake_llm, sleeps):
    provider = make_provider(fake_llm, sleeps, read_timeout=0.2)
    fake_llm.script(Reply.stall("", seconds=10, style="deepseek"), Reply.text("Awake."))
    assert (await complete(provider, ask())).text == "Awake."
    await provider.aclose()
    assert len(fake_llm.requests) == 2


async def test_total_timeout(fake_llm, sleeps):
    provider = make_provider(fake_llm, sleeps, read_timeout=2.0, total_timeout=0.5)
    fake_llm.script(Reply.text("slow " * 20, chunks=20, delay=0.1))
    started = time.monotonic()
    error = await failure(provider)
    await provider.aclose()
    assert error.reason == "the reply was not finished within 0.5 seconds"
    assert time.monotonic() - started < 1.5
    assert len(fake_llm.requests) == 1


async def test_ollama_raw_error_line(fake_llm, provider):
    fake_llm.script(Reply.ollama_raw_error("Some text"))
    error = await failure(provider)
    assert error.reason == "the provider reported an error: an error was encountered while running the model"


@pytest.mark.parametrize("style, who", [("openrouter", "FakeProvider"), ("deepseek", "openrouter")])
async def test_content_filter_after_text_is_a_failed_turn(fake_llm, provider, style, who):
    """Azure and others behind OpenRouter stop a reply with ``content_filter``: the words so far
    are a fragment, never a reply, and the tokens are billed all the same."""
    fake_llm.script(
        Reply.text("Here is how one would", finish_reason="content_filter", usage=(30, 6), style=style),
        Reply.text("must not be asked for"),
    )
    seen: list[str] = []
    with pytest.raises(ProviderError) as caught:
        await complete(provider, ask(), on_text=lambda parts: seen.append("".join(parts)))
    assert seen  # the text had arrived (a streaming stage drew it) before the filter's stop
    assert caught.value.reason == f"{who}'s content filter stopped the reply"
    assert caught.value.usage == Usage(input_tokens=30, output_tokens=6)
    assert not caught.value.pause and len(fake_llm.requests) == 1


async def test_cut_off_while_thinking(fake_llm, provider):
    fake_llm.script(Reply.text("", reasoning="Let me consider every option...", finish_reason="length", usage=(10, 256)))
    parts: list[object] = []
    with pytest.raises(ProviderError) as caught:
        async for part in provider.stream(ask()):
            parts.append(part)
    assert "cut off while the model was still thinking" in caught.value.reason
    assert not any(isinstance(p, TextDelta) for p in parts)
    assert any(isinstance(p, ReasoningDelta) for p in parts)
    assert caught.value.usage == Usage(input_tokens=10, output_tokens=256, reasoning_tokens=7)  # still billed


async def test_unreachable_server_is_retried_then_explained(sleeps):
    with FakeLLMServer() as server:
        url = server.base_url  # the port is free again once the server stops
    provider = OpenAICompatProvider("openrouter", url, KEY, sleep=sleeps, backoff_base=0.01)
    error = await failure(provider)
    await provider.aclose()
    assert error.reason == "could not connect to openrouter (tried 3 times)"
    assert len(sleeps.delays) == 2


# --- shared helpers and the pool --------------------------------------------------


def test_retry_delay():
    assert retry_delay(1, "2.5") == 2.5
    assert retry_delay(3, "999") == 60.0
    assert all(0 <= retry_delay(n, None, base=1, cap=20) <= min(20, 2 ** (n - 1)) for n in range(1, 8))
    assert retry_delay(2, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert is_retryable(429) and is_retryable(529) and not is_retryable(402) and is_retryable(402, "5")


def test_error_reason_wording():
    assert error_reason(403, {"error": {"message": "Flagged", "metadata": {"reasons": ["x"]}}}) == (
        "the provider's moderation refused the request: Flagged"
    )
    assert error_reason(500, "<html>oops</html>") == "the provider is having trouble (HTTP 500)"
    assert error_reason(401, {"error": {"message": "bad"}}, None) == "the API key was rejected (bad)"


async def test_pool_shares_one_provider_per_route(fake_llm):
    settings = Settings(_env_file=None, openrouter_api_key=KEY, openrouter_base_url=fake_llm.base_url)
    pool = ProviderPool(settings)
    first, second = pool.get(MODEL), pool.get(THINKER)
    assert first is second and first.name == "openrouter"
    assert (await complete(first, ask())).text == "I am test/model, turn 1."
    await pool.aclose()


def test_no_key_pauses_with_instructions():
    settings = Settings(_env_file=None, openrouter_api_key=None)
    with pytest.raises(ProviderError) as caught:
        make_chat_provider(MODEL, settings)
    assert caught.value.pause and "OPENROUTER_API_KEY=" in caught.value.reason
    with pytest.raises(ProviderError):
        ProviderPool(settings).get(MODEL)
