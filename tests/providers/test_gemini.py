"""The native Gemini adapter against the fake Gemini API: streaming, the request, safety blocks, failures."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator

import pytest

from bot.engine import ChatRequest, Message, ModelInfo, Picture, Usage
from bot.providers import GeminiProvider, ProviderError, TextDelta, complete
from bot.settings import Settings
from tests.fakes import FakeGeminiServer, GeminiReply, Reply

KEY = "AIzaSy-test-secret-0123456789"
FLASH = ModelInfo(name="Gemini Test", routes={"openrouter": "google/gemini-test", "gemini": "gemini-test-flash"})
THINKER = ModelInfo(name="Gemini Thinker", routes={"gemini": "gemini-test-pro"}, reasoning=True)


def make_provider(server: FakeGeminiServer, sleeps, **options: object) -> GeminiProvider:
    limits: dict[str, object] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "total_timeout": 5.0,
        "backoff_base": 0.01,
        "sleep": sleeps,
    }
    return GeminiProvider(server.base_url, KEY, **(limits | options))  # type: ignore[arg-type]


@pytest.fixture
async def gemini(fake_gemini, sleeps) -> AsyncIterator[GeminiProvider]:
    provider = make_provider(fake_gemini, sleeps)
    yield provider
    await provider.aclose()


def ask(*messages: Message, **fields: object) -> ChatRequest:
    values: dict[str, object] = {
        "model": FLASH,
        "system": "You are AI-1.",
        "messages": messages or (Message("user", "[AI-2 (Other)]: Hello there."),),
        "temperature": None,
        "max_tokens": 256,
    }
    return ChatRequest(**(values | fields))  # type: ignore[arg-type]


async def failure(provider: GeminiProvider, request: ChatRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await complete(provider, request or ask())
    return caught.value


# --- streaming -------------------------------------------------------------------


async def test_crlf_chunks_arrive_in_order(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.text("Here you go: Hola, Bonjour, Hallo.", chunks=4))
    parts = [part async for part in gemini.stream(ask())]
    assert "".join(p.text for p in parts if isinstance(p, TextDelta)) == "Here you go: Hola, Bonjour, Hallo."
    assert sum(isinstance(p, TextDelta) for p in parts) == 4
    assert isinstance(parts[-1], Usage)


async def test_lf_framing_too(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.text("Plain newlines.", crlf=False))
    assert (await complete(gemini, ask())).text == "Plain newlines."


async def test_thoughts_are_reasoning_never_text(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.text("9.8 is greater.", thoughts="Comparing 9.11 and 9.8.", chunks=2))
    result = await complete(gemini, ask(model=THINKER))
    assert result.text == "9.8 is greater."
    assert result.reasoning == "Comparing 9.11 and 9.8."


async def test_usage_is_cumulative_and_thoughts_are_billed_output(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.text("x" * 40, usage=(1200, 1000), thought_tokens=84, chunks=4))
    result = await complete(gemini, ask())
    assert result.usage == Usage(input_tokens=200, cached_input_tokens=1000, output_tokens=10 + 84, reasoning_tokens=84)


async def test_empty_usage_on_a_later_chunk_does_not_erase_it(fake_gemini, gemini):
    first = (
        '{"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}],'
        '"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 1,"totalTokenCount": 6}}'
    )
    last = (
        '{"candidates": [{"content": {"parts": [{"text": "!"}],"role": "model"},"finishReason": "STOP","index": 0}],'
        '"usageMetadata": {}}'
    )
    fake_gemini.script(Reply.raw(f"data: {first}\r\n\r\n", f"data: {last}\r\n\r\n"))
    result = await complete(gemini, ask())
    assert result.text == "Hi!" and result.usage == Usage(input_tokens=5, output_tokens=1)


async def test_implicit_cache_hits_are_reported(fake_gemini, gemini):
    system = "You are AI-1 in a long room. " * 200
    turn1 = (Message("user", "[AI-2]: first " + "words " * 50),)
    turn2 = turn1 + (Message("assistant", "mine"), Message("user", "[AI-2]: second"))
    first = await complete(gemini, ask(*turn1, system=system))
    second = await complete(gemini, ask(*turn2, system=system))
    assert first.usage.cached_input_tokens == 0
    assert second.usage.cached_input_tokens >= first.usage.input_tokens - 100


# --- the request -----------------------------------------------------------------


async def test_url_and_key_header_never_the_url(fake_gemini, gemini):
    await complete(gemini, ask())
    sent = fake_gemini.requests[0]
    assert sent.path == "/v1beta/models/gemini-test-flash:streamGenerateContent?alt=sse"
    assert sent.headers["x-goog-api-key"] == KEY
    assert KEY not in sent.path and "key=" not in sent.path
    assert "authorization" not in sent.headers


async def test_roles_system_instruction_pictures_and_config(fake_gemini, gemini):
    picture = Picture(b"\x89PNG fake", "image/png")
    request = ask(
        Message("assistant", "I spoke first."),
        Message("user", "[AI-2]: Look:", (picture,)),
        Message("user", "[AI-3]: And this."),
        Message("assistant", "Nice."),
        Message("user", "[AI-2]: More?"),
        temperature=1.7,
        stop=("\n[AI-2]", "\n[AI-3]"),
    )
    await complete(gemini, request)
    body = fake_gemini.requests[0].body
    assert body["systemInstruction"] == {"parts": [{"text": "You are AI-1."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "model", "user"]
    assert body["contents"][2]["parts"] == [
        {"text": "[AI-2]: Look:\n\n[AI-3]: And this."},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(picture.data).decode()}},
    ]
    assert body["generationConfig"] == {"maxOutputTokens": 256, "temperature": 1.7, "stopSequences": ["\n[AI-2]", "\n[AI-3]"]}


async def test_thinking_models_ask_for_their_thoughts(fake_gemini, gemini):
    await complete(gemini, ask(model=THINKER))
    assert fake_gemini.requests[0].body["generationConfig"]["thinkingConfig"] == {"includeThoughts": True}


async def test_a_json_array_body_is_read_too(fake_gemini, sleeps):
    chunks = '[{"candidates": [{"content": {"parts": [{"text": "Whole"}],"role": "model"},"index": 0}]},\n' \
        '{"candidates": [{"content": {"parts": [{"text": " array."}],"role": "model"},"finishReason": "STOP","index": 0}]}]'
    fake_gemini.script(Reply.raw(chunks, content_type="application/json"))
    provider = make_provider(fake_gemini, sleeps)
    assert (await complete(provider, ask())).text == "Whole array."
    await provider.aclose()


async def test_settings_build_the_provider(fake_gemini, sleeps):
    settings = Settings(_env_file=None, gemini_api_key=KEY, gemini_base_url=fake_gemini.base_url)
    provider = GeminiProvider.from_settings(settings, sleep=sleeps)
    assert (await complete(provider, ask())).text == "I am Gemini, turn 1."
    await provider.aclose()


# --- safety ------------------------------------------------------------------------


async def test_a_blocked_prompt_is_a_failed_turn_in_plain_words(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.blocked_prompt("PROHIBITED_CONTENT"), GeminiReply.text("never"))
    error = await failure(gemini)
    assert error.reason == "Gemini refused the conversation because of prohibited content"
    assert not error.pause and len(fake_gemini.requests) == 1


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("SAFETY", "its safety filters"),
        ("RECITATION", "recitation of existing text"),
        ("SPII", "sensitive personal information"),
        ("SOMETHING_NEW", "an unexpected stop (SOMETHING_NEW)"),
    ],
)
async def test_a_reply_stopped_by_a_filter_is_a_failed_turn(fake_gemini, gemini, reason, words):
    fake_gemini.script(GeminiReply.stopped("Once upon a", reason=reason), GeminiReply.text("never"))
    parts: list[object] = []
    with pytest.raises(ProviderError) as caught:
        async for part in gemini.stream(ask()):
            parts.append(part)
    assert caught.value.reason == f"Gemini stopped the reply because of {words}"
    assert caught.value.usage == Usage(input_tokens=12, output_tokens=3)  # still billed
    assert len(fake_gemini.requests) == 1


async def test_max_tokens_keeps_the_text(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.text("Cut short", finish="MAX_TOKENS"))
    assert (await complete(gemini, ask())).text == "Cut short"


async def test_cut_off_while_thinking(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.text("", thoughts="Thinking it all through...", finish="MAX_TOKENS"))
    error = await failure(gemini, ask(model=THINKER))
    assert "cut off while the model was still thinking" in error.reason


# --- HTTP errors -----------------------------------------------------------------


async def test_bad_key_is_a_400_that_pauses(fake_gemini, gemini):
    fake_gemini.require_key = "AIza-the-right-one"
    error = await failure(gemini)
    assert error.pause
    assert error.reason == "the API key was rejected (API key not valid. Please pass a valid API key.); check GEMINI_API_KEY"
    assert len(fake_gemini.requests) == 1 and KEY not in error.reason


async def test_missing_key_pauses(fake_gemini, sleeps):
    provider = GeminiProvider(fake_gemini.base_url, None, sleep=sleeps)
    error = await failure(provider)
    await provider.aclose()
    assert error.pause and error.status == 403 and "GEMINI_API_KEY" in error.reason


async def test_quota_waits_for_the_retry_delay_in_the_body(fake_gemini, gemini, sleeps):
    fake_gemini.script(GeminiReply.quota("3s"), GeminiReply.text("Made it."))
    assert (await complete(gemini, ask())).text == "Made it."
    assert sleeps.delays == [3.0] and len(fake_gemini.requests) == 2


async def test_a_used_up_daily_quota_pauses_without_waiting(fake_gemini, gemini, sleeps):
    """Google says "retry in 26s" on a daily quota too; only the violated quota's id tells them apart."""
    fake_gemini.script(GeminiReply.quota("26s", daily=True), GeminiReply.text("must not be asked for"))
    error = await failure(gemini)
    assert error.pause and error.status == 429
    assert error.reason.startswith("the daily quota is used up: You exceeded your current quota")
    assert len(fake_gemini.requests) == 1 and sleeps.delays == []


async def test_overloaded_three_times_fails(fake_gemini, gemini, sleeps):
    fake_gemini.script(*[GeminiReply.error(503)] * 3, GeminiReply.text("never"))
    error = await failure(gemini)
    assert error.reason == (
        "the provider is having trouble (HTTP 503): The model is overloaded. Please try again later. (tried 3 times)"
    )
    assert len(fake_gemini.requests) == 3 and len(sleeps.delays) == 2


async def test_refused_request_is_not_retried(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.error(400, "Please use a valid role: user, model."))
    error = await failure(gemini)
    assert error.reason == "the provider refused the request: Please use a valid role: user, model."
    assert not error.pause and len(fake_gemini.requests) == 1


# --- failures mid-stream ---------------------------------------------------------


async def test_error_chunk_after_text_fails_without_retry(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.midstream_error("Half a tho"), GeminiReply.text("never"))
    error = await failure(gemini)
    assert error.reason.startswith("the provider is having trouble (HTTP 503)")
    assert len(fake_gemini.requests) == 1


async def test_error_chunk_before_text_is_retried(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.midstream_error(""), GeminiReply.text("Again."))
    assert (await complete(gemini, ask())).text == "Again."
    assert len(fake_gemini.requests) == 2


@pytest.mark.parametrize("graceful", [False, True])
async def test_ending_without_a_finish_after_text_is_an_error(fake_gemini, gemini, graceful):
    fake_gemini.script(GeminiReply.drop("Half a sen", graceful=graceful), GeminiReply.text("never"))
    error = await failure(gemini)
    assert error.reason == "the connection dropped mid-reply"
    assert len(fake_gemini.requests) == 1


async def test_dropped_before_text_is_retried(fake_gemini, gemini):
    fake_gemini.script(GeminiReply.drop(""), GeminiReply.text("Whole."))
    assert (await complete(gemini, ask())).text == "Whole."
    assert len(fake_gemini.requests) == 2


async def test_stall_after_text_is_a_read_timeout(fake_gemini, sleeps):
    provider = make_provider(fake_gemini, sleeps, read_timeout=0.3)
    fake_gemini.script(GeminiReply.stall("Hel", seconds=10))
    started = time.monotonic()
    error = await failure(provider)
    await provider.aclose()
    assert error.reason == "gemini stopped answering for 0.3 seconds mid-reply"
    assert time.monotonic() - started < 2 and len(fake_gemini.requests) == 1
